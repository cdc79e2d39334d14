"""Raw tables: the landing zone's hourly Parquet files, deduplicated, in DuckDB (one asset per stream).

Each run replaces its own event-time window (one hour, or a whole range in one backfill run), reading
only that window's `date=/hour=` folders through DuckDB's hive-partitioned Parquet reader.
"""

import pyarrow as pa
from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset
from dagster_duckdb import DuckDBResource

from ...core.instruments import InstrumentRegistry
from ...core.tables import INSTRUMENTS, RAW_TABLES, Table
from ..common.landing import load_landed_window
from ..common.metadata import column_schema
from ..common.tables import write_all
from ..partitions import BOUNDED_RUNS, HOURLY, history_reload_h, partition_window
from ..resources import POOL, DataDirResource, warehouse_connection

OWNERS = ["team:warehouse"]
RAW_HOURLY: tuple[str, ...] = tuple(RAW_TABLES)  # one hour of every landed stream: the landing sensor's runs


def _build_raw_asset(table: str, spec: Table) -> AssetsDefinition:
    @asset(
        name=table,
        group_name="raw",
        partitions_def=HOURLY,
        backfill_policy=BOUNDED_RUNS,
        pool=POOL,
        owners=OWNERS,
        kinds={"duckdb", "parquet"},
        description=(
            f"{spec.description} Loaded hourly from `landing/{spec.stream}/date=/hour=` "
            f"(hive-partitioned Parquet); key: {spec.natural_key}."
        ),
        metadata={
            "dagster/column_schema": column_schema(table),
            "natural_key": spec.natural_key,
            "stream": spec.stream,
        },
    )
    def _raw(context: AssetExecutionContext, duckdb: DuckDBResource, data_dir: DataDirResource) -> MaterializeResult:
        # a history run loads the hours before its window that the tables built on this one read there
        window = partition_window(context, look_back_h=history_reload_h(context, table))
        meta = load_landed_window(duckdb, data_dir.path(), table, window)
        context.log.info(f"{table} {window}: {meta['rows']} rows from {meta['files']} files")
        return MaterializeResult(metadata=meta)

    return _raw


raw_trades = _build_raw_asset("raw_trades", RAW_TABLES["raw_trades"])
raw_tickers = _build_raw_asset("raw_tickers", RAW_TABLES["raw_tickers"])
raw_funding = _build_raw_asset("raw_funding", RAW_TABLES["raw_funding"])
raw_ohlcv = _build_raw_asset("raw_ohlcv", RAW_TABLES["raw_ohlcv"])
raw_order_book = _build_raw_asset("raw_order_book", RAW_TABLES["raw_order_book"])
raw_open_interest = _build_raw_asset("raw_open_interest", RAW_TABLES["raw_open_interest"])
raw_liquidations = _build_raw_asset("raw_liquidations", RAW_TABLES["raw_liquidations"])
capture_events = _build_raw_asset("capture_events", RAW_TABLES["capture_events"])
capture_stats = _build_raw_asset("capture_stats", RAW_TABLES["capture_stats"])
RAW_ASSETS = [
    raw_trades, raw_tickers, raw_funding, raw_ohlcv, raw_order_book, raw_open_interest, raw_liquidations,
    capture_events, capture_stats,
]  # fmt: skip

_REGISTRY_ARROW = pa.schema(
    [
        ("id", pa.int32()),
        ("exchange", pa.string()),
        ("symbol", pa.string()),
        ("type", pa.string()),
        ("base", pa.string()),
        ("quote", pa.string()),
        ("settle", pa.string()),
        ("underlying", pa.string()),
        ("multiplier", pa.float64()),
        ("contract_size", pa.float64()),
        ("venue_symbol", pa.string()),
        ("inverse", pa.bool_()),
        ("expiry_ms", pa.int64()),
    ]
)


def registry_table(registry: InstrumentRegistry) -> pa.Table:
    rows = [{name: getattr(i, name) for name in _REGISTRY_ARROW.names} for i in registry]
    return pa.Table.from_pylist(rows, schema=_REGISTRY_ARROW)


@asset(
    group_name="raw",
    pool=POOL,
    owners=OWNERS,
    kinds={"duckdb", "json"},
    description=(
        "The instrument registry (`<data_dir>/instruments.json`): one row per (exchange, symbol) with its "
        "stable id, type, underlying and multiplier. Rebuilt whole on each run."
    ),
    metadata={"dagster/column_schema": column_schema("instruments"), "natural_key": INSTRUMENTS.natural_key},
)
def instruments(context: AssetExecutionContext, duckdb: DuckDBResource, data_dir: DataDirResource) -> MaterializeResult:
    path = data_dir.registry_path()
    registry = InstrumentRegistry.load(path)
    if not len(registry):
        context.log.warning(f"instruments: {path} is missing or empty; the table will be empty")
    with warehouse_connection(duckdb) as conn:
        rows = write_all(conn, "instruments", registry_table(registry))
    venues = sorted({i.exchange for i in registry})
    return MaterializeResult(
        metadata={"rows": rows, "registry": str(path), "exchanges": MetadataValue.text(", ".join(venues))}
    )
