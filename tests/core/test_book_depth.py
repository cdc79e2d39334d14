"""Book-walk costs and depth, against a real recorded book (bybit BTCUSDT perp, the first `orderbook.200`
snapshot of the BYBIT session) computed by hand, and against the venue side's own book walk."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fundarb_dagster.core.book_depth import book_depth_frame, depth_within, mids, walk_cost_bps
from fundarb_dagster.core.execution.book import vwap, walk_book


def recorded_snapshot(fixtures_dir: Path) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    path = fixtures_dir / "ws_recordings" / "BYBIT.jsonl.zst"
    with pa.input_stream(str(path), compression="zstd") as stream:
        for line in stream.read().decode().splitlines():
            row = json.loads(line)
            wanted = row.get("t") == "recv" and row.get("conn") == "BYBIT.ws.2"
            if wanted and '"orderbook.200.BTCUSDT"' in row["data"]:
                data = json.loads(row["data"])["data"]
                return [(float(p), float(q)) for p, q in data["b"]], [(float(p), float(q)) for p, q in data["a"]]
    raise AssertionError("no BTCUSDT book in the session")


def arrays(levels: list[tuple[float, float]], n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    prices = np.full((1, n), np.nan)
    sizes = np.full((1, n), np.nan)
    for i, (p, q) in enumerate(levels[:n]):
        prices[0, i], sizes[0, i] = p, q
    return prices, sizes


def test_book_walk_vwap_on_a_recorded_book_by_hand(fixtures_dir: Path) -> None:
    bids, asks = recorded_snapshot(fixtures_dir)
    # the recording's first levels, as the frame states them
    assert asks[:5] == [(65114.3, 10.486), (65115.4, 0.002), (65115.7, 0.033), (65116.0, 0.012), (65116.1, 0.968)]
    assert bids[:5] == [(65114.2, 6.054), (65114.1, 0.002), (65114.0, 0.041), (65113.8, 0.005), (65113.7, 0.229)]
    mid = (65114.2 + 65114.3) / 2
    # buying 700,000 USD takes the first four ask levels whole and the rest at 65116.1
    rest = 700_000 - (65114.3 * 10.486 + 65115.4 * 0.002 + 65115.7 * 0.033 + 65116.0 * 0.012)
    assert 0 < rest < 65116.1 * 0.968
    bought = 10.486 + 0.002 + 0.033 + 0.012 + rest / 65116.1
    buy_bps = (700_000 / bought / mid - 1) * 1e4
    # selling 400,000 USD takes the first four bid levels whole and the rest at 65113.7
    rest = 400_000 - (65114.2 * 6.054 + 65114.1 * 0.002 + 65114.0 * 0.041 + 65113.8 * 0.005)
    assert 0 < rest < 65113.7 * 0.229
    sold = 6.054 + 0.002 + 0.041 + 0.005 + rest / 65113.7
    sell_bps = (1 - 400_000 / sold / mid) * 1e4

    ask_p, ask_q = arrays(asks)
    bid_p, bid_q = arrays(bids)
    m = mids(bid_p, ask_p)
    assert m[0] == mid
    assert walk_cost_bps(ask_p, ask_q, m, 700_000, "buy")[0] == pytest.approx(buy_bps, rel=1e-9, abs=1e-9)
    assert walk_cost_bps(bid_p, bid_q, m, 400_000, "sell")[0] == pytest.approx(sell_bps, rel=1e-9, abs=1e-9)
    half_spread_bps = 0.05 / mid * 1e4  # 0.0077 bp: walking past the top costs more than that
    assert buy_bps > half_spread_bps and sell_bps > half_spread_bps
    # the venue side's walk by amount (core/execution/book.py) gives the same VWAP for the amount bought
    fills, left = walk_book(asks, bought, "buy")
    assert left == 0 and vwap(fills) == pytest.approx(700_000 / bought, rel=1e-12)
    # more than the 20 levels hold: the captured book cannot say
    assert math.isnan(walk_cost_bps(ask_p, ask_q, m, 1e9, "buy")[0])


def test_depth_within_bps_of_mid_by_hand_on_the_recorded_book(fixtures_dir: Path) -> None:
    bids, asks = recorded_snapshot(fixtures_dir)
    bid_p, bid_q = arrays(bids)
    ask_p, ask_q = arrays(asks)
    m = mids(bid_p, ask_p)
    for bps in (1, 5, 10, 25):
        lo, hi = m[0] * (1 - bps / 1e4), m[0] * (1 + bps / 1e4)
        want_bid = sum(p * q for p, q in bids[:20] if p >= lo)
        want_ask = sum(p * q for p, q in asks[:20] if p <= hi)
        assert depth_within(bid_p, bid_q, m, bps, "bid")[0] == pytest.approx(want_bid, rel=1e-12)
        assert depth_within(ask_p, ask_q, m, bps, "ask")[0] == pytest.approx(want_ask, rel=1e-12)


def test_book_depth_rows_are_minute_means_over_snapshots() -> None:
    t = 1_800_000_000_000 // 60_000 * 60_000
    pad = [math.nan] * 18

    def book(ts: int, bid: float, ask: float) -> dict:
        return {"exchange": "bybit", "symbol": "X/USDT:USDT", "ts_ms": ts,
                "bid_price": [bid, bid - 1, *pad], "bid_size": [1.0, 2.0, *pad],
                "ask_price": [ask, ask + 1, *pad], "ask_size": [1.0, 2.0, *pad]}  # fmt: skip

    books = pd.DataFrame([book(t, 99.0, 101.0), book(t + 30_000, 99.5, 100.5), book(t + 60_000, 99.0, 101.0)])
    out = book_depth_frame(books, [150.0])
    assert len(out) == 2 and out["snapshots"].tolist() == [2, 1]
    first = out.iloc[0]
    assert first["mid"] == 100.0 and first["spread_bps"] == pytest.approx((200 + 100) / 2)
    # buying 150: 101 x 1 then 49 at 102 (first book); 100.5 x 1 then 49.5 at 101.5 (second)
    cost1 = (150 / (1 + 49 / 102) / 100 - 1) * 1e4
    cost2 = (150 / (1 + 49.5 / 101.5) / 100 - 1) * 1e4
    assert first["buy_cost_bps"] == pytest.approx((cost1 + cost2) / 2)
    assert first["buy_filled_share"] == 1.0
    assert book_depth_frame(books, [1e6])["buy_cost_bps"].isna().all()  # deeper than any captured book


def test_no_books_give_an_empty_frame_with_the_table_types() -> None:
    empty = book_depth_frame(pd.DataFrame(columns=["exchange", "symbol", "ts_ms", "bid_price"]))
    assert empty.empty and str(empty["ts"].dtype) == "datetime64[us]" and empty["exchange"].dtype == object
