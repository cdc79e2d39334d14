"""Candles from `watch_ohlcv`: the forming candle kept, each candle emitted once, when it is closed (a newer
candle appeared), with its final values.

ccxt.pro answers a candle call with the candles that changed, usually one update of the forming candle, so
most calls close nothing and report nothing (the Feed's watch loop keeps those with `CandleState.forming_update`,
without the full pass `take` makes).
A time twice in one call is a DUPLICATE (`dup:candle`), an update of a candle already closed an OUT_OF_ORDER
(`ohlcv:late`): both ignored, the final values were emitted. After a gap the forming candle's last update may
have been missed: where a REST backfill will fetch it (`backfill_possible`), it is not emitted from the stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..instruments import Instrument
from ..schema import EventKind
from . import normalize
from .rest_history import _empty
from .validation import Validator, concat_events


@dataclass
class CandleState:
    """One ohlcv subscription's candles: the forming one, the last closed time, every emitted time (backfills
    skip those)."""

    timeframe_s: int
    volume_in_contracts: bool = False  # the venue's websocket klines count contracts (binance COIN-M)
    pending: list[Any] | None = None  # the forming candle, as last seen
    uncertain: bool = False  # a gap opened while it was forming: its last update may have been missed
    last_closed_ts: int | None = None
    emitted: set[int] = field(default_factory=set)

    def take(
        self, raw: Any, instrument: Instrument, recv: int, validator: Validator, backfill_possible: bool
    ) -> tuple[np.ndarray, np.ndarray, int | None]:
        """One call's candles -> (closed candles accepted, events, first candle time seen or None): the full pass
        (the Feed's watch loop tries `forming_update` first; for a plain update of the forming candle the two
        agree)."""
        items = list(raw) if isinstance(raw, Sequence) else []
        items, screened = validator.screen("ohlcv", items, instrument.id, recv)
        first = min(normalize.int_ms(c[0]) for c in items) if items else None
        closed, repeats = self.close(items, backfill_possible)
        accepted, checked = _empty("ohlcv"), _empty("capture_events")  # no candle closed
        if closed:
            records = normalize.ohlcv_to_records(
                closed, instrument, recv, self.timeframe_s, volume_in_contracts=self.volume_in_contracts
            )
            accepted, checked = validator.check("ohlcv", records, recv)
            self.emitted.update(int(t) for t in accepted["ts_ms"])
        reported = [
            validator.report(kind, "ohlcv", instrument.id, recv, reason, len(ts), min(ts), max(ts))
            for (kind, reason), ts in repeats.items()
        ]
        return accepted, concat_events([screened, checked, *reported]), first

    def forming_update(self, raw: Any, recv: int, validator: Validator) -> int | None:
        """Most candle calls: one clean update of the forming candle, which closes nothing and reports nothing.
        Kept as the forming candle, as the full pass (`screen`, `close`) keeps it; its time (the call's first
        event time), or None (nothing changed) for anything else, which the full pass takes."""
        pending = self.pending
        if pending is None or type(raw) is not list or len(raw) != 1 or not validator.plain_candles(raw, recv):
            return None
        candle = raw[0]
        t = normalize.int_ms(candle[0])
        if t != normalize.int_ms(pending[0]) or (self.last_closed_ts is not None and t <= self.last_closed_ts):
            return None
        self.pending = list(candle)
        return t

    def close(
        self, candles: list[Any], backfill_possible: bool
    ) -> tuple[list[Any], dict[tuple[EventKind, str], list[int]]]:
        """Candles that just closed, each once, with the last values seen (the venue's final ones); and the
        candle times to report: a time twice in one batch (DUPLICATE `dup:candle`, the copy is ignored) and an
        update of a candle already closed (OUT_OF_ORDER `ohlcv:late`, ignored: the final values were emitted)."""
        closed: list[Any] = []
        repeats: dict[tuple[EventKind, str], list[int]] = {}
        in_batch: set[int] = set()
        for candle in sorted(candles, key=lambda c: normalize.int_ms(c[0])):
            t = normalize.int_ms(candle[0])
            if t in in_batch:
                repeats.setdefault((EventKind.DUPLICATE, "dup:candle"), []).append(t)
                continue
            in_batch.add(t)
            pending_ts = normalize.int_ms(self.pending[0]) if self.pending is not None else None
            if pending_ts is not None and t > pending_ts:
                if not (self.uncertain and backfill_possible):
                    closed.append(self.pending)
                self.last_closed_ts = pending_ts
                self.pending, self.uncertain = list(candle), False
            elif pending_ts is None or t == pending_ts:
                if self.last_closed_ts is not None and t <= self.last_closed_ts:
                    repeats.setdefault((EventKind.OUT_OF_ORDER, "ohlcv:late"), []).append(t)
                    continue
                self.pending = list(candle)
            elif self.last_closed_ts is None or t > self.last_closed_ts:
                closed.append(list(candle))  # an older candle, complete already (a snapshot's history)
                self.last_closed_ts = t
            else:
                repeats.setdefault((EventKind.OUT_OF_ORDER, "ohlcv:late"), []).append(t)
        return closed, repeats

    def flush_closed(
        self, instrument: Instrument, now: int, validator: Validator
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """At the end of a recording: the forming candle, if its period is over at `now` (exchange clock)."""
        if self.pending is None:
            return None
        pending_ts = normalize.int_ms(self.pending[0])
        if pending_ts + self.timeframe_s * 1000 > now:
            return None
        closed, self.pending = [self.pending], None
        self.last_closed_ts = pending_ts
        records = normalize.ohlcv_to_records(
            closed, instrument, now, self.timeframe_s, volume_in_contracts=self.volume_in_contracts
        )
        accepted, events = validator.check("ohlcv", records, now)
        self.emitted.update(int(t) for t in accepted["ts_ms"])
        return accepted, events
