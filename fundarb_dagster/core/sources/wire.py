"""Wire replay: recorded websocket sessions played through the real ccxt.pro exchange classes.

`create_wire_exchange("bybit", "incident.jsonl.zst", speed=0)` returns an instance of a subclass of the
real `ccxt.pro.bybit` whose only change is the transport: `client(url)` hands ccxt a `WireClient` that
never dials and whose `send` records the subscription instead of writing to a socket. A driver task,
started by the first connection, feeds each recorded frame to `client.handle_text_or_binary_message(raw)`
(the entry point ccxt's live receive loop uses), so ccxt's own message handlers, caches, snapshot/delta
merging and `watch_*` futures run exactly as live, and the Feed sees the same unified structures.

Routing. Each frame goes to the client ccxt created for that frame's subscription (its topic: bybit
`tickers.BTCUSDT`, okx `tickers:BTC-USDT`, binance `btcusdt@aggTrade`), matched against the topics ccxt
sent on each client, not by URL: binance spreads subscriptions over numbered connections, okx's port
differs in old recordings, and bybit decides spot vs contract from the client's URL, so a topic two
clients share (spot and linear `tickers.BTCUSDT`) goes to the one whose URL kind (spot/linear/...)
matches the recorded connection's. Frames nobody subscribed to are skipped and counted in `stats`;
control frames (acks, pongs) are counted, never delivered: ccxt sent no real subscription to ack.
Venues without topic rules (`VENUE_RULES`) replay sessions fundarb recorded itself with `routing="url"`:
a frame goes to the client whose URL is the recorded connection's (same ccxt, same subscriptions).

Timing. The driver waits until subscriptions stop arriving (`settle_s` of wall time with no new one),
then delivers frames in recorded order, letting the event loop turn at least twice after each (a
`watch_*` loop needs a turn to wake and one to re-arm its future, or it misses updates) and, when the
frame woke a watcher, until that watcher awaits again (at most `rearm_turns`). `speed` paces the frames by
their recorded receive times: 1 = real time, 10 = ten times faster, 0 = as fast as possible.
`milliseconds()` returns the recorded clock (the receive time of the frame being delivered).

End. When the recording is exhausted every pending and later `watch_*` call raises `EndOfRecording`,
a `sources.EndOfData` (and an `EOFError`), never a ccxt `NetworkError`, so the Feed's reconnect loop
ends the stream instead of retrying it.

Markets load offline: the markets line of a fundarb recording (the live exchange's own markets), else
minimal ccxt markets for every instrument seen in the frames (`build_market`), with the venue's recorded
instrument entry (from the session's REST bodies, when recorded) as `info`.
REST calls are answered from the session's recorded HTTP bodies when the URL matches, else they raise
`ccxt.NotSupported` (never a network request); the REST history `has` flags are False.

Recording formats read (plain or `.zst`, zstd JSON lines, decompressed with pyarrow):
- fundarb/cryptofeed sessions: a header line, then `{"t": "connect"|"send"|"recv"|"http"|"markets",
  "conn", "ts" (epoch s), "addr" (url), "data" (raw payload string)}` -- what `live.RawRecorder` writes;
- simple frame logs: `{"recv_ts_s", "conn", "addr", "msg": <decoded payload>}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ccxt
import ccxt.pro
from ccxt.async_support.base.ws.client import Client

from .base import EndOfData
from .rest_replay import build_market

# REST history methods a wire replay cannot serve (its HTTP bodies are only the session's own).
_REST_HISTORY = (
    "fetchOHLCV",
    "fetchTrades",
    "fetchTicker",
    "fetchTickers",
    "fetchFundingRate",
    "fetchFundingRates",
    "fetchFundingRateHistory",
    "fetchOrderBook",
    "fetchOpenInterest",
)


_MAX_SETTLE_S = 5.0  # wall seconds the driver waits for a first subscription topic


class EndOfRecording(EndOfData, EOFError):
    """The wire recording is exhausted: the end of every stream of this exchange (`sources.EndOfData`)."""


# -- recordings ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    ts_s: float  # local receive time, epoch seconds
    conn: str  # the recorded connection it arrived on
    data: str  # the raw payload, as received


@dataclass
class Recording:
    path: str
    frames: list[Frame] = field(default_factory=list)
    conn_urls: dict[str, str] = field(default_factory=dict)  # conn -> the url it connected to
    sends: list[tuple[str, str]] = field(default_factory=list)  # (conn, raw subscription) as recorded
    http: list[tuple[str, str]] = field(default_factory=list)  # (url, body)
    markets: list[dict[str, Any]] = field(default_factory=list)  # the live exchange's markets, if recorded
    topics: list[list[str]] = field(default_factory=list)  # per frame, by `index_topics`

    def index_topics(self, venue: WireVenue) -> None:
        """Each frame's subscription topics, decoded once (routing and market discovery both need them)."""
        if len(self.topics) != len(self.frames):
            self.topics = [venue.frame_topics(_loads(frame.data)) for frame in self.frames]

    header: dict[str, Any] = field(default_factory=dict)


