"""A real ccxt exchange class fed recorded HTTP responses: ccxt's own request building and parsing run.

`create_rest_replay_exchange("bybit", entries)` returns an instance of a subclass of `ccxt.pro.bybit`
(async, like the live source) whose HTTP layer (`fetch`, the one method ccxt's request path calls for
every REST request) returns a recorded response body instead of dialling. Everything above it is ccxt's
unchanged code: `fetch_ohlcv` builds the request, signs it if private, `handle_errors` sees the body as
it would a live 200 response, and the venue's `parse_*` methods produce the unified structures.

Entries have the shape of ccxt's own static-response tests (fixtures/ccxt_rest_responses/<venue>.json)::

    {"method": "fetchOHLCV", "input": ["BTC/USDT:USDT", "1h", 1706628191000, 3],
     "httpResponse": {"retCode": "0", "result": {"list": [["1706637600000", "43376.1", ...]]}},
     "parsedResponse": [[1706630400000, 43350.7, 43492.5, 43204.5, 43488, 1341.261], ...]}

A call is answered by the entry of the same method whose `input` equals the call's arguments (trailing
None/{} ignored), else by the first entry of that method with the same symbol and timeframe (any
since/limit); a call nothing answers raises `ccxt.NotSupported` naming the method and arguments (never a
network request).

Markets are built offline from the unified symbols the entries mention (`build_market`: the one builder,
`markets.market_for`, with the venue's market id), minimal but complete enough for ccxt's request builders
and parsers: id, base/quote/settle, type flags, contract size.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ccxt
import ccxt.pro

from ..venues import UNIFIED_SYMBOL as _UNIFIED
from ..venues import venue_market_id
from .base import ccxt_pro_subclass
from .markets import market_for

# The unified REST methods a recorded entry can answer: ccxt's camelCase name -> the Python method.
REPLAYABLE_METHODS: dict[str, str] = {
    "fetchOHLCV": "fetch_ohlcv",
    "fetchTicker": "fetch_ticker",
    "fetchTickers": "fetch_tickers",
    "fetchTrades": "fetch_trades",
    "fetchOrderBook": "fetch_order_book",
    "fetchFundingRate": "fetch_funding_rate",
    "fetchFundingRates": "fetch_funding_rates",
    "fetchFundingRateHistory": "fetch_funding_rate_history",
    "fetchFundingHistory": "fetch_funding_history",
    "fetchOpenInterest": "fetch_open_interest",
    "fetchMarkPrice": "fetch_mark_price",
}


# -- markets ------------------------------------------------------------------------------------------
def build_market(
    exchange: Any,
    symbol: str,
    *,
    market_id: str | None = None,
    contract_size: float = 1.0,
    expiry_ms: int | None = None,
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A minimal ccxt market structure for a unified symbol, with the venue's id (`venue_market_id`)."""
    market_id = market_id or venue_market_id(exchange.id, symbol)
    market = market_for(
        symbol,
        market_id,
        contract_size,
        expiry_ms=expiry_ms,
        precision={"amount": 1e-8, "price": 1e-8},
        info=info,
        lowercaseId=market_id.lower(),
    )
    if exchange.id == "hyperliquid":
        # hyperliquid's request builders read these from the market (coin name, asset index, decimals)
        market["baseName"] = market["base"]
        market["info"].setdefault("name", market["base"] if market["contract"] else market_id)
        market["info"].setdefault("szDecimals", "5")
    return exchange.safe_market_structure(market)


