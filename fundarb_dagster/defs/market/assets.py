"""Market tables: 1m bars from trades (venue candles where trades are missing), 5m/1h/1d resampled in SQL,
and TA-Lib indicators on 1h bars that read their look-back from earlier partitions."""

import time

from dagster import (
    AssetDep,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    TimeWindowPartitionMapping,
    asset,
)
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ...core import indicators as ind
from ...core.sql import execute, load_sql, replace_window
from ...core.tables import table
from ..common.landing import ensure_raw_tables
from ..common.metadata import column_schema
from ..partitions import BOUNDED_RUNS, DAILY, HOURLY, partition_window
from ..resources import POOL, DataDirResource, warehouse_connection

OWNERS = ["team:warehouse"]


class OhlcvConfig(Config):
    fill_horizon_minutes: int = Field(
        default=1440, description="Stop padding a series this many minutes after its last real bar"
    )


@asset(
    group_name="market",
    partitions_def=HOURLY,
    backfill_policy=BOUNDED_RUNS,
    pool=POOL,
    owners=OWNERS,
    kinds={"duckdb", "sql"},
    deps=["raw_trades", "raw_ohlcv"],
    description=(
        "One-minute OHLCV bars per (exchange, symbol) built from raw_trades; where a minute has no trades "
        "a venue 1m candle is used (source='venue'); empty minutes are explicit (close carried forward, zero "
        "volume, is_filled), also across partition boundaries. Key: exchange, symbol, ts."
    ),
    metadata={"dagster/column_schema": column_schema("ohlcv_1m"), "natural_key": table("ohlcv_1m").natural_key},
)
def ohlcv_1m(
    context: AssetExecutionContext, config: OhlcvConfig, duckdb: DuckDBResource, data_dir: DataDirResource
) -> MaterializeResult:
    window = partition_window(context)
    with warehouse_connection(duckdb) as conn:
        ensure_raw_tables(conn, data_dir.path(), "raw_trades", "raw_ohlcv")
        conn.execute(load_sql("market", "ohlcv_1m_table"))
        params = window.params(horizon_ms=config.fill_horizon_minutes * 60_000, now_ms=_now_ms())
        rows = replace_window(conn, "ohlcv_1m", load_sql("market", "ohlcv_1m"), params)
        stats = execute(
            conn,
            "SELECT source, count(*) FROM ohlcv_1m WHERE ts >= $start AND ts < $end GROUP BY source",
            params,
        ).fetchall()
    by_source = {source: int(n) for source, n in stats}
    return MaterializeResult(
        metadata={
            "window": str(window),
            "hours": window.hours,
            "rows": rows,
            **{f"rows_{k}": v for k, v in by_source.items()},
        }
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _resampled(name: str, source: str, partitions_def: object, label: str, bucket_us: int | None = None) -> object:
    """A bar table resampled in SQL: from ohlcv_1m through `bars_from_1m.sql` with the bar length bound
    (`bucket_us`), or, without a bar length, through the table's own file (`ohlcv_1d.sql`, from ohlcv_1h)."""
    sql_name, extra = ("bars_from_1m", {"bucket_us": bucket_us}) if bucket_us else (name, {})

    @asset(
        name=name,
        group_name="market",
        partitions_def=partitions_def,
        backfill_policy=BOUNDED_RUNS,
        pool=POOL,
        owners=OWNERS,
        kinds={"duckdb", "sql"},
        deps=[source],
        description=(
            f"{label} OHLCV bars resampled in SQL from {source} (integer-millisecond buckets); open/high/low "
            f"from the minutes with data, filled_minutes counts padded minutes. Key: exchange, symbol, ts."
        ),
        metadata={"dagster/column_schema": column_schema(name), "natural_key": table(name).natural_key},
    )
    def _asset(context: AssetExecutionContext, duckdb: DuckDBResource) -> MaterializeResult:
        window = partition_window(context)
        with warehouse_connection(duckdb) as conn:
            rows = replace_window(conn, name, load_sql("market", sql_name), window.params(**extra))
        return MaterializeResult(metadata={"window": str(window), "rows": rows})

    return _asset


ohlcv_5m = _resampled("ohlcv_5m", "ohlcv_1m", HOURLY, "Five-minute", bucket_us=5 * 60_000_000)
ohlcv_1h = _resampled("ohlcv_1h", "ohlcv_1m", HOURLY, "One-hour", bucket_us=60 * 60_000_000)
ohlcv_1d = _resampled("ohlcv_1d", "ohlcv_1h", DAILY, "Daily")


class IndicatorsConfig(Config):
    sma_period: int = 20
    ema_period: int = 20
    rsi_period: int = 14
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    bb_period: int = 20
    bb_stddev: float = 2.0
    atr_period: int = 14
    lookback_bars: int = Field(default=0, description="Earlier 1h bars read per series; 0: derived from periods")

    def params(self) -> ind.IndicatorParams:
        return ind.IndicatorParams(**self.model_dump())


@asset(
    group_name="market",
    partitions_def=HOURLY,
    backfill_policy=BOUNDED_RUNS,
    pool=POOL,
    owners=OWNERS,
    kinds={"duckdb", "talib"},
    # Reads earlier 1h bars as look-back too; declared as the same hour so a partition does not wait on
    # history that was never captured.
    deps=[AssetDep("ohlcv_1h", partition_mapping=TimeWindowPartitionMapping())],
    description=(
        "TA-Lib indicators on 1h bars per (exchange, symbol): SMA, EMA, RSI, MACD, Bollinger bands, ATR "
        "(periods configurable). Each partition reads the look-back it needs from earlier 1h bars, so its values "
        "equal those computed on the whole history. Key: exchange, symbol, ts."
    ),
    metadata={"dagster/column_schema": column_schema("indicators"), "natural_key": table("indicators").natural_key},
)
def indicators(context: AssetExecutionContext, config: IndicatorsConfig, duckdb: DuckDBResource) -> MaterializeResult:
    window = partition_window(context)
    params = config.params()
    with warehouse_connection(duckdb) as conn:
        rows, bars_read = ind.replace_indicators(conn, params, window.params())
    return MaterializeResult(
        metadata={
            "window": str(window),
            "rows": rows,
            "lookback_bars": ind.needed_lookback(params),
            "bars_read": bars_read,
        }
    )


MARKET_ASSETS = [ohlcv_1m, ohlcv_5m, ohlcv_1h, ohlcv_1d, indicators]
