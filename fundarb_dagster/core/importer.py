"""`fundarb import`: recorded files (Binance public-data archives, the fixture CSV shapes) -> the landing zone.

Every argument is checked before any work (`check_arguments`: kind, exchange id, symbol, data folder, that
each path exists and each .zip opens). Then one file at a time: read its bytes' sha256, skip it when
`data_dir/imports.json` says that digest was already imported for this (exchange, symbol) as the kind it
would be read as now (given, or detected), else parse it with the replay parser
(`sources.replay.parse_file`: kind detected or given, rows normalized to the `schema` dtypes, bad rows
quarantined with a reason naming the field and the value), register the instrument in
`data_dir/instruments.json` (stable ids), observe funding intervals into the registry, and land the rows
with `landing.write_stream` under the writer `import-<first 12 hex of the digest>`.

Idempotent: a digest in the manifest lands nothing new. A file of which no row landed (a wrong `--kind`)
is not recorded, so the right kind imports it later. Crash-safe: each landed file is atomic, and the
manifest is written only after every file of an import landed; files an interrupted import left behind
(same writer, same instrument, no manifest entry) are removed before it is redone, so a re-run produces
exactly one copy. Quarantined rows are written to `data_dir/quarantine/import-<digest>.jsonl` and counted
as `capture_events` rows (kind QUARANTINED), so the warehouse sees them too.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from . import arguments, landing, schema
from .config import ConfigError
from .instruments import Instrument, InstrumentRegistry, registry_path
from .sources.markets import market_for
from .sources.replay import KINDS, ParsedFile, detect_kind, parse_file
from .venues import UNIFIED_SYMBOL

MANIFEST_NAME = "imports.json"
_DIGEST_CHARS = 12


@dataclass
class FileResult:
    """What happened to one file."""

    path: str
    digest: str
    kind: str = ""
    stream: str = ""
    status: str = "imported"  # imported | skipped (already imported) | failed
    rows: int = 0  # data rows read
    landed: int = 0  # rows written to the landing zone
    quarantined: int = 0
    duplicates: int = 0  # venue duplicates dropped inside the file
    other_instruments: int = 0  # rows of other (exchange, symbol) in a multi-instrument file
    files: list[str] = field(default_factory=list)  # landing files written
    reasons: dict[str, int] = field(default_factory=dict)  # "field: rule" -> count
    samples: list[str] = field(default_factory=list)  # the first rejects, "line N: reason"
    error: str = ""
    warnings: list[str] = field(default_factory=list)  # e.g. a file name that suggests another symbol
    first_ts_ms: int | None = None
    last_ts_ms: int | None = None
    seconds: float = 0.0


@dataclass
class ImportSummary:
    exchange: str
    symbol: str
    instrument_id: int
    files: list[FileResult] = field(default_factory=list)

    @property
    def landed(self) -> int:
        return sum(f.landed for f in self.files)

    @property
    def quarantined(self) -> int:
        return sum(f.quarantined for f in self.files)

    @property
    def skipped(self) -> int:
        return sum(f.status == "skipped" for f in self.files)

    @property
    def failed(self) -> int:
        return sum(f.status == "failed" for f in self.files)

    @property
    def ok(self) -> bool:
        return self.failed == 0


# Below this share of a file's rows landing, the file was read as the wrong kind or is of another shape.
MIN_LANDED_SHARE = 0.5


def expand_paths(paths: Sequence[Path | str]) -> list[Path]:
    """Files as given; a folder stands for the .csv and .zip files under it (sorted), e.g. a day-by-day
    Binance download of one symbol."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".csv", ".zip"))
        else:
            out.append(path)
    return out


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (streamed: archives can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- manifest -----------------------------------------------------------------------------------------
def manifest_path(data_dir: Path) -> Path:
    return Path(data_dir) / MANIFEST_NAME


def load_manifest(data_dir: Path) -> dict[str, dict[str, dict]]:
    """{digest: {"<exchange> <symbol> <kind>": entry}}; empty when nothing was imported yet."""
    path = manifest_path(data_dir)
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def _save_manifest(data_dir: Path, manifest: dict) -> None:
    target = manifest_path(data_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    with open(tmp, "w") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)


def _entry_key(exchange: str, symbol: str, kind: str) -> str:
    return f"{exchange} {symbol} {kind}"


# -- importing ----------------------------------------------------------------------------------------
def check_exchange(exchange: str) -> None:
    import ccxt

    if exchange.lower() not in ccxt.exchanges:
        raise ConfigError(f"--exchange: {exchange!r} is not a ccxt exchange id (e.g. binance, bybit, okx)")


def resolve_symbol(
    exchange: str, symbol: str, data_dir: Path | str, market: Callable[[str], Mapping[str, Any] | None]
) -> str:
    """The unified symbol of `--symbol`, which may be the venue's own market id (`BTCUSD_PERP`, as Binance's
    archive paths spell it): from the registry (a capture or an earlier import registered that id), else from
    ccxt's markets (`market(id)`: the market, or None when they could not be loaded). A unified symbol is
    returned as is; anything else is a ConfigError naming the value."""
    check_exchange(exchange)
    if UNIFIED_SYMBOL.match(symbol):
        return symbol
    known: list[str] = []
    if registry_path(data_dir).exists():
        registry = InstrumentRegistry.load(registry_path(data_dir))
        known = sorted(i.symbol for i in registry if i.exchange == exchange and i.venue_symbol == symbol)
    if len(known) > 1:
        raise ConfigError(f"--symbol: {symbol!r} is the id of {known} on {exchange}: pass one of them")
    if known:
        return known[0]
    found = market(symbol)
    if found is not None:
        return str(found["symbol"])
    raise ConfigError(
        f"--symbol: {symbol!r} is neither a ccxt unified symbol (BTC/USDT, BTC/USDT:USDT, BTC/USD:BTC) nor a "
        f"market id of {exchange} that the registry or ccxt's markets know"
    )


def check_arguments(
    paths: Sequence[Path | str],
    data_dir: Path | str,
    *,
    exchange: str,
    symbol: str,
    kind: str | None,
    min_landed_share: float = MIN_LANDED_SHARE,
) -> list[Path]:
    """Every argument of an import, checked before any work; raises ConfigError naming the argument and
    value. Returns the files to import (folders expanded)."""
    if not 0.0 <= min_landed_share <= 1.0:
        raise ConfigError(f"--min-landed-share: {min_landed_share!r} is not a share between 0 and 1")
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"--kind: unknown kind {kind!r}; expected one of {list(KINDS)}")
    check_exchange(exchange)
    try:
        market_for(symbol)
    except ValueError:
        raise ConfigError(
            f"--symbol: {symbol!r} is not a ccxt unified symbol like BTC/USDT (spot) or BTC/USDT:USDT (perpetual)"
        ) from None
    arguments.data_dir(data_dir)
    files = []
    for raw in arguments.existing_paths([Path(p) for p in paths]):
        found = expand_paths([raw])
        if raw.is_dir() and not found:
            raise ConfigError(f"paths: folder {str(raw)!r} holds no .csv or .zip file")
        files += found
    for path in files:
        if path.suffix.lower() == ".zip":
            try:
                with zipfile.ZipFile(path) as archive:
                    archive.namelist()
            except (zipfile.BadZipFile, OSError) as exc:
                raise ConfigError(f"paths: {str(path)!r} is not a readable zip archive ({exc})") from None
    return files


