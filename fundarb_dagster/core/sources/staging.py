"""Staged watch calls processed a batch at a time: the capture's per-call path for tickers and trades.

Most frames a venue sends are one ticker or a few trades, one `watch_*` call each, and normalizing and
validating a record at a time costs more than ccxt.pro's parsing of the frame (numpy's fixed cost per call).
A Feed made with `stage_records` keeps each call's structures and receive time instead, and processes the
staged calls together here: their fields a column at a time (`validation.plain_tickers` / `plain_trades`,
`normalize.tickers_to_records` / `trades_to_records`), then one `Validator.check_calls`, which gives the
records, events and validator state of one `check` per call. Whatever the column pass cannot vouch for (a
malformed or bad message, a repeated or late trade) returns None: the Feed then runs its per-call path over
the same calls, in order, which names each reject exactly as without staging.

ccxt.pro and the simulator build new structures for each message (only order books are updated in place,
and they are not staged), so a structure kept for a few milliseconds still says what it said.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..instruments import Instrument
from ..schema import EventKind
from . import normalize, validation
from .rest_history import _INITIAL_BACKOFF_S, Batch, _empty
from .validation import Validator, concat_events, event_rows

STAGED_STREAMS = ("trades", "tickers")  # the streams a staging Feed processes a batch at a time


@dataclass
class Staged:
    """One subscription's calls kept for a batch: (structures, recv_ts_ms) each, how many records, since when."""

    calls: list[tuple[Any, int]] = field(default_factory=list)
    records: int = 0
    since: float = 0.0  # time.monotonic() of the oldest

    def add(self, stream: str, raw: Any, recv_ts_ms: int) -> None:
        """A call's result: a ticker (None: nothing new), or trades (a list copied: ccxt reuses its cache's)."""
        if raw is None:
            return  # nothing new: the per-call path does nothing with it either
        if stream == "trades":
            raw = list(raw) if isinstance(raw, Sequence) else [raw]
            if not raw:
                return  # no trades: nothing for the per-call path either
        if not self.calls:
            self.since = time.monotonic()
        self.calls.append((raw, recv_ts_ms))
        self.records += len(raw) if stream == "trades" else 1

    def due(self, records: int, max_age_s: float) -> bool:
        """`records` staged, or the oldest call `max_age_s` old."""
        return bool(self.calls) and (self.records >= records or time.monotonic() - self.since >= max_age_s)

    def take(self) -> list[tuple[Any, int]]:
        calls, self.calls, self.records = self.calls, [], 0
        return calls


def process_staged(
    stream: str, calls: Sequence[tuple[Any, int]], instrument: Instrument, validator: Validator
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(accepted records, events, first event time of the first call) of staged `(structures, recv_ts_ms)`
    calls (a ticker, or a list of trades, each call), as processing them one call at a time would give;
    None, with nothing changed, when the column pass cannot vouch for every call."""
    if stream == "tickers":
        items = [raw for raw, _ in calls]
        columns = validation.plain_tickers(items)
        if columns is None:
            return None
        recv = np.fromiter((r for _, r in calls), np.int64, len(calls))
        records = normalize.tickers_to_records(items, columns, instrument, recv)
        if records is None:
            return None
        call_of = np.arange(len(calls))
    elif stream == "trades":
        items = [item for raw, _ in calls for item in raw]
        if not validation.plain_trades(items):
            return None
        sizes = [len(raw) for raw, _ in calls]
        recv = np.repeat(np.fromiter((r for _, r in calls), np.int64, len(calls)), sizes)
        records = normalize.trades_to_records(items, instrument, recv)
        call_of = np.repeat(np.arange(len(calls)), sizes)
    else:
        return None
    if not len(records):
        return None
    checked = validator.check_calls(stream, records, recv, call_of)
    if checked is None:
        return None
    # every time passed the value checks (> 0) and a call's trades are in time order: its first is its earliest
    return checked[0], checked[1], int(records["ts_ms"][0])


class StagedCalls:
    """The staging side of a Feed (mixed in): a processed call's mark on its stream, and staged calls kept,
    processed a batch at a time (`process_staged`) or call by call (`_process`), and drained."""

    # the Feed's (see feed.Feed.__init__); a subscription is a feed._Subscription
    validator: Validator
    counts: Any
    stage_records: int
    stage_max_age_s: float
    _subs: dict[tuple[str, str], Any]

    def _process(self, sub: Any, raw: Any, recv: int) -> tuple[np.ndarray, np.ndarray, int | None]:
        raise NotImplementedError  # the Feed's per-call path

    def _absorb(self, sub: Any, records: np.ndarray, first_ts: int | None) -> None:
        """A processed call's mark on its stream: data flowed (back-off and silence reset), the last data time."""
        if first_ts is not None:
            sub.backoff_s = _INITIAL_BACKOFF_S
            sub.silent = False
        if len(records):
            sub.last_data_ts = int(records["ts_ms"].max())
            self.counts[f"records:{sub.stream}"] += len(records)
        elif first_ts is not None and sub.last_data_ts is None:
            sub.last_data_ts = first_ts

    def _stage(self, sub: Any, raw: Any, recv: int) -> bool:
        """Keep a call's result for a batch (True), or leave it to the per-call path (False): a Feed without
        staging, a stream not staged, and a stream whose gap is open (the call that closes it is processed as
        it comes, so the gap ends at its time and its backfill follows)."""
        if not self.stage_records or sub.stream not in STAGED_STREAMS or sub.gap_start_ms is not None:
            return False
        sub.staged.add(sub.stream, raw, recv)
        return True

    def _flush_staged(self, sub: Any, due: bool = False) -> Batch | None:
        """The staged calls processed (`due`: only once `stage_records` are staged or the oldest is
        `stage_max_age_s` old): a batch at a time, or call by call when the batch pass cannot vouch for them."""
        if not sub.staged.calls or (due and not sub.staged.due(self.stage_records, self.stage_max_age_s)):
            return None
        calls = sub.staged.take()
        done = process_staged(sub.stream, calls, sub.instrument, self.validator)
        if done is not None:
            records, events, first_ts = done
            self._absorb(sub, records, first_ts)
        else:  # call by call (a ticker's or trades' processing reads none of the state `_absorb` moves)
            processed = [self._process_one(sub, raw, recv) for raw, recv in calls]
            for records, _, first_ts in processed:
                self._absorb(sub, records, first_ts)
            records, events = np.concatenate([p[0] for p in processed]), concat_events(p[1] for p in processed)
        return Batch(sub.stream, records, events) if len(records) or len(events) else None

    def _process_one(self, sub: Any, raw: Any, recv: int) -> tuple[np.ndarray, np.ndarray, int | None]:
        """One staged call by the per-call path; a call it cannot process is quarantined (`error:<type>`)
        instead of losing the calls staged with it."""
        try:
            return self._process(sub, raw, recv)
        except Exception as exc:  # noqa: BLE001 - one bad message must not cost the batch it was staged in
            self.counts[f"errors:{type(exc).__name__}"] += 1
            iid = sub.instrument.id
            reason = f"error:{type(exc).__name__}"
            events = event_rows(EventKind.QUARANTINED, sub.stream, iid, recv, recv, reason=reason, count=1)
            return _empty(sub.stream), events, None

    def drain(self) -> list[Batch]:
        """What every subscription has staged, processed now. A staging Feed's consumer calls it on a timer
        (a quiet stream's last calls never wait for its next message) and when it stops watching (nothing
        staged is left behind)."""
        return [batch for sub in self._subs.values() if (batch := self._flush_staged(sub)) is not None]