def _read_lines(path: Path) -> Iterable[str]:
    if path.name.endswith(".zst"):
        import pyarrow as pa

        with pa.input_stream(str(path), compression="zstd") as stream:
            text = stream.read().decode()
        yield from text.splitlines()
        return
    with path.open() as f:
        yield from f


def load_recording(path: str | Path) -> Recording:
    """Read a recorded websocket session (either format, plain or zstd). Bad lines raise, naming the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"replay.path: wire recording {str(path)!r} does not exist")
    rec = Recording(path=str(path))
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if "msg" in row and "recv_ts_s" in row:  # simple frame log
                if row.get("addr"):
                    rec.conn_urls.setdefault(row["conn"], row["addr"])
                rec.frames.append(Frame(float(row["recv_ts_s"]), str(row["conn"]), json.dumps(row["msg"])))
                continue
            kind = row["t"]
            if kind == "header":
                rec.header = row
            elif kind == "recv":
                data = row["data"]
                rec.frames.append(
                    Frame(float(row["ts"]), str(row["conn"]), data if isinstance(data, str) else json.dumps(data))
                )
            elif kind == "connect":
                rec.conn_urls[str(row["conn"])] = str(row["addr"])
            elif kind == "send":
                rec.sends.append((str(row["conn"]), str(row["data"])))
            elif kind == "http":
                rec.http.append((str(row["url"]), str(row["data"])))
            elif kind == "markets":
                rec.markets = list(row["data"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{number}: not a wire recording line ({exc!r}): {line[:120]!r}") from None
    if not rec.frames:
        raise ValueError(f"replay.path: wire recording {str(path)!r} holds no received frames")
    return rec


# -- venue rules --------------------------------------------------------------------------------------
def _loads(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data  # text frames such as "pong"


def _url_kind(url: str | None) -> str | None:
    """The market kind a public websocket URL serves: spot, linear (USDT-margined), inverse, option."""
    if not url:
        return None
    parts = urlsplit(url)
    host, path = parts.netloc.lower(), parts.path.lower()
    for kind in ("spot", "linear", "inverse", "option"):
        if path.rstrip("/").endswith("/" + kind):
            return kind
    if host.startswith(("fstream", "fstream-")) or "binancefuture" in host and "dstream" not in host:
        return "linear"
    if host.startswith("dstream"):
        return "inverse"
    if "binance" in host:
        return "spot"
    return None


_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "USDE", "USD", "EUR", "BTC", "ETH")


def _split_pair(venue_id: str) -> tuple[str, str]:
    for quote in _QUOTES:
        if venue_id.endswith(quote) and len(venue_id) > len(quote):
            return venue_id[: -len(quote)], quote
    raise ValueError(f"cannot split venue market id {venue_id!r} into base and quote")


class WireVenue:
    """How one venue's frames name their subscription, and which instruments a recording holds.

    Adding a venue: subclass, implement the three methods, register it in `VENUE_RULES` (see docs).
    """

    route_by_url = False

    def frame_topics(self, msg: Any) -> list[str]:
        """The subscription topics a decoded frame may belong to (first match wins); [] = control frame."""
        raise NotImplementedError

    def sent_topics(self, msg: Any) -> list[str]:
        """The topics a subscription message ccxt sent asks for."""
        raise NotImplementedError

    def instruments(self, rec: Recording) -> dict[str, dict[str, Any]]:
        """unified symbol -> {"id", "info"} for every instrument the recording's frames carry."""
        raise NotImplementedError

    def conn_kind(self, rec: Recording, conn: str) -> str | None:
        """The market kind (spot, linear, ...) a recorded connection served, if known."""
        return _url_kind(rec.conn_urls.get(conn))