def import_files(
    paths: Sequence[Path | str],
    data_dir: Path | str,
    *,
    exchange: str,
    symbol: str,
    kind: str | None = None,
    progress: Callable[[str], None] | None = _stderr,
    market: Mapping[str, Any] | None = None,
    min_landed_share: float = MIN_LANDED_SHARE,
) -> ImportSummary:
    """Import recorded files of one instrument into the landing zone (see the module docstring).

    Every argument is checked first (`check_arguments`: a `ConfigError` and nothing done). A file that cannot
    be read at all (unknown kind, not a CSV), or of which no row or less than `min_landed_share` of its rows
    landed (a wrong `kind`, a file of another shape), is reported as failed in the summary with the reason,
    keeps nothing in the landing zone and is not recorded as imported; the others still import. Bad rows of a
    file that lands are quarantined and counted. `market` is ccxt's market of the symbol
    (`live.load_market`): contract size, settle currency, inverse or linear and expiry come from it (see
    `instrument_for`), and contract amounts land in base units.
    """
    data_dir = Path(data_dir)
    files = check_arguments(
        paths, data_dir, exchange=exchange, symbol=symbol, kind=kind, min_landed_share=min_landed_share
    )
    exchange = exchange.lower()
    registry_file = registry_path(data_dir)
    registry = InstrumentRegistry.load(registry_file)
    instrument = instrument_for(registry, exchange, symbol, market)
    registry.save(registry_file)
    summary = ImportSummary(exchange=exchange, symbol=symbol, instrument_id=instrument.id)
    manifest = load_manifest(data_dir)
    for path in files:
        started = time.perf_counter()
        digest = file_digest(path)
        result = FileResult(str(path), digest)
        # Done only as the kind it would be read as now: a file recorded under another kind imports again.
        done = manifest.get(digest, {}).get(_entry_key(exchange, symbol, kind or _detected(path)))
        if done is not None:
            result.status, result.kind, result.stream = "skipped", done.get("kind", ""), done.get("stream", "")
            summary.files.append(result)
            if progress:
                progress(
                    f"{path.name}: already imported as {result.kind} (sha256 {digest[:_DIGEST_CHARS]}), nothing new"
                )
            continue
        try:
            parsed = parse_file(path, kind, progress=progress, inverse=instrument.inverse)
        except (ValueError, UnicodeDecodeError, OSError, zipfile.BadZipFile) as exc:
            result.status, result.error = "failed", str(exc)
            summary.files.append(result)
            continue
        except (KeyError, IndexError) as exc:  # the columns of another kind than the one asked for
            result.status, result.error = "failed", f"kind: {path.name} cannot be read as {kind!r} (no column {exc})"
            summary.files.append(result)
            continue
        recorded = {f for entry in manifest.get(digest, {}).values() for f in entry.get("files", [])}
        _land(parsed, result, data_dir, registry, exchange, symbol, instrument, recorded)
        registry.save(registry_file)  # intervals observed before the manifest says "done"
        result.seconds = time.perf_counter() - started
        summary.files.append(result)
        if result.status != "failed" and not result.landed:
            result.status = "failed"
            result.error = (
                f"kind: read as {parsed.kind!r}, no row of {result.rows:,} landed ({result.quarantined:,} "
                "quarantined); not recorded as imported: is --kind right?"
            )
        elif result.status != "failed" and result.landed < min_landed_share * (result.rows - result.other_instruments):
            own = result.rows - result.other_instruments  # the rows of other instruments are not this import's
            for landed_file in result.files:  # nothing of a file read wrongly stays where the warehouse reads
                Path(landed_file).unlink(missing_ok=True)
            result.status, result.files = "failed", []
            result.error = (
                f"min_landed_share: read as {parsed.kind!r}, {result.landed:,} of {own:,} rows landed "
                f"({result.landed / own:.1%} < {min_landed_share:.0%}; {result.quarantined:,} quarantined): "
                "nothing kept, not recorded as imported; is --kind right? (--min-landed-share 0 keeps them)"
            )
        if result.status == "failed":
            continue  # not in the manifest: a later run with the right kind imports it
        manifest.setdefault(digest, {})[_entry_key(exchange, symbol, parsed.kind)] = {
            "path": str(path),
            "kind": parsed.kind,
            "stream": parsed.stream,
            "rows": result.rows,
            "landed": result.landed,
            "quarantined": result.quarantined,
            "files": result.files,
            "imported_at_ms": int(time.time() * 1000),
        }
        _save_manifest(data_dir, manifest)
        if progress:
            progress(f"{path.name}: {result.landed:,} rows landed, {result.quarantined:,} quarantined")
    return summary


