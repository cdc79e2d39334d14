"""Raw tables from the landing zone: only the window's folders read, deduplicated, idempotent, checked."""

from __future__ import annotations

import numpy as np
import pandas as pd
from dagster import materialize

from fundarb_dagster.core import landing, schema
from fundarb_dagster.core.instruments import InstrumentRegistry, registry_path
from fundarb_dagster.core.units import HOUR_MS
from fundarb_dagster.defs.market.assets import ohlcv_1m
from fundarb_dagster.defs.raw.assets import RAW_ASSETS, instruments, raw_ohlcv, raw_tickers, raw_trades
from fundarb_dagster.defs.raw.checks import UNIQUE_KEY_CHECKS, raw_trades_has_valid_prices
from tests.defs.raw.landing_fixtures import NAMES, land_trades, query, resources, run

H0 = 1_762_000_000_000 // HOUR_MS * HOUR_MS  # 2025-11-01 12:00 UTC
P0 = "2025-11-01-12:00"


def _trades(hour_ms: int, ids: list[int], price: float = 10.0) -> pd.DataFrame:
    return pd.DataFrame(
        {"ts_ms": [hour_ms + 1000 * (i % 3000) for i in ids], "trade_id": ids, "price": price, "amount": 1.0}
    )


def test_only_the_partitions_folders_are_read(tmp_path):
    land_trades(tmp_path, _trades(H0, [1, 2, 3]))
    # a corrupt file in the next hour: reading it would fail the run
    bad = landing.partition_dir(tmp_path, "trades", H0 + HOUR_MS) / "broken-00000000.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not parquet")
    run([raw_trades], tmp_path, partition=P0)
    assert query(tmp_path, "SELECT count(*) AS n FROM raw_trades")["n"][0] == 3


def test_duplicates_across_files_are_dropped_on_the_natural_key(tmp_path):
    land_trades(tmp_path, _trades(H0, [1, 2, 3]), writer="a")
    land_trades(tmp_path, _trades(H0, [2, 3, 4]), writer="b")  # a reconnect replayed two trades
    tickers = schema.empty("tickers", 4)
    tickers["ts_ms"] = [H0 + 5, H0 + 5, H0 + 9, H0 + 9]
    tickers["recv_ts_ms"] = [H0 + 6, H0 + 7, H0 + 10, H0 + 10]
    tickers["instrument_id"] = [1, 1, 1, 2]
    tickers["bid"], tickers["ask"] = 1.0, 2.0
    landing.write_stream(tmp_path, "tickers", schema.to_arrow("tickers", tickers, NAMES), "t", 0)
    run([raw_trades, raw_tickers, *UNIQUE_KEY_CHECKS[:2]], tmp_path, partition=P0)
    trades = query(tmp_path, "SELECT trade_id FROM raw_trades ORDER BY trade_id")
    assert trades["trade_id"].tolist() == [1, 2, 3, 4]
    ticks = query(tmp_path, "SELECT exchange, symbol, ts_ms, recv_ts_ms FROM raw_tickers ORDER BY ALL")
    assert len(ticks) == 3
    # the later receive of the same (exchange, symbol, ts_ms) wins
    assert ticks[ticks["ts_ms"] == H0 + 5]["recv_ts_ms"].tolist() == [H0 + 7]


def test_rerun_replaces_its_window_and_leaves_other_hours_alone(tmp_path):
    land_trades(tmp_path, _trades(H0, [1, 2]), seq=0)
    land_trades(tmp_path, _trades(H0 + HOUR_MS, [10, 11, 12]), seq=1)
    run([raw_trades], tmp_path, first=P0, last="2025-11-01-13:00")
    land_trades(tmp_path, _trades(H0, [3]), writer="late")
    run([raw_trades], tmp_path, partition=P0)
    run([raw_trades], tmp_path, partition=P0)
    got = query(tmp_path, "SELECT trade_id FROM raw_trades ORDER BY trade_id")["trade_id"].tolist()
    assert got == [1, 2, 3, 10, 11, 12]


def test_streams_without_files_give_empty_tables_with_their_columns(tmp_path):
    run(RAW_ASSETS, tmp_path, partition=P0)
    for table in ("raw_trades", "raw_tickers", "raw_funding", "raw_ohlcv", "capture_events", "capture_stats"):
        frame = query(tmp_path, f"SELECT * FROM {table}")
        assert len(frame) == 0
        expected = set(
            schema.public_fields(
                {"raw_trades": "trades", "raw_tickers": "tickers", "raw_funding": "funding", "raw_ohlcv": "ohlcv"}.get(
                    table, table
                )
            )
        )
        assert expected <= set(frame.columns), table
        assert "ts" in frame.columns


