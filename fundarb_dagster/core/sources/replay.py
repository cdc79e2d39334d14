"""Replay recorded market data through the ccxt.pro interface, at a speed factor (0 = as fast as possible).

Three recordings are understood, all turned into the `schema` record dtypes first:

- the project's own landing zone (`<data_dir>/landing/<stream>/date=.../hour=.../*.parquet`, read with
  pyarrow's hive partitioning; `instruments.json` beside it gives the exact market details);
- the fixture CSV shapes (`XRP_ETH-trades.csv`: `time_ms_utc,time_utc,trade_id,side_taker,price,amount_base,
  cost_quote`; `XRP_ETH-1m.csv` / `XRP_USDT_USDT-5m-futures.csv` / `...-1h-mark.csv`:
  `time_ms_utc,time_utc,open,high,low,close,volume`; `XRP_USDT_USDT-8h-funding_rate.csv`:
  `time_ms_utc,time_utc,funding_rate,...`; the multi-venue funding table with `venue,venue_symbol,
  canonical_symbol,settlement_time_ms_utc,...,funding_rate,interval_hours,...,mark_price,...`);
- Binance public-data archives, `.csv` or the `.zip` Binance ships, with or without a header row, ms or µs
  timestamps (`klines`: `1704067200000,42283.58,42554.57,42261.02,42475.23,1271.68,1704070799999,...`;
  `trades`: `id,price,qty,quote_qty,time,is_buyer_maker[,is_best_match]`; `aggTrades`: `agg_trade_id,price,
  quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker[,is_best_match]`; `fundingRate`:
  `calc_time,funding_interval_hours,last_funding_rate`; `bookTicker`: `update_id,best_bid_price,best_bid_qty,
  best_ask_price,best_ask_qty,transaction_time,event_time`; `markPriceKlines` as klines, used as mark prices).

`parse_file` is shared with the importer (`core/importer.py`): one parser, one set of validation rules,
bad rows quarantined with a reason naming the field and the value.

`ReplayExchange` answers `load_markets` (minimal ccxt market dicts: `BTC/USDT` spot, `BTC/USDT:USDT` linear
swap), `milliseconds` (the replay clock), `watch_trades` / `watch_ticker` / `watch_ohlcv` / `watch_funding_rate` with
ccxt's unified structures in event-time order, and `fetch_ohlcv` / `fetch_trades` /
`fetch_funding_rate_history` from the whole recording (history works offline). Delivery times: a trade,
ticker or funding value at its `ts_ms`; a candle when it closes (`ts_ms + timeframe`), so a consumer never
sees a bar before it is complete. With `speed > 0` the replay clock runs at `speed` market seconds per wall
second from the first watch call; with `speed == 0` it jumps to each delivered event, and concurrent watch
calls are served in event-time order across streams (a consumer that stops calling is skipped after a short
wait, so nobody deadlocks). When a watch call's data is exhausted it raises `EndOfData`.
"""

from __future__ import annotations

import asyncio
import io
import math
import re
import threading
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as ds

from .. import schema
from ..config import REPLAY_FORMATS, ConfigError, ReplayConfig
from ..instruments import InstrumentRegistry, registry_path
from . import EndOfData

FORMATS = REPLAY_FORMATS
# kind -> the stream its rows become; "mark" is mark-price candles (OHLCV records used to fill mark_price).
KIND_STREAMS: dict[str, str] = {
    "klines": "ohlcv",
    "markPriceKlines": "mark",
    "trades": "trades",
    "aggTrades": "trades",
    "fundingRate": "funding",
    "bookTicker": "tickers",
    "fixture_trades": "trades",
    "fixture_ohlcv": "ohlcv",
    "fixture_mark": "mark",
    "fixture_funding": "funding",
    "funding_table": "funding",
}
KINDS: tuple[str, ...] = tuple(KIND_STREAMS)

_KLINES_COLS = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
]
_TRADES_COLS = ["id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match"]
_AGG_COLS = [
    "agg_trade_id",
    "price",
    "quantity",
    "first_trade_id",
    "last_trade_id",
    "transact_time",
    "is_buyer_maker",
    "is_best_match",
]
_FUNDING_COLS = ["calc_time", "funding_interval_hours", "last_funding_rate"]
_BOOK_COLS = [
    "update_id",
    "best_bid_price",
    "best_bid_qty",
    "best_ask_price",
    "best_ask_qty",
    "transaction_time",
    "event_time",
]
_TIMEFRAME = re.compile(r"^(\d+)([smhdwM])$")
_TF_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000}
_MIN_TS_MS = 1_230_768_000_000  # 2009-01-01: nothing crypto is older
_MAX_TS_MS = 4_102_444_800_000  # 2100-01-01
CHUNK_ROWS = 1_000_000
_KNOWN_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USD", "BTC", "ETH", "BNB", "EUR", "TRY")


# -- small helpers ------------------------------------------------------------------------------------
def timeframe_seconds(timeframe: str) -> int:
    """`1m` -> 60, `8h` -> 28800; a clear error otherwise."""
    match = _TIMEFRAME.match(timeframe)
    if not match:
        raise ValueError(f"timeframe: {timeframe!r} is not like 1m, 5m, 1h, 1d")
    return int(match.group(1)) * _TF_UNITS[match.group(2)]


def timeframe_name(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def iso8601(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ms) % 1000:03d}Z"


