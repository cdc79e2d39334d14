"""core.indicators: parameters validated, values are TA-Lib's, look-back long enough to match history."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from fundarb_dagster.core import indicators as ind


def _walk(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    spread = np.abs(rng.normal(0, 0.005, n)) * close
    return close + spread, close - spread, close


def test_invalid_periods_are_rejected_naming_the_field():
    with pytest.raises(ValueError, match="rsi_period"):
        ind.IndicatorParams(rsi_period=1)
    with pytest.raises(ValueError, match="macd_fast"):
        ind.IndicatorParams(macd_fast=30, macd_slow=26)
    with pytest.raises(ValueError, match="bb_stddev"):
        ind.IndicatorParams(bb_stddev=0)


def test_compute_returns_talib_values():
    high, low, close = _walk(500)
    params = ind.IndicatorParams()
    out = ind.compute(high, low, close, params)
    np.testing.assert_array_equal(out["rsi"], talib.RSI(close, 14))
    np.testing.assert_array_equal(out["atr"], talib.ATR(high, low, close, 14))
    np.testing.assert_array_equal(out["macd_signal"], talib.MACD(close, 12, 26, 9)[1])
    assert set(out) == set(ind.INDICATOR_COLUMNS)


def test_needed_lookback_makes_a_suffix_equal_the_whole_history():
    high, low, close = _walk(3000)
    params = ind.IndicatorParams()
    lookback = ind.needed_lookback(params)
    whole = ind.compute(high, low, close, params)
    start = 2500
    part = ind.compute(high[start - lookback :], low[start - lookback :], close[start - lookback :], params)
    for name in ind.INDICATOR_COLUMNS:
        np.testing.assert_allclose(part[name][lookback:], whole[name][start:], rtol=1e-12, err_msg=name)


def test_frame_indicators_computes_each_series_separately():
    high, low, close = _walk(200)
    ts = pd.date_range("2026-01-01", periods=200, freq="h")
    frame = pd.concat(
        [
            pd.DataFrame({"exchange": "a", "symbol": "X", "ts": ts, "high": high, "low": low, "close": close}),
            pd.DataFrame(
                {"exchange": "b", "symbol": "X", "ts": ts, "high": high * 2, "low": low * 2, "close": close * 2}
            ),
        ]
    )
    out = ind.frame_indicators(frame, ind.IndicatorParams())
    a = out[out["exchange"] == "a"]
    b = out[out["exchange"] == "b"]
    np.testing.assert_array_equal(a["sma"], talib.SMA(close, 20))
    np.testing.assert_allclose(b["sma"], talib.SMA(close * 2, 20))
    assert ind.frame_indicators(frame.iloc[:0], ind.IndicatorParams()).columns.tolist()[-1] == "atr"


def test_many_series_equals_a_frame_per_series_on_uneven_lengths():
    """The fast path (contiguous slices, preallocated outputs) against the obvious one (a frame per series),
    with series of different lengths, one shorter than every warm-up."""
    lengths = (300, 7, 120)
    pieces, highs, lows, closes = [], [], [], []
    for k, n in enumerate(lengths):
        high, low, close = _walk(n, seed=k + 3)
        ts = pd.date_range("2026-01-01", periods=n, freq="h")
        pieces.append(
            pd.DataFrame({"exchange": "x", "symbol": f"S{k}", "ts": ts, "high": high, "low": low, "close": close})
        )
        highs.append(high), lows.append(low), closes.append(close)
    ids = np.repeat(np.arange(len(lengths)), lengths)
    starts = ind.series_starts(ids)
    np.testing.assert_array_equal(starts, [0, 300, 307, 427])
    fast = ind.many_series(
        starts, np.concatenate(highs), np.concatenate(lows), np.concatenate(closes), ind.IndicatorParams()
    )
    slow = ind.frame_indicators(pd.concat(pieces), ind.IndicatorParams())
    for name in ind.INDICATOR_COLUMNS:
        np.testing.assert_array_equal(fast[name], slow[name].to_numpy(), err_msg=name)
    assert ind.series_starts(np.array([], dtype=np.int32)).tolist() == [0]


@pytest.mark.parametrize("time_ordered", [True, False])
def test_series_order_sorts_by_series_then_time_like_a_two_key_lexsort(time_ordered):
    rng = np.random.default_rng(5)
    ts = np.repeat(np.arange(50, dtype=np.int64), 7)  # time-major, as hourly partitions insert rows
    ids = np.tile(rng.permutation(7).astype(np.int32), 50)
    if not time_ordered:
        shuffle = rng.permutation(len(ts))
        ts, ids = ts[shuffle], ids[shuffle]
    order = ind.series_order(ids, ts)
    np.testing.assert_array_equal(order, np.lexsort((ts, ids)))
