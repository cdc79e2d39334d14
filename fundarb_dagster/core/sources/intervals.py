"""The funding-interval rule, in one place: which interval a funding value carries.

The interval is the one *in force for that settlement*, never a per-venue constant:

1. stated by the structure itself (`normalize.funding_interval_h`: ccxt's `interval`, bybit's
   `fundingIntervalHour`...), and then recorded;
2. else what the registry learned before for that settlement time;
3. else what the market's `info` states (current only, so last), and then recorded;
4. while streaming, a next settlement that moves from a to b without a stated interval is evidence of b - a,
   used when it is shorter than what is known (a cut, the usual change under stress) or nothing is known;
5. for settled history, the spacing of settlements: a spacing that is a whole multiple of the interval before
   it and does not persist is a missed settlement, not a new interval.

Before a stream states anything, the Feed asks the venue over REST once (`learned`). When a streamed value
arrives and rules 1-3 give nothing, the venue's documented schedule from its row in `core/venues.py` is
the interval (`schedule`: hyperliquid's hourly funding, whose contexts name neither the interval nor the
settlement). Every interval is recorded with where it came from (`instruments.INTERVAL_SOURCES`): rules 1-3
`reported`, rules 4-5 `inferred`.

The Feed calls `streamed_interval` once per streamed funding value and `settled_intervals` once per page of
history. These are plain functions without I/O; the only state they touch is the `IntervalBook` they are
given (the registry's interval history of one perp), where every interval they decide is recorded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..instruments import InstrumentRegistry
from ..units import HOUR_MS
from .normalize import FundingSnapshot, funding_interval_h, int_ms, next_settlement_ms


@dataclass(frozen=True)
class IntervalBook:
    """The registry's funding-interval history of one perp: what the rule reads and where it records."""

    registry: InstrumentRegistry
    exchange: str
    symbol: str

    def at(self, ts_ms: int) -> float | None:
        return self.registry.interval_at(self.exchange, self.symbol, ts_ms)

    def observe(self, ts_ms: int, interval_h: float, source: str = "reported") -> None:
        self.registry.observe_interval(self.exchange, self.symbol, ts_ms, interval_h, source)


@dataclass(frozen=True)
class StreamedInterval:
    """The interval decided for one streamed funding value, and the settlement it was decided for."""

    settlement_ms: int  # the stated settlement, else the next interval boundary (0 when unknown)
    interval_h: float  # NaN when nothing states or implies it
    inferred: bool  # from a move of the next settlement (rule 4)


def market_interval_h(market: Mapping[str, Any] | None) -> float:
    """The interval a market's `info` states (rule 3's source); NaN if none."""
    return funding_interval_h(None, market)


def resolve_interval(
    stated_h: float, book: IntervalBook, market: Mapping[str, Any] | None, at_ms: int, schedule_h: float = math.nan
) -> float:
    """Rules 1-3 for the settlement at `at_ms`: stated (recorded), else known, else the market's (recorded),
    else the venue's documented schedule (recorded as `schedule`; NaN when it has none)."""
    if math.isfinite(stated_h):
        book.observe(at_ms, stated_h)
        return stated_h
    known = book.at(at_ms)
    if known is not None:
        return float(known)
    from_market = market_interval_h(market)
    if math.isfinite(from_market):
        book.observe(at_ms, from_market)
        return from_market
    if math.isfinite(schedule_h):
        book.observe(at_ms, schedule_h, "schedule")
    return schedule_h


def streamed_interval(
    snapshot: FundingSnapshot,
    book: IntervalBook,
    market: Mapping[str, Any] | None,
    *,
    recv_ts_ms: int,
    previous_settlement_ms: int,
    in_gap: bool,
    schedule_h: float = math.nan,
) -> StreamedInterval:
    """The interval of one streamed funding value (rules 1-4).

    `previous_settlement_ms` is the settlement the previous value of the stream was for (0: none yet);
    `in_gap` says the stream missed data since, when a move of the settlement proves nothing; `schedule_h`
    is the venue's documented interval, the last resort (NaN: none).
    """
    ts = snapshot.ts_ms or recv_ts_ms
    stated = snapshot.stated_interval_h
    settlement = snapshot.settlement_ms
    if settlement <= 0:  # hyperliquid names no settlement: it is the next interval boundary after ts
        settlement = next_settlement_ms(ts, resolve_interval(stated, book, market, ts, schedule_h))
    interval = resolve_interval(stated, book, market, settlement or ts, schedule_h)
    previous = previous_settlement_ms
    if not previous or settlement <= previous or in_gap or math.isfinite(stated):
        return StreamedInterval(settlement, interval, inferred=False)
    hours = float(round((settlement - previous) / HOUR_MS))
    if not 1 <= hours <= 24 or hours == interval or (math.isfinite(interval) and hours > interval):
        # a longer spacing is as likely a missed settlement as a longer interval: the known one stands
        return StreamedInterval(settlement, interval, inferred=False)
    book.observe(settlement, hours, "inferred")
    return StreamedInterval(settlement, hours, inferred=True)


def settled_intervals(
    rows: Sequence[Mapping[str, Any]],
    book: IntervalBook,
    market: Mapping[str, Any] | None,
    previous_ms: int | None,
    previous_interval_h: float,
) -> list[float]:
    """The interval in force for each settled history row (time-ordered): rules 1, 5, then 2-3.

    The spacing t[i] - t[i-1] (rounded to whole hours) is the evidence for a settled rate. A spacing that is
    a whole multiple of the interval before it and does not persist is a missing settlement, not a new
    interval; a spacing that persists (or is shorter) is a change of interval. `previous_ms` and
    `previous_interval_h` carry the last settlement and interval of the page before.
    """
    times = [int_ms(r.get("timestamp")) for r in rows]
    previous_times = [previous_ms, *times[:-1]]
    spacing = [
        float(round((t - p) / HOUR_MS)) if p is not None and t > p and round((t - p) / HOUR_MS) >= 1 else math.nan
        for t, p in zip(times, previous_times, strict=True)
    ]
    out: list[float] = []
    last = previous_interval_h
    for i, row in enumerate(rows):
        stated = funding_interval_h(row)
        s = spacing[i]
        if math.isfinite(stated):
            interval = stated
        elif math.isfinite(s):
            persists = i + 1 < len(spacing) and spacing[i + 1] == s
            skipped = math.isfinite(last) and s > last and s % last == 0 and not persists
            interval = last if skipped else s
        else:
            nxt = spacing[i + 1] if i + 1 < len(spacing) else math.nan
            interval = nxt if math.isfinite(nxt) else resolve_interval(math.nan, book, market, times[i])
        if math.isfinite(interval) and times[i] > 0:
            book.observe(times[i], interval, "reported" if math.isfinite(stated) else "inferred")
            last = interval
        out.append(interval)
    return out
