"""Raw tables: the landing zone's hourly Parquet files, deduplicated, in DuckDB (one asset per stream).

Each run replaces its own event-time window (one hour, or a whole range in one backfill run), reading
only that window's `date=/hour=` folders through DuckDB's hive-partitioned Parquet reader.
"""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset
from dagster_duckdb import DuckDBResource

from fundarb_dagster.core.units import HOUR_MS

from ...core import landing, schema
from ...core.instruments import InstrumentRegistry
from ...core.sql import load_sql, replace_all, replace_window
from ..partitions import HOURLY, SINGLE_RUN, Window, partition_window
from ..resources import POOL, DataDirResource, column_schema, warehouse_connection

OWNERS = ["team:warehouse"]
EMPTY_HIVE = ("date=1970-01-01", "hour=00")

_TS = ("ts", "timestamp", "event time (UTC, microseconds), from ts_ms")
_ID = [
    ("ts_ms", "int64", "exchange event time, epoch ms"),
    ("recv_ts_ms", "int64", "local receive time, epoch ms"),
    ("instrument_id", "int32", "registry id"),
    ("exchange", "string", "ccxt exchange id"),
    ("symbol", "string", "ccxt unified symbol"),
]
RAW_TABLES: dict[str, dict[str, Any]] = {
    "raw_trades": {
        "stream": "trades",
        "key": ["exchange", "symbol", "trade_id"],
        "description": "Every public trade captured, one row per venue trade (deduplicated on trade id).",
        "columns": [
            _TS,
            *_ID,
            ("side", "int8", "+1 taker buy, -1 taker sell, 0 unknown"),
            ("trade_id", "int64", "venue trade id (or a stable hash of it)"),
            ("price", "float64", "price in quote"),
            ("amount", "float64", "base units"),
        ],
    },
    "raw_tickers": {
        "stream": "tickers",
        "key": ["exchange", "symbol", "ts_ms"],
        "description": "Best bid/ask snapshots with mark and index prices (NaN where a venue has none).",
        "columns": [
            _TS,
            *_ID,
            *[(c, "float64", c.replace("_", " ")) for c in ("bid", "ask", "bid_size", "ask_size", "last")],
            ("mark_price", "float64", "perp mark price, NaN for spot"),
            ("index_price", "float64", "index price, NaN where not given"),
        ],
    },
    "raw_funding": {
        "stream": "funding",
        "key": ["exchange", "symbol", "funding_ts_ms", "ts_ms", "is_settled"],
        "description": "Funding observations: predicted rates as streamed (is_settled=0) and settled rates (1).",
        "columns": [
            _TS,
            ("funding_ts", "timestamp", "the settlement the rate applies to (UTC)"),
            *_ID,
            ("is_settled", "int8", "1 settled, 0 predicted/current"),
            ("funding_ts_ms", "int64", "settlement time, epoch ms"),
            ("funding_rate", "float64", "fraction per interval"),
            ("next_funding_rate", "float64", "venue estimate for the next settlement, NaN if none"),
            ("interval_h", "float64", "funding interval in force, hours"),
            ("mark_price", "float64", "mark price"),
            ("index_price", "float64", "index price"),
        ],
    },
    "raw_ohlcv": {
        "stream": "ohlcv",
        "key": ["exchange", "symbol", "timeframe_s", "ts_ms"],
        "description": "Venue candles as streamed (the last update of each bar wins).",
        "columns": [
            _TS,
            *_ID,
            ("timeframe_s", "int32", "bar length, seconds"),
            *[(c, "float64", c) for c in ("open", "high", "low", "close", "volume")],
        ],
    },
    "capture_events": {
        "stream": "capture_events",
        "key": ["all columns"],
        "description": "What happened while capturing: gaps, reconnects, quarantined messages, drops, stalls.",
        "columns": [
            _TS,
            *_ID,
            ("stream", "int8", "schema.StreamCode"),
            ("kind", "int8", "schema.EventKind"),
            ("count", "int64", "how many messages/records"),
            ("start_ms", "int64", "start of the affected span"),
            ("end_ms", "int64", "end of the affected span"),
            ("reason", "string", "short reason, e.g. price:nan"),
        ],
    },
    "capture_stats": {
        "stream": "capture_stats",
        "key": ["node", "rank", "stream", "ts_ms"],
        "description": "The capture job's throughput samples per rank and stream (ring fill, flush latency, drops).",
        "columns": [
            _TS,
            ("ts_ms", "int64", "sample time, epoch ms"),
            ("recv_ts_ms", "int64", "sample time, epoch ms"),
            ("node", "int32", "node"),
            ("rank", "int32", "MPI rank"),
            ("stream", "int8", "schema.StreamCode"),
            ("messages", "int64", "cumulative records"),
            ("messages_per_s", "float64", "rate"),
            ("ring_fill_pct", "float64", "ring fill"),
            ("flush_latency_ms", "float64", "flush latency"),
            ("drops", "int64", "dropped records"),
            ("waits", "int64", "producer waits on a full ring"),
            ("reconnects", "int64", "reconnects"),
        ],
    },
}
STREAM_TABLES: dict[str, str] = {spec["stream"]: table for table, spec in RAW_TABLES.items()}
RAW_HOURLY: tuple[str, ...] = tuple(RAW_TABLES)  # one hour of every landed stream: the landing sensor's runs


