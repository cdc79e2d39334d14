"""Staged watch calls processed a batch at a time: the capture's per-call path for tickers and trades.

Most frames a venue sends are one ticker or a few trades, one `watch_*` call each, and normalizing and
validating a record at a time costs more than ccxt.pro's parsing of the frame (numpy's fixed cost per call).
A Feed made with `stage_records` keeps each call's structures and receive time instead, and processes the
staged calls together here: tickers, and batches of up to `ROWS_AT_MOST` trades, a row at a time in plain
Python (`validation.plain_tickers` / `plain_trade_values`, `normalize.ticker_rows` / `trade_rows`, then
`Validator.check_ticker_rows` / `check_trade_rows`) and one array at the end; larger batches of trades a column
at a time (`plain_trades`, `trades_to_records`, one `Validator.check_calls`). Either gives the records, events
and validator state of one `check` per call. Whatever the batch pass cannot vouch for (a malformed or bad
message, a repeated or late trade, a value it cannot convert) returns None: the Feed then runs its per-call
path over the same calls, in order, which names each reject exactly as without staging.

The Feed owns the staging: a `Staged` per subscription holds the calls, and it decides when to stage and when
to process; `process_staged` is a function of the calls and the validator, which never calls back into the Feed.

ccxt.pro and the simulator build new structures for each message (only order books are updated in place,
and they are not staged), so a structure kept for a few milliseconds still says what it said.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import schema
from ..instruments import Instrument
from . import normalize, validation
from .validation import Validator

STAGED_STREAMS = ("trades", "tickers")  # the streams a staging Feed processes a batch at a time
# Above this many trades a batch goes a column at a time: a trade in plain Python costs ~2.5 us, numpy's fixed
# cost per batch ~150 us plus ~0.5 us a trade (hot; the simulator's capture lost ~10 % of its watcher's CPU
# per message taking its large batches a trade at a time)
ROWS_AT_MOST = 64


@dataclass
class Staged:
    """One subscription's calls kept for a batch: (structures, recv_ts_ms) each, how many records, since when.
    A plain object the Feed owns (one per subscription); the Feed decides when to stage and to process."""

    calls: list[tuple[Any, int]] = field(default_factory=list)
    records: int = 0
    since: float = 0.0  # time.monotonic() of the oldest

    def add(self, stream: str, raw: Any, recv_ts_ms: int, now: float) -> None:
        """A call's result at `now` (time.monotonic()): a ticker (None: nothing new), or trades (a list copied:
        ccxt reuses its cache's). A call that brought nothing is not kept: the per-call path does nothing with
        it either."""
        if raw is None:
            return
        if stream == "trades":
            raw = list(raw) if type(raw) is list or isinstance(raw, Sequence) else [raw]
            if not raw:
                return
            self.records += len(raw)
        else:
            self.records += 1
        if not self.calls:
            self.since = now
        self.calls.append((raw, recv_ts_ms))

    def take(self) -> list[tuple[Any, int]]:
        calls, self.calls, self.records = self.calls, [], 0
        return calls


def process_staged(
    stream: str, calls: Sequence[tuple[Any, int]], instrument: Instrument, validator: Validator
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(accepted records, events, first event time of the first call) of staged `(structures, recv_ts_ms)`
    calls (a ticker, or a list of trades, each call), as processing them one call at a time would give;
    None, with nothing changed, when the batch pass cannot vouch for every call, or cannot convert one (e.g. a
    cost beyond float64: the call-by-call path then quarantines that call alone, not the batch)."""
    if not calls:
        return None
    try:  # a value that cannot be converted raises before the validator's state moves (it moves on success)
        if stream == "tickers":
            return _staged_tickers(calls, instrument, validator)
        if stream == "trades":
            return _staged_trades(calls, instrument, validator)
    except Exception:  # noqa: BLE001 - one bad message must not cost the batch it was staged in
        return None
    return None


def _staged_trades(
    calls: Sequence[tuple[Any, int]], instrument: Instrument, validator: Validator
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Staged trades: up to `ROWS_AT_MOST` a trade at a time in plain Python (`plain_trade_values`, `trade_rows`,
    `check_trade_rows`) and one array at the end; more (the simulator's calls bring dozens) a column at a time
    (`plain_trades`, `trades_to_records`, `check_calls`), whose fixed cost a large batch repays."""
    items = [item for raw, _ in calls for item in raw]
    if len(items) > ROWS_AT_MOST:
        if not validation.plain_trades(items):
            return None
        sizes = [len(raw) for raw, _ in calls]
        recv_ms = np.repeat(np.fromiter((r for _, r in calls), np.int64, len(calls)), sizes)
        records = normalize.trades_to_records(items, instrument, recv_ms)
        checked = validator.check_calls("trades", records, recv_ms, np.repeat(np.arange(len(calls)), sizes))
        return None if checked is None else (checked[0], checked[1], int(records["ts_ms"][0]))
    values = validation.plain_trade_values(items)
    if values is None:
        return None
    recv = [r for raw, r in calls for _ in raw]
    rows = normalize.trade_rows(items, values, instrument, recv)
    if not validator.check_trade_rows(rows, recv, [c for c, (raw, _) in enumerate(calls) for _ in raw]):
        return None
    # every time passed the value checks (> 0) and a call's trades are in time order: its first is its earliest
    return np.array(rows, dtype=schema.TRADES), validation.concat_events(()), rows[0][0]


def _staged_tickers(
    calls: Sequence[tuple[Any, int]], instrument: Instrument, validator: Validator
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Staged tickers, one per call, a ticker at a time in plain Python (`plain_tickers`, `ticker_rows`,
    `check_ticker_rows`) and one array at the end."""
    items = [raw for raw, _ in calls]
    values = validation.plain_tickers(items)
    if values is None:
        return None
    recv = [r for _, r in calls]
    rows = normalize.ticker_rows(items, values, instrument, recv)
    checked = validator.check_ticker_rows(rows, recv)
    if checked is None:
        return None
    accepted, events = checked
    kept = rows if len(accepted) == len(rows) else [rows[i] for i in accepted]
    # every time passed the value checks (> 0): the first call's ticker time is its first event time
    return np.array(kept, dtype=schema.TICKERS), events, rows[0][0]
