"""The live source: a real ccxt.pro exchange, optionally recording every raw websocket frame it receives.

`create_live_exchange("bybit", config.live, api_credentials("bybit"))` returns an instance of a thin
subclass of `ccxt.pro.bybit`: ccxt's own REST and websocket code, rate limiting on, markets limited to
the kinds fundarb trades (`MARKET_TYPES`), credentials only from the dict given (which
`config.api_credentials` reads from `FUNDARB_<EXCHANGE>_API_KEY` / `_SECRET` / `_PASSWORD`). Public
market data needs no key; a key only raises some venues' rate limits. Credentials are never logged or
stored: `repr()`/`str()` say only whether they are set, ccxt's `verbose` (which prints signed request
headers) is forced off, and the raw recorder redacts their values from anything it writes.

Symbols: ccxt unified, the same for every source. `BTC/USDT` is spot, `BTC/USDT:USDT` the USDT-margined
perpetual, `BTC/USD:BTC` the coin-margined one. On binance the one `ccxt.pro.binance` instance routes a
perp symbol to the USD-M futures endpoints (fapi, fstream) by the market's type, so spot and perps of
one venue share one exchange object (`binanceusdm` also works as an id, perps only).

Raw recording (`live.record_raw: <folder>`): every frame a websocket client receives is appended, as
received and before ccxt parses it, to `<folder>/<exchange>-<UTC start>-<pid>.jsonl` with the connection
it arrived on, next to the connection's URL and each subscription message ccxt sent::

    {"t": "header", "format": 2, "exchange": "bybit", "source": "fundarb", "ccxt": "4.5.90", ...}
    {"t": "markets", "ts": 1786310818.2, "data": [<ccxt market structures, as loaded>]}
    {"t": "connect", "conn": "bybit.ws.1", "ts": 1786310818.22, "addr": "wss://stream.bybit.com/v5/public/linear"}
    {"t": "send", "conn": "bybit.ws.1", "ts": 1786310819.23, "addr": "...", "data": "{\\"op\\":\\"subscribe\\",...}"}
    {"t": "recv", "conn": "bybit.ws.1", "ts": 1786310819.53, "data": "{\\"topic\\":\\"tickers.BTCUSDT\\",...}"}
    {"t": "http", "conn": "rest", "ts": 1786310819.6, "url": "https://api.hyperliquid.xyz/info", "method": "POST",
     "body": "{\\"type\\":\\"metaAndAssetCtxs\\"}", "data": "[{\\"universe\\": ...}]"}

the format of the fixture sessions, so `wire.create_wire_exchange(exchange, that_file)` replays an
incident through the same ccxt code. REST responses are recorded too (the request's url, method and body,
never its headers, which carry signatures), so a replay answers the calls the live run made at start, such as
the funding-interval lookup that hyperliquid's streams need. Lines are flushed at least every
`flush_interval_s` and on close.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import ccxt
import ccxt.pro
from ccxt.async_support.base.ws.client import Client

from ..config import LiveConfig
from ..venues import VENUE_FACTS
from .base import ccxt_pro_subclass

# The market kinds loaded at start, per ccxt id (from `core/venues.py`): what fundarb trades (spot, perpetuals
# and dated futures, which binance and bybit list among their linear/inverse kinds), never options.
MARKET_TYPES: dict[str, list[str]] = {
    ccxt_id: list(types) for facts in VENUE_FACTS.values() for ccxt_id, types in facts.market_types.items()
}


_ENCODE = json.JSONEncoder(separators=(",", ":"), default=str).encode
_STRING = json.encoder.encode_basestring  # a JSON string literal (C implementation), UTF-8 kept as is


class RawRecorder:
    """Appends raw websocket traffic to a JSON-lines file that `wire.load_recording` reads back.

    Thread-safe and cheap: one `json.dumps` and a buffered write per frame. `clock` gives the epoch
    seconds stamped on each line (wall time live; the recorded clock when re-recording a wire replay).
    `redact` values (credentials) are replaced by "***" in everything written.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        exchange_id: str,
        *,
        clock: Callable[[], float] = time.time,
        redact: tuple[str, ...] = (),
        flush_interval_s: float = 1.0,
    ) -> None:
        self.folder = Path(folder)
        self.exchange_id = exchange_id
        self.clock = clock
        self.redact = tuple(v for v in redact if v)
        self.flush_interval_s = flush_interval_s
        self.path: Path | None = None
        self.records = 0
        self._file: IO[str] | None = None
        self._last_flush = 0.0
        self._lock = threading.Lock()
        self._conns = 0

    def new_conn(self) -> str:
        self._conns += 1
        return f"{self.exchange_id}.ws.{self._conns}"

    def _open(self) -> IO[str]:
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.path = self.folder / f"{self.exchange_id}-{stamp}-{os.getpid()}.jsonl"
        f = self.path.open("a", encoding="utf-8")
        header = {
            "t": "header",
            "format": 2,
            "exchange": self.exchange_id,
            "source": "fundarb",
            "ccxt": ccxt.__version__,
            "recorded": self.clock(),
        }
        f.write(json.dumps(header) + "\n")
        return f

    def _write(self, record: dict[str, Any]) -> None:
        self._write_line(_ENCODE(record))

    def _write_line(self, line: str) -> None:
        for secret in self.redact:
            line = line.replace(secret, "***")
        with self._lock:
            if self._file is None:
                self._file = self._open()
            self._file.write(line + "\n")
            self.records += 1
            now = time.monotonic()
            if now - self._last_flush >= self.flush_interval_s:
                self._file.flush()
                self._last_flush = now

    def connect(self, conn: str, url: str) -> None:
        self._write({"t": "connect", "conn": conn, "ts": self.clock(), "addr": url})

    def send(self, conn: str, url: str, data: str) -> None:
        self._write({"t": "send", "conn": conn, "ts": self.clock(), "addr": url, "data": data})

    def http(self, url: str, method: str, body: Any, response: Any) -> None:
        """One REST response, as `wire.load_recording` reads it back (answered again when the same url, method
        and body are requested during a replay)."""
        data = response if isinstance(response, str) else _ENCODE(response)
        request = body if body is None or isinstance(body, str) else _ENCODE(body)
        record = {"t": "http", "conn": "rest", "ts": self.clock(), "url": url, "method": method, "body": request}
        self._write({**record, "data": data})

    def markets(self, markets: list[dict[str, Any]]) -> None:
        """The exchange's loaded markets, so a replay uses exactly these (any venue, offline)."""
        self._write({"t": "markets", "ts": self.clock(), "data": markets})

    def recv(self, conn: str, data: str | bytes) -> None:
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
        # the hot path (every frame): the line by hand, half the cost of encoding a dict
        self._write_line(f'{{"t":"recv","conn":{_STRING(conn)},"ts":{self.clock()!r},"data":{_STRING(text)}}}')

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class RecordingClient(Client):
    """ccxt.pro's websocket client, recording connects, subscriptions and every raw received frame."""

    recorder: RawRecorder
    conn_id: str

    async def open(self, session: Any, backoff_delay: float = 0) -> None:
        self.conn_id = self.recorder.new_conn()
        self.recorder.connect(self.conn_id, self.url)
        await super().open(session, backoff_delay)

    async def send(self, message: Any) -> Any:
        raw = message if isinstance(message, str) else json.dumps(message, separators=(",", ":"))
        self.recorder.send(self.conn_id, self.url, raw)
        return await super().send(message)

    def handle_text_or_binary_message(self, data: Any) -> None:
        # the frame exactly as it came off the wire (after transport decompression), before parsing
        self.recorder.recv(self.conn_id, data)
        super().handle_text_or_binary_message(data)


