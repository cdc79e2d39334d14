"""Landing files written before a column existed (trades' `cost`, candles' `quote_volume`, `trade_count`,
`taker_buy_volume`, books' `from_rest`) still load beside new ones: the raw tables read them as NULL (a book
as streamed) and the bars fall back to price x amount (a data folder upgraded in place keeps loading its old
hours)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from fundarb_dagster.core import landing, schema
from fundarb_dagster.defs.market.assets import ohlcv_1m
from fundarb_dagster.defs.raw.assets import raw_ohlcv, raw_order_book, raw_trades
from tests.defs.raw.landing_fixtures import NAMES, land_trades, query, run

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def test_trades_landed_without_cost_load_beside_new_ones(tmp_path) -> None:
    frame = pd.DataFrame({"ts_ms": T0 + np.arange(6) * 20_000, "trade_id": np.arange(6), "price": 100.0 + np.arange(6),
                          "amount": 2.0, "side": 1})  # fmt: skip
    land_trades(tmp_path, frame.iloc[:3], writer="old")
    for path in (tmp_path / "landing" / "trades").rglob("old-*.parquet"):  # as landed before `cost` existed
        table = pq.read_table(path)
        pq.write_table(table.drop(["cost"]), path)
    land_trades(tmp_path, frame.iloc[3:], writer="new")
    run([raw_trades, raw_ohlcv, ohlcv_1m], tmp_path, partition="2024-01-01-00:00")
    raw = query(tmp_path, "SELECT trade_id, cost FROM raw_trades ORDER BY trade_id")
    assert raw["trade_id"].tolist() == list(range(6)) and raw["cost"].iloc[:3].isna().all()
    bars = query(tmp_path, "SELECT quote_volume, taker_buy_volume FROM ohlcv_1m WHERE NOT is_filled ORDER BY ts")
    assert bars["quote_volume"].sum() == (frame["price"] * frame["amount"]).sum()
    assert bars["taker_buy_volume"].sum() == frame["amount"].sum()


def test_books_landed_before_from_rest_load_as_streamed_beside_rest_snapshots(tmp_path) -> None:
    books = schema.empty("order_book", 4)
    books["ts_ms"] = T0 + np.arange(4) * 10_000
    books["recv_ts_ms"] = books["ts_ms"] + 5
    books["updates"], books["nonce"] = 1, np.arange(4)
    books["bid_price"][:, 0], books["ask_price"][:, 0] = 100.0, 100.5
    books["bid_size"][:, 0], books["ask_size"][:, 0] = 1.0, 2.0
    books["from_rest"][3] = 1
    landing.write_stream(tmp_path, "order_book", schema.to_arrow("order_book", books[:2], NAMES), "old", 0)
    for path in (tmp_path / "landing" / "order_book").rglob("old-*.parquet"):  # as landed before `from_rest`
        pq.write_table(pq.read_table(path).drop(["from_rest"]), path)
    landing.write_stream(tmp_path, "order_book", schema.to_arrow("order_book", books[2:], NAMES), "new", 0)
    run([raw_order_book], tmp_path, partition="2024-01-01-00:00")
    raw = query(tmp_path, "SELECT nonce, from_rest, bid_price[1] AS bid FROM raw_order_book ORDER BY ts_ms")
    assert raw["nonce"].tolist() == [0, 1, 2, 3] and raw["from_rest"].tolist() == [0, 0, 0, 1]
    assert raw["bid"].tolist() == [100.0] * 4
