"""What a recorded file is: the kinds of file understood, their columns, and telling them apart.

A kind is detected from a file's name and first line (`detect_kind`); the symbol and market type from its
name and folders (`symbol_hint`). The shapes, with a sample line each, are listed in the package docstring.
"""

from __future__ import annotations

import codecs
import io
import os
import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ...config import REPLAY_FORMATS

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


def to_epoch_ms(values: np.ndarray) -> np.ndarray:
    """Epoch integers in s, ms, µs or ns (detected per value by magnitude) -> ms (int64)."""
    v = np.asarray(values, dtype=np.int64)
    out = v.copy()
    out = np.where(v >= 100_000_000_000_000_000, v // 1_000_000, out)  # ns
    out = np.where((v >= 100_000_000_000_000) & (v < 100_000_000_000_000_000), v // 1000, out)  # µs
    out = np.where((v > 0) & (v < 100_000_000_000), v * 1000, out)  # s
    return out


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
    """A CSV's first line; a Parquet file's column names, as the header line a CSV of it would have."""
    stat = path.stat()
    key = (path, stat.st_mtime_ns, stat.st_size)
    line = _FIRST_LINES.get(key)
    if line is None:
        line = _read_first_line(path)
        _remember(key, line)
    return line


# An import asks each file's first line several times (its kind for the manifest, its symbol, its parsing):
# read once per file version, not once per question (an open costs more than the rest for a small archive), and
# not at all for a CSV whose bytes the import read already (`remember_first_line`).
_FIRST_LINES: dict[tuple[Path, int, int], str] = {}
_FIRST_LINES_MAX = 1 << 16


def _remember(key: tuple[Path, int, int], line: str) -> None:
    if len(_FIRST_LINES) >= _FIRST_LINES_MAX:
        _FIRST_LINES.clear()
    _FIRST_LINES[key] = line


def _read_first_line(path: Path) -> str:
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return ",".join(pq.read_schema(path).names)
    with _open_text(path) as handle:
        return handle.readline().strip().lstrip("\ufeff")


def remember_first_line(path: Path, stat: os.stat_result, raw: bytes) -> None:
    """Keep a plain CSV's first line from its bytes, read by the caller with this `stat`: what `_first_line`
    would read from the file (the text reader's first block decoded as UTF-8, the line up to its newline); a
    zip, or bytes that do not decode, are left to `_first_line`, which reads them itself (and says why not)."""
    line = _first_line_of(path, raw)
    if line is not None:
        _remember((path, stat.st_mtime_ns, stat.st_size), line)


def first_line(path: Path, raw: bytes | None = None) -> str:
    """A file's first line (`_first_line`), from its bytes when the caller read them already (a plain CSV's):
    no `stat` of the file to look it up (an import asks it of thousands of small archives)."""
    line = None if raw is None else _first_line_of(path, raw)
    return _first_line(path) if line is None else line


def _first_line_of(path: Path, raw: bytes) -> str | None:
    """What `_first_line` reads from a plain CSV, from its bytes; None for a zip, bytes that do not decode or a
    first line longer than a block (read from the file)."""
    if path.suffix.lower() != ".csv":
        return None
    try:  # as a text reader decodes its first block (a character cut at its end waits for the next)
        head = codecs.utf_8_decode(raw[:8192], "strict", len(raw) <= 8192)[0]
    except UnicodeDecodeError:
        return None
    end = min((i for i in (head.find("\n"), head.find("\r")) if i >= 0), default=-1)
    if end < 0 and len(raw) > 8192:
        return None
    line = head if end < 0 else head[: end + 1]
    return line.strip().lstrip("\ufeff")


def csv_body(path: Path, header: bool, raw: bytes | None = None) -> bytes | None:
    """The data lines of a plain CSV (or of the one CSV in a .zip) as bytes ending in a newline, without the
    header; None when the file is not plain enough to be read as one with others and split back by counting
    newlines: quotes (a field may hold a newline), carriage returns, a first line blank. `raw`: the file's
    bytes, when read already. Blank lines inside are not looked for here (a pass over the bytes as long as
    counting their lines): the joined read finds them (`parsers._parse_joined`)."""
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(io.BytesIO(raw) if raw is not None else path) as archive:
            members = [n for n in archive.namelist() if n.lower().endswith(".csv")]
            if len(members) != 1:
                return None
            data = archive.read(members[0])
    else:
        data = raw if raw is not None else path.read_bytes()
    if header:
        data = data.partition(b"\n")[2]
    if not data:
        return data
    if not data.endswith(b"\n"):
        data += b"\n"
    if b'"' in data or b"\r" in data or data.startswith(b"\n"):
        return None
    return data


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _stem(path: Path) -> str:
    name = path.name
    lowered = name.lower()
    for suffix in (".zip", ".csv", ".parquet"):
        if lowered.endswith(suffix):
            name, lowered = name[: -len(suffix)], lowered[: -len(suffix)]
    return name


# The funding table's source files (`funding_2025_2026/original/*.parquet`) name two columns differently.
FUNDING_TABLE_ALIASES: dict[str, str] = {"settlement_ts": "settlement_time_ms_utc", "rate_raw": "funding_rate"}

# The headers detect_kind tells apart, for the error that lists them.
KNOWN_HEADERS: tuple[tuple[str, str], ...] = (
    ("funding_table", "venue, settlement_time_ms_utc, funding_rate, ... (or settlement_ts, rate_raw)"),
    ("fixture_trades", "time_ms_utc, trade_id, ..."),
    ("fixture_funding", "time_ms_utc, funding_rate, ..."),
    ("fixture_ohlcv / fixture_mark", "time_ms_utc, open, high, low, close, ..."),
    ("klines / markPriceKlines", "open_time, open, high, low, close, volume, close_time, ..."),
    ("aggTrades", "agg_trade_id, price, quantity, ..."),
    ("trades", "id, price, qty, ..."),
    ("fundingRate", "calc_time, funding_interval_hours, last_funding_rate"),
    ("bookTicker", "update_id, best_bid_price, best_bid_qty, ..."),
)


def detect_kind(path: Path, raw: bytes | None = None) -> str:
    """The kind of a recorded file from its name and first line (`raw`: its bytes, when read already); a clear
    error when unknown."""
    stem = _stem(path)
    first = first_line(path, raw)
    cells = [c.strip().lower() for c in first.split(",")]
    header = bool(cells) and not _is_number(cells[0])
    if header:
        names = set(cells)
        if {"venue", "settlement_time_ms_utc", "funding_rate"} <= names or set(FUNDING_TABLE_ALIASES) <= names:
            return "funding_table"
        if "time_ms_utc" in names:
            if "trade_id" in names:
                return "fixture_trades"
            if "funding_rate" in names:
                return "fixture_funding"
            if {"open", "high", "low", "close"} <= names:
                return "fixture_mark" if stem.lower().endswith("-mark") else "fixture_ohlcv"
        if "open_time" in names:
            return "markPriceKlines" if _under(path, "markpriceklines") else "klines"
        if "agg_trade_id" in names:
            return "aggTrades"
        if {"id", "price", "qty"} <= names:
            return "trades"
        if "calc_time" in names:
            return "fundingRate"
        if "best_bid_price" in names:
            return "bookTicker"
        raise ValueError(
            f"kind: cannot tell the kind of {str(path)!r} from its header {first[:80]!r}; known headers: "
            + "; ".join(f"{kind} ({columns})" for kind, columns in KNOWN_HEADERS)
            + "; or pass --kind"
        )
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
        return "markPriceKlines" if _under(path, "markpriceklines") else "klines"
    if len(cells) == 3:
        return "fundingRate"
    if len(cells) in (6, 7, 8):
        # trades: time at column 4 and a boolean at 5; aggTrades: ids at 3, 4, the time at 5, a boolean at 6;
        # bookTicker: prices and sizes, then two times at 5 and 6.
        if cells[5] in ("true", "false"):
            return "trades"
        return "bookTicker" if len(cells) == 7 and _is_number(cells[6]) else "aggTrades"
    raise ValueError(f"kind: cannot tell the kind of {str(path)!r}: no header and {len(cells)} columns")


def _under(path: Path, folder: str) -> bool:
    """Whether a folder of the path is named `folder` (lower case), as Binance's archive trees name kinds."""
    return any(part.lower() == folder for part in path.parts)


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
    folders = f"/{path.as_posix().lower()}/"  # each folder between slashes: one string, not a set of parts
    market_type = None
    if "/spot/" in folders:
        market_type = "spot"
    elif any(f"/{part}/" in folders for part in ("futures", "um", "cm")) or kind in (
        "fundingRate",
        "markPriceKlines",
        "bookTicker",
    ):
        market_type = "swap"
    return (head if head and head.isalnum() else None), market_type


_PERIOD = re.compile(r"-(\d{4})-(\d{2})(?:-(\d{2}))?$")


def period_start_ms(path: Path) -> int | None:
    """The start (epoch ms, UTC) of the month or day a Binance archive's name ends with
    (`BTCUSDT-fundingRate-2024-01.zip`: 2024-01-01, `BTCUSDT-1m-2024-01-15.csv`: 2024-01-15), None when the
    name says none. A hint only: what a file holds is read from its rows."""
    match = _PERIOD.search(_stem(path))
    if match is None:
        return None
    year, month, day = (int(g) if g else 1 for g in match.groups())
    try:
        return int(datetime(year, month, day, tzinfo=UTC).timestamp() * 1000)
    except ValueError:
        return None


def _timeframe_from_name(stem: str) -> int:
    for piece in stem.split("-")[1:]:
        if _TIMEFRAME.match(piece):
            return timeframe_seconds(piece)
    return 0


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