def empty_stream_file(data_dir: Path, stream: str) -> Path:
    """A zero-row Parquet file of the stream's schema, in a hive-shaped path outside the landing zone.

    Always listed beside the landing glob: the query then binds the right columns even when the stream
    has no files yet, instead of DuckDB's "No files found".
    """
    path = Path(data_dir) / ".fundarb" / "empty" / stream / EMPTY_HIVE[0] / EMPTY_HIVE[1] / "empty.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-empty.{id(path)}")
        pq.write_table(schema.arrow_schema(stream).empty_table(), tmp)
        tmp.replace(path)
    return path


def window_files(data_dir: Path, stream: str, window: Window) -> list[Path]:
    """The landed files of a stream inside a window (what the sensor digests and the metadata counts)."""
    files: list[Path] = []
    for hour_ms in range(window.start_ms, window.end_ms, HOUR_MS):
        folder = landing.partition_dir(data_dir, stream, hour_ms)
        if folder.is_dir():
            files.extend(sorted(folder.glob("*.parquet")))
    return files


def landing_params(data_dir: Path, stream: str, window: Window) -> tuple[dict[str, Any], int]:
    """The bound parameters of a raw SQL file, and how many landed files the window holds."""
    files = window_files(data_dir, stream, window)
    # One glob per day that has files in the window (not the whole stream): listing stays proportional to
    # the window, not to the history; DuckDB's hive filter then prunes the hours inside those days. Each
    # glob matches at least one file (DuckDB rejects a glob matching none).
    root = landing.landing_root(data_dir) / stream
    days = sorted({f.parent.parent.name for f in files})
    sources = [str(root / day / "hour=*" / "*.parquet") for day in days]
    sources.append(str(empty_stream_file(data_dir, stream)))
    n_files = len(files)
    last_hour = window.end_ms - HOUR_MS
    params = window.params(
        files=sources,
        start_date=_date(window.start_ms),
        end_date=_date(last_hour),
        start_hour=_hour_key(window.start_ms),
        end_hour=_hour_key(window.end_ms),
    )
    return params, n_files


def load_raw_window(duckdb: DuckDBResource, data_dir: Path, table: str, window: Window) -> dict[str, Any]:
    """Replace one window of a raw table from the landing zone; returns run metadata."""
    stream = RAW_TABLES[table]["stream"]
    params, n_files = landing_params(data_dir, stream, window)
    with warehouse_connection(duckdb) as conn:
        rows = replace_window(conn, table, load_sql("raw", table), params)
    return {"window": str(window), "hours": window.hours, "files": n_files, "rows": rows}


