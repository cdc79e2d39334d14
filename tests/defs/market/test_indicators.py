"""indicators: TA-Lib on 1h bars, equal to TA-Lib on the whole history whichever partitions are run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from fundarb_dagster.core import indicators as ind
from fundarb_dagster.defs.market.assets import indicators, ohlcv_1h, ohlcv_1m
from fundarb_dagster.defs.market.checks import indicators_has_unique_keys, indicators_rsi_in_range
from fundarb_dagster.defs.raw.assets import raw_ohlcv, raw_trades
from tests.defs.raw.landing_fixtures import land_candles, query, random_walk_candles, run

START_MS = 1_761_955_200_000  # 2025-11-01 00:00 UTC
HOURS = 8 * 24
PERIODS = {
    "sma_period": 5,
    "ema_period": 6,
    "rsi_period": 5,
    "macd_fast": 3,
    "macd_slow": 6,
    "macd_signal": 3,
    "bb_period": 5,
    "atr_period": 5,
}
CONFIG = {"ops": {"indicators": {"config": PERIODS}}}


@pytest.fixture(scope="module")
def bars_warehouse(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("ind")
    for instrument_id, seed in ((1, 5), (2, 9)):
        land_candles(
            data_dir, random_walk_candles(START_MS, HOURS * 60, seed=seed), instrument_id=instrument_id, seq=seed
        )
    run([raw_trades, raw_ohlcv, ohlcv_1m, ohlcv_1h], data_dir, first="2025-11-01-00:00", last="2025-11-08-23:00")
    return data_dir


def _whole_history(data_dir) -> pd.DataFrame:
    bars = query(data_dir, "SELECT exchange, symbol, ts, high, low, close FROM ohlcv_1h ORDER BY exchange, symbol, ts")
    return ind.frame_indicators(bars, ind.IndicatorParams(**PERIODS))


def test_indicators_match_talib_on_each_whole_series(bars_warehouse):
    run(
        [indicators, indicators_has_unique_keys, indicators_rsi_in_range],
        bars_warehouse,
        first="2025-11-01-00:00",
        last="2025-11-08-23:00",
        run_config=CONFIG,
    )
    got = query(bars_warehouse, "SELECT * FROM indicators ORDER BY exchange, symbol, ts")
    bars = query(bars_warehouse, "SELECT * FROM ohlcv_1h ORDER BY exchange, symbol, ts")
    assert len(got) == len(bars) == 2 * HOURS
    for (_, _), series in bars.groupby(["exchange", "symbol"]):
        mine = got[(got["exchange"] == series["exchange"].iloc[0]) & (got["symbol"] == series["symbol"].iloc[0])]
        close, high, low = (series[c].to_numpy() for c in ("close", "high", "low"))
        np.testing.assert_array_equal(mine["sma"], talib.SMA(close, 5))
        np.testing.assert_array_equal(mine["ema"], talib.EMA(close, 6))
        np.testing.assert_array_equal(mine["rsi"], talib.RSI(close, 5))
        np.testing.assert_array_equal(mine["atr"], talib.ATR(high, low, close, 5))
        macd, signal, hist = talib.MACD(close, 3, 6, 3)
        np.testing.assert_array_equal(mine["macd"], macd)
        np.testing.assert_array_equal(mine["macd_hist"], hist)
        upper, middle, lower = talib.BBANDS(close, 5, 2.0, 2.0)
        np.testing.assert_array_equal(mine["bb_upper"], upper)
        np.testing.assert_array_equal(mine["bb_lower"], lower)


def test_one_late_partition_reads_its_lookback_and_equals_the_whole_history(tmp_path, bars_warehouse):
    """A single hour near the end, computed from a truncated look-back, equals the whole-history values."""
    lookback = ind.needed_lookback(ind.IndicatorParams(**PERIODS))
    assert lookback < HOURS - 2  # the look-back really is shorter than the history before the partition
    run([indicators], bars_warehouse, partition="2025-11-08-22:00", run_config=CONFIG)
    got = query(bars_warehouse, "SELECT * FROM indicators WHERE ts = TIMESTAMP '2025-11-08 22:00' ORDER BY ALL")
    whole = _whole_history(bars_warehouse)
    expected = whole[whole["ts"] == pd.Timestamp("2025-11-08 22:00")].sort_values(["exchange", "symbol"])
    assert len(got) == 2
    for column in ind.INDICATOR_COLUMNS:
        np.testing.assert_allclose(got[column].to_numpy(), expected[column].to_numpy(), rtol=1e-12, err_msg=column)


def test_a_too_short_lookback_would_change_the_recursive_indicators(bars_warehouse):
    """Guards the test above: with 12 bars of look-back the EMA differs, so the look-back is doing the work."""
    short = {"ops": {"indicators": {"config": {**PERIODS, "lookback_bars": 12}}}}
    run([indicators], bars_warehouse, partition="2025-11-08-21:00", run_config=short)
    got = query(bars_warehouse, "SELECT * FROM indicators WHERE ts = TIMESTAMP '2025-11-08 21:00' ORDER BY ALL")
    whole = _whole_history(bars_warehouse)
    expected = whole[whole["ts"] == pd.Timestamp("2025-11-08 21:00")].sort_values(["exchange", "symbol"])
    assert not np.allclose(got["ema"].to_numpy(), expected["ema"].to_numpy(), rtol=1e-9)


def test_default_periods_run_and_equal_talib(bars_warehouse):
    """The default config (look-back 553 bars, longer than this history) reads everything before the hour."""
    run([indicators], bars_warehouse, partition="2025-11-08-20:00")
    got = query(bars_warehouse, "SELECT * FROM indicators WHERE ts = TIMESTAMP '2025-11-08 20:00' ORDER BY ALL")
    bars = query(bars_warehouse, "SELECT exchange, symbol, ts, high, low, close FROM ohlcv_1h ORDER BY ALL")
    whole = ind.frame_indicators(bars, ind.IndicatorParams())
    expected = whole[whole["ts"] == pd.Timestamp("2025-11-08 20:00")].sort_values(["exchange", "symbol"])
    for column in ind.INDICATOR_COLUMNS:
        np.testing.assert_array_equal(got[column].to_numpy(), expected[column].to_numpy(), err_msg=column)


def test_rows_stored_out_of_time_order_still_give_each_series_in_order(bars_warehouse):
    """Re-running an early hour of ohlcv_1h moves its rows to the end of the table; the indicators read the
    rows in storage order and sort them by (instrument_id, ts) themselves, so the values still equal TA-Lib on
    each whole series."""
    run([ohlcv_1h], bars_warehouse, partition="2025-11-02-05:00")
    stored = query(bars_warehouse, "SELECT epoch_us(ts) AS us FROM ohlcv_1h")["us"].to_numpy()
    assert (np.diff(stored) < 0).any()  # the table really is out of time order now
    run([indicators], bars_warehouse, first="2025-11-01-00:00", last="2025-11-08-23:00", run_config=CONFIG)
    got = query(bars_warehouse, "SELECT * FROM indicators ORDER BY exchange, symbol, ts")
    expected = _whole_history(bars_warehouse).sort_values(["exchange", "symbol", "ts"])
    assert len(got) == len(expected) == 2 * HOURS
    for column in ind.INDICATOR_COLUMNS:
        np.testing.assert_array_equal(got[column].to_numpy(), expected[column].to_numpy(), err_msg=column)
