"""Market tables: 1m bars from trades (venue candles where trades are missing), 5m/1h/8h/1d resampled in SQL
(the venue's own bars of each length where the finer table has none: imported klines),
and TA-Lib indicators on 1h bars that read their look-back from earlier partitions."""

import time
from typing import Any

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
from ...core.book_depth import DEFAULT_NOTIONALS, book_depth_frame
from ...core.look_back import FILL_HORIZON_H, INDICATOR_BARS_H, OPEN_INTEREST_H
from ...core.sql import check_identifier, create_table, execute, load_sql, replace_window, table_exists
from ...core.tables import table
from ...core.units import HOUR_MS
from ..common.landing import ensure_raw_tables
from ..common.metadata import column_schema, md_table
from ..common.tables import write_window
from ..partitions import BOUNDED_RUNS, DAILY, HOURLY, history_reload_h, is_history_run, partition_window
from ..resources import POOL, DataDirResource, warehouse_connection

OWNERS = ["team:warehouse"]


class OhlcvConfig(Config):
    fill_horizon_minutes: int = Field(
        default=FILL_HORIZON_H * 60, description="Stop padding a series this many minutes after its last real bar"
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
    window = partition_window(context, look_back_h=history_reload_h(context, "ohlcv_1m"))
    horizon_ms = config.fill_horizon_minutes * 60_000
    # the close carried into the window: the table's earlier hours (hourly: loaded in order), or in a history run
    # the raw tables' bars of the horizon before it, which this run loaded (runs of months go in any order)
    bars_from_ms = window.start_ms - horizon_ms if is_history_run(context) else window.start_ms
    if is_history_run(context) and config.fill_horizon_minutes > FILL_HORIZON_H * 60:
        context.log.warning(
            f"ohlcv_1m: fill_horizon_minutes {config.fill_horizon_minutes} is beyond the {FILL_HORIZON_H} h the "
            "raw tables of a history run load before their window: the close carried into its first minutes may "
            "depend on the run of the month before"
        )
    with warehouse_connection(duckdb) as conn:
        ensure_raw_tables(conn, data_dir.path(), "raw_trades", "raw_ohlcv")
        create_table(conn, load_sql("market", "ohlcv_1m_table"))
        params = window.params(horizon_ms=horizon_ms, now_ms=_now_ms(), bars_from_ms=bars_from_ms)
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


def _resampled(name: str, finer: str, partitions_def: object, label: str, bucket_s: int) -> object:
    """A bar table of `bucket_s` seconds: bars resampled in SQL from the next finer table (`bars_from_1m.sql`
    from ohlcv_1m, `bars_from_bars.sql` from an hourly or 8-hourly table), merged with the venue's own bars of
    this timeframe (`bars_with_venue.sql`: imported 1h, 8h, 1d klines land in raw_ohlcv and reach the table of
    their timeframe, and through it every coarser one)."""

    @asset(
        name=name,
        group_name="market",
        partitions_def=partitions_def,
        backfill_policy=BOUNDED_RUNS,
        pool=POOL,
        owners=OWNERS,
        kinds={"duckdb", "sql"},
        deps=[finer, "raw_ohlcv"],
        description=(
            f"{label} OHLCV bars resampled in SQL from {finer} (integer-millisecond buckets; source = "
            f"'{finer}'), or the venue's own {label.lower()} bar from raw_ohlcv where {finer} has no real minute "
            f"of it (source = 'venue', e.g. imported klines); open/high/low from the minutes with data, "
            f"filled_minutes counts padded minutes. Key: exchange, symbol, ts."
        ),
        metadata={"dagster/column_schema": column_schema(name), "natural_key": table(name).natural_key},
    )
    def _asset(context: AssetExecutionContext, duckdb: DuckDBResource, data_dir: DataDirResource) -> MaterializeResult:
        window = partition_window(context, look_back_h=history_reload_h(context, name))
        params = window.params(bucket_us=bucket_s * 1_000_000)
        with warehouse_connection(duckdb) as conn:
            ensure_raw_tables(conn, data_dir.path(), "raw_ohlcv")
            rows, by_source = resample_bars(conn, name, finer, params, bucket_s)
        return MaterializeResult(
            metadata={"window": str(window), "rows": rows, **{f"rows_{k}": v for k, v in by_source.items()}}
        )

    return _asset


def resample_bars(
    conn: Any, name: str, finer: str, params: dict[str, Any], bucket_s: int
) -> tuple[int, dict[str, int]]:
    """Replace `name`'s window with `finer`'s bars resampled to `bucket_s` seconds and the venue's own bars of
    that length; returns the rows written and their count per source."""
    if finer == "ohlcv_1m":
        create_table(conn, load_sql("market", "ohlcv_1m_table"))
        sql = load_sql("market", "bars_from_1m")
    elif not table_exists(conn, finer):
        raise ValueError(f"{name}: its input table {finer!r} does not exist: materialize {finer} first")
    else:
        conn.execute(f"CREATE OR REPLACE TEMP VIEW finer_bars AS SELECT * FROM {check_identifier(finer)}")
        sql = load_sql("market", "bars_from_bars")
    execute(conn, f"CREATE OR REPLACE TEMP TABLE resampled AS {sql}", params)
    merged = {**params, "timeframe_s": bucket_s, "finer": finer}
    # straight into the table inside the delete's transaction: the select reads `resampled` and raw_ohlcv,
    # never `name` itself (~20 % of the asset's time at 1 M minutes, bench_resample)
    rows = replace_window(conn, name, load_sql("market", "bars_with_venue"), merged, staged=False)
    stats = execute(
        conn,
        f"SELECT source, count(*) FROM {check_identifier(name)} WHERE ts >= $start AND ts < $end GROUP BY 1",
        params,
    ).fetchall()
    return rows, {str(source): int(n) for source, n in stats}


ohlcv_5m = _resampled("ohlcv_5m", "ohlcv_1m", HOURLY, "Five-minute", 300)
ohlcv_1h = _resampled("ohlcv_1h", "ohlcv_1m", HOURLY, "One-hour", 3600)
ohlcv_8h = _resampled("ohlcv_8h", "ohlcv_1h", DAILY, "Eight-hour", 8 * 3600)
ohlcv_1d = _resampled("ohlcv_1d", "ohlcv_8h", DAILY, "Daily", 86400)


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
def indicators(
    context: AssetExecutionContext, config: IndicatorsConfig, duckdb: DuckDBResource, data_dir: DataDirResource
) -> MaterializeResult:
    window = partition_window(context)  # data_dir: a history run's window is clamped to the data landed there
    params = config.params()
    if is_history_run(context) and 2 * ind.needed_lookback(params) > INDICATOR_BARS_H:
        context.log.warning(
            f"indicators: a look-back of {ind.needed_lookback(params)} bars reads beyond the {INDICATOR_BARS_H} h of "
            "1h bars a history run recomputes: its first hours may depend on the run of the month before"
        )
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


class BookDepthConfig(Config):
    notionals_usd: list[float] = Field(
        default=list(DEFAULT_NOTIONALS), description="Notionals (quote currency) whose book-walk cost is computed"
    )


@asset(
    group_name="market",
    partitions_def=HOURLY,
    backfill_policy=BOUNDED_RUNS,
    pool=POOL,
    owners=OWNERS,
    kinds={"duckdb", "numpy"},
    deps=["raw_order_book"],
    description=(
        "Per (exchange, symbol, minute, notional): the notional resting within 1/5/10/25 bp of the mid on each "
        "side and the VWAP cost of buying and selling the notional by walking the captured book, means over the "
        "minute's snapshots (core.book_depth). Key: exchange, symbol, ts, notional_usd."
    ),
    metadata={"dagster/column_schema": column_schema("book_depth"), "natural_key": table("book_depth").natural_key},
)
def book_depth(
    context: AssetExecutionContext, config: BookDepthConfig, duckdb: DuckDBResource, data_dir: DataDirResource
) -> MaterializeResult:
    window = partition_window(context)
    with warehouse_connection(duckdb) as conn:
        ensure_raw_tables(conn, data_dir.path(), "raw_order_book")
        books = execute(conn, load_sql("market", "book_depth_input"), window.params()).df()
        frame = book_depth_frame(books, config.notionals_usd)
        rows = write_window(conn, "book_depth", frame, window)
    latest = frame.sort_values("ts").groupby(["exchange", "symbol", "notional_usd"]).tail(1)
    shown = latest[["exchange", "symbol", "notional_usd", "spread_bps", "bid_depth_10bps_usd", "buy_cost_bps",
                    "sell_cost_bps"]]  # fmt: skip
    return MaterializeResult(
        metadata={
            "window": str(window),
            "rows": rows,
            "snapshots": len(books),
            "latest": md_table(shown.round(2)),
        }
    )


# An hour's open-interest change is measured from the last value of the previous captured hour up to a day back.
OPEN_INTEREST_LOOK_BACK_MS = OPEN_INTEREST_H * HOUR_MS  # the history runs' reload follows it (core/look_back.py)


def _hourly_from_raw(name: str, raw: str, summary: str, description: str, bars: bool = False, **extra: Any) -> Any:
    """An hourly table computed in SQL (`sql/market/<name>.sql`) from one raw table's window (and ohlcv_1m's
    closes with `bars`); its run metadata is the `summary` query's table (`sql/market/<summary>.sql`)."""

    @asset(
        name=name,
        group_name="market",
        partitions_def=HOURLY,
        backfill_policy=BOUNDED_RUNS,
        pool=POOL,
        owners=OWNERS,
        kinds={"duckdb", "sql"},
        deps=[raw, *(["ohlcv_1m"] if bars else [])],
        description=f"{description} Key: {table(name).natural_key}.",
        metadata={"dagster/column_schema": column_schema(name), "natural_key": table(name).natural_key},
    )
    def _asset(context: AssetExecutionContext, duckdb: DuckDBResource, data_dir: DataDirResource) -> MaterializeResult:
        window = partition_window(context)
        params = window.params(**extra)
        with warehouse_connection(duckdb) as conn:
            ensure_raw_tables(conn, data_dir.path(), raw)
            if bars:
                create_table(conn, load_sql("market", "ohlcv_1m_table"))  # the closes: empty before any bar
            rows = replace_window(conn, name, load_sql("market", name), params, staged=False)
            shown = execute(conn, load_sql("market", summary), params).df()
        return MaterializeResult(metadata={"window": str(window), "rows": rows, summary: md_table(shown)})

    return _asset


open_interest = _hourly_from_raw(
    "open_interest",
    "raw_open_interest",
    "open_interest_latest",
    "Per (exchange, perp, hour): the last open interest captured (contracts, base units, quote value where the "
    "venue gives it), the hour's low/high, and the change since the previous captured hour's last value (looked "
    "for up to 24 h back), and its notional in quote (the venue's value, else the amount x ohlcv_1m's close).",
    bars=True,
    look_back_ms=OPEN_INTEREST_LOOK_BACK_MS,
)
liquidations = _hourly_from_raw(
    "liquidations",
    "raw_liquidations",
    "liquidations_totals",
    "Per (exchange, perp, hour) with liquidation prints: how many, the notional (quote currency) and base amount "
    "of liquidated longs and shorts, and the largest print.",
)


MARKET_ASSETS = [ohlcv_1m, ohlcv_5m, ohlcv_1h, ohlcv_8h, ohlcv_1d, indicators, book_depth, open_interest, liquidations]