class BybitWire(WireVenue):
    """v5 public: `{"topic": "tickers.BTCUSDT", "type": "snapshot"|"delta", "data": ..., "ts": ...}`."""

    def frame_topics(self, msg: Any) -> list[str]:
        topic = msg.get("topic") if isinstance(msg, dict) else None
        return [topic] if isinstance(topic, str) else []

    def sent_topics(self, msg: Any) -> list[str]:
        args = msg.get("args") if isinstance(msg, dict) and msg.get("op") == "subscribe" else None
        return [a for a in args or [] if isinstance(a, str)]

    def conn_kind(self, rec: Recording, conn: str) -> str:
        kind = _url_kind(rec.conn_urls.get(conn))
        if kind:
            return kind
        # a frame log without connect records: contract tickers carry markPrice/fundingRate, spot ones never
        for frame in rec.frames:
            if frame.conn == conn and '"topic":"tickers.' in frame.data.replace(" ", ""):
                return "linear" if "markPrice" in frame.data or "fundingRate" in frame.data else "spot"
        return "linear"

    def instruments(self, rec: Recording) -> dict[str, dict[str, Any]]:
        recorded: dict[tuple[str, str], dict[str, Any]] = {}
        for url, body in rec.http:
            if "instruments-info" in url:
                result = (_loads(body) or {}).get("result") or {}
                for item in result.get("list") or []:
                    recorded[(str(result.get("category")), item["symbol"])] = item
        kinds = {conn: self.conn_kind(rec, conn) for conn in {f.conn for f in rec.frames}}
        out: dict[str, dict[str, Any]] = {}
        for frame, topics in zip(rec.frames, rec.topics, strict=True):
            topic = (topics or [""])[0]
            if "." not in topic:
                continue
            venue_id, kind = topic.rsplit(".", 1)[1], kinds[frame.conn]
            item = recorded.get((kind, venue_id))
            if item is not None:
                base, quote = item["baseCoin"], item["quoteCoin"]
            else:
                base, quote = _split_pair(venue_id)
            settle = {"spot": None, "linear": quote, "inverse": base}.get(kind)
            symbol = f"{base}/{quote}" + (f":{settle}" if settle else "")
            out.setdefault(symbol, {"id": venue_id, "info": item or {}})
        return out


class OkxWire(WireVenue):
    """v5 public: `{"arg": {"channel": "tickers", "instId": "BTC-USDT"}, "data": [...]}`."""

    @staticmethod
    def _topic(arg: Any) -> str | None:
        if not isinstance(arg, dict) or "channel" not in arg:
            return None
        return f"{arg['channel']}:{arg.get('instId') or arg.get('instFamily') or arg.get('instType') or ''}"

    def frame_topics(self, msg: Any) -> list[str]:
        if not isinstance(msg, dict) or "data" not in msg:
            return []  # {"event": "subscribe"|"error", ...} acks
        topic = self._topic(msg.get("arg"))
        return [topic] if topic else []

    def sent_topics(self, msg: Any) -> list[str]:
        if not isinstance(msg, dict) or msg.get("op") != "subscribe":
            return []
        return [t for t in (self._topic(a) for a in msg.get("args") or []) if t]

    def instruments(self, rec: Recording) -> dict[str, dict[str, Any]]:
        recorded: dict[str, dict[str, Any]] = {}
        for url, body in rec.http:
            if "/public/instruments" in url:
                for item in (_loads(body) or {}).get("data") or []:
                    recorded[item["instId"]] = item
        out: dict[str, dict[str, Any]] = {}
        for topics in rec.topics:
            inst = topics[0].split(":", 1)[1] if topics else None  # "tickers:BTC-USDT" -> the instId
            if not inst:
                continue
            parts = inst.split("-")
            base, quote = parts[0], parts[1]
            item = recorded.get(inst, {})
            if len(parts) == 2:
                symbol = f"{base}/{quote}"
            else:
                settle = base if quote == "USD" else quote  # okx's USD contracts are coin-margined
                symbol = f"{base}/{quote}:{settle}" + ("" if parts[2] == "SWAP" else f"-{parts[2]}")
            out.setdefault(symbol, {"id": inst, "info": item, "contract_size": float(item.get("ctVal") or 1)})
        return out


