"""A warehouse made before the bars kept the archives' fields (#14 finding 7: `quote_volume`, `trade_count`,
`taker_buy_volume` on raw_ohlcv and every bar table, `source` on the resampled ones, `cost` on raw_trades)
takes new windows: the assets' connection adds the columns the tables lack (NULL in the older rows), and
re-materializing an old window fills them."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.importer import import_files
from fundarb_dagster.core.warehouse import add_missing_columns
from fundarb_dagster.defs.market.assets import ohlcv_1h, ohlcv_1m, ohlcv_5m
from fundarb_dagster.defs.raw.assets import raw_ohlcv, raw_trades
from tests.core.binance_archives import write_csv
from tests.defs.raw.landing_fixtures import query, run

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
MINUTE = 60_000
ASSETS = [raw_trades, raw_ohlcv, ohlcv_1m, ohlcv_5m, ohlcv_1h]
# What f95b0e9 (finding 7) added: the schema before it is today's without these columns.
NEW_COLUMNS = {
    "raw_ohlcv": ("quote_volume", "trade_count", "taker_buy_volume"),
    "raw_trades": ("cost",),
    "ohlcv_1m": ("quote_volume", "trade_count", "taker_buy_volume"),
    "ohlcv_5m": ("quote_volume", "trade_count", "taker_buy_volume", "source"),
    "ohlcv_1h": ("quote_volume", "trade_count", "taker_buy_volume", "source"),
}


def _klines(path: Path) -> Path:
    rng = np.random.default_rng(11)
    rows = []
    for i in range(180):  # three hours of 1m klines
        t, c = T0 + i * MINUTE, 100 + i * 0.01
        volume = round(float(rng.uniform(1, 9)), 4)
        rows.append([t, f"{c:.2f}", f"{c + 0.5:.2f}", f"{c - 0.5:.2f}", f"{c:.2f}", volume, t + MINUTE - 1,
                     f"{volume * c:.6f}", int(rng.integers(1, 500)), f"{volume * 0.4:.4f}", "0", "0"])  # fmt: skip
    return write_csv(path, rows, None, [], False)


def _make_old(warehouse: Path) -> None:
    with duckdb.connect(str(warehouse)) as con:
        for name, columns in NEW_COLUMNS.items():
            for column in columns:
                con.execute(f"ALTER TABLE {name} DROP COLUMN {column}")


@pytest.mark.slow
def test_a_warehouse_from_before_the_new_bar_columns_takes_new_windows_and_fills_old_ones(tmp_path) -> None:
    data = tmp_path / "data"
    klines = _klines(tmp_path / "spot" / "BTCUSDT-1m-2024-01-01.csv")
    assert import_files([klines], data, exchange="binance", symbol="BTC/USDT", progress=None).ok
    run(ASSETS, data, first="2024-01-01-00:00", last="2024-01-01-01:00")  # the first two hours...
    _make_old(data / "warehouse.duckdb")  # ...as the earlier version left them

    run(ASSETS, data, partition="2024-01-01-02:00")  # the third hour, with today's code on the old tables

    with open(klines, newline="") as handle:
        file = pd.DataFrame([[float(v) for v in r] for r in csv.reader(handle)])
    file = file.rename(columns={0: "t", 7: "quote", 8: "count", 9: "taker"})
    file["hour"] = file["t"] // 3_600_000 - T0 // 3_600_000
    hours = query(
        data,
        "SELECT hour(ts) AS hour, quote_volume, trade_count, taker_buy_volume, source FROM ohlcv_1h ORDER BY ts",
    )
    assert hours["hour"].tolist() == [0, 1, 2]
    assert hours.loc[:1, ["quote_volume", "trade_count", "taker_buy_volume", "source"]].isna().all().all()
    third = file[file["hour"] == 2]
    assert hours.loc[2, "trade_count"] == third["count"].sum() and hours.loc[2, "source"] == "ohlcv_1m"
    assert hours.loc[2, "quote_volume"] == pytest.approx(third["quote"].sum(), rel=1e-12)
    assert hours.loc[2, "taker_buy_volume"] == pytest.approx(third["taker"].sum(), rel=1e-12)

    run(ASSETS, data, first="2024-01-01-00:00", last="2024-01-01-01:00")  # the old hours again: filled
    hours = query(data, "SELECT quote_volume, trade_count FROM ohlcv_1h ORDER BY ts")
    by_hour = file.groupby("hour").agg(quote=("quote", "sum"), count=("count", "sum"))
    np.testing.assert_array_equal(hours["trade_count"], by_hour["count"].astype(int))
    np.testing.assert_allclose(hours["quote_volume"], by_hour["quote"], rtol=1e-12)
    raw = query(data, "SELECT count(*) AS n, count(quote_volume) AS q FROM raw_ohlcv")
    assert raw.loc[0, "n"] == raw.loc[0, "q"] == 180


def test_add_missing_columns_adds_what_core_tables_declares_and_nothing_else(tmp_path) -> None:
    from fundarb_dagster.core.tables import table

    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        declared = table("ohlcv_1h").duckdb_columns
        kept = [(n, t) for n, t in declared if n not in NEW_COLUMNS["ohlcv_1h"]]
        con.execute(f"CREATE TABLE ohlcv_1h ({', '.join(f'{n} {t}' for n, t in kept)}, extra VARCHAR)")
        con.execute("CREATE TABLE not_ours (a INTEGER)")
        added = add_missing_columns(con)
        assert sorted(added) == sorted(f"ohlcv_1h.{c}" for c in NEW_COLUMNS["ohlcv_1h"])
        described = con.execute("SELECT column_name, column_type FROM (DESCRIBE ohlcv_1h)").fetchall()
        assert [(n, t) for n, t in described if n != "extra"] == [
            *kept,
            *[(n, t) for n, t in declared if (n, t) not in kept],
        ]
        assert add_missing_columns(con) == []  # once
        assert con.execute("SELECT column_name FROM (DESCRIBE not_ours)").fetchall() == [("a",)]