def test_funding_rows_carry_settlement_time(tmp_path):
    funding = schema.empty("funding", 2)
    funding["ts_ms"] = [H0 + 1000, H0 + 2000]
    funding["funding_ts_ms"] = H0 + 4 * HOUR_MS
    funding["instrument_id"] = 1
    funding["funding_rate"] = [0.0001, 0.00012]
    funding["interval_h"] = 8
    landing.write_stream(tmp_path, "funding", schema.to_arrow("funding", funding, NAMES), "f", 0)
    run(RAW_ASSETS, tmp_path, partition=P0)
    got = query(tmp_path, "SELECT funding_ts, funding_rate FROM raw_funding ORDER BY ts")
    assert got["funding_rate"].tolist() == [0.0001, 0.00012]
    assert (got["funding_ts"] == pd.Timestamp(H0 + 4 * HOUR_MS, unit="ms")).all()


def test_instruments_table_mirrors_the_registry_file(tmp_path):
    registry = InstrumentRegistry()
    registry.add_market(
        "binance",
        {
            "symbol": "BTC/USDT:USDT",
            "base": "BTC",
            "quote": "USDT",
            "settle": "USDT",
            "type": "swap",
            "swap": True,
            "id": "BTCUSDT",
            "contractSize": 1,
        },
    )
    registry.add_market(
        "hyperliquid",
        {"symbol": "kPEPE/USDC:USDC", "base": "kPEPE", "quote": "USDC", "settle": "USDC", "swap": True, "id": "kPEPE"},
    )
    registry.save(registry_path(tmp_path))
    run([instruments], tmp_path)
    got = query(tmp_path, "SELECT * FROM instruments ORDER BY instrument_id")
    assert got["symbol"].tolist() == ["BTC/USDT:USDT", "kPEPE/USDC:USDC"]
    assert got["underlying"].tolist() == ["BTC", "PEPE"]
    assert got["multiplier"].tolist() == [1.0, 1000.0]


def test_a_failed_blocking_check_stops_bad_trades_flowing_into_bars(tmp_path):
    land_trades(tmp_path, _trades(H0, [1, 2], price=-5.0))
    result = materialize(
        [raw_trades, raw_ohlcv, ohlcv_1m, raw_trades_has_valid_prices],
        resources=resources(tmp_path),
        partition_key=P0,
        raise_on_error=False,
    )
    evaluations = result.get_asset_check_evaluations()
    bad = [e for e in evaluations if e.check_name == "raw_trades_has_valid_prices"]
    assert len(bad) == 1 and not bad[0].passed
    assert bad[0].metadata["bad_rows"].value == 2
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "raw_trades" in materialized and "ohlcv_1m" not in materialized
    assert np.isfinite(query(tmp_path, "SELECT sum(price) AS s FROM raw_trades")["s"][0])


def _import_funding(tmp_path, hours: int, day0: int | None = None) -> list[list]:
    """A Binance fundingRate archive of hourly settlements from H0's day (or `day0`), imported: day files, not
    hour files."""
    from fundarb_dagster.core.importer import import_files
    from tests.core.binance_archives import write_csv

    day0 = H0 // (24 * HOUR_MS) * (24 * HOUR_MS) if day0 is None else day0
    rows = [[day0 + h * HOUR_MS + 2, 1, f"{(h % 7 - 3) * 1e-5:.8f}"] for h in range(hours)]
    path = write_csv(tmp_path / "in" / "BTCUSDT-fundingRate-2025-11.csv", rows, None, [], False)
    summary = import_files([path], tmp_path, exchange="binance", symbol="BTC/USDT:USDT", progress=None)
    assert summary.ok and len(summary.landing_files) == -(-hours // 24)
    return rows


def test_imported_day_files_feed_every_hour_of_their_day(tmp_path):
    from fundarb_dagster.defs.raw.assets import raw_funding

    rows = _import_funding(tmp_path, 48)
    day0 = rows[0][0] - 2
    run([raw_funding], tmp_path, partition=landing.partition_key(day0 + 5 * HOUR_MS))  # one hour of a day file
    got = query(tmp_path, "SELECT ts_ms, funding_rate FROM raw_funding ORDER BY ts_ms")
    assert got["ts_ms"].tolist() == [rows[5][0]] and got["funding_rate"].tolist() == [float(rows[5][2])]
    first, last = landing.partition_key(day0), landing.partition_key(day0 + 47 * HOUR_MS)
    run([raw_funding], tmp_path, first=first, last=last)  # both days, one ranged run
    got = query(tmp_path, "SELECT ts_ms, funding_rate FROM raw_funding ORDER BY ts_ms")
    assert list(zip(got["ts_ms"], got["funding_rate"], strict=True)) == [(r[0], float(r[2])) for r in rows]
