"""Walking a book: VWAP, partial fills and limits, against sums written out by hand."""

from __future__ import annotations

import math

import pytest

from fundarb_dagster.core.execution.book import depth, vwap, walk_book

ASKS = [[100.0, 1.0], [100.5, 2.0], [101.0, 0.5]]
BIDS = [[99.5, 0.4], [99.0, 3.0], [98.0, 1.0]]


def test_a_buy_walks_the_asks_level_by_level_at_the_hand_vwap() -> None:
    fills, rest = walk_book(ASKS, 2.5, "buy")
    assert fills == [(100.0, 1.0), (100.5, 1.5)] and rest == 0.0
    assert vwap(fills) == pytest.approx((100.0 * 1.0 + 100.5 * 1.5) / 2.5)


def test_a_sell_beyond_the_depth_fills_the_book_and_leaves_the_rest() -> None:
    fills, rest = walk_book(BIDS, 10.0, "sell")
    assert fills == [(99.5, 0.4), (99.0, 3.0), (98.0, 1.0)]
    assert rest == pytest.approx(10.0 - 4.4)
    assert vwap(fills) == pytest.approx((99.5 * 0.4 + 99.0 * 3.0 + 98.0 * 1.0) / 4.4)


def test_a_limit_stops_the_walk_and_depth_counts_what_crosses_it() -> None:
    fills, rest = walk_book(ASKS, 5.0, "buy", limit=100.5)
    assert fills == [(100.0, 1.0), (100.5, 2.0)] and rest == pytest.approx(2.0)
    assert depth(ASKS, "buy", 100.5) == 3.0 and depth(BIDS, "sell", 99.0) == 3.4 and depth(ASKS, "buy", None) == 3.5
    assert walk_book(BIDS, 1.0, "sell", limit=99.6) == ([], 1.0)
    assert math.isnan(vwap([]))


def test_walk_refuses_a_negative_amount_and_an_unknown_side() -> None:
    with pytest.raises(ValueError, match="amount"):
        walk_book(ASKS, -1.0)
    with pytest.raises(ValueError, match="side"):
        walk_book(ASKS, 1.0, "long")
