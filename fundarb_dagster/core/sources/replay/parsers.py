"""Recorded files -> `schema` records: one parser, one set of validation rules, shared with the importer.

`parse_file` reads a file of any kind in `formats.KINDS` in chunks; every row that breaks a rule is
quarantined with its line, the field and the value as written (`Reject`), never raising for a bad row.
"""

from __future__ import annotations

import math
import re
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ... import schema
from ...funding import intervals_in_force
from .formats import (
    _COLUMNS,
    FUNDING_TABLE_ALIASES,
    KIND_STREAMS,
    KINDS,
    _first_line,
    _is_number,
    _open_text,
    _stem,
    _timeframe_from_name,
    canonical_to_unified,
    csv_body,
    detect_kind,
    first_line,
    symbol_hint,
    to_epoch_ms,
)

_MIN_TS_MS = 1_230_768_000_000  # 2009-01-01: nothing crypto is older
_MAX_TS_MS = 4_102_444_800_000  # 2100-01-01
CHUNK_ROWS = 1_000_000


@dataclass(frozen=True)
class Reject:
    """One quarantined row: where it was, which field, the value as written and why."""

    line: int  # 1-based line in the file (header included), 0 when unknown
    field: str
    value: str  # as written for text; a column pandas read as numbers shows the number ("-1.0")
    reason: str  # e.g. "price: '-1.0' must be > 0"


@dataclass
class ParsedFile:
    """One recorded file as schema records, per instrument key, plus what was quarantined."""

    path: Path
    kind: str
    stream: str  # trades | ohlcv | funding | mark (mark: OHLCV records of mark prices)
    # (exchange or None, unified symbol or None) -> records; None means "the caller's", e.g. a single-
    # instrument file whose name does not say its symbol. A file read with others (`parse_files`) holds an
    # Arrow table of the same fields instead (`schema.columns_table`: sorted, unique, nothing left to fill).
    parts: dict[tuple[str | None, str | None], np.ndarray | pa.Table]
    rows: int = 0  # data rows read (header excluded)
    rejects: list[Reject] = field(default_factory=list)
    reject_counts: Counter[str] = field(default_factory=Counter)  # "field: rule" -> count
    duplicates: int = 0
    timeframe_s: int = 0  # for candles
    symbol_hint: str | None = None  # unified symbol or venue id the file name suggests
    market_type: str | None = None  # "spot" | "swap" when the path says
    inferred_intervals: set[tuple[str | None, str | None]] = field(default_factory=set)  # parts filled by spacing
    # A file read with others: its times (and funding's settlement times and intervals) as numpy views of the run's
    # columns, the values of its Arrow table's: read per file without a call into Arrow, which releases the GIL and
    # then waits for it while writer threads hold it (an import reads them of thousands of files).
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def good(self) -> int:
        return int(sum(len(r) for r in self.parts.values()))

    @property
    def quarantined(self) -> int:
        return int(sum(self.reject_counts.values()))


_MAX_REJECT_SAMPLES = 1000


class _Quarantine:
    """Collects rejects: all counted, the first thousand kept with line, field and value."""

    def __init__(self) -> None:
        self.samples: list[Reject] = []
        self.counts: Counter[str] = Counter()

    def add(self, rule: str, fieldname: str, lines: np.ndarray, values: Iterable[Any], template: str) -> None:
        lines = np.asarray(lines)
        if len(lines) == 0:
            return
        self.counts[f"{fieldname}: {rule}"] += len(lines)
        room = _MAX_REJECT_SAMPLES - len(self.samples)
        for line, value in zip(lines[: max(room, 0)].tolist(), values, strict=False):
            shown = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
            self.samples.append(Reject(int(line), fieldname, shown, f"{fieldname}: {shown!r} {template}"))