def _detected(path: Path) -> str | None:
    """The kind a file would be read as without --kind (None when it cannot be told: it will fail to parse)."""
    try:
        return detect_kind(path)
    except (ValueError, UnicodeDecodeError, OSError, zipfile.BadZipFile):
        return None


def instrument_for(
    registry: InstrumentRegistry, exchange: str, symbol: str, market: Mapping[str, Any] | None
) -> Instrument:
    """The instrument an import lands: from ccxt's market when given (it corrects what was registered
    before), else as registered (a capture registered it from the venue's markets), else built from the
    symbol, which is exact for spot and for contracts of size 1 (binance USD-M, bybit linear) but cannot
    know an inverse contract's size: that needs ccxt's market, and is refused by name without it."""
    if market is not None:
        if market.get("symbol") != symbol:
            raise ConfigError(f"market.symbol: {market.get('symbol')!r} is not the imported symbol {symbol!r}")
        return registry.add_market(exchange, market)
    if (exchange, symbol) in registry:
        return registry.get(exchange, symbol)
    built = market_for(symbol)  # validates the symbol's shape, naming it when wrong
    if built["inverse"]:
        raise ConfigError(
            f"--symbol: {symbol!r} on {exchange} is an inverse contract; its contract size (quote units per "
            "contract) comes from ccxt's markets, which could not be loaded: run the import where the venue "
            "is reachable once, or capture the symbol first (its registry entry is then used)"
        )
    return registry.add_market(exchange, built)


