"""OHLCV resampling: integer-millisecond bucketing, and the pandas computations the SQL is checked against.

The warehouse resamples in DuckDB (`sql/market/ohlcv_*.sql`); the functions here are the plain-Python
definitions of the same bars (used by tests as the independent computation and by the benchmarks as the
alternative), plus `duckdb_trades_to_1m`, the warehouse's trade aggregation on any relation, and
`aggregate_ohlcv`, which replays use to serve a timeframe the recording does not hold.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from . import schema
from .units import MINUTE_MS

TIMEFRAMES_MS: dict[str, int] = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000, "1d": 86_400_000}


def bucket_ms(ts_ms: np.ndarray | int, width_ms: int) -> np.ndarray | int:
    """The bucket start of each epoch-ms time: integer floor division, no float or timezone rounding."""
    if width_ms <= 0:
        raise ValueError(f"width_ms: {width_ms!r} must be > 0")
    return (
        (np.asarray(ts_ms, dtype=np.int64) // width_ms) * width_ms
        if not isinstance(ts_ms, int)
        else (ts_ms // width_ms) * width_ms
    )


def trades_to_ohlcv(trades: pd.DataFrame, width_ms: int = MINUTE_MS) -> pd.DataFrame:
    """Bars of the buckets that had trades: first/max/min/last price, summed amount, trade count.

    `trades` has ts_ms, price, amount (and optionally trade_id to break ties of equal ts_ms, the way the
    venue ordered them). Returns columns bucket_ms, open, high, low, close, volume, trade_count.
    """
    order = ["ts_ms", "trade_id"] if "trade_id" in trades.columns else ["ts_ms"]
    frame = trades.sort_values(order, kind="stable")
    buckets = bucket_ms(frame["ts_ms"].to_numpy(), width_ms)
    grouped = frame.assign(bucket_ms=buckets).groupby("bucket_ms", sort=True)
    out = grouped.agg(
        open=("price", "first"),
        high=("price", "max"),
        low=("price", "min"),
        close=("price", "last"),
        volume=("amount", "sum"),
        trade_count=("price", "size"),
    )
    return out.reset_index()


def fill_minutes(
    bars: pd.DataFrame,
    start_ms: int,
    end_ms: int,
    prev_close: float | None = None,
    horizon_ms: int = 1440 * MINUTE_MS,
) -> pd.DataFrame:
    """Make every minute explicit from the first bar (or `start_ms` when `prev_close` is known) to `end_ms`.

    Missing minutes carry the previous close (open=high=low=close), zero volume, is_filled=True; padding
    stops `horizon_ms` after the last real bar.
    """
    real = bars.set_index("bucket_ms")
    first = start_ms if prev_close is not None else int(real.index.min())
    grid = pd.RangeIndex(first, end_ms, MINUTE_MS, name="bucket_ms")
    out = real.reindex(grid)
    out["is_filled"] = out["close"].isna()
    last_real = pd.Series(np.where(out["is_filled"], np.nan, grid.to_numpy()), index=grid).ffill()
    close = out["close"].ffill()
    if prev_close is not None:
        close = close.fillna(prev_close)
    for column in ("open", "high", "low", "close"):
        out[column] = out[column].fillna(close)
    out["volume"] = out["volume"].fillna(0.0)
    out["trade_count"] = out["trade_count"].fillna(0).astype(np.int64)
    keep = (grid.to_numpy() - last_real.to_numpy() <= horizon_ms) | last_real.isna().to_numpy()
    return out[keep].reset_index()


def resample_bars(bars: pd.DataFrame, width_ms: int) -> pd.DataFrame:
    """Coarser bars from 1m bars (bucket_ms, open, high, low, close, volume, is_filled) the way the SQL does.

    Open/high/low from the real minutes (filled ones only when the whole bar is filled), close of the last
    minute, volume summed, filled_minutes counted.
    """
    frame = bars.sort_values("bucket_ms").assign(bar_ms=lambda f: bucket_ms(f["bucket_ms"].to_numpy(), width_ms))
    real = frame[~frame["is_filled"]]
    all_groups = frame.groupby("bar_ms")
    real_groups = real.groupby("bar_ms")
    out = pd.DataFrame(
        {
            "open": real_groups["open"].first().reindex(all_groups.size().index),
            "high": real_groups["high"].max().reindex(all_groups.size().index),
            "low": real_groups["low"].min().reindex(all_groups.size().index),
        }
    )
    out["open"] = out["open"].fillna(all_groups["open"].first())
    out["high"] = out["high"].fillna(all_groups["high"].max())
    out["low"] = out["low"].fillna(all_groups["low"].min())
    out["close"] = all_groups["close"].last()
    out["volume"] = all_groups["volume"].sum()
    out["filled_minutes"] = all_groups["is_filled"].sum().astype(np.int64)
    return out.reset_index().rename(columns={"bar_ms": "bucket_ms"})


def aggregate_ohlcv(
    ts: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    low: np.ndarray,
    c: np.ndarray,
    v: np.ndarray,
    timeframe_s: int,
) -> np.ndarray:
    """Bars (or trades as one-price bars) -> `schema` OHLCV records of `timeframe_s`, only for buckets with data.

    Unlike `resample_bars` (1m frames with filled minutes, the SQL's definition) this takes raw arrays of any
    finer timeframe and knows nothing of filled minutes.
    """
    out = schema.empty("ohlcv", 0)
    if len(ts) == 0:
        return out
    order = np.argsort(ts, kind="stable")
    ts, o, h, low, c, v = (a[order] for a in (ts, o, h, low, c, v))
    size = timeframe_s * 1000
    buckets = bucket_ms(ts, size)
    starts = np.flatnonzero(np.concatenate([[True], buckets[1:] != buckets[:-1]]))
    ends = np.concatenate([starts[1:], [len(ts)]])
    out = schema.empty("ohlcv", len(starts))
    out["ts_ms"], out["recv_ts_ms"], out["timeframe_s"] = buckets[starts], buckets[starts] + size, timeframe_s
    out["open"], out["close"] = o[starts], c[ends - 1]
    out["high"] = np.maximum.reduceat(h, starts)
    out["low"] = np.minimum.reduceat(low, starts)
    out["volume"] = np.add.reduceat(np.nan_to_num(v), starts)
    return out


def pandas_resample_ohlc(ts_ms: np.ndarray, price: np.ndarray, amount: np.ndarray, rule: str = "1min") -> pd.DataFrame:
    """The textbook pandas way: a DatetimeIndex, `resample(rule).ohlc()` plus summed volume."""
    series = pd.Series(price, index=pd.to_datetime(ts_ms, unit="ms"))
    ohlc = series.resample(rule).ohlc()
    ohlc["volume"] = pd.Series(amount, index=series.index).resample(rule).sum()
    return ohlc.dropna(subset=["open"])


def pandas_groupby_ohlc(ts_ms: np.ndarray, price: np.ndarray, amount: np.ndarray, width_ms: int = MINUTE_MS) -> Any:
    """The fastest pandas I know: integer buckets and one groupby with built-in first/max/min/last/sum.

    Assumes the ticks are in time order (capture order), so first/last are open/close without a sort.
    """
    frame = pd.DataFrame({"bucket": ts_ms // width_ms, "price": price, "amount": amount})
    grouped = frame.groupby("bucket", sort=False)
    price_groups = grouped["price"]
    return pd.DataFrame(
        {
            "open": price_groups.first(),
            "high": price_groups.max(),
            "low": price_groups.min(),
            "close": price_groups.last(),
            "volume": grouped["amount"].sum(),
        }
    )


DUCKDB_TRADES_TO_1M = """
SELECT
    exchange, symbol,
    (ts_ms // 60000) * 60000 AS bucket_ms,
    arg_min(price, ts_ms) AS open, max(price) AS high, min(price) AS low, arg_max(price, ts_ms) AS close,
    sum(amount) AS volume, count(*) AS trade_count
FROM trades
GROUP BY exchange, symbol, bucket_ms
"""
