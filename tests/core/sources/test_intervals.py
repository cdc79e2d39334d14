"""intervals.py: the funding-interval rule on its own, with a real registry and hand-built structures.

Expected intervals are worked out in each test from the settlement times it writes, not from the code.
"""

from __future__ import annotations

import math

from fundarb_dagster.core.instruments import InstrumentRegistry
from fundarb_dagster.core.sources import intervals
from fundarb_dagster.core.sources.normalize import FundingSnapshot
from fundarb_dagster.core.units import HOUR_MS

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC, on every venue's settlement grid
RECV = T0 + 60_000


def _book() -> tuple[InstrumentRegistry, intervals.IntervalBook]:
    registry = InstrumentRegistry()
    return registry, intervals.IntervalBook(registry, "binance", "BTC/USDT:USDT")


def _mark_price(settlement_ms: int, **info: object) -> FundingSnapshot:
    return FundingSnapshot.from_mark_price(
        {"timestamp": RECV, "markPrice": 42000.0, "info": {"r": "0.0001", "T": settlement_ms, **info}}
    )


def test_a_stated_interval_wins_and_is_recorded_at_its_settlement() -> None:
    registry, book = _book()
    book.observe(T0, 8.0)
    snapshot = FundingSnapshot.from_funding_rate(
        {"timestamp": RECV, "fundingRate": 0.0001, "fundingTimestamp": T0 + 4 * HOUR_MS, "interval": "4h"}
    )
    decided = intervals.streamed_interval(snapshot, book, None, recv_ts_ms=RECV, previous_settlement_ms=0, in_gap=False)
    assert (decided.settlement_ms, decided.interval_h, decided.inferred) == (T0 + 4 * HOUR_MS, 4.0, False)
    assert registry.interval_at("binance", "BTC/USDT:USDT", T0 + 4 * HOUR_MS) == 4.0
    assert registry.interval_at("binance", "BTC/USDT:USDT", T0) == 8.0  # before the change: unchanged


def test_a_settlement_moving_closer_than_the_known_interval_is_a_cut() -> None:
    registry, book = _book()
    book.observe(T0, 8.0)
    # the next settlement was T0 + 8h and is now T0 + 12h: 4 hours later, shorter than the known 8
    decided = intervals.streamed_interval(
        _mark_price(T0 + 12 * HOUR_MS),
        book,
        None,
        recv_ts_ms=RECV,
        previous_settlement_ms=T0 + 8 * HOUR_MS,
        in_gap=False,
    )
    assert (decided.interval_h, decided.inferred) == (4.0, True)
    assert registry.interval_at("binance", "BTC/USDT:USDT", T0 + 12 * HOUR_MS) == 4.0


def test_a_longer_move_or_one_across_a_gap_keeps_the_known_interval() -> None:
    _, book = _book()
    book.observe(T0, 8.0)
    longer = intervals.streamed_interval(
        _mark_price(T0 + 24 * HOUR_MS),
        book,
        None,
        recv_ts_ms=RECV,
        previous_settlement_ms=T0 + 8 * HOUR_MS,
        in_gap=False,
    )
    across_gap = intervals.streamed_interval(
        _mark_price(T0 + 12 * HOUR_MS),
        book,
        None,
        recv_ts_ms=RECV,
        previous_settlement_ms=T0 + 8 * HOUR_MS,
        in_gap=True,
    )
    assert (longer.interval_h, longer.inferred) == (8.0, False)  # 16 h: as likely a missed settlement
    assert (across_gap.interval_h, across_gap.inferred) == (8.0, False)


def test_a_structure_naming_no_settlement_settles_on_the_next_boundary_of_the_market_interval() -> None:
    registry, book = _book()
    market = {"info": {"fundingIntervalHours": 1}}
    snapshot = FundingSnapshot.from_ticker({"timestamp": T0 + 90 * 60_000, "info": {"funding": "0.0000125"}})
    decided = intervals.streamed_interval(
        snapshot, book, market, recv_ts_ms=RECV, previous_settlement_ms=0, in_gap=False
    )
    assert (decided.settlement_ms, decided.interval_h) == (T0 + 2 * HOUR_MS, 1.0)  # 01:30 -> 02:00
    assert registry.interval_at("binance", "BTC/USDT:USDT", T0 + 2 * HOUR_MS) == 1.0


def test_settled_history_reads_a_lone_double_spacing_as_a_missed_settlement_and_a_lasting_one_as_a_change() -> None:
    _, book = _book()
    hours = [8, 16, 32, 40]  # settlements every 8 h with the one at 24 h missing
    missed = intervals.settled_intervals([{"timestamp": T0 + h * HOUR_MS} for h in hours], book, None, None, math.nan)
    assert missed == [8.0, 8.0, 8.0, 8.0]
    _, book = _book()
    hours = [8, 16, 20, 24]  # 8 h, then 4 h twice: the interval was cut to 4 h at 20 h
    changed = intervals.settled_intervals([{"timestamp": T0 + h * HOUR_MS} for h in hours], book, None, None, math.nan)
    assert changed == [8.0, 8.0, 4.0, 4.0]
    assert book.at(T0 + 20 * HOUR_MS) == 4.0 and book.at(T0 + 16 * HOUR_MS) == 8.0