def in_base_units(stream: str, records: np.ndarray, instrument: Instrument) -> np.ndarray:
    """Contract amounts of a file (archives count contracts) -> base units, the contracts kept beside.

    Trades: amount = contracts x size (/ price, inverse); bookTicker sizes at their own side's price.
    Candles need nothing here: an inverse file's base-volume column is read instead (`parse_file(inverse=)`).
    """
    if not instrument.is_contract or not len(records):
        return records
    if stream == "trades":
        records["contracts"] = records["amount"]
        records["contract_size"] = instrument.contract_size
        records["amount"] = instrument.base_amounts(records["contracts"], records["price"])
    elif stream == "tickers":
        records["bid_contracts"], records["ask_contracts"] = records["bid_size"], records["ask_size"]
        records["contract_size"] = instrument.contract_size
        records["bid_size"] = instrument.base_amounts(records["bid_contracts"], records["bid"])
        records["ask_size"] = instrument.base_amounts(records["ask_contracts"], records["ask"])
    return records


def _land(
    parsed: ParsedFile,
    result: FileResult,
    data_dir: Path,
    registry: InstrumentRegistry,
    exchange: str,
    symbol: str,
    instrument: Instrument,
    recorded: set[str],
) -> None:
    instrument_id = instrument.id
    result.kind, result.stream, result.rows = parsed.kind, parsed.stream, parsed.rows
    hint = parsed.symbol_hint
    looks_like_symbol = bool(hint) and ("/" in hint or (hint.isupper() and len(hint) >= 5))
    if looks_like_symbol and hint not in (symbol, market_for(symbol)["id"], instrument.venue_symbol):
        result.warnings.append(f"file name suggests {hint!r}, imported as {symbol!r} as asked")
    result.duplicates = parsed.duplicates
    result.reasons = dict(parsed.reject_counts)
    result.quarantined = parsed.quarantined
    result.samples = [f"line {r.line}: {r.reason}" for r in parsed.rejects[:20]]
    if parsed.stream == "mark":
        result.status = "failed"
        result.error = (
            f"kind: {parsed.kind!r} holds mark-price candles, which have no landing stream; "
            "replay them with the funding file instead (replay.format: fixture_csv / binance_archive)"
        )
        return
    records = in_base_units(parsed.stream, _records_for(parsed, exchange, symbol, result), instrument)
    writer = f"import-{result.digest[:_DIGEST_CHARS]}"
    _remove_interrupted(data_dir, writer, exchange, symbol, recorded)
    names = registry.names()
    if len(records):
        records["instrument_id"] = instrument_id
        result.first_ts_ms, result.last_ts_ms = int(records["ts_ms"].min()), int(records["ts_ms"].max())
        if parsed.stream == "funding":
            source = "inferred" if _interval_inferred(parsed, exchange, symbol) else "reported"
            _observe_intervals(registry, exchange, symbol, records, source)
        table = schema.to_arrow(parsed.stream, records, names)
        seq = landing.next_seq(data_dir, writer)
        result.files += [str(p) for p in landing.write_stream(data_dir, parsed.stream, table, writer, seq)]
        result.landed = len(records)
    if parsed.reject_counts:
        # The rejects are kept either way; they become capture_events only for an import that landed rows
        # (a file read as the wrong kind rejects every row: that is a mistake, not data about the market).
        _quarantine(parsed, result, data_dir, writer, instrument_id, names, land_events=bool(len(records)))


def _records_for(parsed: ParsedFile, exchange: str, symbol: str, result: FileResult) -> np.ndarray:
    """The rows of this (exchange, symbol): all of a single-instrument file, the matching part of a table."""
    dtype = schema.dtype_of(parsed.stream)
    chosen = np.zeros(0, dtype=dtype)
    for (part_exchange, part_symbol), records in parsed.parts.items():
        if (part_exchange is None or part_exchange == exchange) and (part_symbol is None or part_symbol == symbol):
            chosen = np.concatenate([chosen, records]) if len(chosen) else records.copy()
        else:
            result.other_instruments += len(records)
    return chosen


def _interval_inferred(parsed: ParsedFile, exchange: str, symbol: str) -> bool:
    """Whether the file's rows for this instrument had their interval inferred from the settlements' spacing
    (the file states none): such an interval is recorded as inferred, never as if the venue had reported it."""
    return any(
        (part_exchange is None or part_exchange == exchange) and (part_symbol is None or part_symbol == symbol)
        for part_exchange, part_symbol in parsed.inferred_intervals
    )