class LiveExchangeMixin:
    """Mixed in before the real `ccxt.pro.<venue>` class: recording hook and a credential-safe repr."""

    raw_recorder: RawRecorder | None = None
    live_config: LiveConfig

    def client(self, url: str) -> Any:
        existed = url in (self.clients or {})  # type: ignore[attr-defined]
        client = super().client(url)  # type: ignore[misc]
        if self.raw_recorder is not None and not existed:
            client.__class__ = RecordingClient  # the client ccxt built, same options, one extra hook
            client.recorder = self.raw_recorder
            client.conn_id = ""  # named when it dials: one client object is one connection
        return client

    async def fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        response = await super().fetch(url, method, headers, body)  # type: ignore[misc]
        if self.raw_recorder is not None:
            self.raw_recorder.http(url, method, body, response)
        return response

    def set_markets(self, markets: Any, currencies: Any = None) -> Any:
        result = super().set_markets(markets, currencies)  # type: ignore[misc]
        if self.raw_recorder is not None:
            self.raw_recorder.markets(list(self.markets.values()))  # type: ignore[attr-defined]
        return result

    def __repr__(self) -> str:
        keys = "set" if getattr(self, "apiKey", "") else "none"
        return f"<live {self.id} exchange, credentials: {keys}>"  # type: ignore[attr-defined]

    __str__ = __repr__

    async def close(self, clean_instance_data: bool = False) -> None:
        try:
            await super().close(clean_instance_data)  # type: ignore[misc]
        finally:
            if self.raw_recorder is not None:
                self.raw_recorder.close()