class BinanceWire(WireVenue):
    """Raw `{"e": "aggTrade", "s": "BTCUSDT", ...}` or combined `{"stream": "btcusdt@aggTrade", "data": ...}`."""

    def frame_topics(self, msg: Any) -> list[str]:
        if not isinstance(msg, dict):
            return []
        if isinstance(msg.get("stream"), str):
            return [msg["stream"]]
        event, symbol = msg.get("e"), msg.get("s")
        if not isinstance(event, str) or not isinstance(symbol, str):
            return []
        s = symbol.lower()
        if event == "kline":
            return [f"{s}@kline_{msg.get('k', {}).get('i')}"]
        if event == "24hrTicker":
            return [f"{s}@ticker"]
        if event == "markPriceUpdate":
            return [f"{s}@markPrice", f"{s}@markPrice@1s"]
        if event == "depthUpdate":
            return [f"{s}@depth", f"{s}@depth@100ms", f"{s}@depth@500ms"]
        return [f"{s}@{event}"]

    def sent_topics(self, msg: Any) -> list[str]:
        if not isinstance(msg, dict) or msg.get("method") != "SUBSCRIBE":
            return []
        return [p for p in msg.get("params") or [] if isinstance(p, str)]

    def instruments(self, rec: Recording) -> dict[str, dict[str, Any]]:
        recorded: dict[str, dict[str, Any]] = {}
        for url, body in rec.http:
            if "exchangeInfo" in url:
                for item in (_loads(body) or {}).get("symbols") or []:
                    recorded[item["symbol"]] = item
        out: dict[str, dict[str, Any]] = {}
        for frame, topics in zip(rec.frames, rec.topics, strict=True):
            topic = (topics or [""])[0]
            if "@" not in topic:
                continue
            venue_id = topic.split("@")[0].upper()
            kind = _url_kind(rec.conn_urls.get(frame.conn)) or "spot"
            item = recorded.get(venue_id)
            base, quote = (item["baseAsset"], item["quoteAsset"]) if item else _split_pair(venue_id)
            settle = {"spot": None, "linear": quote, "inverse": base}.get(kind)
            symbol = f"{base}/{quote}" + (f":{settle}" if settle else "")
            out.setdefault(symbol, {"id": venue_id, "info": item or {}})
        return out


class UrlWire(WireVenue):
    """Any venue, for sessions fundarb recorded itself: a frame goes to the client with the recorded URL.

    Works because the replaying ccxt makes the same connections as the recording one did (same ccxt,
    same subscriptions); markets come from the recording's `markets` line.
    """

    route_by_url = True

    def frame_topics(self, msg: Any) -> list[str]:
        return []

    def sent_topics(self, msg: Any) -> list[str]:
        return ["*"]

    def instruments(self, rec: Recording) -> dict[str, dict[str, Any]]:
        raise ValueError(f"replay.path: {rec.path} records no markets; URL routing needs a fundarb recording")


VENUE_RULES: dict[str, WireVenue] = {
    "bybit": BybitWire(),
    "okx": OkxWire(),
    "binance": BinanceWire(),
    "binanceusdm": BinanceWire(),
}


# -- the transport ------------------------------------------------------------------------------------
class WireClient(Client):
    """A ccxt.pro websocket client whose connection is a recording: never dials, sends are recorded."""

    replay: WireReplay
    conn_id: str

    def connect(self, session: Any, backoff_delay: float = 0) -> Any:
        if not self.connected.done():
            self.connecting = False
            self.isConnected = True
            self.connectionStarted = self.connectionEstablished = self.replay.milliseconds()
            self.connected.resolve(self.url)
            self.on_connected_callback(self)
            self.replay.on_connect(self)
        return self.connected

    async def send(self, message: Any) -> None:
        raw = message if isinstance(message, str) else json.dumps(message, separators=(",", ":"))
        self.replay.on_send(self, raw)

    def resolve(self, result: Any, message_hash: Any) -> Any:
        if message_hash in self.futures:
            self.replay.awaited.append((self, message_hash))  # someone was waiting: let them re-arm
        return super().resolve(result, message_hash)

    def closed(self) -> bool:
        return self.replay.closed

    async def close(self, code: int = 1000) -> None:
        for future in self.futures.values():
            future.cancel()

    async def aiohttp_close(self) -> None:
        return None