def symbols_in(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    """The unified symbols the entries' inputs name (first argument: a symbol or a list of them)."""
    out: list[str] = []
    for entry in entries:
        args = entry.get("input") or []
        first = args[0] if args else None
        for symbol in first if isinstance(first, list) else [first]:
            if isinstance(symbol, str) and _UNIFIED.match(symbol) and symbol not in out:
                out.append(symbol)
    return out


# -- the exchange -------------------------------------------------------------------------------------
def _trim(args: Sequence[Any]) -> list[Any]:
    """Call arguments without trailing defaults, so `f(s, None, 1)` matches a recorded `[s, null, 1]`."""
    out = list(args)
    while out and out[-1] in (None, {}, []):
        out.pop()
    return out


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class RestReplayMixin:
    """Answers ccxt's HTTP layer from recorded entries. Mixed in before a real ccxt exchange class."""

    _replay_entries: list[dict[str, Any]]
    _replay_current: dict[str, Any] | None
    replay_requests: list[tuple[str, str]]

    def _init_replay(self, entries: Iterable[Mapping[str, Any]]) -> None:
        self._replay_entries = [dict(e) for e in entries]
        self._replay_current = None
        self.replay_requests = []  # (method, url) of every HTTP request ccxt built: what live would have sent

    def _entry_for(self, method: str, args: Sequence[Any]) -> dict[str, Any]:
        wanted = _canonical(_trim(args))
        same_method = [e for e in self._replay_entries if e.get("method") == method]
        for entry in same_method:
            if _canonical(_trim(entry.get("input") or [])) == wanted:
                return entry
        # else the same instrument and shape (symbol, timeframe: the string/list arguments), any since/limit:
        # a venue that only holds the recorded page, which a paginating caller must cope with
        for entry in same_method:
            recorded = entry.get("input") or []
            keys = [i for i, value in enumerate(recorded) if isinstance(value, str | list)]
            if keys and all(i < len(args) and _canonical(args[i]) == _canonical(recorded[i]) for i in keys):
                return entry
        raise ccxt.NotSupported(
            f"{self.id} rest replay: no recorded response for {method}({', '.join(map(repr, args))})"  # type: ignore[attr-defined]
        )

    async def _replay_call(self, method: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        if self._replay_current is not None:
            # a unified method calling another (bybit's fetch_funding_rate -> fetch_funding_rates) is
            # still the outer call's request: keep answering it from the outer entry
            return await call(*args, **kwargs)
        self._replay_current = self._entry_for(method, list(args) + list(kwargs.values()))
        try:
            return await call(*args, **kwargs)
        finally:
            self._replay_current = None

    async def fetch(
        self, url: str, method: str = "GET", headers: Any = None, body: Any = None
    ) -> Any:  # ccxt's HTTP layer
        self.replay_requests.append((method, url))
        if self._replay_current is None:
            raise ccxt.NotSupported(f"{self.id} rest replay: unexpected HTTP request {method} {url}")  # type: ignore[attr-defined]
        response = self._replay_current["httpResponse"]
        text = response if isinstance(response, str) else json.dumps(response)
        parsed = json.loads(text) if isinstance(response, str) else response
        # the venue's error mapping sees the body exactly as it would see a live 200 response
        self.handle_errors(200, "OK", url, method, {}, text, parsed, headers, body)  # type: ignore[attr-defined]
        return parsed

    async def fetch_markets(self, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return list(self.markets.values()) if self.markets else []  # type: ignore[attr-defined]

    async def fetch_currencies(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return {}


def _replaying(method: str, python_name: str) -> Any:
    async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        parent = getattr(super(RestReplayMixin, self), python_name)
        return await self._replay_call(method, parent, *args, **kwargs)

    call.__name__ = python_name
    return call


for _method, _python_name in REPLAYABLE_METHODS.items():
    setattr(RestReplayMixin, _python_name, _replaying(_method, _python_name))


def rest_replay_class(exchange_id: str) -> type:
    """`RestReplay<venue>`: RestReplayMixin over the real async `ccxt.pro.<venue>` class."""
    return ccxt_pro_subclass(RestReplayMixin, exchange_id)


def create_rest_replay_exchange(
    exchange_id: str,
    entries: Iterable[Mapping[str, Any]],
    markets: Iterable[Mapping[str, Any]] | None = None,
    config: Mapping[str, Any] | None = None,
    market_info: Mapping[str, Mapping[str, Any]] | None = None,
) -> Any:
    """A real async ccxt exchange answering REST calls from recorded entries; markets set offline.

    `markets` (ccxt market dicts) default to `build_market` for every symbol the entries name, with
    `market_info[symbol]` (the venue's recorded instrument entry, e.g. bybit's `fundingInterval`) as the
    market's `info`. `config` is passed to the ccxt constructor (e.g. dummy credentials, so that a
    private endpoint's request is signed offline and its recorded response parsed).
    """
    entries = list(entries)
    exchange = rest_replay_class(exchange_id)({"enableRateLimit": False, **dict(config or {})})
    exchange._init_replay(entries)
    if markets is None:
        info = market_info or {}
        markets = [build_market(exchange, symbol, info=info.get(symbol)) for symbol in symbols_in(entries)]
    exchange.set_markets(list(markets))
    return exchange


def load_rest_entries(path: str) -> list[dict[str, Any]]:
    """The entries of a ccxt_rest_responses/<venue>.json file."""
    with open(path) as f:
        data = json.load(f)
    entries = data["entries"] if isinstance(data, Mapping) else data
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a list of entries under 'entries', got {type(entries).__name__}")
    return entries
