"""core.resample: integer bucketing and the reference bar computations, checked against pandas and DuckDB."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core import resample


def _xrp(fixtures_dir) -> pd.DataFrame:
    raw = pd.read_csv(fixtures_dir / "binance_xrp" / "XRP_ETH-trades.csv")
    return pd.DataFrame(
        {"ts_ms": raw["time_ms_utc"], "trade_id": raw["trade_id"], "price": raw["price"], "amount": raw["amount_base"]}
    )


def test_bucket_ms_floors_to_the_bucket_without_rounding_up():
    ts = np.array([59_999, 60_000, 119_999_999_999_999], dtype=np.int64)
    np.testing.assert_array_equal(resample.bucket_ms(ts, 60_000), [0, 60_000, 119_999_999_940_000])
    assert resample.bucket_ms(61_000, 60_000) == 60_000
    with pytest.raises(ValueError, match="width_ms"):
        resample.bucket_ms(ts, 0)


def test_trades_to_ohlcv_reproduces_binance_1m_candles(fixtures_dir):
    bars = resample.trades_to_ohlcv(_xrp(fixtures_dir))
    expected = pd.read_csv(fixtures_dir / "binance_xrp" / "XRP_ETH-1m.csv")
    np.testing.assert_array_equal(bars["bucket_ms"], expected["time_ms_utc"])
    for column in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(bars[column], expected[column])
    np.testing.assert_allclose(bars["volume"], expected["volume"], rtol=1e-12)


def test_pandas_resample_ohlc_and_groupby_agree_with_trades_to_ohlcv(fixtures_dir):
    trades = _xrp(fixtures_dir)
    ref = resample.trades_to_ohlcv(trades).set_index("bucket_ms")
    ts, price, amount = trades["ts_ms"].to_numpy(), trades["price"].to_numpy(), trades["amount"].to_numpy()
    by_resample = resample.pandas_resample_ohlc(ts, price, amount)
    by_groupby = resample.pandas_groupby_ohlc(ts, price, amount)
    np.testing.assert_array_equal(by_resample.index.as_unit("ms").asi8, ref.index.to_numpy())
    np.testing.assert_array_equal(by_groupby.index.to_numpy() * 60_000, ref.index.to_numpy())
    for column in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(by_resample[column].to_numpy(), ref[column].to_numpy())
        np.testing.assert_array_equal(by_groupby[column].to_numpy(), ref[column].to_numpy())


def test_duckdb_trade_aggregation_equals_pandas(fixtures_dir):
    trades = _xrp(fixtures_dir).assign(exchange="binance", symbol="XRP/ETH")
    with duckdb.connect() as conn:
        conn.register("trades", trades)
        got = conn.execute(resample.DUCKDB_TRADES_TO_1M + " ORDER BY bucket_ms").df()
    ref = resample.trades_to_ohlcv(trades)
    # The plain DuckDB form orders only by time: compare on minutes whose first/last trade time is unique.
    np.testing.assert_array_equal(got["bucket_ms"], ref["bucket_ms"])
    np.testing.assert_array_equal(got["high"], ref["high"])
    np.testing.assert_array_equal(got["low"], ref["low"])
    np.testing.assert_allclose(got["volume"], ref["volume"], rtol=1e-12)
    np.testing.assert_array_equal(got["trade_count"], ref["trade_count"])


def test_fill_minutes_carries_the_close_and_stops_after_the_horizon():
    bars = pd.DataFrame(
        {
            "bucket_ms": [0, 180_000],
            "open": [1.0, 2.0],
            "high": [1.5, 2.5],
            "low": [0.5, 1.5],
            "close": [1.2, 2.2],
            "volume": [3.0, 4.0],
            "trade_count": [2, 5],
        }
    )
    out = resample.fill_minutes(bars, 0, 600_000, horizon_ms=120_000)
    np.testing.assert_array_equal(out["bucket_ms"], [0, 60_000, 120_000, 180_000, 240_000, 300_000])
    np.testing.assert_array_equal(out["is_filled"], [False, True, True, False, True, True])
    np.testing.assert_array_equal(out["close"], [1.2, 1.2, 1.2, 2.2, 2.2, 2.2])
    np.testing.assert_array_equal(out["volume"], [3.0, 0.0, 0.0, 4.0, 0.0, 0.0])
    with_prev = resample.fill_minutes(bars.iloc[1:], 0, 240_000, prev_close=0.9)
    np.testing.assert_array_equal(with_prev["close"], [0.9, 0.9, 0.9, 2.2])


def test_resample_bars_takes_open_high_low_from_real_minutes():
    minutes = pd.DataFrame(
        {
            "bucket_ms": [0, 60_000, 120_000, 300_000],
            "open": [5.0, 6.0, 7.0, 7.0],
            "high": [5.0, 9.0, 7.0, 7.0],
            "low": [5.0, 4.0, 7.0, 7.0],
            "close": [5.0, 7.0, 7.0, 7.0],
            "volume": [0.0, 2.0, 1.0, 0.0],
            "is_filled": [True, False, False, True],
        }
    )
    out = resample.resample_bars(minutes, 300_000)
    assert out.iloc[0][["open", "high", "low", "close", "volume", "filled_minutes"]].tolist() == [6, 9, 4, 7, 3, 1]
    assert out.iloc[1][["open", "high", "low", "close", "filled_minutes"]].tolist() == [7, 7, 7, 7, 1]