def _observe_intervals(
    registry: InstrumentRegistry, exchange: str, symbol: str, records: np.ndarray, source: str
) -> None:
    intervals = records["interval_h"]
    changes = np.concatenate([[True], intervals[1:] != intervals[:-1]])  # only where the value changes
    for ts, interval_h in zip(records["funding_ts_ms"][changes].tolist(), intervals[changes].tolist(), strict=True):
        if interval_h > 0:
            registry.observe_interval(exchange, symbol, int(ts), float(interval_h), source=source)


def _remove_interrupted(data_dir: Path, writer: str, exchange: str, symbol: str, recorded: set[str]) -> None:
    """Delete landing files of this writer and instrument that an interrupted (or landless) import left: those
    no manifest entry lists. The files of the same file's import as another kind are `recorded` and stay."""
    root = landing.landing_root(data_dir)
    if not root.exists():
        return
    for path in root.glob(f"*/date=*/hour=*/{writer}-*.parquet"):
        if str(path) in recorded:
            continue
        table = pq.read_table(path, columns=["exchange", "symbol"])
        first = table.slice(0, 1).to_pylist()
        if first and first[0] == {"exchange": exchange, "symbol": symbol}:
            path.unlink()
    landing.remove_stale_temporaries(data_dir, writer)


def _quarantine(
    parsed: ParsedFile,
    result: FileResult,
    data_dir: Path,
    writer: str,
    instrument_id: int,
    names: dict[int, tuple[str, str]],
    land_events: bool = True,
) -> None:
    """Keep the rejects: a JSONL beside the data, and capture_events rows the warehouse counts."""
    folder = data_dir / "quarantine"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{writer}-{instrument_id}.jsonl"
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    with open(tmp, "w") as handle:
        handle.write(json.dumps({"file": str(parsed.path), "counts": dict(parsed.reject_counts)}) + "\n")
        for reject in parsed.rejects:
            handle.write(json.dumps(asdict(reject)) + "\n")
    os.replace(tmp, target)
    if not land_events:
        return
    events = schema.empty("capture_events", len(parsed.reject_counts))
    when = result.first_ts_ms if result.first_ts_ms is not None else int(time.time() * 1000)
    for i, (reason, count) in enumerate(sorted(parsed.reject_counts.items())):
        events[i]["ts_ms"] = events[i]["recv_ts_ms"] = when
        events[i]["instrument_id"] = instrument_id
        events[i]["stream"] = int(schema.STREAM_CODES[parsed.stream])
        events[i]["kind"] = int(schema.EventKind.QUARANTINED)
        events[i]["count"] = count
        events[i]["start_ms"] = result.first_ts_ms or 0
        events[i]["end_ms"] = result.last_ts_ms or 0
        events[i]["reason"] = reason.encode("ascii", "replace")[:48]
    table = schema.to_arrow("capture_events", events, names)
    seq = landing.next_seq(data_dir, writer)
    result.files += [str(p) for p in landing.write_stream(data_dir, "capture_events", table, writer, seq)]


def format_summary(summary: ImportSummary) -> str:
    """A human summary: one line per file, the quarantine reasons with counts, totals."""
    lines = [f"import {summary.exchange} {summary.symbol} (instrument_id {summary.instrument_id})"]
    for f in summary.files:
        name = Path(f.path).name
        if f.status == "skipped":
            lines.append(f"  {name}: skipped, already imported (sha256 {f.digest[:_DIGEST_CHARS]})")
            continue
        if f.status == "failed":
            lines.append(f"  {name}: FAILED: {f.error}")
            continue
        extra = []
        if f.duplicates:
            extra.append(f"{f.duplicates:,} duplicates dropped")
        if f.other_instruments:
            extra.append(f"{f.other_instruments:,} rows of other instruments ignored")
        tail = f" ({'; '.join(extra)})" if extra else ""
        lines.append(
            f"  {name}: {f.kind} -> {f.stream}: {f.rows:,} rows read, {f.landed:,} landed in "
            f"{sum(1 for p in f.files if '/capture_events/' not in p)} files, {f.quarantined:,} quarantined{tail}"
        )
        for warning in f.warnings:
            lines.append(f"      warning: {warning}")
        for reason, count in sorted(f.reasons.items(), key=lambda kv: -kv[1]):
            lines.append(f"      quarantined {count:,} x {reason}")
        for sample in f.samples[:5]:
            lines.append(f"        e.g. {sample}")
    totals = Counter(f.status for f in summary.files)
    lines.append(
        f"total: {summary.landed:,} rows landed, {summary.quarantined:,} quarantined; "
        f"{totals['imported']} imported, {totals['skipped']} skipped, {totals['failed']} failed"
    )
    return "\n".join(lines)
