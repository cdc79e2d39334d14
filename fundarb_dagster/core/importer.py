"""`fundarb import`: recorded files (Binance public-data archives, the fixture CSV shapes) -> the landing zone.

One file at a time: read its bytes' sha256, skip it when `data_dir/imports.json` says that digest was
already imported for this (exchange, symbol, kind), else parse it with the replay parser
(`sources.replay.parse_file`: kind detected or given, rows normalized to the `schema` dtypes, bad rows
quarantined with a reason naming the field and the value), register the instrument in
`data_dir/instruments.json` (stable ids), observe funding intervals into the registry, and land the rows
with `landing.write_stream` under the writer `import-<first 12 hex of the digest>`.

Idempotent: a digest in the manifest lands nothing new. Crash-safe: each landed file is atomic, and the
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
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from . import landing, schema
from .instruments import InstrumentRegistry, registry_path
from .sources.markets import market_for
from .sources.replay import KINDS, ParsedFile, parse_file

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
def import_files(
    paths: Sequence[Path | str],
    data_dir: Path | str,
    *,
    exchange: str,
    symbol: str,
    kind: str | None = None,
    progress: Callable[[str], None] | None = _stderr,
) -> ImportSummary:
    """Import recorded files of one instrument into the landing zone (see the module docstring).

    A file that cannot be read at all (unknown kind, not a CSV) is reported as failed in the summary with
    the reason; the others still import. Bad rows never fail a file: they are quarantined and counted.
    """
    data_dir = Path(data_dir)
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind: unknown kind {kind!r}; expected one of {list(KINDS)}")
    exchange = exchange.lower()
    market = market_for(symbol)  # validates the symbol's shape, naming it when wrong
    registry_file = registry_path(data_dir)
    registry = InstrumentRegistry.load(registry_file)
    instrument = registry.add_market(exchange, market)
    registry.save(registry_file)
    summary = ImportSummary(exchange=exchange, symbol=symbol, instrument_id=instrument.id)
    manifest = load_manifest(data_dir)
    for path in expand_paths(paths):
        started = time.perf_counter()
        if not path.is_file():
            summary.files.append(FileResult(str(path), "", status="failed", error=f"path: {str(path)!r} is not a file"))
            continue
        digest = file_digest(path)
        result = FileResult(str(path), digest)
        done = manifest.get(digest, {})
        previous = [
            e
            for k, e in done.items()
            if k.startswith(f"{exchange} {symbol} ") and (kind is None or k.endswith(f" {kind}"))
        ]
        if previous:
            result.status, result.kind = "skipped", previous[0].get("kind", "")
            result.stream = previous[0].get("stream", "")
            summary.files.append(result)
            if progress:
                progress(f"{path.name}: already imported (sha256 {digest[:_DIGEST_CHARS]}), nothing new")
            continue
        try:
            parsed = parse_file(path, kind, progress=progress)
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            result.status, result.error = "failed", str(exc)
            summary.files.append(result)
            continue
        _land(parsed, result, data_dir, registry, exchange, symbol, instrument.id)
        registry.save(registry_file)  # intervals observed before the manifest says "done"
        result.seconds = time.perf_counter() - started
        summary.files.append(result)
        if result.status == "failed":
            continue  # not in the manifest: a later run with the right kind may import it
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


def _land(
    parsed: ParsedFile,
    result: FileResult,
    data_dir: Path,
    registry: InstrumentRegistry,
    exchange: str,
    symbol: str,
    instrument_id: int,
) -> None:
    result.kind, result.stream, result.rows = parsed.kind, parsed.stream, parsed.rows
    hint = parsed.symbol_hint
    looks_like_symbol = bool(hint) and ("/" in hint or (hint.isupper() and len(hint) >= 5))
    if looks_like_symbol and hint not in (symbol, market_for(symbol)["id"]):
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
    records = _records_for(parsed, exchange, symbol, result)
    writer = f"import-{result.digest[:_DIGEST_CHARS]}"
    _remove_interrupted(data_dir, writer, exchange, symbol)
    names = registry.names()
    if len(records):
        records["instrument_id"] = instrument_id
        result.first_ts_ms, result.last_ts_ms = int(records["ts_ms"].min()), int(records["ts_ms"].max())
        if parsed.stream == "funding":
            _observe_intervals(registry, exchange, symbol, records)
        table = schema.to_arrow(parsed.stream, records, names)
        seq = landing.next_seq(data_dir, writer)
        result.files += [str(p) for p in landing.write_stream(data_dir, parsed.stream, table, writer, seq)]
        result.landed = len(records)
    if parsed.reject_counts:
        _quarantine(parsed, result, data_dir, writer, instrument_id, names)


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


def _observe_intervals(registry: InstrumentRegistry, exchange: str, symbol: str, records: np.ndarray) -> None:
    intervals = records["interval_h"]
    changes = np.concatenate([[True], intervals[1:] != intervals[:-1]])  # only where the value changes
    for ts, interval_h in zip(records["funding_ts_ms"][changes].tolist(), intervals[changes].tolist(), strict=True):
        if interval_h > 0:
            registry.observe_interval(exchange, symbol, int(ts), float(interval_h))


def _remove_interrupted(data_dir: Path, writer: str, exchange: str, symbol: str) -> None:
    """Delete landing files of this writer and instrument that an interrupted import left (no manifest entry)."""
    root = landing.landing_root(data_dir)
    if not root.exists():
        return
    for path in root.glob(f"*/date=*/hour=*/{writer}-*.parquet"):
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