class WireReplay:
    """The driver: routes recorded frames to the clients ccxt created, paced, then ends every stream."""

    def __init__(
        self,
        recording: Recording,
        venue: WireVenue,
        speed: float = 0.0,
        settle_s: float = 0.05,
        recorder: Any = None,
        rearm_turns: int = 200,
    ) -> None:
        if speed < 0:
            raise ValueError(f"replay.speed: {speed!r} must be >= 0 (0 = as fast as possible)")
        self.recording = recording
        self.venue = venue
        self.speed = speed
        self.settle_s = settle_s
        self.recorder = recorder  # a live.RawRecorder: record while replaying (incident re-recording)
        self.clients: list[WireClient] = []
        self.topics: dict[str, list[WireClient]] = {}
        self.clock_ms = int(recording.frames[0].ts_s * 1000)
        self._clock_s = recording.frames[0].ts_s
        if recorder is not None:
            recorder.clock = self.clock_s  # a re-recording keeps the recorded times, so it paces the same
        self.finished = False
        self.closed = False
        self.stats: Counter[str] = Counter()  # delivered, unsubscribed, control, handler_errors
        self.errors: list[str] = []  # the first handler errors, for the report
        self.delivered_by_topic: Counter[str] = Counter()
        self._sub_version = 0
        self._conn_kinds: dict[str, str | None] = {}
        self.awaited: list[tuple[WireClient, Any]] = []  # (client, message hash) resolved for a waiter
        self.rearm_turns = rearm_turns
        self._task: asyncio.Task[None] | None = None

    def milliseconds(self) -> int:
        return self.clock_ms

    def clock_s(self) -> float:
        return self._clock_s

    def on_connect(self, client: WireClient) -> None:
        client.conn_id = self.recorder.new_conn() if self.recorder is not None else f"wire.ws.{len(self.clients) + 1}"
        self.clients.append(client)
        if self.recorder is not None:
            self.recorder.connect(client.conn_id, client.url)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="wire-replay")

    def on_send(self, client: WireClient, raw: str) -> None:
        if self.recorder is not None:
            self.recorder.send(client.conn_id, client.url, raw)
        for topic in self.venue.sent_topics(_loads(raw)):
            subscribers = self.topics.setdefault(topic, [])
            if client not in subscribers:
                subscribers.append(client)
        self._sub_version += 1

    def _route(self, frame: Frame, topics: list[str]) -> tuple[WireClient, str] | None:
        """The client subscribed to the frame's topic whose market kind is the recorded connection's."""
        recorded_url = self.recording.conn_urls.get(frame.conn)
        if frame.conn not in self._conn_kinds:  # once per connection: bybit may scan the frames to tell
            self._conn_kinds[frame.conn] = self.venue.conn_kind(self.recording, frame.conn)
        kind = self._conn_kinds[frame.conn]
        for topic in topics:
            for client in self.topics.get(topic, ()):
                if client.url == recorded_url:
                    return client, topic
                client_kind = _url_kind(client.url)
                # a spot frame must not reach a linear client of the same topic name (bybit), and back
                if kind is None or client_kind is None or client_kind == kind:
                    return client, topic
        return None

    def _route_by_url(self, frame: Frame) -> tuple[WireClient, str] | None:
        url = self.recording.conn_urls.get(frame.conn)
        for client in self.clients:
            if client.url == url:
                return client, "*"
        return None

    async def _settle(self) -> None:
        """Wait for the consumer's subscriptions to arrive: live ones would miss frames sent before them.

        Bounded (`_MAX_SETTLE_S`): a consumer whose subscriptions name no topic this venue's rules know
        still gets its replay (every frame then counted as unsubscribed) and the end, never a hang.
        """
        deadline = time.monotonic() + _MAX_SETTLE_S
        while time.monotonic() < deadline:
            version = self._sub_version
            await asyncio.sleep(self.settle_s)
            if version == self._sub_version and self.topics:
                return

    async def _run(self) -> None:
        try:
            await self._settle()
            frames = self.recording.frames
            wall0, ts0 = time.monotonic(), frames[0].ts_s
            if self.venue.route_by_url:
                all_topics: list[list[str]] = [[] for _ in frames]  # URL routing decodes nothing
            else:
                self.recording.index_topics(self.venue)
                all_topics = self.recording.topics
            for frame, frame_topics in zip(frames, all_topics, strict=True):
                if self.closed:
                    return
                if self.speed > 0:
                    delay = (frame.ts_s - ts0) / self.speed - (time.monotonic() - wall0)
                    if delay > 0:
                        await asyncio.sleep(delay)
                self._clock_s = frame.ts_s
                self.clock_ms = int(frame.ts_s * 1000)
                if self.venue.route_by_url:
                    topics = ["*"]
                    routed = self._route_by_url(frame)
                else:
                    topics = frame_topics
                    routed = self._route(frame, topics) if topics else None
                if routed is None:
                    self.stats["control" if not topics else "unsubscribed"] += 1
                    continue
                client, topic = routed
                if self.recorder is not None:
                    self.recorder.recv(client.conn_id, frame.data)
                try:
                    client.handle_text_or_binary_message(frame.data)
                except Exception as exc:  # noqa: BLE001 - a bad frame is counted and skipped, never the end
                    self.stats["handler_errors"] += 1
                    if len(self.errors) < 20:
                        self.errors.append(f"{frame.conn}@{frame.ts_s}: {type(exc).__name__}: {exc}"[:300])
                    continue
                self.stats["delivered"] += 1
                self.delivered_by_topic[f"{client.url} {topic}"] += 1
                await self._let_watchers_rearm()
            for _ in range(4):
                await asyncio.sleep(0)
        finally:
            self._end()

    async def _let_watchers_rearm(self) -> None:
        """Turn the loop until every watcher this frame woke is awaiting again (bounded).

        One turn wakes the `watch_*` awaiting the resolved future and one lets it re-arm; a consumer doing
        more per update (the Feed validates and yields) needs more, and live it has the time between
        frames. Without this, an unpaced replay would conflate tickers the consumer was not awaiting.
        """
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        if not self.awaited:
            return
        for _ in range(self.rearm_turns):
            if all(message_hash in client.futures for client, message_hash in self.awaited):
                break
            await asyncio.sleep(0)
        # a second consumer of the same future (tickers and bybit funding share watch_ticker) gets a turn too
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.awaited.clear()

    def _end(self) -> None:
        self.finished = True
        error = EndOfRecording(f"wire replay: recording {self.recording.path} ended ({self.stats['delivered']} frames)")
        for client in self.clients:
            client.reject(error)

    def end_error(self) -> EndOfRecording:
        return EndOfRecording(f"wire replay: recording {self.recording.path} has ended")