def _parquet_chunks(path: Path, columns: list[str]) -> Iterator[pd.DataFrame]:
    """A Parquet file's rows as the chunks `_read_chunks` yields for the same rows written as CSV with a header:
    columns named by position, timestamps as epoch milliseconds (what the CSV shapes carry), row `i` numbered
    as line `i + 2`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    offset = 2
    for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS):
        arrays = [
            column.cast(pa.timestamp("ms", column.type.tz), safe=False).cast(pa.int64())
            if pa.types.is_timestamp(column.type)
            else column
            for column in batch.columns
        ]
        chunk = pa.Table.from_arrays(arrays[: len(columns)], names=columns[: len(arrays)]).to_pandas()
        chunk.index = np.arange(offset, offset + len(chunk))
        offset += len(chunk)
        yield chunk


def _read_chunks(path: Path, columns: list[str], header: bool, quarantine: _Quarantine) -> Iterator[pd.DataFrame]:
    """CSV chunks; rows with too many fields are quarantined, never dropped silently.

    pandas infers each column's type per chunk (the fast path: int64, float64, bool); a column holding a bad
    value stays text, and the helpers below then parse it value by value to name what was wrong. A Parquet
    file is read in batches of the same size, its columns taken by position as a CSV's.
    """
    if path.suffix.lower() == ".parquet":
        yield from _parquet_chunks(path, columns)
        return
    with _open_text(path) as handle:
        reader = pd.read_csv(
            handle,
            header=0 if header else None,
            names=columns,
            chunksize=CHUNK_ROWS,
            engine="c",
            on_bad_lines="warn",
            low_memory=False,
            index_col=False,
            keep_default_na=False,  # only blanks are missing: "n/a" or "null" stays text and is named when rejected
            na_values=[""],
        )
        offset = 2 if header else 1
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for chunk in reader:
                chunk.index = np.arange(offset, offset + len(chunk))
                offset += len(chunk)
                yield chunk
        for warning in caught:
            for match in re.finditer(r"Skipping line (\d+): expected (\d+) fields, saw (\d+)", str(warning.message)):
                line, expected, saw = (int(g) for g in match.groups())
                quarantine.add(
                    "field count",
                    "columns",
                    np.array([line]),
                    [saw],
                    f"fields on the line, expected {expected}",
                )


def _numeric(chunk: pd.DataFrame, column: str) -> np.ndarray:
    col = chunk[column]
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _is_text(chunk: pd.DataFrame, column: str) -> bool:
    return not pd.api.types.is_numeric_dtype(chunk[column].dtype)


def _integers(chunk: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values, ok mask): exact integers (no float round-trip, µs/ns stay exact)."""
    col = chunk[column]
    if pd.api.types.is_integer_dtype(col.dtype):
        return col.to_numpy(dtype=np.int64), np.ones(len(col), dtype=bool)
    if pd.api.types.is_float_dtype(col.dtype):  # integral floats ("1570752011620.0") or blanks
        as_float = col.to_numpy(dtype=np.float64, na_value=np.nan)
        ok = np.isfinite(as_float) & (np.abs(np.nan_to_num(as_float)) < 2**62)
        ok &= np.floor(np.where(ok, as_float, 0)) == np.where(ok, as_float, 0)
        return np.where(ok, as_float, 0).astype(np.int64), ok
    text = col.astype(str).str.strip()
    ok = np.array(text.str.fullmatch(r"-?\d+").to_numpy(dtype=bool, na_value=False))  # writable copy
    values = np.zeros(len(text), dtype=np.int64)
    if ok.any():
        values[ok] = text[ok].astype(np.int64).to_numpy()
    # Accept integral floats too ("1570752011620.0"): some tools write them.
    loose = ~ok
    if loose.any():
        as_float = pd.to_numeric(text[loose], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        integral = np.isfinite(as_float) & (np.abs(as_float) < 2**62)
        integral &= np.floor(np.where(integral, as_float, 0)) == np.where(integral, as_float, 0)
        idx = np.flatnonzero(loose)[integral]
        values[idx] = as_float[integral].astype(np.int64)
        ok[idx] = True
    return values, ok


def _booleans(chunk: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    if pd.api.types.is_bool_dtype(chunk[column].dtype):
        values = chunk[column].to_numpy(dtype=bool)
        return values, np.ones(len(values), dtype=bool)
    text = chunk[column].astype(str).str.strip().str.lower()
    true = text.isin(("true", "1")).to_numpy()
    false = text.isin(("false", "0")).to_numpy()
    return true, true | false


class _Rows:
    """Validation of one chunk: every failed rule quarantines its rows with the field and value named."""

    def __init__(self, chunk: pd.DataFrame, quarantine: _Quarantine) -> None:
        self.chunk = chunk
        self.lines = chunk.index.to_numpy()
        self.ok = np.ones(len(chunk), dtype=bool)
        self.quarantine = quarantine

    def reject(self, bad: np.ndarray, fieldname: str, column: str | None, rule: str, template: str) -> None:
        newly = bad & self.ok  # one reason per row: the first rule it failed
        if newly.any():
            values = self.chunk[column].to_numpy()[newly] if column else np.full(int(newly.sum()), "")
            self.quarantine.add(rule, fieldname, self.lines[newly], values, template)
            self.ok &= ~newly

    def timestamps(self, column: str, fieldname: str = "ts_ms") -> np.ndarray:
        raw, parsed = _integers(self.chunk, column)
        self.reject(~parsed, fieldname, column, "not an integer", "is not an epoch timestamp")
        ms = to_epoch_ms(np.where(parsed, raw, 0))
        self.reject((ms < _MIN_TS_MS) | (ms > _MAX_TS_MS), fieldname, column, "out of range", "is not 2009..2100")
        return ms

    def number(self, column: str, fieldname: str, *, positive: bool = False, optional: bool = False) -> np.ndarray:
        values = _numeric(self.chunk, column)
        missing = np.isnan(values)
        if optional:  # blank is fine, text that is not a number is not
            if _is_text(self.chunk, column):
                blank = self.chunk[column].isna() | self.chunk[column].astype(str).str.strip().eq("")
                self.reject(missing & ~blank.to_numpy(), fieldname, column, "not a number", "is not a number")
        else:
            self.reject(missing, fieldname, column, "not a number", "is not a number")
        self.reject(np.isinf(values), fieldname, column, "not finite", "is not finite")
        if positive:
            self.reject(~missing & (values <= 0), fieldname, column, "<= 0", "must be > 0")
        return values


# One chunk's values of a stream's record fields, by field name: an array per row or one value for all rows.
Columns = dict[str, Any]


def _candles(
    rows: _Rows,
    ts: np.ndarray,
    tf_s: int,
    volume_optional: bool,
    volume_column: str = "volume",
    extra: dict[str, str] | None = None,
) -> Columns:
    o = rows.number("open", "open", positive=True)
    h = rows.number("high", "high", positive=True)
    low = rows.number("low", "low", positive=True)
    c = rows.number("close", "close", positive=True)
    v = rows.number(volume_column, "volume", optional=volume_optional)
    with np.errstate(invalid="ignore"):
        rows.reject(h < np.fmax(np.fmax(o, c), low), "high", "high", "below open/close/low", "is below open/close/low")
        rows.reject(low > np.fmin(o, c), "low", "low", "above open/close", "is above open or close")
        rows.reject(v < 0, "volume", "volume", "< 0", "must be >= 0")
    out: Columns = {"ts_ms": ts, "recv_ts_ms": ts + tf_s * 1000, "timeframe_s": tf_s}
    out.update(open=o, high=h, low=low, close=c, volume=v)
    for name, column in (extra or {}).items():  # what else the file carries: quote volume, count, taker buys
        if column not in rows.chunk:  # a shorter file (or one of another kind read as klines): unknown
            continue
        values = rows.number(column, name, optional=True)
        with np.errstate(invalid="ignore"):
            rows.reject(values < 0, name, column, "< 0", "must be >= 0")
        out[name] = values
    return out


# Binance klines' other columns -> OHLCV fields. COIN-M files count contracts in volume/taker_buy_volume and
# base units in quote_volume/taker_buy_quote_volume: the base columns are read, and quote_volume takes the
# contract count, which the importer multiplies by the contract size (USD per contract).
_KLINE_EXTRA = {"quote_volume": "quote_volume", "trade_count": "count", "taker_buy_volume": "taker_buy_volume"}
_INVERSE_KLINE_EXTRA = {"quote_volume": "volume", "trade_count": "count", "taker_buy_volume": "taker_buy_quote_volume"}


def _trades(
    rows: _Rows,
    ts: np.ndarray,
    ids: np.ndarray,
    side: np.ndarray,
    price: np.ndarray,
    amount: np.ndarray,
    cost: np.ndarray | None = None,
) -> Columns:
    out: Columns = {"ts_ms": ts, "recv_ts_ms": ts, "trade_id": ids, "side": side, "price": price, "amount": amount}
    if cost is not None:
        out["cost"] = cost
    return out


def _funding(rows: _Rows, ts: np.ndarray, rate: np.ndarray, interval_h: np.ndarray, mark: np.ndarray) -> Columns:
    with np.errstate(invalid="ignore"):
        rows.reject(np.abs(rate) >= 1, "funding_rate", None, ">= 1", "is not a fraction per interval (|rate| >= 1)")
    out: Columns = {"ts_ms": ts, "recv_ts_ms": ts, "funding_ts_ms": ts, "is_settled": 1}
    out.update(funding_rate=rate, interval_h=interval_h, mark_price=mark)
    return out


def _records(stream: str, columns: Columns, ok: np.ndarray) -> np.ndarray:
    """A chunk's validated columns -> the stream's records, of its rows that broke no rule."""
    out = schema.empty(stream, len(ok))
    for name, values in columns.items():
        out[name] = values
    return out[ok]


def _parse_chunk(
    kind: str, chunk: pd.DataFrame, quarantine: _Quarantine, tf_s: int, inverse: bool = False
) -> dict[Any, np.ndarray]:
    """One chunk of a file -> {instrument key: records} (the key is None for single-instrument files)."""
    if kind != "funding_table":
        rows, columns = _chunk_columns(kind, chunk, quarantine, tf_s, inverse)
        stream = "ohlcv" if KIND_STREAMS[kind] == "mark" else KIND_STREAMS[kind]
        return {(None, None): _records(stream, columns, rows.ok)}
    rows = _Rows(chunk, quarantine)
    ts = rows.timestamps("settlement_time_ms_utc", "funding_ts_ms")
    rate = rows.number("funding_rate", "funding_rate")
    interval = rows.number("interval_hours", "interval_h", positive=True, optional=True)
    mark = rows.number("mark_price", "mark_price", positive=True, optional=True)
    predicted = chunk["is_predicted"].astype(str).str.strip().str.lower().eq("true").to_numpy()
    venue = chunk["venue"].astype(str).str.strip().str.lower().to_numpy()
    canonical = chunk["canonical_symbol"].astype(str).str.strip().to_numpy()
    out = schema.empty("funding", len(ts))
    with np.errstate(invalid="ignore"):
        rows.reject(np.abs(rate) >= 1, "funding_rate", "funding_rate", ">= 1", "is not a fraction (|rate| >= 1)")
    out["ts_ms"], out["recv_ts_ms"], out["funding_ts_ms"] = ts, ts, ts
    out["is_settled"] = np.where(predicted, 0, 1)
    out["funding_rate"], out["interval_h"], out["mark_price"] = rate, interval, mark
    parts: dict[Any, np.ndarray] = {}
    keys = pd.Series(venue).str.cat(pd.Series(canonical), sep="|").to_numpy()
    for key in pd.unique(keys[rows.ok]):
        exchange, canon = str(key).split("|", 1)
        parts[(exchange, canonical_to_unified(canon))] = out[rows.ok & (keys == key)]
    return parts


def _chunk_columns(
    kind: str, chunk: pd.DataFrame, quarantine: _Quarantine, tf_s: int, inverse: bool = False
) -> tuple[_Rows, Columns]:
    """One chunk of a single-instrument file -> its validated columns (every row; `rows.ok` says which broke
    no rule, the quarantine has why)."""
    rows = _Rows(chunk, quarantine)
    if kind in ("klines", "markPriceKlines"):
        ts = rows.timestamps("open_time")
        # COIN-M klines count contracts in `volume`; their 8th column is the base-asset volume
        column = "quote_volume" if inverse and kind == "klines" else "volume"
        extra = None if kind == "markPriceKlines" else (_INVERSE_KLINE_EXTRA if inverse else _KLINE_EXTRA)
        return rows, _candles(rows, ts, tf_s, kind == "markPriceKlines", volume_column=column, extra=extra)
    if kind in ("fixture_ohlcv", "fixture_mark"):
        ts = rows.timestamps("time_ms_utc")
        return rows, _candles(rows, ts, tf_s, volume_optional=kind == "fixture_mark")
    if kind in ("trades", "aggTrades"):
        id_col, time_col, qty_col = (
            ("id", "time", "qty") if kind == "trades" else ("agg_trade_id", "transact_time", "quantity")
        )
        ts = rows.timestamps(time_col)
        ids, ok = _integers(chunk, id_col)
        rows.reject(~ok, "trade_id", id_col, "not an integer", "is not an integer id")
        price = rows.number("price", "price", positive=True)
        amount = rows.number(qty_col, "amount", positive=True)
        maker, ok = _booleans(chunk, "is_buyer_maker")
        rows.reject(~ok, "side", "is_buyer_maker", "not a boolean", "is not true/false")
        side = np.where(maker, -1, 1).astype(np.int8)  # buyer is maker -> the taker sold
        # trades' 4th column: quote_qty (spot, USD-M); COIN-M's is base_qty (its cost comes from the contracts)
        cost = rows.number("quote_qty", "cost", optional=True) if kind == "trades" and not inverse else None
        return rows, _trades(rows, ts, ids, side, price, amount, cost)
    if kind == "fixture_trades":
        ts = rows.timestamps("time_ms_utc")
        ids, ok = _integers(chunk, "trade_id")
        rows.reject(~ok, "trade_id", "trade_id", "not an integer", "is not an integer id")
        price = rows.number("price", "price", positive=True)
        amount = rows.number("amount_base", "amount", positive=True)
        text = chunk["side_taker"].astype(str).str.strip().str.lower()
        side = np.select([text.eq("buy").to_numpy(), text.eq("sell").to_numpy()], [1, -1], 0).astype(np.int8)
        rows.reject(~text.isin(("buy", "sell", "")).to_numpy(), "side", "side_taker", "not buy/sell", "is not buy/sell")
        cost = rows.number("cost_quote", "cost", optional=True) if "cost_quote" in chunk else None
        return rows, _trades(rows, ts, ids, side, price, amount, cost)
    if kind == "bookTicker":
        ts = rows.timestamps("transaction_time")
        bid = rows.number("best_bid_price", "bid", positive=True)
        ask = rows.number("best_ask_price", "ask", positive=True)
        bid_size = rows.number("best_bid_qty", "bid_size")
        ask_size = rows.number("best_ask_qty", "ask_size")
        with np.errstate(invalid="ignore"):
            rows.reject(ask < bid, "ask", "best_ask_price", "below bid", "is below the bid (crossed book)")
            rows.reject((bid_size < 0) | (ask_size < 0), "size", "best_bid_qty", "< 0", "must be >= 0")
        return rows, {"ts_ms": ts, "recv_ts_ms": ts, "bid": bid, "ask": ask, "bid_size": bid_size, "ask_size": ask_size}
    if kind == "fundingRate":
        ts = rows.timestamps("calc_time", "funding_ts_ms")
        interval = rows.number("funding_interval_hours", "interval_h", positive=True, optional=True)
        rate = rows.number("last_funding_rate", "funding_rate")
        return rows, _funding(rows, ts, rate, interval, np.full(len(ts), np.nan))
    if kind == "fixture_funding":
        ts = rows.timestamps("time_ms_utc", "funding_ts_ms")
        rate = rows.number("funding_rate", "funding_rate")
        return rows, _funding(rows, ts, rate, np.full(len(ts), np.nan), np.full(len(ts), np.nan))
    raise ValueError(f"kind: unknown kind {kind!r}; expected one of {list(KINDS)}")


def parse_file(
    path: str | Path,
    kind: str | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    inverse: bool = False,
) -> ParsedFile:
    """Read one recorded file into schema records, quarantining bad rows (never raising for a bad row).

    Raises ValueError only for a file it cannot read at all (unknown kind, a zip with several CSVs).
    Funding rows without an interval get one inferred from consecutive settlement times. Amounts are as the
    file counts them (contracts for Binance's futures archives); `inverse` (a COIN-M file) takes the candles'
    base-asset volume column instead of their contract count.
    """
    path = Path(path)
    kind = kind or detect_kind(path)
    if kind not in KIND_STREAMS:
        raise ValueError(f"kind: unknown kind {kind!r}; expected one of {list(KINDS)}")
    first = _first_line(path)
    header = bool(first) and not _is_number(first.split(",")[0].strip())
    columns = _COLUMNS.get(kind)
    if columns is None:  # fixture shapes always carry their header
        columns = [c.strip().lower() for c in first.split(",")]
        if kind == "funding_table":
            columns = [FUNDING_TABLE_ALIASES.get(c, c) for c in columns]
    elif header:
        # Binance headers name the same columns; read by position so header spelling does not matter.
        columns = columns[: len(first.split(","))]
    elif kind in ("trades", "aggTrades"):
        columns = columns[: len(first.split(","))]
    tf_s = _timeframe_from_name(_stem(path)) if KIND_STREAMS[kind] in ("ohlcv", "mark") else 0
    quarantine = _Quarantine()
    collected: dict[Any, list[np.ndarray]] = {}
    rows = 0
    for chunk in _read_chunks(path, columns, header, quarantine):
        if KIND_STREAMS[kind] in ("ohlcv", "mark") and not tf_s:
            tf_s = _infer_timeframe(chunk, kind)
        rows += len(chunk)
        for key, records in _parse_chunk(kind, chunk, quarantine, tf_s, inverse).items():
            collected.setdefault(key, []).append(records)
        if progress is not None and rows >= CHUNK_ROWS:
            progress(f"{path.name}: {rows:,} rows read")
    return _finish(path, kind, collected, rows, tf_s, quarantine)


def _finish(
    path: Path, kind: str, collected: dict[Any, list[np.ndarray]], rows: int, tf_s: int, quarantine: _Quarantine
) -> ParsedFile:
    """A file's validated records -> its ParsedFile: sorted, deduplicated, funding intervals filled."""
    hint, market_type = symbol_hint(path, kind)
    parsed = ParsedFile(path=path, kind=kind, stream=KIND_STREAMS[kind], parts={}, rows=rows, timeframe_s=tf_s)
    parsed.symbol_hint, parsed.market_type = hint, market_type
    dtype = schema.OHLCV if parsed.stream == "mark" else schema.dtype_of(parsed.stream)
    for key, pieces in collected.items():
        # one piece: its records as they are, not a copy
        joined = np.concatenate(pieces) if len(pieces) > 1 else np.zeros(0, dtype=dtype)
        records = pieces[0] if len(pieces) == 1 else joined
        records, dupes = _sort_dedupe(parsed.stream, records)
        parsed.duplicates += dupes
        if parsed.stream == "funding" and fill_intervals(records):
            parsed.inferred_intervals.add(key)
        parsed.parts[key] = records
    parsed.rejects, parsed.reject_counts = quarantine.samples, quarantine.counts
    parsed.rejects.sort(key=lambda r: r.line)
    return parsed


# Kinds whose many small archive files (a month of 8-hourly funding is 90 rows) are read together.
_BULK_KINDS = frozenset({"fundingRate", "klines", "markPriceKlines", "bookTicker", "aggTrades", "trades"})
BULK_MAX_BYTES = 64 << 20  # larger files go through parse_file's chunks
_BULK_JOIN_BYTES = 256 << 20  # files read as one buffer at most about this much at a time


def parse_files(
    paths: Sequence[Path],
    kind: str | None = None,
    *,
    inverse: Sequence[bool] | None = None,
    progress: Callable[[str], None] | None = None,
    kinds: Sequence[str | None] | None = None,
    contents: Sequence[bytes | None] | None = None,
) -> list[ParsedFile | Exception]:
    """Many files at once, each exactly as `parse_file` would parse it (same rules, same rows).

    Small plain Binance archives (.csv or .zip) of one kind and shape are read together: their data lines
    joined into one buffer that pyarrow's CSV reader parses on every core, validated as one frame by the same
    rules (`_chunk_columns`) and split back per file by each file's count of lines, each file's rows an Arrow
    table (a slice of the run's columns, see `_parse_joined`) instead of records. Per file that costs reading
    its bytes, not a reader and a validation pass (~15 ms a file, which bounded imports of monthly funding
    files at ~10 k rows/s). A file with a rejected row (or rows to sort, drop or fill), a run with a value the
    joined read cannot type, and any file that is not small and plain, go through `parse_file` on their own,
    which names every reject's line. Returns, per path, its ParsedFile or the exception `parse_file` raised
    for it. `kinds`: each file's kind when the caller told it already (None: `kind`, else detected).
    `contents`: each file's bytes when the caller read them already (an import hashes them), None: read here.
    """
    paths = [p if isinstance(p, Path) else Path(p) for p in paths]
    flags = list(inverse) if inverse is not None else [False] * len(paths)
    told = [k or kind for k in kinds] if kinds is not None else [kind] * len(paths)
    raw = list(contents) if contents is not None else [None] * len(paths)
    out: list[ParsedFile | Exception | None] = [None] * len(paths)
    # one file not read yet: read in chunks, with progress
    paths_to_read = paths if len(paths) > 1 or (paths and raw[0] is not None) else []
    groups: dict[tuple[str, bool, tuple[str, ...], int], list[tuple[int, bool]]] = {}  # -> (file, header)
    for i, path in enumerate(paths_to_read):
        try:
            file_kind = told[i] or detect_kind(path, raw[i])
            columns = _COLUMNS.get(file_kind)
            if file_kind not in _BULK_KINDS or columns is None or path.suffix.lower() not in (".csv", ".zip"):
                continue
            if (path.stat().st_size if raw[i] is None else len(raw[i])) > BULK_MAX_BYTES:
                continue
            first = first_line(path, raw[i])
            header = bool(first) and not _is_number(first.split(",")[0].strip())
            width = len(first.split(","))
            # as parse_file names them: a header or a trades file says how many columns there are
            names = columns[:width] if header or file_kind in ("trades", "aggTrades") else columns
            stream = KIND_STREAMS[file_kind]
            tf_s = _timeframe_from_name(_stem(path)) if stream in ("ohlcv", "mark") else 0
            if stream in ("ohlcv", "mark") and not tf_s:
                continue
        except (ValueError, OSError, UnicodeDecodeError, zipfile.BadZipFile):
            continue  # parse_file says what is wrong with it
        groups.setdefault((file_kind, flags[i], tuple(names), tf_s), []).append((i, header))
    for (file_kind, is_inverse, names, tf_s), group in groups.items():
        for members in _bodies(paths, group, raw):
            _parse_joined(paths, out, members, file_kind, is_inverse, list(names), tf_s)
    for i, path in enumerate(paths):
        if out[i] is None:
            try:
                out[i] = parse_file(path, told[i], inverse=flags[i], progress=progress)
            except Exception as exc:  # noqa: BLE001 - handed back per file, as parse_file raised it
                out[i] = exc
    return [item for item in out if item is not None]


def _bodies(
    paths: list[Path], group: list[tuple[int, bool]], raw: list[bytes | None]
) -> Iterator[list[tuple[int, bytes]]]:
    """A group's files' data lines (`csv_body`, of the bytes read already where `raw` has them), in runs of about
    `_BULK_JOIN_BYTES`: memory stays bounded by the run, not the import. An empty, unusual or unreadable file is
    left out (parse_file says why)."""
    run: list[tuple[int, bytes]] = []
    size = 0
    for i, header in group:
        try:
            body = csv_body(paths[i], header, raw[i])
            raw[i] = None  # its body is all that is kept
        except (ValueError, OSError, zipfile.BadZipFile):
            continue
        if not body:
            continue
        run.append((i, body))
        size += len(body)
        if size >= _BULK_JOIN_BYTES:
            yield run
            run, size = [], 0
    if run:
        yield run


def _parse_joined(
    paths: list[Path],
    out: list[ParsedFile | Exception | None],
    members: list[tuple[int, bytes]],
    file_kind: str,
    is_inverse: bool,
    names: list[str],
    tf_s: int,
) -> None:
    """Files of one kind and shape read and validated as one frame, each file's ParsedFile set in `out`, its
    rows an Arrow table (a slice of the frame's columns: no row is copied as a record). None is set when the
    frame cannot be read as one (each file is then parsed on its own), nor for a file with a rejected row (its
    lines are named by `parse_file`), nor for one whose rows need more than reading (sorting, duplicates,
    intervals to infer: `parse_file` does that)."""
    counts = [_lines(body) for _, body in members]
    frame = _read_joined([body for _, body in members], names, sum(counts), file_kind, is_inverse)
    if frame is None:
        # A blank line (pyarrow skips it: fewer rows than newlines) is looked for only then (a pass over every
        # body costs as much as counting its lines): such files go on their own, the others are read together.
        plain = [(i, body) for i, body in members if b"\n\n" not in body]
        if 0 < len(plain) < len(members):
            _parse_joined(paths, out, plain, file_kind, is_inverse, names, tf_s)
        return
    quarantine = _Quarantine()
    rows, columns = _chunk_columns(file_kind, frame, quarantine, tf_s, is_inverse)
    if quarantine.counts and any(_is_text(frame, column) for column in frame.columns):
        return  # a value pyarrow could not type: the values are not all pyarrow's, each file on its own
    stream = KIND_STREAMS[file_kind]
    table = schema.columns_table("ohlcv" if stream == "mark" else stream, columns, len(frame))
    bounds = np.cumsum([0, *counts])
    lo, hi = bounds[:-1], bounds[1:]
    # Per file, counted over the run at once (a slice and a test per file cost more than a month of its rows):
    # a row that broke a rule (parse_file names its line; the others' rows are row by row the same), rows out of
    # order or a duplicate inside the file (parse_file sorts and drops: each row before the next, as it keeps),
    # an interval to infer from the settlements' spacing (parse_file does it).
    alone = _per_file(~rows.ok, lo, hi) + _per_file(~_ordered(stream, columns), lo, np.maximum(hi - 1, lo))
    if "interval_h" in columns:
        alone += _per_file(np.isnan(columns["interval_h"]), lo, hi)
    for (i, _), start, end, skip in zip(members, lo.tolist(), hi.tolist(), (alone > 0).tolist(), strict=True):
        if skip:
            continue
        hint, market_type = symbol_hint(paths[i], file_kind)
        out[i] = ParsedFile(
            path=paths[i],
            kind=file_kind,
            stream=stream,
            parts={(None, None): table.slice(start, end - start)},
            rows=end - start,
            timeframe_s=tf_s,
            symbol_hint=hint,
            market_type=market_type,
            arrays={name: columns[name][start:end] for name in _VIEWED if np.ndim(columns.get(name)) == 1},
        )


_VIEWED = ("ts_ms", "funding_ts_ms", "interval_h")  # the columns `ParsedFile.arrays` holds


def _lines(body: bytes) -> int:
    """A body's newlines: numpy's vectorized compare on a large one (a month of 1m klines: ~2x bytes.count's
    speed), bytes.count on a small one (numpy's own cost per call is more than a month of 8-hourly funding)."""
    if len(body) < 1 << 16:
        return body.count(b"\n")
    return int(np.count_nonzero(np.frombuffer(body, np.uint8) == 10))


def _per_file(flags: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How many of `flags` are set in each [lo, hi) of a run."""
    total = np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])
    return total[hi] - total[lo]


def _ordered(stream: str, columns: Columns) -> np.ndarray:
    """Per row but the last: whether it and the next are as `_sort_dedupe` leaves them untouched (trades: ids
    rising, times not falling; quotes: times not falling; else times rising)."""
    ts = columns["ts_ms"]
    if stream == "trades":
        ids = columns["trade_id"]
        return (ids[1:] > ids[:-1]) & (ts[1:] >= ts[:-1])
    if stream == "tickers":
        return ts[1:] >= ts[:-1]
    return ts[1:] > ts[:-1]


# Archive columns no rule reads (a run read together knows its timeframe from the names, so close_time is not
# needed either): pyarrow still splits them, but does not convert them (~15% of a klines run's parse).
_UNREAD = frozenset(
    {"ignore", "close_time", "is_best_match", "first_trade_id", "last_trade_id", "update_id", "event_time"}
)


# The archive columns' types, told to pyarrow's CSV reader instead of inferred: inference tries each column as
# several types before converting, the told type converts once (a 229 MB run of 1m klines: 1.13-1.78 -> 0.84-0.87
# CPU s, measured 2026-12-07 at load ~5). Times and ids int64 (exact: no float round-trip), quantities float64, as
# the rules read them (`_integers`, `_numeric`). A value that does not convert fails the joined read, which then
# reads each file alone (`parse_file` names the value), as a value not of the inferred type did.
_JOINED_TYPES: dict[str, pa.DataType] = {
    **dict.fromkeys(
        ("open_time", "calc_time", "id", "time", "agg_trade_id", "transact_time", "transaction_time"), pa.int64()
    ),
    **dict.fromkeys(
        (
            *("open", "high", "low", "close", "volume", "quote_volume", "count", "taker_buy_volume"),
            *("taker_buy_quote_volume", "funding_interval_hours", "last_funding_rate", "price", "qty", "quote_qty"),
            *("quantity", "best_bid_price", "best_bid_qty", "best_ask_price", "best_ask_qty"),
        ),
        pa.float64(),
    ),
}


# Of some kinds a rule reads fewer columns still: klines read the taker buys in base units (an inverse file's are
# its taker_buy_quote_volume: `_INVERSE_KLINE_EXTRA`), mark-price klines no volume but `volume`, and an inverse
# trades file has no quote amount (its cost comes from the contracts). ~10% of a klines run's conversion.
_UNREAD_OF: dict[tuple[str, bool], frozenset[str]] = {
    ("klines", False): frozenset({"taker_buy_quote_volume"}),
    ("klines", True): frozenset({"taker_buy_volume"}),
    **dict.fromkeys(
        [("markPriceKlines", False), ("markPriceKlines", True)],
        frozenset({"quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume"}),
    ),
    ("trades", True): frozenset({"quote_qty"}),
}


def joined_convert_options(names: list[str], kind: str = "", inverse: bool = False) -> Any:
    """How a run of archives of a kind read together converts its columns (`names`: the kind's,
    `formats._COLUMNS`): the columns a rule reads (`_UNREAD`, `_UNREAD_OF`), to their told types, blanks as nulls.
    `benchmarks/bench_history.py` reads its floor so."""
    import pyarrow.csv as pacsv

    unread = _UNREAD | _UNREAD_OF.get((kind, inverse), frozenset())
    read = [name for name in names if name not in unread]
    return pacsv.ConvertOptions(
        null_values=[""],
        strings_can_be_null=True,
        include_columns=read,
        column_types={name: _JOINED_TYPES[name] for name in read if name in _JOINED_TYPES},
    )


def _read_joined(
    bodies: list[bytes], names: list[str], lines: int, kind: str = "", inverse: bool = False
) -> pd.DataFrame | None:
    """Plain CSV bodies of one shape read as one frame (rows in order, index 0..n-1), or None when pyarrow
    cannot read them as one (a value that does not convert to its column's type, `_JOINED_TYPES`) or the rows
    are not the bodies' `lines` one for one. The frame's numeric columns are pyarrow's, not copies."""
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(
            pa.py_buffer(b"".join(bodies)),
            read_options=pacsv.ReadOptions(column_names=names),
            convert_options=joined_convert_options(names, kind, inverse),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if table.num_rows != lines:
        return None
    frame = table.to_pandas(split_blocks=True)  # a block per column: numeric columns without a copy
    frame.index = np.arange(len(frame))
    return frame


def _infer_timeframe(chunk: pd.DataFrame, kind: str) -> int:
    if "close_time" in chunk.columns:
        open_t, ok1 = _integers(chunk, "open_time")
        close_t, ok2 = _integers(chunk, "close_time")
        ok = ok1 & ok2
        if ok.any():
            span = to_epoch_ms(close_t[ok]) - to_epoch_ms(open_t[ok]) + 1
            return int(round(float(np.median(span)) / 1000))
    col = "time_ms_utc" if "time_ms_utc" in chunk.columns else "open_time"
    t, ok = _integers(chunk, col)
    diffs = np.diff(np.unique(to_epoch_ms(t[ok])))
    return int(diffs.min() // 1000) if len(diffs) else 0


def _sort_dedupe(stream: str, records: np.ndarray) -> tuple[np.ndarray, int]:
    """Drop exact venue duplicates (same trade id / bar / settlement; the first copy stays), sort by time.

    Venue files are nearly always sorted with unique ids already: that case costs two linear checks.
    """
    if len(records) == 0:
        return records, 0
    if stream == "trades":
        ids = records["trade_id"]
        if bool((ids[1:] > ids[:-1]).all()):
            keep = None
        else:
            _, first = np.unique(ids, return_index=True)
            keep = np.sort(first)
    elif stream == "tickers":
        keep = None  # quotes may repeat a time; each update is kept
    elif stream == "liquidations":  # prints may share a millisecond: their hash is their identity
        _, first = np.unique(records["liquidation_id"], return_index=True)
        keep = np.sort(first) if len(first) < len(records) else None
    else:
        names = {"funding": ["is_settled", "funding_ts_ms", "ts_ms"], "ohlcv": ["timeframe_s", "ts_ms"]}.get(
            stream, ["ts_ms"]
        )
        ts = records["ts_ms"]
        if bool((ts[1:] > ts[:-1]).all()):
            keep = None  # strictly increasing times: no two rows share a key
        else:
            duplicated = pd.DataFrame({n: records[n] for n in names}).duplicated(keep="first").to_numpy()
            keep = np.flatnonzero(~duplicated) if duplicated.any() else None
    dropped = 0 if keep is None else len(records) - len(keep)
    if keep is not None:
        records = records[keep]
    ts = records["ts_ms"]
    if not bool((ts[1:] >= ts[:-1]).all()):
        records = records[np.argsort(ts, kind="stable")]
    return records, dropped


def fill_intervals(records: np.ndarray) -> bool:
    """Set missing `interval_h` of one instrument's settled funding rows (sorted by time) to the interval in
    force, inferred from the settlements' spacing (`core.funding.intervals_in_force`); rows with no confirmed
    interval stay NaN. Returns whether any row was filled, so the caller records those as inferred.
    """
    missing = np.isnan(records["interval_h"])
    if not missing.any():
        return False
    inferred = intervals_in_force(records["funding_ts_ms"])
    records["interval_h"] = np.where(missing, inferred, records["interval_h"])
    return bool(np.isfinite(inferred[missing]).any())
