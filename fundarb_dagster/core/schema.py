"""One source of truth for every stream's columns.

Each stream has one fixed-width numpy structured dtype. Sources produce records of it, the capture job's
shared-memory rings carry it, the flusher turns it into Arrow (adding the `exchange` and `symbol` string
columns from the instrument registry), and the warehouse reads the landed Parquet. Timestamps are UTC epoch
milliseconds (`*_ms`): `ts_ms` is the exchange's event time, `recv_ts_ms` the local receive time.
Missing optional values (a spot ticker's mark price, say) are NaN, never a sentinel number.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import pyarrow as pa

TRADES = np.dtype(
    [
        ("ts_ms", "<i8"),
        ("recv_ts_ms", "<i8"),
        ("instrument_id", "<i4"),
        ("side", "i1"),  # +1 taker buy, -1 taker sell, 0 unknown
        ("_pad", "V3"),
        ("trade_id", "<i8"),  # venue id when numeric, else a stable 63-bit hash of it
        ("price", "<f8"),
        ("amount", "<f8"),  # in base units: linear contracts x contract size; inverse contracts x size / price
        ("contracts", "<f8"),  # the amount as the venue counts it (contracts); NaN for spot
        ("contract_size", "<f8"),  # ccxt contractSize when traded: base (linear) or quote (inverse) per contract
    ]
)

TICKERS = np.dtype(
    [
        ("ts_ms", "<i8"),
        ("recv_ts_ms", "<i8"),
        ("instrument_id", "<i4"),
        ("_pad", "V4"),
        ("bid", "<f8"),
        ("ask", "<f8"),
        ("bid_size", "<f8"),  # base units (see trades.amount)
        ("ask_size", "<f8"),
        ("last", "<f8"),
        ("mark_price", "<f8"),  # NaN for spot or where the venue does not give it
        ("index_price", "<f8"),
        ("bid_contracts", "<f8"),  # bid_size as the venue counts it (contracts); NaN for spot
        ("ask_contracts", "<f8"),
        ("contract_size", "<f8"),  # ccxt contractSize; NaN for spot
    ]
)

FUNDING = np.dtype(
    [
        ("ts_ms", "<i8"),  # when this value was known (exchange time)
        ("recv_ts_ms", "<i8"),
        ("instrument_id", "<i4"),
        ("is_settled", "i1"),  # 1: a settled historical rate, 0: current/predicted as streamed
        ("_pad", "V3"),
        ("funding_ts_ms", "<i8"),  # the settlement this rate applies to
        ("funding_rate", "<f8"),  # fraction per interval (0.0001 = 1 bp)
        ("next_funding_rate", "<f8"),  # the venue's estimate for the settlement after, NaN if none
        ("interval_h", "<f8"),  # interval in force for funding_ts_ms
        ("mark_price", "<f8"),
        ("index_price", "<f8"),
    ]
)

OHLCV = np.dtype(
    [
        ("ts_ms", "<i8"),  # bar open time
        ("recv_ts_ms", "<i8"),
        ("instrument_id", "<i4"),
        ("timeframe_s", "<i4"),
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("volume", "<f8"),
    ]
)


class EventKind(IntEnum):
    """What a `capture_events` row reports. Gaps and faults are data, not log lines."""

    RECONNECT = 1
    GAP = 2  # a stretch with no data (start_ms..end_ms), e.g. while a socket was down
    GAP_FILLED = 3  # a gap later filled from REST history
    STALE = 4  # the staleness watchdog restarted a silent subscription
    QUARANTINED = 5  # a bad message, rejected with a reason
    DUPLICATE = 6  # a venue duplicate dropped
    OUT_OF_ORDER = 7
    DROPPED = 8  # a configured drop policy discarded records
    BACKPRESSURE = 9  # a producer waited on a full ring
    FLUSH_FAILED = 10  # writing one landing file failed (reason flush:<errno>); its records stay pending
    SPILLED = 11  # records a stopping flusher could not land, kept in a recovery file the next start lands
    UNUSED = 12  # recorded frames of a channel no watcher consumed (reason: the channel), counted per replay
    USED = 13  # recorded frames of a channel a watcher consumed (reason: the channel), counted per replay
    CHANNEL = 14  # the venue channel a subscription reads (reason: stream:ccxt call[:channel])


CAPTURE_EVENTS = np.dtype(
    [
        ("ts_ms", "<i8"),
        ("recv_ts_ms", "<i8"),
        ("instrument_id", "<i4"),  # -1 when the event is not about one instrument
        ("stream", "i1"),  # StreamCode
        ("kind", "i1"),  # EventKind
        ("_pad", "V2"),
        ("count", "<i8"),
        ("start_ms", "<i8"),
        ("end_ms", "<i8"),
        ("reason", "S48"),  # short ASCII reason, e.g. b"price:nan"
    ]
)

CAPTURE_STATS = np.dtype(
    [
        ("ts_ms", "<i8"),  # local wall-clock time of the sample
        ("recv_ts_ms", "<i8"),
        ("node", "<i4"),
        ("rank", "<i4"),
        ("stream", "i1"),
        ("_pad", "V7"),
        ("messages", "<i8"),  # cumulative records written to the ring
        ("messages_per_s", "<f8"),
        ("ring_fill_pct", "<f8"),
        ("flush_latency_ms", "<f8"),
        ("drops", "<i8"),
        ("waits", "<i8"),
        ("reconnects", "<i8"),
    ]
)


class StreamCode(IntEnum):
    TRADES = 1
    TICKERS = 2
    FUNDING = 3
    OHLCV = 4
    CAPTURE_EVENTS = 5
    CAPTURE_STATS = 6


# The four market streams a user subscribes to, then the two the capture job writes about itself.
MARKET_STREAMS: tuple[str, ...] = ("trades", "tickers", "funding", "ohlcv")
STREAMS: dict[str, np.dtype] = {
    "trades": TRADES,
    "tickers": TICKERS,
    "funding": FUNDING,
    "ohlcv": OHLCV,
    "capture_events": CAPTURE_EVENTS,
    "capture_stats": CAPTURE_STATS,
}
STREAM_CODES: dict[str, StreamCode] = {name: StreamCode[name.upper()] for name in STREAMS}
STREAM_NAMES: dict[int, str] = {int(code): name for name, code in STREAM_CODES.items()}

# Streams whose rows are about one instrument get `exchange` and `symbol` columns when landed.
INSTRUMENT_STREAMS: tuple[str, ...] = ("trades", "tickers", "funding", "ohlcv", "capture_events")


def dtype_of(stream: str) -> np.dtype:
    """The record dtype of a stream; a clear error for an unknown name."""
    try:
        return STREAMS[stream]
    except KeyError:
        raise ValueError(f"stream: unknown stream {stream!r}; expected one of {sorted(STREAMS)}") from None


def empty(stream: str, n: int = 0) -> np.ndarray:
    """A zeroed record array of a stream, with float fields set to NaN (missing, not zero)."""
    out = np.zeros(n, dtype=dtype_of(stream))
    for name, (field_dtype, _) in out.dtype.fields.items():
        if field_dtype.kind == "f":
            out[name] = np.nan
    return out


def public_fields(stream: str) -> list[str]:
    """Column names of a stream without the alignment padding."""
    return [name for name in dtype_of(stream).names if not name.startswith("_")]


def _arrow_type(field_dtype: np.dtype) -> pa.DataType:
    if field_dtype.kind == "S":
        return pa.string()
    return pa.from_numpy_dtype(field_dtype)


def arrow_schema(stream: str) -> pa.Schema:
    """The Arrow/Parquet schema of a landed stream file: the record fields, plus names for instruments."""
    dtype = dtype_of(stream)
    fields = [pa.field(name, _arrow_type(dtype.fields[name][0])) for name in public_fields(stream)]
    if stream in INSTRUMENT_STREAMS:
        fields += [pa.field("exchange", pa.string()), pa.field("symbol", pa.string())]
    return pa.schema(fields)


def to_arrow(
    stream: str,
    records: np.ndarray,
    names: dict[int, tuple[str, str]] | None = None,
    *,
    dictionary_strings: bool = False,
) -> pa.Table:
    """Records of a stream -> an Arrow table in the stream's landing schema.

    `names` maps instrument_id -> (exchange, symbol); it is required for instrument streams so that a
    landed file is self-describing. An id missing from it is a bug upstream and raises.

    `dictionary_strings=True` leaves `exchange`/`symbol` as `dictionary<int32, string>` arrays indexed by the
    instrument ids instead of casting them to plain strings: the same values without a string copy per row,
    and the Parquet writer stores the dictionary as it is instead of hashing every row's string again
    (`landing.write_parquet_atomic` lands them as the same string columns). The writers of large batches
    (the capture flusher) use it; the default keeps the schema exactly `arrow_schema(stream)`.
    """
    schema = arrow_schema(stream)
    columns: list[pa.Array] = []
    for name in public_fields(stream):
        column = records[name]
        if column.dtype.kind == "S":
            columns.append(pa.array(np.char.decode(column, "ascii"), type=pa.string()))
        else:
            columns.append(pa.array(column))
    if stream in INSTRUMENT_STREAMS:
        if names is None:
            raise ValueError(f"to_arrow: stream {stream!r} needs instrument names")
        exchanges, symbols = _instrument_columns(records["instrument_id"], names)
        if not dictionary_strings:
            exchanges, symbols = exchanges.cast(pa.string()), symbols.cast(pa.string())
        else:
            schema = schema.set(schema.get_field_index("exchange"), pa.field("exchange", exchanges.type))
            schema = schema.set(schema.get_field_index("symbol"), pa.field("symbol", symbols.type))
        columns += [exchanges, symbols]
    return pa.Table.from_arrays(columns, schema=schema)


# Ids up to this bound index lookup tables directly; registry ids are dense from 0, so this is the norm.
_DENSE_IDS = 1 << 20


def _instrument_columns(ids: np.ndarray, names: dict[int, tuple[str, str]]) -> tuple[pa.Array, pa.Array]:
    """`exchange` and `symbol` as dictionary arrays: one Python step per distinct id, not per row.

    Each dictionary holds distinct values only (several ids share a venue, and the same symbol is listed on
    several venues): the Parquet writer stores a dictionary with repeated values as plain strings, row by row.
    """
    # One contiguous copy: the passes below over a strided field of a record array each cost several times more.
    ids = np.ascontiguousarray(ids, dtype=np.int32)
    if len(ids) and int(ids.min()) >= -1 and int(ids.max()) < _DENSE_IDS:
        # Dense ids need no sort: the id itself is the position in the lookup tables.
        keys = np.flatnonzero(np.bincount(ids + 1)[1:])
        slots, positions, size = keys, ids, int(keys[-1]) + 1 if len(keys) else 1
    else:
        keys, positions = np.unique(ids, return_inverse=True)
        slots, size = np.arange(len(keys)), max(len(keys), 1)
    exchange_lut = np.zeros(size, np.int32)
    symbol_lut = np.zeros(size, np.int32)
    exchanges: dict[str, int] = {}
    symbols: dict[str, int] = {}
    for slot, instrument_id in zip(slots.tolist(), keys.tolist(), strict=True):
        if instrument_id == -1:
            continue  # not about one instrument: null, masked below
        if instrument_id not in names:
            raise KeyError(f"instrument_id: {instrument_id} is not in the registry")
        exchange, symbol = names[instrument_id]
        exchange_lut[slot] = exchanges.setdefault(exchange, len(exchanges))
        symbol_lut[slot] = symbols.setdefault(symbol, len(symbols))
    missing = ids == -1
    mask = missing if missing.any() else None
    # -1 ids index the tables' last entry (numpy wraps); those rows are masked to null.
    exchange_col = pa.DictionaryArray.from_arrays(
        pa.array(exchange_lut[positions], mask=mask), pa.array(list(exchanges), pa.string())
    )
    symbol_col = pa.DictionaryArray.from_arrays(
        pa.array(symbol_lut[positions], mask=mask), pa.array(list(symbols), pa.string())
    )
    return exchange_col, symbol_col


def from_arrow(stream: str, table: pa.Table) -> np.ndarray:
    """A landed Arrow table -> records of the stream (the `exchange`/`symbol` columns are dropped)."""
    out = empty(stream, table.num_rows)
    for name in public_fields(stream):
        values = table.column(name).to_numpy(zero_copy_only=False)
        out[name] = np.char.encode(values.astype(str), "ascii") if out.dtype[name].kind == "S" else values
    return out
