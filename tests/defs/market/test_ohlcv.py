"""ohlcv_1m/5m/1h/1d against real Binance candles and independent pandas computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dagster import AssetSelection

from fundarb_dagster.core import resample
from fundarb_dagster.defs.market.assets import ohlcv_1h, ohlcv_1m, ohlcv_5m
from fundarb_dagster.defs.raw.assets import raw_ohlcv, raw_trades
from tests.defs.raw.landing_fixtures import land_candles, land_trades, query, random_walk_candles, run, xrp_trades

HOURLY_MARKET = [raw_trades, raw_ohlcv, ohlcv_1m, ohlcv_5m, ohlcv_1h]


@pytest.fixture(scope="module")
def xrp_warehouse(tmp_path_factory, fixtures_dir):
    """The real XRP/ETH trades landed and materialized in one ranged run over their three days."""
    data_dir = tmp_path_factory.mktemp("xrp")
    land_trades(data_dir, xrp_trades(fixtures_dir))
    run(HOURLY_MARKET, data_dir, first="2019-10-11-00:00", last="2019-10-13-23:00")
    return data_dir


def _expected(fixtures_dir, name: str) -> pd.DataFrame:
    return pd.read_csv(fixtures_dir / "binance_xrp" / name)


def test_ohlcv_1m_reproduces_binance_1m_candles_on_minutes_with_trades(xrp_warehouse, fixtures_dir):
    expected = _expected(fixtures_dir, "XRP_ETH-1m.csv")
    got = query(
        xrp_warehouse,
        "SELECT epoch_ms(ts) AS time_ms_utc, open, high, low, close, volume FROM ohlcv_1m "
        "WHERE source = 'trades' ORDER BY ts",
    )
    assert len(got) == len(expected)
    np.testing.assert_array_equal(got["time_ms_utc"].to_numpy(), expected["time_ms_utc"].to_numpy())
    for column in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(got[column].to_numpy(), expected[column].to_numpy(), err_msg=column)
    np.testing.assert_allclose(got["volume"].to_numpy(), expected["volume"].to_numpy(), rtol=1e-12)


def test_ohlcv_5m_reproduces_binance_5m_candles(xrp_warehouse, fixtures_dir):
    expected = _expected(fixtures_dir, "XRP_ETH-5m.csv")
    got = query(
        xrp_warehouse,
        "SELECT epoch_ms(ts) AS time_ms_utc, open, high, low, close, volume FROM ohlcv_5m "
        "WHERE NOT is_filled ORDER BY ts",
    )
    merged = expected.merge(got, on="time_ms_utc", suffixes=("_exp", ""))
    assert len(merged) == len(expected)
    for column in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(merged[column].to_numpy(), merged[f"{column}_exp"].to_numpy(), err_msg=column)
    np.testing.assert_allclose(merged["volume"], merged["volume_exp"], rtol=1e-12)


def test_ohlcv_1m_makes_every_minute_explicit_with_forward_filled_close(xrp_warehouse, fixtures_dir):
    bars = query(xrp_warehouse, "SELECT epoch_ms(ts) AS bucket_ms, * EXCLUDE (ts) FROM ohlcv_1m ORDER BY ts")
    trades = xrp_trades(fixtures_dir)
    real = resample.trades_to_ohlcv(trades)
    window_end_ms = int(pd.Timestamp("2019-10-14", tz="UTC").timestamp() * 1000)
    expected = resample.fill_minutes(real, int(real["bucket_ms"].min()), window_end_ms)
    assert np.all(np.diff(bars["bucket_ms"]) == 60_000)
    np.testing.assert_array_equal(bars["bucket_ms"], expected["bucket_ms"])
    np.testing.assert_array_equal(bars["is_filled"], expected["is_filled"])
    np.testing.assert_array_equal(bars["close"], expected["close"])
    filled = bars[bars["is_filled"]]
    assert len(filled) > 0
    assert (filled["volume"] == 0).all() and (filled["source"] == "filled").all()
    assert (filled["open"] == filled["close"]).all()


def test_ohlcv_1h_matches_pandas_resample_of_the_1m_bars(xrp_warehouse):
    minutes = query(xrp_warehouse, "SELECT epoch_ms(ts) AS bucket_ms, * EXCLUDE (ts) FROM ohlcv_1m ORDER BY ts")
    hours = query(xrp_warehouse, "SELECT epoch_ms(ts) AS bucket_ms, * EXCLUDE (ts) FROM ohlcv_1h ORDER BY ts")
    expected = resample.resample_bars(minutes, 3_600_000)
    np.testing.assert_array_equal(hours["bucket_ms"], expected["bucket_ms"])
    for column in ("open", "high", "low", "close", "filled_minutes"):
        np.testing.assert_array_equal(hours[column], expected[column], err_msg=column)
    np.testing.assert_allclose(hours["volume"], expected["volume"], rtol=1e-12)


def test_ohlcv_partition_by_partition_equals_one_ranged_run(tmp_path, fixtures_dir, xrp_warehouse):
    """Hour by hour, the forward fill crosses partition boundaries and gives the same table."""
    land_trades(tmp_path, xrp_trades(fixtures_dir))
    for hour in ("2019-10-11-00:00", "2019-10-11-01:00", "2019-10-11-02:00", "2019-10-11-03:00"):
        run(HOURLY_MARKET, tmp_path, partition=hour)
    sql = "SELECT * FROM ohlcv_1m WHERE ts < TIMESTAMP '2019-10-11 04:00' ORDER BY exchange, symbol, ts"
    pd.testing.assert_frame_equal(query(tmp_path, sql), query(xrp_warehouse, sql))


def test_rematerializing_a_partition_gives_the_same_rows(tmp_path, fixtures_dir):
    land_trades(tmp_path, xrp_trades(fixtures_dir))
    run(HOURLY_MARKET, tmp_path, partition="2019-10-12-05:00")
    sql = "SELECT * FROM {} ORDER BY ALL"
    before = {t: query(tmp_path, sql.format(t)) for t in ("raw_trades", "ohlcv_1m", "ohlcv_5m", "ohlcv_1h")}
    run(HOURLY_MARKET, tmp_path, partition="2019-10-12-05:00")
    for table, frame in before.items():
        assert len(frame) > 0
        pd.testing.assert_frame_equal(query(tmp_path, sql.format(table)), frame)


def test_venue_candles_fill_minutes_without_trades_and_are_flagged(tmp_path):
    start = 1_762_000_000_000 // 3_600_000 * 3_600_000
    candles = random_walk_candles(start, 60)
    land_candles(tmp_path, candles, instrument_id=1)
    trades = pd.DataFrame(
        {"ts_ms": [start + 10_000, start + 20_000], "trade_id": [1, 2], "price": [200.0, 201.0], "amount": [1.0, 2.0]}
    )
    land_trades(tmp_path, trades, instrument_id=1)
    run(HOURLY_MARKET, tmp_path, partition=pd.Timestamp(start, unit="ms").strftime("%Y-%m-%d-%H:00"))
    bars = query(tmp_path, "SELECT * FROM ohlcv_1m ORDER BY ts")
    assert len(bars) == 60
    first = bars.iloc[0]
    assert first["source"] == "trades" and first["open"] == 200.0 and first["close"] == 201.0 and first["volume"] == 3
    venue = bars.iloc[1:]
    assert (venue["source"] == "venue").all() and not venue["is_filled"].any()
    np.testing.assert_array_equal(venue["close"].to_numpy(), candles["close"].to_numpy()[1:])


def test_ohlcv_1d_daily_partitions_match_pandas_daily_resample_of_1m(xrp_warehouse):
    from fundarb_dagster.defs.market.assets import ohlcv_1d, ohlcv_8h

    run([ohlcv_8h, ohlcv_1d], xrp_warehouse, first="2019-10-11", last="2019-10-13")
    minutes = query(xrp_warehouse, "SELECT epoch_ms(ts) AS bucket_ms, * EXCLUDE (ts) FROM ohlcv_1m ORDER BY ts")
    days = query(xrp_warehouse, "SELECT epoch_ms(ts) AS bucket_ms, * EXCLUDE (ts) FROM ohlcv_1d ORDER BY ts")
    expected = resample.resample_bars(minutes, 86_400_000)
    assert len(days) == 3
    np.testing.assert_array_equal(days["bucket_ms"], expected["bucket_ms"])
    for column in ("open", "high", "low", "close", "filled_minutes"):
        np.testing.assert_array_equal(days[column], expected[column], err_msg=column)
    np.testing.assert_allclose(days["volume"], expected["volume"], rtol=1e-12)
    assert days["minutes"].tolist() == [1440, 1440, 1440]
    eights = query(xrp_warehouse, "SELECT epoch_ms(ts) AS bucket_ms, * EXCLUDE (ts) FROM ohlcv_8h ORDER BY ts")
    expected = resample.resample_bars(minutes, 8 * 3_600_000)
    np.testing.assert_array_equal(eights["bucket_ms"], expected["bucket_ms"])
    for column in ("open", "high", "low", "close", "filled_minutes"):
        np.testing.assert_array_equal(eights[column], expected[column], err_msg=column)
    assert set(eights["source"]) == {"ohlcv_1h"} and set(days["source"]) == {"ohlcv_8h"}


def test_market_checks_pass_on_real_bars_and_report_coverage(xrp_warehouse):
    from fundarb_dagster.defs.market.checks import MARKET_CHECKS

    checks = [c for c in MARKET_CHECKS if "freshness" not in str(c.check_keys) and c.partitions_def is not None]
    hourly = [c for c in checks if not any(d in str(c.check_keys) for d in ("ohlcv_1d", "ohlcv_8h", "indicators"))]
    # the checks alone, on the bars the fixture's ranged run built (materializing them again changes no row)
    result = run(
        [*HOURLY_MARKET, *hourly],
        xrp_warehouse,
        first="2019-10-11-00:00",
        last="2019-10-13-23:00",
        selection=AssetSelection.checks(*hourly),
    )
    assert not result.get_asset_materialization_events()  # only the checks ran
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    for name in ("ohlcv_1m_has_unique_keys", "ohlcv_1m_is_consistent", "ohlcv_5m_is_consistent"):
        assert evaluations[name].passed, name
    gaps = evaluations["ohlcv_1m_has_no_gaps"]
    coverage = gaps.metadata["coverage_pct"].value
    minutes = query(xrp_warehouse, "SELECT avg(CASE WHEN is_filled THEN 0 ELSE 100 END) AS pct FROM ohlcv_1m")
    assert coverage == pytest.approx(minutes["pct"][0], abs=0.01)
    assert "coverage_by_partition" in gaps.metadata


def test_an_hour_of_only_filled_minutes_fails_the_gap_check(tmp_path):
    from fundarb_dagster.defs.market.checks import ohlcv_1m_has_no_gaps

    # A trade in every minute of the first hour, none after: the second hour's bars all carry its last close.
    start = 1_762_000_000_000 // 3_600_000 * 3_600_000
    minutes = np.arange(60)
    trades = pd.DataFrame(
        {"ts_ms": start + minutes * 60_000 + 1_000, "trade_id": minutes, "price": 200.0 + minutes, "amount": 1.0}
    )
    land_trades(tmp_path, trades, instrument_id=1)
    assets = [raw_trades, raw_ohlcv, ohlcv_1m, ohlcv_1m_has_no_gaps]
    first, second = (
        run(assets, tmp_path, partition=pd.Timestamp(start + h * 3_600_000, unit="ms").strftime("%Y-%m-%d-%H:00"))
        for h in (0, 1)
    )
    filled = query(
        tmp_path, "SELECT count(*) AS n FROM ohlcv_1m WHERE is_filled AND epoch_ms(ts) >= $s", {"s": start + 3_600_000}
    )
    assert filled["n"][0] == 60  # the second hour: 60 minutes, none real
    (passed,) = first.get_asset_check_evaluations()
    assert passed.passed and passed.metadata["series"].value == 1
    (failed,) = second.get_asset_check_evaluations()
    assert not failed.passed
    assert failed.metadata["series"].value == 1 and failed.metadata["rows_checked"].value == 60
    assert failed.metadata["longest_gap_minutes"].value == 60 and failed.metadata["coverage_pct"].value == 0.0