def live_exchange_class(exchange_id: str) -> type:
    """`Live<venue>`: LiveExchangeMixin over the real `ccxt.pro.<venue>` class."""
    return ccxt_pro_subclass(LiveExchangeMixin, exchange_id)


def exchange_settings(
    exchange_id: str, credentials: Mapping[str, str], options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ccxt constructor settings for a live exchange (no secrets added beyond `credentials`); `options`
    are ccxt's, from the config (e.g. binance `{"watchTrades": {"name": "aggTrade"}}`)."""
    allowed = {"apiKey", "secret", "password", "uid", "walletAddress", "privateKey"}
    unknown = set(credentials) - allowed
    if unknown:
        raise ValueError(f"credentials: unknown ccxt credential field {sorted(unknown)[0]!r}")
    options = {key: dict(value) for key, value in (options or {}).items()}
    if exchange_id in MARKET_TYPES:
        options["fetchMarkets"] = {"types": list(MARKET_TYPES[exchange_id])}
    return {
        "enableRateLimit": True,  # ccxt's token bucket per venue: REST history pagination stays in limits
        "verbose": False,  # verbose mode prints signed request headers
        "timeout": 15_000,
        "options": options,
        **dict(credentials),
    }


def create_live_exchange(
    exchange_id: str, live: LiveConfig, credentials: Mapping[str, str], options: Mapping[str, Any] | None = None
) -> Any:
    """A real ccxt.pro exchange for live data; records raw frames when `live.record_raw` names a folder.

    Opens no socket and starts no task: ccxt connects on the first awaited call.
    """
    exchange = live_exchange_class(exchange_id)(exchange_settings(exchange_id, credentials, options))
    exchange.live_config = live
    if live.record_raw:
        exchange.raw_recorder = RawRecorder(live.record_raw, exchange_id, redact=tuple(credentials.values()))
    return exchange


async def load_market(exchange_id: str, symbol: str, market_type: str | None = None) -> dict[str, Any]:
    """ccxt's market of one symbol, loaded from the venue (public, no key): what an import takes its
    contract size, settle currency, inverse/linear and expiry from, as a capture does. Raises ccxt's error
    (`NetworkError` offline) or KeyError naming the symbol when the venue does not list it."""
    exchange = create_live_exchange(exchange_id, LiveConfig(), {})
    try:
        await exchange.load_markets()
    finally:
        await exchange.close()
    return market_of(exchange, symbol, market_type)


def market_of(exchange: Any, symbol: str, market_type: str | None = None) -> dict[str, Any]:
    """The market of a unified symbol or of the venue's own market id (`BTCUSD_PERP`, as the venue's archive
    paths spell it), from a ccxt exchange whose markets are loaded; KeyError naming the value when it is
    unknown, or when the id names several markets (binance's `BTCUSDT` is a spot and a perp market) and
    `market_type` ("spot" or "swap", as an archive's folders say) does not choose one."""
    if symbol in exchange.markets:
        return dict(exchange.markets[symbol])
    found = (exchange.markets_by_id or {}).get(symbol) or []
    if len(found) > 1 and market_type is not None:
        found = [m for m in found if bool(m.get("spot")) == (market_type == "spot")] or found
    if len(found) == 1:
        return dict(found[0])
    if found:
        names = sorted(m["symbol"] for m in found)
        raise KeyError(f"symbol: {symbol!r} is the id of {names} on {exchange.id}: pass one of them")
    raise KeyError(f"symbol: {symbol!r} is not listed by exchange {exchange.id!r}")