async def _no_throttle(cost: float | None = None) -> None:
    return None


class WireExchangeMixin:
    """Mixed in before the real `ccxt.pro.<venue>` class: only the transport and the clock change."""

    wire: WireReplay

    def client(self, url: str) -> Any:
        existed = url in (self.clients or {})  # type: ignore[attr-defined]
        client = super().client(url)  # type: ignore[misc]
        if not existed:
            # the client ccxt built (same options, throttle, callbacks as live), given a recorded wire
            client.__class__ = WireClient
            client.replay = self.wire
            client.conn_id = ""
            # ccxt throttles subscription sends to respect the venue's limits; nothing reaches a venue
            # here, and throttled sends would trickle in after the driver started and miss frames
            client.throttle = _no_throttle
        return client

    def milliseconds(self) -> int:
        return self.wire.milliseconds()

    def watch(self, *args: Any, **kwargs: Any) -> Any:
        if self.wire.finished:
            raise self.wire.end_error()
        return super().watch(*args, **kwargs)  # type: ignore[misc]

    def watch_multiple(self, *args: Any, **kwargs: Any) -> Any:
        if self.wire.finished:
            raise self.wire.end_error()
        return super().watch_multiple(*args, **kwargs)  # type: ignore[misc]

    async def fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        """REST from the session's recorded HTTP bodies (same path and query), never from the network."""
        wanted = urlsplit(url)
        for recorded_url, text in self.wire.recording.http:
            got = urlsplit(recorded_url)
            if got.path == wanted.path and sorted(got.query.lstrip("&").split("&")) == sorted(wanted.query.split("&")):
                return json.loads(text)
        raise ccxt.NotSupported(f"{self.id} wire replay: no recorded HTTP response for {method} {url}")  # type: ignore[attr-defined]

    async def fetch_markets(self, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return list(self.markets.values()) if self.markets else []  # type: ignore[attr-defined]

    async def fetch_currencies(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return {}

    async def close(self, clean_instance_data: bool = False) -> None:
        self.wire.closed = True
        task = self.wire._task
        await super().close()  # type: ignore[misc]
        if self.wire.recorder is not None:
            self.wire.recorder.close()
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, EndOfRecording):
                await task


_CLASSES: dict[str, type] = {}


def wire_exchange_class(exchange_id: str) -> type:
    """`Wire<venue>`: WireExchangeMixin over the real `ccxt.pro.<venue>` class."""
    if exchange_id not in _CLASSES:
        base = getattr(ccxt.pro, exchange_id, None)
        if base is None:
            raise ValueError(f"exchange_id: {exchange_id!r} is not a ccxt.pro exchange")
        _CLASSES[exchange_id] = type(f"Wire{base.__name__}", (WireExchangeMixin, base), {})
    return _CLASSES[exchange_id]


def _instruments(rules: WireVenue, recording: Recording) -> dict[str, dict[str, Any]]:
    recording.index_topics(rules)
    return rules.instruments(recording)


def create_wire_exchange(
    exchange_id: str,
    path: str | Path,
    speed: float = 0.0,
    *,
    settle_s: float = 0.05,
    recorder: Any = None,
    options: Mapping[str, Any] | None = None,
    routing: str = "topic",
) -> Any:
    """A real ccxt.pro exchange replaying a recorded websocket session; markets set offline.

    Reads the recording (no sockets, no tasks: the driver starts with the first connection). `recorder`
    (a `live.RawRecorder`) re-records the session as it is replayed; `options` extend ccxt's options.
    """
    if routing not in ("topic", "url"):
        raise ValueError(f"routing: {routing!r}; expected 'topic' or 'url'")
    wire_exchange_class(exchange_id)  # an unknown exchange id fails before the file is read
    rules = VENUE_RULES.get(exchange_id) if routing == "topic" else None
    recording = load_recording(path)
    if rules is None:
        if not recording.markets:
            raise ValueError(
                f"exchange_id: topic routing knows {sorted(VENUE_RULES)}; {exchange_id!r} needs a session"
                " recorded by fundarb (it holds the markets and the connections' URLs)"
            )
        rules = UrlWire()
    exchange = wire_exchange_class(exchange_id)({"enableRateLimit": True, "options": dict(options or {})})
    exchange.wire = WireReplay(recording, rules, speed=speed, settle_s=settle_s, recorder=recorder)
    exchange.speed = speed  # recorded seconds per wall second (0: unpaced); the Feed scales its waits by it
    for name in _REST_HISTORY:
        if name in exchange.has:
            exchange.has[name] = False
    if recording.markets:
        markets = recording.markets  # the live exchange's own markets, as loaded when it recorded
    else:
        markets = [
            build_market(
                exchange,
                symbol,
                market_id=spec["id"],
                contract_size=spec.get("contract_size", 1.0),
                info=spec.get("info"),
            )
            for symbol, spec in _instruments(rules, recording).items()
        ]
    exchange.set_markets(markets)
    if recorder is not None:
        recorder.markets(list(exchange.markets.values()))
    return exchange


def replay_stats(exchange: Any) -> dict[str, Any]:
    """Frames delivered / skipped so far, and per topic: what a test or the capture job reports."""
    wire: WireReplay = exchange.wire
    return {
        "frames": len(wire.recording.frames),
        **{k: wire.stats.get(k, 0) for k in ("delivered", "unsubscribed", "control", "handler_errors")},
        "errors": list(wire.errors),
        "by_topic": dict(wire.delivered_by_topic),
        "finished": wire.finished,
    }
