"""The wire exchange: the real `ccxt.pro.<venue>` class with a recorded transport and clock, built offline."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ccxt
import ccxt.pro

from ...venues import venue_facts
from ..base import ccxt_pro_subclass
from ..rest_replay import build_market
from .driver import FrameUsage, WireClient, WireReplay
from .recording import EndOfRecording, Recording, load_recording
from .venues import VENUE_RULES, UrlWire, WireVenue, market_kind

# REST calls a fundarb recording may hold the answer to (`live.RawRecorder` records REST responses).
_RECORDED_LOOKUPS = ("fetchFundingRate", "fetchFundingRates")
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

    async def throttle(self, cost: Any = None) -> None:
        # ccxt spaces REST calls by the venue's weights in wall time (binance's 1000-level depth: 1 s); nothing
        # reaches a venue here, and an unpaced replay would end before a second symbol's snapshot was asked
        return None

    def frame_usage(self) -> FrameUsage:
        """The recording's frames used and unused per channel so far (see `driver.FrameUsage`)."""
        return self.wire.usage(self.id)  # type: ignore[attr-defined]

    def watch(self, *args: Any, **kwargs: Any) -> Any:
        if self.wire.finished:
            raise self.wire.end_error()
        return super().watch(*args, **kwargs)  # type: ignore[misc]

    def watch_multiple(self, *args: Any, **kwargs: Any) -> Any:
        if self.wire.finished:
            raise self.wire.end_error()
        return super().watch_multiple(*args, **kwargs)  # type: ignore[misc]

    async def fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        """REST from the session's recorded HTTP bodies (same path and query; a recorded POST also the same
        request body, as JSON), never from the network. Each recorded response answers one request, in the
        order recorded (a REST answer is the venue's state when it was asked: a binance depth snapshot served
        twice would rebuild a book from a stale snapshot); a request asked more often than recorded ends like
        the recording (`EndOfRecording`), one never recorded raises `ccxt.NotSupported`."""
        wanted = urlsplit(url)
        recording = self.wire.recording
        requests = recording.http_requests or [("GET", None)] * len(recording.http)
        matched = 0
        for index, ((recorded_url, text), (_, recorded_body)) in enumerate(zip(recording.http, requests, strict=True)):
            got = urlsplit(recorded_url)
            if got.path != wanted.path or sorted(got.query.lstrip("&").split("&")) != sorted(wanted.query.split("&")):
                continue
            if recorded_body is None or _same_json(recorded_body, body):
                matched += 1
                if index not in self.wire.http_used:
                    self.wire.http_used.add(index)
                    return json.loads(text)
        if matched:
            raise EndOfRecording(
                f"{self.id} wire replay: the recording's {matched} response(s) to {method} {url} were used"  # type: ignore[attr-defined]
            )
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


def _same_json(recorded: str, body: Any) -> bool:
    try:
        return json.loads(recorded) == (json.loads(body) if isinstance(body, str) else body)
    except ValueError:
        return recorded == body


def wire_exchange_class(exchange_id: str) -> type:
    """`Wire<venue>`: WireExchangeMixin over the real `ccxt.pro.<venue>` class."""
    return ccxt_pro_subclass(WireExchangeMixin, exchange_id)


def _instruments(rules: WireVenue, recording: Recording) -> dict[str, dict[str, Any]]:
    rules.index_topics(recording)
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
    # a fundarb recording keeps the REST responses of its run: the funding-interval lookup a Feed makes at
    # start is answered from them (a call not recorded raises NotSupported, and the Feed moves on)
    served = _RECORDED_LOOKUPS if recording.header.get("source") == "fundarb" and recording.http else ()
    for name in _REST_HISTORY:
        if name in exchange.has and name not in served:
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
                expiry_ms=spec.get("expiry_ms"),
                info=spec.get("info"),
            )
            for symbol, spec in _instruments(rules, recording).items()
        ]
    exchange.set_markets(markets)
    follow_recorded_channels(exchange, rules, recording)
    if recorder is not None:
        recorder.markets(list(exchange.markets.values()))
    return exchange


def follow_recorded_channels(exchange: Any, rules: WireVenue, recording: Recording) -> None:
    """Make ccxt subscribe what the recording subscribed, with no option from the user: ccxt options that
    pick a channel (binance `aggTrade` over `trade`) override the configured ones, and `quotes_via(symbol)`
    tells the Feed where each market's best bid/ask were recorded (the venue's own channel when it was,
    else a bid/ask channel, a book, a ticker), e.g. bybit spot quotes from `orderbook.200` when the session
    subscribed no `orderbook.1`; `books_via(symbol)` the depth of the book recorded for the order_book stream;
    `open_interest_via(symbol)` `ticker` where a contract's recorded ticker carries its open interest (bybit)."""
    channels = rules.recorded_channels(recording)
    for key, value in rules.ccxt_options(set().union(*channels.values()) if channels else set()).items():
        exchange.options[key] = {**(exchange.options.get(key) or {}), **value}
    facts = venue_facts(exchange.id)
    plan: dict[str, str] = {}
    books: dict[str, int] = {}
    interest: dict[str, str] = {}
    for symbol, market in exchange.markets.items():
        market_id = str(market.get("id") or "").upper()
        recorded = channels.get((market_kind(market), market_id)) or channels.get((None, market_id)) or set()
        preferred = facts.quote_channel("spot" if market.get("spot") else "contract") if facts else "ticker"
        mode = rules.quotes_for(market, recorded, preferred)
        if mode is not None:
            plan[symbol] = mode
        depths = [d for d in (rules.book_depth(c) for c in recorded) if d]
        if depths:
            books[symbol] = max(depths)  # the deepest book recorded feeds the order_book stream
        if market.get("contract") and any(rules.carries_open_interest(c) for c in recorded):
            interest[symbol] = "ticker"
    exchange.quotes_via = plan.get
    exchange.books_via = books.get
    exchange.open_interest_via = interest.get


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
