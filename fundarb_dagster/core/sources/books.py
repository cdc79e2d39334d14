"""What the Feed takes from an L2 order book: its top as a quote (the tickers stream of a venue whose quotes
come from a book), and sampled snapshots of its top levels (the order_book stream)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import schema
from ..instruments import Instrument
from ..schema import EventKind
from . import normalize
from .validation import Validator, concat_events, event_rows

_NO_BOOKS = schema.empty("order_book")
_NO_BOOKS.flags.writeable = False  # shared: callers concatenate, never write into it

Top = tuple[float, ...]


def book_top(book: Mapping[str, Any], symbol: str, last: Top | None) -> tuple[dict[str, Any] | None, Top]:
    """The best bid/ask of a book as a ticker structure, and the top; None while the top equals `last` (a book
    update deeper down is no new quote)."""
    bids, asks = list(book.get("bids") or [])[:1], list(book.get("asks") or [])[:1]
    bid, bid_size = (bids[0][0], bids[0][1]) if bids else (None, None)
    ask, ask_size = (asks[0][0], asks[0][1]) if asks else (None, None)
    top = tuple(normalize.num(v) for v in (bid, bid_size, ask, ask_size))
    if top == last:
        return None, top
    quote = {"symbol": symbol, "timestamp": book.get("timestamp"), "bid": bid, "bidVolume": bid_size, "ask": ask,
             "askVolume": ask_size}  # fmt: skip
    return quote, top


def book_limit(exchange: Any, symbol: str) -> int | None:
    """The depth `watch_order_book` subscribes: the one a source states (`books_via`: a wire replay's recorded
    book channel), else None, ccxt's default channel for the venue (the sampler keeps the top levels it needs)."""
    stated = getattr(exchange, "books_via", None)
    depth = stated(symbol) if callable(stated) else None
    return int(depth) if depth else None


# The depths a venue's REST book takes (binance answers only these): `fetch_order_book` asks for the smallest one
# holding the levels kept; elsewhere the levels themselves.
_REST_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
REST_BOOK_LIMITS: dict[str, tuple[int, ...]] = dict.fromkeys(("binance", "binanceusdm", "binancecoinm"), _REST_LIMITS)


def rest_book_limit(exchange_id: str, levels: int) -> int:
    """The `limit` of a `fetch_order_book` call that returns at least `levels` levels per side."""
    allowed = REST_BOOK_LIMITS.get(exchange_id)
    return next((n for n in allowed if n >= levels), allowed[-1]) if allowed else levels


def book_problem(record: np.ndarray) -> str | None:
    """Why a book snapshot is unusable, or None: a price or size that is not finite and positive where a
    level exists, or a crossed top (best bid at or above best ask)."""
    for side in ("bid", "ask"):
        prices, sizes = record[f"{side}_price"][0], record[f"{side}_size"][0]
        present = ~np.isnan(prices)
        if not (prices[present] > 0).all() or np.isinf(prices).any():
            return f"book:{side}_price"
        if not (sizes[present] > 0).all() or np.isinf(sizes).any():
            return f"book:{side}_size"
    bid, ask = record["bid_price"][0, 0], record["ask_price"][0, 0]
    if bid >= ask:  # NaN (an empty side) compares False: a one-sided book is kept
        return "book:crossed"
    return None


@dataclass
class BookSampler:
    """One subscription's order books -> sampled snapshots.

    Every update counts (`updates` of the next kept row); the first update at or after each multiple of
    `interval_ms` (on the book's own time; 0: every update) is kept, its top `levels` per side. A nonce lower
    than the last one means the venue restarted its sequence (a new snapshot): a GAP event (`sequence:reset`).
    A REST snapshot (`rest`: a gap's repair, or a poll) is always kept, `from_rest` = 1, and leaves the
    websocket book's count, sampling and sequence as they were: a venue may answer REST from a cache behind
    its websocket (the same time, a lower nonce), so a REST nonce is neither compared with the websocket's nor
    kept. A REST snapshot not newer than the last streamed book predates the update a gap lost: dropped
    (DROPPED `repair:not_newer`, counted), so the gap stays open until a newer book.
    """

    instrument: Instrument
    levels: int
    interval_ms: int
    next_sample_ms: int = 0
    updates: int = 0
    last_nonce: int | None = None
    last_streamed_ms: int | None = None  # the time of the last websocket book read (kept or sampled out)

    def take(
        self, raw: Any, recv: int, validator: Validator, counts: Counter[str], rest: bool = False
    ) -> tuple[np.ndarray, np.ndarray, int | None]:
        """One book update -> (the kept snapshot or nothing, events, the book's time or None if unreadable)."""
        iid = self.instrument.id
        if not rest:
            self.updates += 1
        bids = raw.get("bids") if isinstance(raw, Mapping) else None
        asks = raw.get("asks") if isinstance(raw, Mapping) else None
        if not isinstance(bids, Sequence) or not isinstance(asks, Sequence):
            return _NO_BOOKS, validator.quarantine("order_book", iid, recv, "missing:book"), None
        ts = normalize.int_ms(raw.get("timestamp")) or recv
        if not rest:
            self.last_streamed_ms = ts
        elif self.last_streamed_ms is not None and ts <= self.last_streamed_ms:
            counts["order_book:repair_not_newer"] += 1
            stale = validator.report(EventKind.DROPPED, "order_book", iid, recv, "repair:not_newer", 1, ts, ts)
            return _NO_BOOKS, stale, ts
        events: list[np.ndarray] = []
        nonce = normalize.num(raw.get("nonce"))
        if math.isfinite(nonce) and not rest:
            if self.last_nonce is not None and nonce < self.last_nonce:
                counts["order_book:sequence_reset"] += 1
                events.append(event_rows(EventKind.GAP, "order_book", iid, recv, recv, start_ms=ts, end_ms=ts,
                                         reason="sequence:reset"))  # fmt: skip
            self.last_nonce = int(nonce)
        if self.interval_ms and ts < self.next_sample_ms and not rest:
            counts["order_book:sampled_out"] += 1
            return _NO_BOOKS, concat_events(events), ts
        updates = 1 if rest else self.updates
        record = normalize.order_book_to_record(raw, self.instrument, recv, self.levels, updates, rest)
        problem = book_problem(record)
        if problem is not None:
            events.append(validator.quarantine("order_book", iid, recv, problem, ts_ms=ts))
            return _NO_BOOKS, concat_events(events), ts
        accepted, checked = validator.check("order_book", record, recv)
        if rest:
            counts["order_book:rest"] += len(accepted)
        elif len(accepted):
            self.updates = 0
            if self.interval_ms:
                self.next_sample_ms = (ts // self.interval_ms + 1) * self.interval_ms
        return accepted, concat_events([*events, checked]), ts