def _build_raw_asset(table: str, spec: dict[str, Any]) -> AssetsDefinition:
    @asset(
        name=table,
        group_name="raw",
        partitions_def=HOURLY,
        backfill_policy=SINGLE_RUN,
        pool=POOL,
        owners=OWNERS,
        kinds={"duckdb", "parquet"},
        description=(
            f"{spec['description']} Loaded hourly from `landing/{spec['stream']}/date=/hour=` "
            f"(hive-partitioned Parquet); key: {', '.join(spec['key'])}."
        ),
        metadata={
            "dagster/column_schema": column_schema(spec["columns"]),
            "natural_key": ", ".join(spec["key"]),
            "stream": spec["stream"],
        },
    )
    def _raw(context: AssetExecutionContext, duckdb: DuckDBResource, data_dir: DataDirResource) -> MaterializeResult:
        window = partition_window(context)
        meta = load_raw_window(duckdb, data_dir.path(), table, window)
        context.log.info(f"{table} {window}: {meta['rows']} rows from {meta['files']} files")
        return MaterializeResult(metadata=meta)

    return _raw


raw_trades = _build_raw_asset("raw_trades", RAW_TABLES["raw_trades"])
raw_tickers = _build_raw_asset("raw_tickers", RAW_TABLES["raw_tickers"])
raw_funding = _build_raw_asset("raw_funding", RAW_TABLES["raw_funding"])
raw_ohlcv = _build_raw_asset("raw_ohlcv", RAW_TABLES["raw_ohlcv"])
capture_events = _build_raw_asset("capture_events", RAW_TABLES["capture_events"])
capture_stats = _build_raw_asset("capture_stats", RAW_TABLES["capture_stats"])
RAW_ASSETS = [raw_trades, raw_tickers, raw_funding, raw_ohlcv, capture_events, capture_stats]

INSTRUMENT_COLUMNS = [
    ("instrument_id", "int32", "stable small id (instruments.json)"),
    ("exchange", "string", "ccxt exchange id"),
    ("symbol", "string", "ccxt unified symbol"),
    ("type", "string", "spot or swap"),
    ("base", "string", "ccxt base, e.g. 1000PEPE"),
    ("quote", "string", "quote currency"),
    ("settle", "string", "settlement currency, null for spot"),
    ("underlying", "string", "asset priced, multiplier removed"),
    ("multiplier", "float64", "units of underlying per base unit"),
    ("contract_size", "float64", "base units per contract"),
    ("venue_symbol", "string", "the exchange's own market id"),
]
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
    metadata={"dagster/column_schema": column_schema(INSTRUMENT_COLUMNS), "natural_key": "exchange, symbol"},
)
def instruments(context: AssetExecutionContext, duckdb: DuckDBResource, data_dir: DataDirResource) -> MaterializeResult:
    path = data_dir.registry_path()
    registry = InstrumentRegistry.load(path)
    if not len(registry):
        context.log.warning(f"instruments: {path} is missing or empty; the table will be empty")
    registry_frame = registry_table(registry)
    with warehouse_connection(duckdb) as conn:
        conn.register("registry_frame", registry_frame)
        rows = replace_all(conn, "instruments", load_sql("raw", "instruments"))
    venues = sorted({i.exchange for i in registry})
    return MaterializeResult(
        metadata={"rows": rows, "registry": str(path), "exchanges": MetadataValue.text(", ".join(venues))}
    )


def _date(ms: int) -> str:
    return f"{_utc(ms):%Y-%m-%d}"


def _hour_key(ms: int) -> str:
    return f"{_utc(ms):%Y-%m-%d %H}"


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def ensure_raw_table(conn: Any, data_dir: Path, table: str) -> None:
    """Create an empty raw table with its real columns if no run has made it yet (a stream never captured).

    Downstream assets call this for every raw table they read, so a missing stream reads as no rows.
    """
    from ...core.sql import check_identifier, execute, table_exists

    if table_exists(conn, table):
        return
    stream = RAW_TABLES[table]["stream"]
    params, _ = landing_params(data_dir, stream, Window(datetime(1970, 1, 1), datetime(1970, 1, 1, 1)))
    params["files"] = [str(empty_stream_file(data_dir, stream))]
    execute(conn, f"CREATE TABLE IF NOT EXISTS {check_identifier(table)} AS {load_sql('raw', table)}", params)