def to_epoch_ms(values: np.ndarray) -> np.ndarray:
    """Epoch integers in s, ms, µs or ns (detected per value by magnitude) -> ms (int64)."""
    v = np.asarray(values, dtype=np.int64)
    out = v.copy()
    out = np.where(v >= 100_000_000_000_000_000, v // 1_000_000, out)  # ns
    out = np.where((v >= 100_000_000_000_000) & (v < 100_000_000_000_000_000), v // 1000, out)  # µs
    out = np.where((v > 0) & (v < 100_000_000_000), v * 1000, out)  # s
    return out


def market_for(symbol: str, venue_id: str | None = None, contract_size: float | None = None) -> dict[str, Any]:
    """A minimal ccxt unified market dict for `BASE/QUOTE` (spot) or `BASE/QUOTE:SETTLE` (linear swap)."""
    pair, _, settle = symbol.partition(":")
    base, _, quote = pair.partition("/")
    if not base or not quote:
        raise ValueError(f"symbol: {symbol!r} is not a ccxt unified symbol like BTC/USDT or BTC/USDT:USDT")
    swap = bool(settle)
    return {
        "id": venue_id or f"{base}{quote}",
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": settle or None,
        "baseId": base,
        "quoteId": quote,
        "settleId": settle or None,
        "type": "swap" if swap else "spot",
        "spot": not swap,
        "margin": False,
        "swap": swap,
        "future": False,
        "option": False,
        "contract": swap,
        "linear": (settle == quote) if swap else None,
        "inverse": (settle != quote) if swap else None,
        "contractSize": (contract_size or 1.0) if swap else None,
        "active": True,
        "precision": {"amount": None, "price": None},
        "limits": {"amount": {"min": None, "max": None}, "price": {"min": None, "max": None}},
        "info": {},
    }


# -- parsing recorded files ---------------------------------------------------------------------------
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
    # instrument file whose name does not say its symbol.
    parts: dict[tuple[str | None, str | None], np.ndarray]
    rows: int = 0  # data rows read (header excluded)
    rejects: list[Reject] = field(default_factory=list)
    reject_counts: Counter[str] = field(default_factory=Counter)  # "field: rule" -> count
    duplicates: int = 0
    timeframe_s: int = 0  # for candles
    symbol_hint: str | None = None  # unified symbol or venue id the file name suggests
    market_type: str | None = None  # "spot" | "swap" when the path says

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


def _open_text(path: Path) -> io.TextIOBase:
    """A text stream of a .csv, or of the one .csv inside a Binance .zip."""
    if path.suffix.lower() == ".zip":
        archive = zipfile.ZipFile(path)
        members = [n for n in archive.namelist() if n.lower().endswith(".csv")]
        if len(members) != 1:
            raise ValueError(f"file: {str(path)!r} holds {len(members)} CSV files, expected exactly one")
        return io.TextIOWrapper(archive.open(members[0]), encoding="utf-8")
    return open(path, encoding="utf-8", newline="")  # noqa: SIM115 - returned to the caller, who closes it


def _first_line(path: Path) -> str:
    with _open_text(path) as handle:
        return handle.readline().strip().lstrip("\ufeff")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".zip", ".csv"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def detect_kind(path: Path) -> str:
    """The kind of a recorded file from its name and first line; a clear error when unknown."""
    stem = _stem(path)
    first = _first_line(path)
    cells = [c.strip().lower() for c in first.split(",")]
    header = bool(cells) and not _is_number(cells[0])
    parts = {p.lower() for p in path.parts}
    if header:
        names = set(cells)
        if {"venue", "settlement_time_ms_utc", "funding_rate"} <= names:
            return "funding_table"
        if "time_ms_utc" in names:
            if "trade_id" in names:
                return "fixture_trades"
            if "funding_rate" in names:
                return "fixture_funding"
            if {"open", "high", "low", "close"} <= names:
                return "fixture_mark" if stem.lower().endswith("-mark") else "fixture_ohlcv"
        if "open_time" in names:
            return "markPriceKlines" if "markpriceklines" in parts else "klines"
        if "agg_trade_id" in names:
            return "aggTrades"
        if {"id", "price", "qty"} <= names:
            return "trades"
        if "calc_time" in names:
            return "fundingRate"
        if "best_bid_price" in names:
            return "bookTicker"
        raise ValueError(f"kind: cannot tell the kind of {str(path)!r} from its header {first[:80]!r}")
    # No header: Binance archive names say it (BTCUSDT-aggTrades-2024-01-01), else the column count does.
    lowered = stem.lower()
    if "-aggtrades-" in lowered:
        return "aggTrades"
    if "-trades-" in lowered:
        return "trades"
    if "-fundingrate-" in lowered:
        return "fundingRate"
    if "-bookticker-" in lowered:
        return "bookTicker"
    if len(cells) == 12:
        return "markPriceKlines" if "markpriceklines" in parts else "klines"
    if len(cells) == 3:
        return "fundingRate"
    if len(cells) in (6, 7, 8):
        # trades: time at column 4 and a boolean at 5; aggTrades: ids at 3, 4, the time at 5, a boolean at 6;
        # bookTicker: prices and sizes, then two times at 5 and 6.
        if cells[5] in ("true", "false"):
            return "trades"
        return "bookTicker" if len(cells) == 7 and _is_number(cells[6]) else "aggTrades"
    raise ValueError(f"kind: cannot tell the kind of {str(path)!r}: no header and {len(cells)} columns")


def symbol_hint(path: Path, kind: str) -> tuple[str | None, str | None]:
    """(symbol or venue id, market type or None) that a file's name and folders suggest.

    `XRP_USDT_USDT-8h-funding_rate.csv` -> ("XRP/USDT:USDT", "swap"); `XRP_ETH-trades.csv` -> ("XRP/ETH",
    "spot"); `.../futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.zip` -> ("BTCUSDT", "swap").
    """
    stem = _stem(path)
    head = stem.split("-", 1)[0]
    if kind.startswith("fixture_"):
        pieces = head.split("_")
        if len(pieces) == 3:
            return f"{pieces[0]}/{pieces[1]}:{pieces[2]}", "swap"
        if len(pieces) == 2:
            return f"{pieces[0]}/{pieces[1]}", "spot"
        return None, None
    if kind == "funding_table":
        return None, "swap"
    parts = {p.lower() for p in path.parts}
    market_type = None
    if "spot" in parts:
        market_type = "spot"
    elif parts & {"futures", "um", "cm"} or kind in ("fundingRate", "markPriceKlines", "bookTicker"):
        market_type = "swap"
    return (head if head and head.isalnum() else None), market_type


def _timeframe_from_name(stem: str) -> int:
    for piece in stem.split("-")[1:]:
        if _TIMEFRAME.match(piece):
            return timeframe_seconds(piece)
    return 0


def _read_chunks(path: Path, columns: list[str], header: bool, quarantine: _Quarantine) -> Iterator[pd.DataFrame]:
    """CSV chunks; rows with too many fields are quarantined, never dropped silently.

    pandas infers each column's type per chunk (the fast path: int64, float64, bool); a column holding a bad
    value stays text, and the helpers below then parse it value by value to name what was wrong.
    """
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


def _candles(rows: _Rows, ts: np.ndarray, tf_s: int, volume_optional: bool) -> np.ndarray:
    o = rows.number("open", "open", positive=True)
    h = rows.number("high", "high", positive=True)
    low = rows.number("low", "low", positive=True)
    c = rows.number("close", "close", positive=True)
    v = rows.number("volume", "volume", optional=volume_optional)
    with np.errstate(invalid="ignore"):
        rows.reject(h < np.fmax(np.fmax(o, c), low), "high", "high", "below open/close/low", "is below open/close/low")
        rows.reject(low > np.fmin(o, c), "low", "low", "above open/close", "is above open or close")
        rows.reject(v < 0, "volume", "volume", "< 0", "must be >= 0")
    out = schema.empty("ohlcv", len(ts))
    out["ts_ms"], out["recv_ts_ms"], out["timeframe_s"] = ts, ts + tf_s * 1000, tf_s
    out["open"], out["high"], out["low"], out["close"], out["volume"] = o, h, low, c, v
    return out[rows.ok]


def _trades(rows: _Rows, ts: np.ndarray, ids: np.ndarray, side: np.ndarray, price: np.ndarray, amount: np.ndarray):
    out = schema.empty("trades", len(ts))
    out["ts_ms"], out["recv_ts_ms"], out["trade_id"] = ts, ts, ids
    out["side"], out["price"], out["amount"] = side, price, amount
    return out[rows.ok]


def _funding(rows: _Rows, ts: np.ndarray, rate: np.ndarray, interval_h: np.ndarray, mark: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        rows.reject(np.abs(rate) >= 1, "funding_rate", None, ">= 1", "is not a fraction per interval (|rate| >= 1)")
    out = schema.empty("funding", len(ts))
    out["ts_ms"], out["recv_ts_ms"], out["funding_ts_ms"] = ts, ts, ts
    out["is_settled"] = 1
    out["funding_rate"], out["interval_h"], out["mark_price"] = rate, interval_h, mark
    return out[rows.ok]


def _parse_chunk(kind: str, chunk: pd.DataFrame, quarantine: _Quarantine, tf_s: int) -> dict[Any, np.ndarray]:
    """One chunk of a file -> {instrument key: records} (the key is None for single-instrument files)."""
    rows = _Rows(chunk, quarantine)
    if kind in ("klines", "markPriceKlines"):
        ts = rows.timestamps("open_time")
        return {(None, None): _candles(rows, ts, tf_s, volume_optional=kind == "markPriceKlines")}
    if kind in ("fixture_ohlcv", "fixture_mark"):
        ts = rows.timestamps("time_ms_utc")
        return {(None, None): _candles(rows, ts, tf_s, volume_optional=kind == "fixture_mark")}
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
        return {(None, None): _trades(rows, ts, ids, side, price, amount)}
    if kind == "fixture_trades":
        ts = rows.timestamps("time_ms_utc")
        ids, ok = _integers(chunk, "trade_id")
        rows.reject(~ok, "trade_id", "trade_id", "not an integer", "is not an integer id")
        price = rows.number("price", "price", positive=True)
        amount = rows.number("amount_base", "amount", positive=True)
        text = chunk["side_taker"].astype(str).str.strip().str.lower()
        side = np.select([text.eq("buy").to_numpy(), text.eq("sell").to_numpy()], [1, -1], 0).astype(np.int8)
        rows.reject(~text.isin(("buy", "sell", "")).to_numpy(), "side", "side_taker", "not buy/sell", "is not buy/sell")
        return {(None, None): _trades(rows, ts, ids, side, price, amount)}
    if kind == "bookTicker":
        ts = rows.timestamps("transaction_time")
        bid = rows.number("best_bid_price", "bid", positive=True)
        ask = rows.number("best_ask_price", "ask", positive=True)
        bid_size = rows.number("best_bid_qty", "bid_size")
        ask_size = rows.number("best_ask_qty", "ask_size")
        with np.errstate(invalid="ignore"):
            rows.reject(ask < bid, "ask", "best_ask_price", "below bid", "is below the bid (crossed book)")
            rows.reject((bid_size < 0) | (ask_size < 0), "size", "best_bid_qty", "< 0", "must be >= 0")
        out = schema.empty("tickers", len(ts))
        out["ts_ms"], out["recv_ts_ms"] = ts, ts
        out["bid"], out["ask"], out["bid_size"], out["ask_size"] = bid, ask, bid_size, ask_size
        return {(None, None): out[rows.ok]}
    if kind == "fundingRate":
        ts = rows.timestamps("calc_time", "funding_ts_ms")
        interval = rows.number("funding_interval_hours", "interval_h", positive=True, optional=True)
        rate = rows.number("last_funding_rate", "funding_rate")
        return {(None, None): _funding(rows, ts, rate, interval, np.full(len(ts), np.nan))}
    if kind == "fixture_funding":
        ts = rows.timestamps("time_ms_utc", "funding_ts_ms")
        rate = rows.number("funding_rate", "funding_rate")
        return {(None, None): _funding(rows, ts, rate, np.full(len(ts), np.nan), np.full(len(ts), np.nan))}
    if kind == "funding_table":
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
    raise ValueError(f"kind: unknown kind {kind!r}; expected one of {list(KINDS)}")


def canonical_to_unified(canonical: str) -> str:
    """`BTC-USDT-PERP` -> `BTC/USDT:USDT`; `BTC-USDT` -> `BTC/USDT`."""
    pieces = canonical.split("-")
    if len(pieces) == 3 and pieces[2].upper() in ("PERP", "SWAP"):
        return f"{pieces[0]}/{pieces[1]}:{pieces[1]}"
    if len(pieces) == 2:
        return f"{pieces[0]}/{pieces[1]}"
    return canonical


_COLUMNS: dict[str, list[str] | None] = {
    "klines": _KLINES_COLS,
    "markPriceKlines": _KLINES_COLS,
    "trades": _TRADES_COLS,
    "aggTrades": _AGG_COLS,
    "fundingRate": _FUNDING_COLS,
    "bookTicker": _BOOK_COLS,
}


def parse_file(
    path: str | Path,
    kind: str | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> ParsedFile:
    """Read one recorded file into schema records, quarantining bad rows (never raising for a bad row).

    Raises ValueError only for a file it cannot read at all (unknown kind, a zip with several CSVs).
    Funding rows without an interval get one inferred from consecutive settlement times.
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
    elif header:
        # Binance headers name the same columns; read by position so header spelling does not matter.
        columns = columns[: len(first.split(","))]
    elif kind in ("trades", "aggTrades"):
        columns = columns[: len(first.split(","))]
    hint, market_type = symbol_hint(path, kind)
    tf_s = _timeframe_from_name(_stem(path)) if KIND_STREAMS[kind] in ("ohlcv", "mark") else 0
    quarantine = _Quarantine()
    collected: dict[Any, list[np.ndarray]] = {}
    rows = 0
    for chunk in _read_chunks(path, columns, header, quarantine):
        if KIND_STREAMS[kind] in ("ohlcv", "mark") and not tf_s:
            tf_s = _infer_timeframe(chunk, kind)
        rows += len(chunk)
        for key, records in _parse_chunk(kind, chunk, quarantine, tf_s).items():
            collected.setdefault(key, []).append(records)
        if progress is not None and rows >= CHUNK_ROWS:
            progress(f"{path.name}: {rows:,} rows read")
    parsed = ParsedFile(path=path, kind=kind, stream=KIND_STREAMS[kind], parts={}, rows=rows, timeframe_s=tf_s)
    parsed.symbol_hint, parsed.market_type = hint, market_type
    dtype = schema.OHLCV if parsed.stream == "mark" else schema.dtype_of(parsed.stream)
    for key, pieces in collected.items():
        records = np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)
        records, dupes = _sort_dedupe(parsed.stream, records)
        parsed.duplicates += dupes
        if parsed.stream == "funding":
            fill_intervals(records)
        parsed.parts[key] = records
    parsed.rejects, parsed.reject_counts = quarantine.samples, quarantine.counts
    parsed.rejects.sort(key=lambda r: r.line)
    return parsed


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
    else:
        names = ["is_settled", "funding_ts_ms", "ts_ms"] if stream == "funding" else ["timeframe_s", "ts_ms"]
        duplicated = pd.DataFrame({n: records[n] for n in names}).duplicated(keep="first").to_numpy()
        keep = np.flatnonzero(~duplicated) if duplicated.any() else None
    dropped = 0 if keep is None else len(records) - len(keep)
    if keep is not None:
        records = records[keep]
    ts = records["ts_ms"]
    if not bool((ts[1:] >= ts[:-1]).all()):
        records = records[np.argsort(ts, kind="stable")]
    return records, dropped


def fill_intervals(records: np.ndarray) -> None:
    """Set missing `interval_h` of settled funding rows from consecutive settlement times (in place).

    The interval of the settlement at t_i is the time since the previous one, rounded to the hour; when that
    gap is a multiple of the next one it was a missing settlement, and the next gap is used instead.
    """
    missing = np.isnan(records["interval_h"])
    if not missing.any() or len(records) < 2:
        return
    t = records["funding_ts_ms"].astype(np.float64)
    gaps = np.maximum(np.round(np.diff(t) / 3_600_000.0), 1.0)
    prev = np.concatenate([[gaps[0]], gaps])
    nxt = np.concatenate([gaps, [gaps[-1]]])
    inferred = np.where((prev > nxt) & (np.mod(prev, nxt) == 0), nxt, prev)
    records["interval_h"] = np.where(missing, inferred, records["interval_h"])


# -- reading the landing zone -------------------------------------------------------------------------
def read_landing(
    path: str | Path, exchange: str, symbols: Sequence[str] | None = None
) -> dict[tuple[str, str], np.ndarray]:
    """{(symbol, stream): records} for one exchange from a data folder or its `landing/` folder."""
    root = Path(path)
    if (root / "landing").is_dir():
        root = root / "landing"
    out: dict[tuple[str, str], np.ndarray] = {}
    for stream in schema.MARKET_STREAMS:
        folder = root / stream
        if not folder.is_dir():
            continue
        files = sorted(folder.glob("date=*/hour=*/*.parquet"))
        if not files:
            continue
        dataset = ds.dataset(
            files, format="parquet", partitioning=ds.partitioning(flavor="hive"), partition_base_dir=str(folder)
        )
        condition = pc.field("exchange") == exchange
        if symbols:
            condition = condition & pc.field("symbol").isin(list(symbols))
        table = dataset.to_table(filter=condition, columns=[*schema.public_fields(stream), "symbol"])
        if table.num_rows == 0:
            continue
        symbol_column = table.column("symbol")
        for symbol in pc.unique(symbol_column).to_pylist():
            part = table.filter(pc.equal(symbol_column, symbol))
            records = schema.from_arrow(stream, part)
            out[(symbol, stream)] = _landing_dedupe(stream, records)
    return out


def _landing_dedupe(stream: str, records: np.ndarray) -> np.ndarray:
    """Landed data may hold duplicates (re-captures); keep the last received copy of each natural key."""
    order = np.lexsort((records["recv_ts_ms"], records["ts_ms"]))
    records = records[order]
    if stream == "tickers":
        return records
    frame = pd.DataFrame({"ts": records["ts_ms"]})
    if stream == "trades":
        frame = pd.DataFrame({"id": records["trade_id"]})
    elif stream == "ohlcv":
        frame["tf"] = records["timeframe_s"]
    elif stream == "funding":
        frame["f"], frame["s"] = records["funding_ts_ms"], records["is_settled"]
    keep = ~frame.duplicated(keep="last").to_numpy()
    return records[keep]


# -- the exchange ---------------------------------------------------------------------------------------
@dataclass
class _Cursor:
    """One watch subscription's position in its series."""

    times: np.ndarray  # delivery times, ascending
    records: np.ndarray
    pos: int = 0
    active: bool = False  # a consumer has called it (and has not been skipped as stalled)
    in_call: int = 0  # watch calls of it in progress: a consumer waiting here has not gone away

    @property
    def next_time(self) -> float:
        return float(self.times[self.pos]) if self.pos < len(self.times) else math.inf


# How long (wall) an earlier stream's consumer may stay away between calls before it is skipped. Long enough
# for a busy consumer on a loaded machine (skipping it lets the clock run ahead of its data), short enough that
# a stream nobody reads any more costs one pause.
_STALL_WAIT_S = 1.0


class ReplayExchange:
    """A ccxt.pro-shaped exchange replaying a recording (see the module docstring)."""

    def __init__(
        self,
        exchange_id: str,
        path: str | Path,
        *,
        format: str = "landing",  # noqa: A002 - the config field's name
        speed: float = 0.0,
        symbols: Sequence[str] | None = None,
        batch_size: int = 1000,
    ) -> None:
        if format not in FORMATS:
            raise ConfigError(f"replay.format: unknown format {format!r}; expected one of {list(FORMATS)}")
        if not speed >= 0 or not math.isfinite(speed):
            raise ConfigError(f"replay.speed: {speed!r} must be >= 0 (0 = as fast as possible)")
        if batch_size < 1:
            raise ValueError(f"batch_size: {batch_size!r} must be >= 1")
        self.id = exchange_id
        self.name = f"replay:{exchange_id}"
        self.path = Path(path)
        self.format = format
        self.speed = float(speed)
        self.batch_size = int(batch_size)
        self.requested_symbols = tuple(symbols) if symbols else None
        self.markets: dict[str, dict[str, Any]] = {}
        self.symbols: list[str] = []
        self.timeframes = {timeframe_name(s): timeframe_name(s) for s in (60, 300, 900, 3600, 14400, 28800, 86400)}
        self.has: dict[str, bool] = {
            "watchTrades": True,
            "watchTicker": True,
            "watchOHLCV": True,
            "watchFundingRate": True,
            "watchMarkPrice": False,
            "fetchOHLCV": True,
            "fetchTrades": True,
            "fetchFundingRate": True,
            "fetchFundingRateHistory": True,
            "fetchFundingRates": False,
        }
        # Whatever the venue, recorded funding is replayed through watch_funding_rate (the Feed reads this).
        self.funding_via = "funding_rate"
        self.unrecognized: list[tuple[Path, str]] = []  # files skipped while loading, with the reason
        self.rejected: dict[Path, ParsedFile] = {}  # files that had quarantined rows
        self.available: set[str] = set()  # every symbol the recording holds for this exchange (files)
        self._series: dict[tuple[Any, ...], np.ndarray] = {}
        self._cursors: dict[tuple[Any, ...], _Cursor] = {}
        self._loaded = False
        self._load_lock = threading.Lock()  # many first calls may arrive at once: the recording loads once
        self._closed = False
        self._clock_ms = 0
        self._start_ms = 0
        self._end_ms = 0
        self._anchor: float | None = None
        self._progress: asyncio.Event | None = None

    @classmethod
    def from_config(
        cls, exchange_id: str, replay: ReplayConfig, symbols: Sequence[str] | None = None
    ) -> ReplayExchange:
        if not replay.path:
            raise ConfigError("replay.path: required when source is 'replay'")
        if not Path(replay.path).exists():
            raise ConfigError(f"replay.path: {replay.path!r} does not exist")
        return cls(exchange_id, replay.path, format=replay.format, speed=replay.speed, symbols=symbols)

    # -- loading ------------------------------------------------------------------------------------
    async def load_markets(self, reload: bool = False, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Read the recording (once: `reload` cannot rewind a replay in progress) and return its markets."""
        if not self._loaded:
            await asyncio.to_thread(self._load_once)
        return self.markets

    def _load_once(self) -> None:
        with self._load_lock:
            if not self._loaded:
                self._load()

    def _load(self) -> None:
        if self.format == "landing":
            found = read_landing(self.path, self.id, self.requested_symbols)
            registry = self._landing_registry()
            for (symbol, stream), records in found.items():
                self._add(symbol, stream, records=records)
            markets_from = registry
        else:
            self._load_files()
            markets_from = None
        recorded = sorted({key[0] for key in self._series})
        self.available.update(recorded)
        wanted = list(self.requested_symbols) if self.requested_symbols else recorded
        if not set(wanted) & set(recorded):
            # A config problem, not the end of a recording: nothing would ever be replayed.
            raise ConfigError(
                f"replay.path: {str(self.path)!r} ({self.format}) holds no {self.id} data for {wanted}; "
                f"it holds {sorted(self.available) or 'nothing'}"
            )
        self.markets = {}
        for symbol in wanted:
            if symbol not in recorded:
                continue  # not listed: check_symbols names it
            market = market_for(symbol)
            if markets_from is not None and (self.id, symbol) in markets_from:
                instrument = markets_from.get(self.id, symbol)
                market = market_for(symbol, instrument.venue_symbol, instrument.contract_size)
            self.markets[symbol] = market
        self.symbols = sorted(self.markets)
        self._merge_mark_prices()
        starts = [float(self._delivery(k, s)[0]) for k, s in self._series.items() if len(s) and k[1] != "mark"]
        ends = [float(self._delivery(k, s)[-1]) for k, s in self._series.items() if len(s) and k[1] != "mark"]
        self._start_ms = int(min(starts)) if starts else 0
        self._end_ms = int(max(ends)) if ends else 0
        self._clock_ms = self._start_ms
        self._loaded = True

    def _landing_registry(self) -> InstrumentRegistry | None:
        for folder in (self.path, self.path.parent):
            if registry_path(folder).exists():
                return InstrumentRegistry.load(registry_path(folder))
        return None

    def _load_files(self) -> None:
        files = (
            [self.path]
            if self.path.is_file()
            else sorted(p for p in self.path.rglob("*") if p.is_file() and p.suffix.lower() in (".csv", ".zip"))
        )
        for file in files:
            try:
                kind = detect_kind(file)
                named = None if kind == "funding_table" else self._resolve_symbol(file, *symbol_hint(file, kind))
                if named is not None:
                    self.available.add(named)
                    if self.requested_symbols and named not in self.requested_symbols:
                        continue  # another symbol's file: not even parsed
                parsed = parse_file(file, kind)
            except (ValueError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
                self.unrecognized.append((file, str(exc)))
                continue
            if parsed.reject_counts:
                self.rejected[file] = parsed
            for (exchange, symbol), records in parsed.parts.items():
                if exchange is not None and exchange != self.id:
                    continue
                resolved = symbol or named
                if resolved is None:
                    self.unrecognized.append((file, f"symbol: cannot tell which symbol {file.name!r} is for"))
                    continue
                self.available.add(resolved)
                if self.requested_symbols and resolved not in self.requested_symbols:
                    continue
                timeframe = parsed.timeframe_s if parsed.stream in ("ohlcv", "mark") else None
                self._add(resolved, parsed.stream, timeframe, records=records)

    def _resolve_symbol(self, path: Path, hint: str | None, market_type: str | None) -> str | None:
        """The unified symbol a file is for: its name's symbol, or its venue id matched to the configured
        symbols (a `spot/` or `futures/` folder tells BTC/USDT from BTC/USDT:USDT), else split on a known quote.
        """
        if hint is None:
            return None
        if "/" in hint:
            return hint
        candidates = [s for s in (self.requested_symbols or ()) if market_for(s)["id"] == hint]
        if market_type is not None:
            candidates = [s for s in candidates if market_for(s)["type"] == market_type]
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise ValueError(f"symbol: {path.name!r} could be {candidates}; put it under a spot/ or futures/ folder")
        for quote in _KNOWN_QUOTES:
            if hint.endswith(quote) and len(hint) > len(quote):
                base = hint[: -len(quote)]
                return f"{base}/{quote}:{quote}" if market_type == "swap" else f"{base}/{quote}"
        return None

    def _add(self, symbol: str, stream: str, timeframe_s: int | None = None, *, records: np.ndarray) -> None:
        if stream == "ohlcv" and timeframe_s is None:  # landing: split by timeframe
            for tf in np.unique(records["timeframe_s"]).tolist():
                self._add(symbol, "ohlcv", int(tf), records=records[records["timeframe_s"] == tf])
            return
        key = (symbol, stream, timeframe_s) if stream in ("ohlcv", "mark") else (symbol, stream)
        if key in self._series:
            merged = np.concatenate([self._series[key], records])
            records = merged[np.argsort(merged["ts_ms"], kind="stable")]
            if stream != "tickers":
                records, _ = _sort_dedupe("ohlcv" if stream == "mark" else stream, records)
        self._series[key] = records

    def _merge_mark_prices(self) -> None:
        """Fill funding rows' missing mark price from recorded mark candles (the open of the bar at the time)."""
        for key, funding in self._series.items():
            if key[1] != "funding" or not len(funding):
                continue
            marks = sorted((k for k in self._series if k[0] == key[0] and k[1] == "mark"), key=lambda k: k[2])
            for mark_key in marks:  # finest timeframe first
                bars = self._series[mark_key]
                missing = np.isnan(funding["mark_price"])
                if not missing.any() or not len(bars):
                    break
                idx = np.searchsorted(bars["ts_ms"], funding["ts_ms"], side="right") - 1
                inside = (idx >= 0) & (funding["ts_ms"] < bars["ts_ms"][np.maximum(idx, 0)] + mark_key[2] * 1000)
                fill = missing & inside
                funding["mark_price"][fill] = bars["open"][idx[fill]]

    @staticmethod
    def _delivery(key: tuple[Any, ...], records: np.ndarray) -> np.ndarray:
        if key[1] in ("ohlcv", "mark"):
            return records["ts_ms"] + int(key[2]) * 1000
        return records["ts_ms"]

    # -- clock ----------------------------------------------------------------------------------------
    def milliseconds(self) -> int:
        """The replay clock: wall-paced from the first watch call, or the last delivered event at speed 0.

        Asked before anything was loaded (a consumer reading the clock first), it loads the recording so the
        answer is the recording's start, never 0 or the wall time.
        """
        if not self._loaded:
            self._load_once()
        if self.speed > 0 and self._anchor is not None:
            return int(self._start_ms + (time.monotonic() - self._anchor) * 1000.0 * self.speed)
        return int(self._clock_ms)

    def iso8601(self, timestamp: int | None) -> str | None:
        return iso8601(timestamp)

    @property
    def start_ms(self) -> int:
        return self._start_ms

    @property
    def end_ms(self) -> int:
        return self._end_ms

    # -- watch --------------------------------------------------------------------------------------
    async def _ensure_loaded(self) -> None:
        if self._closed:
            raise EndOfData(f"replay {self.id}: the exchange is closed")
        if not self._loaded:
            await self.load_markets()

    def _check_symbol(self, symbol: str) -> None:
        if symbol not in self.markets:
            raise ValueError(f"symbol: {symbol!r} is not in the {self.id} recording; it holds {self.symbols}")

    def _cursor(self, key: tuple[Any, ...], what: str) -> _Cursor:
        cursor = self._cursors.get(key)
        if cursor is None:
            records = self._series.get(key)
            if records is None:
                records = self._derived(key)
            if records is None:
                raise EndOfData(f"replay {self.id}: no {what} recorded for {key[0]} in {str(self.path)!r}")
            times = self._delivery(key, records)
            cursor = self._cursors[key] = _Cursor(times=times, records=records)
        return cursor

    def _derived(self, key: tuple[Any, ...]) -> np.ndarray | None:
        """Bars of an unrecorded timeframe from a finer recorded one that divides it, else from trades."""
        if key[1] != "ohlcv":
            return None
        symbol, _, tf = key
        finer = sorted(k[2] for k in self._series if k[0] == symbol and k[1] == "ohlcv" and tf % k[2] == 0)
        if finer:
            bars = self._series[(symbol, "ohlcv", finer[-1])]
            derived = resample_bars(
                bars["ts_ms"], bars["open"], bars["high"], bars["low"], bars["close"], bars["volume"], tf
            )
        elif (symbol, "trades") in self._series:
            t = self._series[(symbol, "trades")]
            derived = resample_bars(t["ts_ms"], t["price"], t["price"], t["price"], t["price"], t["amount"], tf)
        else:
            return None
        self._series[key] = derived
        return derived

    async def _next_batch(self, key: tuple[Any, ...], what: str, limit: int) -> np.ndarray:
        await self._ensure_loaded()
        self._check_symbol(key[0])
        cursor = self._cursor(key, what)
        cursor.active = True
        if self._progress is None:
            self._progress = asyncio.Event()
        if cursor.pos >= len(cursor.times):
            cursor.active = False
            raise EndOfData(
                f"replay {self.id}: no more {what} for {key[0]} (the recording ends at {iso8601(self._end_ms)})"
            )
        due = cursor.next_time
        cursor.in_call += 1
        try:
            if self.speed > 0:
                if self._anchor is None:
                    self._anchor = time.monotonic()
                wait_ms = due - self.milliseconds()
                await asyncio.sleep(wait_ms / 1000.0 / self.speed if wait_ms > 0 else 0)
                horizon = max(float(self.milliseconds()), due)
            else:
                horizon = await self._wait_turn(key, cursor)
        finally:
            cursor.in_call -= 1
        # From here to the return nothing awaits: a cancelled call never takes a batch.
        end = int(np.searchsorted(cursor.times, horizon, side="right"))
        end = max(min(end, cursor.pos + limit), cursor.pos + 1)
        batch = cursor.records[cursor.pos : end]
        self._clock_ms = max(self._clock_ms, int(cursor.times[end - 1]))
        cursor.pos = end
        self._progress.set()
        return batch

    async def _wait_turn(self, key: tuple[Any, ...], cursor: _Cursor) -> float:
        """At speed 0: let consumers of earlier events go first; returns the time this batch may reach."""
        assert self._progress is not None
        await asyncio.sleep(0)  # always let other consumers run: a replay must not starve the event loop
        while True:
            others = [c for k, c in self._cursors.items() if k != key and c.active and c.next_time < math.inf]
            earliest = min((c.next_time for c in others), default=math.inf)
            if cursor.next_time <= earliest:
                return earliest if earliest < math.inf else math.inf
            self._progress.clear()
            # asyncio.wait, not wait_for: on 3.11 wait_for can swallow a cancel that races the event, and a
            # call the consumer cancelled must never go on to take a batch it will not receive.
            waiter = asyncio.ensure_future(self._progress.wait())
            try:
                done, _ = await asyncio.wait({waiter}, timeout=_STALL_WAIT_S)
            finally:
                if not waiter.done():
                    waiter.cancel()
            if not done:
                for other in others:  # their consumers went away: stop waiting for them until they return
                    if other.next_time < cursor.next_time and not other.in_call:
                        other.active = False

    async def watch_trades(
        self, symbol: str, since: int | None = None, limit: int | None = None, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        batch = await self._next_batch((symbol, "trades"), "trades", limit or self.batch_size)
        return [self._trade(symbol, r) for r in batch]

    async def watch_ticker(self, symbol: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        batch = await self._next_batch((symbol, "tickers"), "tickers", 1)
        return self._ticker(symbol, batch[0])

    async def watch_ohlcv(
        self,
        symbol: str,
        timeframe: str = "1m",
        since: int | None = None,
        limit: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> list[list[float]]:
        tf = timeframe_seconds(timeframe)
        batch = await self._next_batch((symbol, "ohlcv", tf), f"{timeframe} candles", limit or self.batch_size)
        return [self._candle(r) for r in batch]

    async def watch_funding_rate(self, symbol: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        await self._ensure_loaded()
        self._watch_funding_split(symbol)
        batch = await self._next_batch((symbol, "funding_watch"), "funding rates", 1)
        return self._funding_rate(symbol, batch[0])

    def _watch_funding_split(self, symbol: str) -> None:
        """Stream the predicted rates when the recording has them, else the settled ones as they settle."""
        key = (symbol, "funding_watch")
        if key in self._series or (symbol, "funding") not in self._series:
            return
        funding = self._series[(symbol, "funding")]
        predicted = funding[funding["is_settled"] == 0]
        self._series[key] = predicted if len(predicted) else funding

    # -- fetch ----------------------------------------------------------------------------------------
    def _window(self, records: np.ndarray, since: int | None, limit: int | None, params: dict | None) -> np.ndarray:
        ts = records["ts_ms"]
        lo = int(np.searchsorted(ts, since, side="left")) if since is not None else 0
        until = (params or {}).get("until")
        hi = int(np.searchsorted(ts, int(until), side="right")) if until is not None else len(ts)
        out = records[lo:hi]
        if limit is not None:
            out = out[:limit] if since is not None else out[-limit:]
        return out

    async def fetch_trades(
        self, symbol: str, since: int | None = None, limit: int | None = None, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        await self._ensure_loaded()
        self._check_symbol(symbol)
        records = self._series.get((symbol, "trades"))
        if records is None:
            return []
        return [self._trade(symbol, r) for r in self._window(records, since, limit, params)]

    async def fetch_ohlcv(
        self,
        symbol: str,
        timeframe: str = "1m",
        since: int | None = None,
        limit: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> list[list[float]]:
        await self._ensure_loaded()
        self._check_symbol(symbol)
        key = (symbol, "ohlcv", timeframe_seconds(timeframe))
        records = self._series.get(key)
        if records is None:
            records = self._derived(key)
        if records is None:
            return []
        return [self._candle(r) for r in self._window(records, since, limit, params)]

    async def fetch_funding_rate_history(
        self,
        symbol: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        await self._ensure_loaded()
        if symbol is None:
            raise ValueError("symbol: fetch_funding_rate_history needs a symbol")
        self._check_symbol(symbol)
        records = self._series.get((symbol, "funding"))
        if records is None:
            return []
        settled = records[records["is_settled"] == 1]
        settled = settled[np.argsort(settled["funding_ts_ms"], kind="stable")]
        view = settled.copy()
        view["ts_ms"] = settled["funding_ts_ms"]  # history is keyed by settlement time
        return [self._funding_history_entry(symbol, r) for r in self._window(view, since, limit, params)]

    async def fetch_funding_rate(self, symbol: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The latest funding value known at the replay clock."""
        await self._ensure_loaded()
        self._check_symbol(symbol)
        records = self._series.get((symbol, "funding"))
        if records is None or not len(records):
            raise EndOfData(f"replay {self.id}: no funding rates recorded for {symbol}")
        idx = max(int(np.searchsorted(records["ts_ms"], self.milliseconds(), side="right")) - 1, 0)
        return self._funding_rate(symbol, records[idx])

    async def close(self) -> None:
        self._closed = True
        if self._progress is not None:
            self._progress.set()

    # -- ccxt structures ----------------------------------------------------------------------------
    @staticmethod
    def _num(value: float) -> float | None:
        value = float(value)
        return None if math.isnan(value) else value

    def _trade(self, symbol: str, r: np.void) -> dict[str, Any]:
        ts, price, amount, side = int(r["ts_ms"]), float(r["price"]), float(r["amount"]), int(r["side"])
        return {
            "info": {"trade_id": int(r["trade_id"]), "side": side},
            "id": str(int(r["trade_id"])),
            "timestamp": ts,
            "datetime": iso8601(ts),
            "symbol": symbol,
            "order": None,
            "type": None,
            "side": "buy" if side > 0 else "sell" if side < 0 else None,
            "takerOrMaker": "taker",
            "price": price,
            "amount": amount,
            "cost": price * amount,
            "fee": None,
            "fees": [],
        }

    def _ticker(self, symbol: str, r: np.void) -> dict[str, Any]:
        ts = int(r["ts_ms"])
        bid, ask = self._num(r["bid"]), self._num(r["ask"])
        return {
            "symbol": symbol,
            "timestamp": ts,
            "datetime": iso8601(ts),
            "high": None,
            "low": None,
            "bid": bid,
            "bidVolume": self._num(r["bid_size"]),
            "ask": ask,
            "askVolume": self._num(r["ask_size"]),
            "vwap": None,
            "open": None,
            "close": self._num(r["last"]),
            "last": self._num(r["last"]),
            "previousClose": None,
            "change": None,
            "percentage": None,
            "average": (bid + ask) / 2 if bid is not None and ask is not None else None,
            "baseVolume": None,
            "quoteVolume": None,
            "markPrice": self._num(r["mark_price"]),
            "indexPrice": self._num(r["index_price"]),
            "info": {"recv_ts_ms": int(r["recv_ts_ms"])},
        }

    @staticmethod
    def _candle(r: np.void) -> list[float]:
        volume = float(r["volume"])
        return [
            int(r["ts_ms"]),
            float(r["open"]),
            float(r["high"]),
            float(r["low"]),
            float(r["close"]),
            None if math.isnan(volume) else volume,
        ]

    def _funding_rate(self, symbol: str, r: np.void) -> dict[str, Any]:
        ts, funding_ts = int(r["ts_ms"]), int(r["funding_ts_ms"])
        interval_h = self._num(r["interval_h"])
        settled = bool(r["is_settled"])
        next_ts = funding_ts + int(interval_h * 3_600_000) if interval_h and settled else None
        return {
            # `is_settled` tells consumers whether this is a final settled rate (fixtures, archives) or a
            # predicted one as a venue streams it (landing replays of live captures).
            "info": {"is_settled": settled, "interval_h": interval_h},
            "symbol": symbol,
            "markPrice": self._num(r["mark_price"]),
            "indexPrice": self._num(r["index_price"]),
            "interestRate": None,
            "estimatedSettlePrice": None,
            "timestamp": ts,
            "datetime": iso8601(ts),
            "fundingRate": float(r["funding_rate"]),
            "fundingTimestamp": funding_ts,
            "fundingDatetime": iso8601(funding_ts),
            "nextFundingRate": self._num(r["next_funding_rate"]),
            "nextFundingTimestamp": next_ts,
            "nextFundingDatetime": iso8601(next_ts),
            "previousFundingRate": float(r["funding_rate"]) if settled else None,
            "previousFundingTimestamp": funding_ts if settled else None,
            "previousFundingDatetime": iso8601(funding_ts) if settled else None,
            "interval": f"{interval_h:g}h" if interval_h else None,
        }

    def _funding_history_entry(self, symbol: str, r: np.void) -> dict[str, Any]:
        funding_ts = int(r["funding_ts_ms"])
        return {
            "info": {"interval_h": self._num(r["interval_h"]), "mark_price": self._num(r["mark_price"])},
            "symbol": symbol,
            "fundingRate": float(r["funding_rate"]),
            "timestamp": funding_ts,
            "datetime": iso8601(funding_ts),
        }


def resample_bars(
    ts: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    low: np.ndarray,
    c: np.ndarray,
    v: np.ndarray,
    timeframe_s: int,
) -> np.ndarray:
    """Bars (or trades as one-price bars) -> OHLCV records of `timeframe_s`, only for buckets with data."""
    out = schema.empty("ohlcv", 0)
    if len(ts) == 0:
        return out
    order = np.argsort(ts, kind="stable")
    ts, o, h, low, c, v = (a[order] for a in (ts, o, h, low, c, v))
    size = timeframe_s * 1000
    buckets = (ts // size) * size
    starts = np.flatnonzero(np.concatenate([[True], buckets[1:] != buckets[:-1]]))
    ends = np.concatenate([starts[1:], [len(ts)]])
    out = schema.empty("ohlcv", len(starts))
    out["ts_ms"], out["recv_ts_ms"], out["timeframe_s"] = buckets[starts], buckets[starts] + size, timeframe_s
    out["open"], out["close"] = o[starts], c[ends - 1]
    out["high"] = np.maximum.reduceat(h, starts)
    out["low"] = np.minimum.reduceat(low, starts)
    out["volume"] = np.add.reduceat(np.nan_to_num(v), starts)
    return out


__all__ = [
    "FORMATS",
    "KINDS",
    "EndOfData",
    "ParsedFile",
    "Reject",
    "ReplayExchange",
    "canonical_to_unified",
    "detect_kind",
    "market_for",
    "parse_file",
    "read_landing",
    "resample_bars",
    "timeframe_seconds",
]
