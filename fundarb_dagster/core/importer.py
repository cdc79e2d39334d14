"""`fundarb import`: recorded files (Binance public-data archives, the fixture CSV shapes) -> the landing zone.

Every argument is checked before any work (`check_arguments`: kind, exchange id, symbol, data folder, that
each path exists and each .zip opens). Then each file: read its bytes' sha256, skip it when
`data_dir/imports.json` says that digest was already imported for this (exchange, symbol) as the kind it
would be read as now (given, or detected), else parse it with the replay parser
(`sources.replay.parse_file`: kind detected or given, rows normalized to the `schema` dtypes, bad rows
quarantined with a reason naming the field and the value), register the instrument in
`data_dir/instruments.json` (stable ids) and observe funding intervals into the registry. The symbol is
`--symbol`, or each file's own market id from its name (`symbol_from_name`: one import of a venue's whole
archive folder).

Then the accepted files' rows land as day files sorted by time (`import_landing.DayLanding`): the files are
parsed month by month, and each round writes the days complete so far while the next files are parsed, under
the writer `import-<digest of the files accepted up to that round>`; a day gets one file (a second only for a
row outside its file's month read after its day was written). A venue's four years of hourly funding for many
symbols is ~1,500 files, not one per settlement hour and symbol.

Idempotent: a digest in the manifest lands nothing new, and says so. A file of which no row (or less than
`min_landed_share`) would land is not landed nor recorded, so the right kind imports it later. Crash-safe:
each landed file is atomic; a journal under `data_dir/.fundarb/imports/` lists the files an import is about to
write and is removed once the manifest records them, so the next import removes what an interrupted one
left (its journal's files, never a scan of the landing zone), and a re-run lands exactly one copy; a journal
naming a writer the manifest records is of an import that finished (killed before removing it): it goes alone.
Quarantined rows are written to `data_dir/quarantine/import-<digest>-<instrument id>.jsonl` and land as
`capture_events` rows (kind QUARANTINED), so the warehouse counts them too.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import arguments, schema
from .config import ConfigError
from .import_landing import DayLanding, recover_interrupted
from .instruments import Instrument, InstrumentRegistry, registry_path
from .landing import write_atomic
from .sources.markets import market_for
from .sources.replay import KINDS, ParsedFile, detect_kind, parse_files
from .sources.replay.formats import period_start_ms, remember_first_line, symbol_hint
from .sources.replay.parsers import BULK_MAX_BYTES
from .venues import UNIFIED_SYMBOL

MANIFEST_NAME = "imports.json"
_DIGEST_CHARS = 12


@dataclass
class FileResult:
    """What happened to one file."""

    path: str
    digest: str
    symbol: str = ""  # the unified symbol it was imported as
    kind: str = ""
    stream: str = ""
    status: str = "imported"  # imported | skipped (already imported) | failed
    rows: int = 0  # data rows read
    landed: int = 0  # rows written to the landing zone
    quarantined: int = 0
    duplicates: int = 0  # venue duplicates dropped inside the file
    other_instruments: int = 0  # rows of other (exchange, symbol) in a multi-instrument file
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
    instrument_id: int  # the first file's (-1: none); a many-symbol import has one per symbol
    files: list[FileResult] = field(default_factory=list)
    landing_files: list[str] = field(default_factory=list)  # the day files written, every stream

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


IMPORTED_SUFFIXES = (".csv", ".zip", ".parquet")


def expand_paths(paths: Sequence[Path | str]) -> list[Path]:
    """Files as given; a folder stands for the .csv, .zip and .parquet files under it (sorted), e.g. a
    day-by-day Binance download of one symbol."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out += _files_under(path)
        else:
            out.append(path)
    return out


def _files_under(folder: Path) -> list[Path]:
    """The imported files under a folder, in Path order (os.walk: a Path and a stat per entry cost more than the
    rest of a small archive's import)."""
    found: list[tuple[list[str], str]] = []
    for root, _, names in os.walk(folder):
        parts = Path(root).relative_to(folder).parts
        for name in names:
            full = os.path.join(root, name)
            if os.path.splitext(name)[1].lower() in IMPORTED_SUFFIXES and os.path.isfile(full):
                found.append(([*parts, name], full))
    return [Path(full) for _, full in sorted(found)]


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
    # json.dumps, not dump: only the one-shot encoder is C (an archive folder's import is thousands of entries)
    write_atomic(manifest_path(data_dir), lambda handle: handle.write(json.dumps(manifest, sort_keys=True).encode()))


def _recorded_writers(manifest: dict[str, dict[str, dict]]) -> set[str]:
    """The writer names the manifest records imports under (a finished import's journal names its own)."""
    return {entry.get("writer", "") for entries in manifest.values() for entry in entries.values()}


def _entry_key(exchange: str, symbol: str, kind: str) -> str:
    return f"{exchange} {symbol} {kind}"


# -- importing ----------------------------------------------------------------------------------------
def check_exchange(exchange: str) -> None:
    import ccxt

    if exchange.lower() not in ccxt.exchanges:
        raise ConfigError(f"--exchange: {exchange!r} is not a ccxt exchange id (e.g. binance, bybit, okx)")


def resolve_symbol(
    exchange: str,
    symbol: str,
    data_dir: Path | str,
    market: Callable[[str, str | None], Mapping[str, Any] | None],
    *,
    market_type: str | None = None,
    registry: InstrumentRegistry | None = None,
) -> str:
    """The unified symbol of `--symbol`, which may be the venue's own market id (`BTCUSD_PERP`, as Binance's
    archive paths spell it): from the registry (a capture or an earlier import registered that id), else from
    ccxt's markets (`market(id)`: the market, or None when they could not be loaded). A unified symbol is
    returned as is; anything else is a ConfigError naming the value. `market_type` ("spot" or "swap", what a
    file's kind or folders say) chooses where an id names a spot and a contract market. `registry`: the
    data folder's registry when the caller loaded it already (one load for the ids of a whole folder)."""
    check_exchange(exchange)
    if UNIFIED_SYMBOL.match(symbol):
        return symbol
    known: list[str] = []
    if registry is None and registry_path(data_dir).exists():
        registry = InstrumentRegistry.load(registry_path(data_dir))
    if registry is not None:
        listed = [i for i in registry if i.exchange == exchange and i.venue_symbol == symbol]
        if len(listed) > 1 and market_type is not None:
            listed = [i for i in listed if i.is_contract == (market_type != "spot")] or listed
        known = sorted(i.symbol for i in listed)
    if len(known) > 1:
        raise ConfigError(f"--symbol: {symbol!r} is the id of {known} on {exchange}: pass one of them")
    if known:
        return known[0]
    found = market(symbol, market_type)
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
    symbol: str | None,
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
        if symbol is not None:  # None: each file's name says its market (`symbol_from_name`)
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
            raise ConfigError(f"paths: folder {str(raw)!r} holds no .csv, .zip or .parquet file")
        files += found
    for path in files:
        if path.suffix.lower() == ".zip":
            try:
                with zipfile.ZipFile(path) as archive:
                    archive.namelist()
            except (zipfile.BadZipFile, OSError) as exc:
                raise ConfigError(f"paths: {str(path)!r} is not a readable zip archive ({exc})") from None
        if path.suffix.lower() == ".parquet":
            try:
                pq.read_schema(path)
            except (pa.ArrowInvalid, OSError) as exc:
                raise ConfigError(f"paths: {str(path)!r} is not a readable Parquet file ({exc})") from None
    return files


def import_files(
    paths: Sequence[Path | str],
    data_dir: Path | str,
    *,
    exchange: str,
    symbol: str | None,
    kind: str | None = None,
    progress: Callable[[str], None] | None = _stderr,
    market: Mapping[str, Any] | Callable[[str], Mapping[str, Any] | None] | None = None,
    min_landed_share: float = MIN_LANDED_SHARE,
    symbol_of: Callable[[Path, str | None], str] | None = None,
) -> ImportSummary:
    """Import recorded files into the landing zone (see the module docstring).

    One instrument (`symbol`), or, with `symbol=None`, each file's own: `symbol_of(path, kind)` resolves the
    market id its name starts with (Binance's archives: `BTCUSDT-fundingRate-2024-01.zip`), see
    `symbol_from_name`. Every argument is checked first (`check_arguments`: a `ConfigError` and nothing done).
    A file that cannot be read at all (unknown kind, not a CSV), or of which no row or less than
    `min_landed_share` of its rows would land (a wrong `kind`, a file of another shape), is reported as failed
    in the summary with the reason, lands nothing and is not recorded as imported; the others still import.
    Bad rows of a file that lands are quarantined and counted. `market` is ccxt's market of the symbol (or a
    function of the symbol giving it, for many): contract size, settle currency, inverse or linear and expiry
    come from it (see `instrument_for`), and contract amounts land in base units.

    The rows of every file that passes land as day files, sorted by time, in rounds (`DayLanding`): one file per
    stream and day (see the module doc for the one exception), whatever the number of files and symbols.
    """
    data_dir = Path(data_dir)
    files = check_arguments(
        paths, data_dir, exchange=exchange, symbol=symbol, kind=kind, min_landed_share=min_landed_share
    )
    exchange = exchange.lower()
    manifest = load_manifest(data_dir)
    recover_interrupted(data_dir, _recorded_writers(manifest))
    registry_file = registry_path(data_dir)
    registry = InstrumentRegistry.load(registry_file)
    summary = ImportSummary(exchange=exchange, symbol=symbol or "(from file names)", instrument_id=-1)
    instruments: dict[str, Instrument] = {}
    if symbol is not None:  # registered (ccxt's market corrects what was) even when every file is skipped
        instruments[symbol] = instrument_for(registry, exchange, symbol, market(symbol) if callable(market) else market)
        summary.instrument_id = instruments[symbol].id
    periods = [_period(path) for path in files]
    order = sorted(range(len(files)), key=lambda i: (periods[i], i))  # month by month: see import_landing
    starts = [periods[i] for i in order]
    accepted: list[tuple[FileResult, ParsedFile, str]] = []
    results: list[tuple[int, FileResult]] = []  # (the file's place among the paths given, its result)
    with DayLanding(data_dir, exchange, registry.names) as days:
        for chunk in _read_ahead([files[i] for i in order]):  # each file read once (the next chunk meanwhile)
            planned: list[tuple[FileResult, str, Instrument, Path]] = []
            kinds: list[str | None] = []  # each planned file's kind (None: not told, parse_file says why)
            contents: list[bytes | None] = []  # each planned file's bytes (None: parse_file reads it)
            for path, digest, raw in chunk:
                result = FileResult(str(path), digest)
                results.append((order[len(results)], result))
                read_as = kind or _detected(path, raw)  # told once per file: its symbol, manifest key and parsing
                try:
                    file_symbol = symbol if symbol is not None else _symbol_of(symbol_of, path, read_as)
                except ConfigError as exc:
                    result.status, result.error = "failed", str(exc)
                    continue
                result.symbol = file_symbol
                # Done only as the kind it would be read as now: a file recorded under another kind imports again.
                done = manifest.get(digest, {}).get(_entry_key(exchange, file_symbol, read_as))
                if done is not None:
                    result.status, result.kind, result.stream = "skipped", done.get("kind", ""), done.get("stream", "")
                    if progress:
                        progress(
                            f"{path.name}: already imported as {result.kind} (sha256 {digest[:_DIGEST_CHARS]}), "
                            "nothing new"
                        )
                    continue
                if file_symbol not in instruments:
                    found = market(file_symbol) if callable(market) else market
                    instruments[file_symbol] = instrument_for(registry, exchange, file_symbol, found)
                if summary.instrument_id < 0:
                    summary.instrument_id = instruments[file_symbol].id
                planned.append((result, file_symbol, instruments[file_symbol], path))
                kinds.append(read_as)
                contents.append(raw)
            batch: dict[str, list[tuple[pa.Table, int]]] = {}  # per stream, each accepted file's rows and instrument
            now = _parse_planned(
                planned, kinds, contents, batch, data_dir, registry, exchange, kind, progress, min_landed_share
            )
            for stream, parts in batch.items():
                days.add(stream, _joined(parts))
            days.accept([result.digest for result, _, _ in now])
            accepted += now
            # the days before the first period still to read are whole (if the names tell the truth): land them
            days.land(starts[len(results)] if len(results) < len(starts) else None)
        summary.files = [result for _, result in sorted(results, key=lambda item: item[0])]
        if not accepted:
            registry.save(registry_file)
            return summary
        ids = {sym: instrument.id for sym, instrument in instruments.items()}
        summary.landing_files = _land_rest(data_dir, exchange, days, accepted, ids, registry, manifest)
    if progress:
        for result, _, _ in accepted:
            progress(f"{Path(result.path).name}: {result.landed:,} rows landed, {result.quarantined:,} quarantined")
        progress(f"{summary.landed:,} rows landed in {len(summary.landing_files):,} day files ({days.writer})")
    return summary


def _period(path: Path) -> int:
    """The start of the period a file's name says (`formats.period_start_ms`); -1 when it says none: such a
    file is parsed first, as it holds every day back until it is."""
    start = period_start_ms(path)
    return -1 if start is None else start


def _parse_planned(
    planned: list[tuple[FileResult, str, Instrument, Path]],
    kinds: list[str | None],
    contents: list[bytes | None],
    batch: dict[str, list[tuple[pa.Table, int]]],
    data_dir: Path,
    registry: InstrumentRegistry,
    exchange: str,
    kind: str | None,
    progress: Callable[[str], None] | None,
    min_landed_share: float,
) -> list[tuple[FileResult, ParsedFile, str]]:
    """Parse the planned files (small archives of one kind read together, same rules as one by one: see
    parse_files), judge each (`_accept`), observe funding intervals and add each accepted file's rows to
    `batch`; returns the accepted files."""
    started = time.perf_counter()
    parsed_files = parse_files(
        [path for _, _, _, path in planned],
        kind,
        inverse=[i.inverse for _, _, i, _ in planned],
        progress=progress,
        kinds=kinds,
        contents=contents,
    )
    accepted = []
    for (result, file_symbol, instrument, path), parsed in zip(planned, parsed_files, strict=True):
        if isinstance(parsed, (ValueError, UnicodeDecodeError, OSError, zipfile.BadZipFile)):
            result.status, result.error = "failed", str(parsed)
            continue
        if isinstance(parsed, (KeyError, IndexError)):  # the columns of another kind than the one asked for
            result.status, result.error = "failed", f"kind: {path.name} cannot be read as {kind!r} (no column {parsed})"
            continue
        if isinstance(parsed, Exception):
            raise parsed
        records = _accept(parsed, result, exchange, file_symbol, instrument, min_landed_share)
        result.seconds = (time.perf_counter() - started) / len(planned)
        if result.status == "failed":
            _write_rejects(parsed, result, data_dir, instrument.id)  # kept either way, never landed as events
            continue  # lands nothing, not in the manifest: a later run with the right kind imports it
        if parsed.stream == "funding" and len(records):
            source = "inferred" if _interval_inferred(parsed, exchange, file_symbol) else "reported"
            _observe_intervals(registry, exchange, file_symbol, records, source, parsed.arrays)
        batch.setdefault(parsed.stream, []).append((_fields_table(parsed.stream, records), instrument.id))
        parsed.parts, parsed.arrays = {}, {}  # its rows are the batch's now: landed in rounds, not held to the end
        accepted.append((result, parsed, file_symbol))
    return accepted


# An import reads its files in chunks of about this many bytes or files, each file once (its digest and its bytes),
# the next chunk on reader threads while this one is parsed: memory holds two chunks, not the import's files. Each
# chunk is a round of day files (`import_landing`), written while the next is parsed: smaller chunks overlap more
# of the writes (the last round's are not), larger ones cost fewer reads and rounds.
READ_CHUNK_BYTES = 64 << 20
READ_CHUNK_FILES = 500
_READ_THREADS = 2


def _read_ahead(files: Sequence[Path]) -> Iterator[list[tuple[Path, str, bytes | None]]]:
    """The files in order, in chunks of about `READ_CHUNK_BYTES` or `READ_CHUNK_FILES`: (path, sha256 of its
    bytes, its bytes, or None for a file parse_files would not read whole: large or Parquet). Reading and hashing
    release the GIL: the next chunk is read on `_READ_THREADS` threads while the caller parses this one, each
    thread a run of files (a task per file costs more than reading a month of 8-hourly funding)."""
    chunks: list[list[Path]] = [[]]
    size = 0
    for path in files:
        if size >= READ_CHUNK_BYTES or len(chunks[-1]) >= READ_CHUNK_FILES:
            chunks.append([])
            size = 0
        chunks[-1].append(path)
        size += _size(path)

    def submit(chunk: list[Path]) -> list[Future[list[tuple[str, bytes | None]]]]:
        step = max(1, -(-len(chunk) // (4 * _READ_THREADS)))
        return [
            pool.submit(lambda run: [_read_one(p) for p in run], chunk[i : i + step])
            for i in range(0, len(chunk), step)
        ]

    with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
        pending = submit(chunks[0])
        for i, chunk in enumerate(chunks):
            ahead = submit(chunks[i + 1]) if i + 1 < len(chunks) else []
            read = [item for future in pending for item in future.result()]
            yield [(path, *item) for path, item in zip(chunk, read, strict=True)]
            pending = ahead


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0  # the read says what is wrong


def _read_one(path: Path) -> tuple[str, bytes | None]:
    """(sha256 of a file's bytes, the bytes when parse_files would read them whole: a CSV or zip archive up to
    `BULK_MAX_BYTES`); a larger or Parquet file is hashed as a stream and parsed from disk. A CSV's first line
    (its kind, its header) is kept from the same bytes: the file is opened once."""
    try:
        stat = os.stat(path)
    except OSError:
        return file_digest(path), None  # raises what is wrong, as before
    if path.suffix.lower() in (".csv", ".zip") and stat.st_size <= BULK_MAX_BYTES:
        raw = path.read_bytes()
        remember_first_line(path, stat, raw)
        return hashlib.sha256(raw).hexdigest(), raw
    return file_digest(path), None


def _land_rest(
    data_dir: Path,
    exchange: str,
    days: DayLanding,
    accepted: list[tuple[FileResult, ParsedFile, str]],
    ids: dict[str, int],
    registry: InstrumentRegistry,
    manifest: dict,
) -> list[str]:
    """The import's last round (the rows kept, the quarantine's events; every file synced to disk), then the
    registry and the manifest; returns every day file written."""
    quarantined = [(result, parsed, sym) for result, parsed, sym in accepted if parsed.reject_counts]
    events = [_quarantine(parsed, result, data_dir, ids[sym]) for result, parsed, sym in quarantined]
    if events:
        table = schema.to_arrow("capture_events", _sorted(np.concatenate(events)), registry.names())
        days.add("capture_events", table)
    written = days.finish()
    registry.save(registry_path(data_dir))  # intervals observed before the manifest says "done"
    for result, parsed, file_symbol in accepted:
        manifest.setdefault(result.digest, {})[_entry_key(exchange, file_symbol, parsed.kind)] = {
            "path": result.path,
            "kind": parsed.kind,
            "stream": parsed.stream,
            "rows": result.rows,
            "landed": result.landed,
            "quarantined": result.quarantined,
            # the import's name: its last round's day files (landing/<stream>/date=*/<writer>.parquet) and the
            # earlier rounds' (named after the files accepted up to them, see import_landing.writer_name)
            "writer": days.writer,
            "imported_at_ms": int(time.time() * 1000),
        }
    _save_manifest(data_dir, manifest)
    days.done()
    return written


def symbol_from_name(
    exchange: str,
    data_dir: Path | str,
    market: Callable[[str], Mapping[str, Any] | None],
) -> Callable[[Path, str | None], str]:
    """`symbol_of` for `import_files(symbol=None)`: the unified symbol of the market id a file's name starts
    with (`BTCUSDT-fundingRate-2024-01.zip`), resolved once per id like `--symbol` (registry, else ccxt's
    markets); where an id is a spot and a contract market (binance `BTCUSDT`), the file's kind or folders
    (`futures/um/...`, `spot/...`) choose. A name the fixture shapes spell as a symbol is taken as is."""
    cache: dict[tuple[str, str | None], str] = {}
    registries: list[InstrumentRegistry] = []  # loaded once, at the first id to resolve

    def resolve(path: Path, kind: str | None) -> str:
        found_kind = kind or _detected(path)
        if found_kind is None:
            raise ConfigError(f"paths: {path.name!r}: its kind cannot be told, so neither can its symbol")
        hint, market_type = symbol_hint(path, found_kind)
        if hint is None:
            raise ConfigError(f"paths: {path.name!r} does not name its market (pass --symbol)")
        if UNIFIED_SYMBOL.match(hint):
            return hint
        key = (hint, market_type)
        if key not in cache:
            if not registries and registry_path(data_dir).exists():
                registries.append(InstrumentRegistry.load(registry_path(data_dir)))
            registry = registries[0] if registries else None
            cache[key] = resolve_symbol(exchange, hint, data_dir, market, market_type=market_type, registry=registry)
        return cache[key]

    return resolve


def _symbol_of(symbol_of: Callable[[Path, str | None], str] | None, path: Path, kind: str | None) -> str:
    if symbol_of is None:
        raise ConfigError("--symbol: none given and no way to resolve a file name's market id")
    return symbol_of(path, kind)


def _accept(
    parsed: ParsedFile,
    result: FileResult,
    exchange: str,
    symbol: str,
    instrument: Instrument,
    min_landed_share: float,
) -> np.ndarray | pa.Table:
    """The file's records (or Arrow table) for this instrument, in base units, or a failed `result` saying why
    none land."""
    result.kind, result.stream, result.rows = parsed.kind, parsed.stream, parsed.rows
    hint = parsed.symbol_hint
    looks_like_symbol = bool(hint) and ("/" in hint or (hint.isupper() and len(hint) >= 5))
    if looks_like_symbol and hint not in (symbol, instrument.venue_symbol) and hint != market_for(symbol)["id"]:
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
        return np.zeros(0, dtype=schema.OHLCV)
    records = _records_for(parsed, exchange, symbol, result)
    if isinstance(records, pa.Table) and _converts(parsed.stream, instrument):
        records = schema.from_arrow(parsed.stream, records)  # contract amounts: converted on records
    if isinstance(records, np.ndarray):
        records = in_base_units(parsed.stream, records, instrument)
        records["instrument_id"] = instrument.id
    own = result.rows - result.other_instruments  # the rows of other instruments are not this import's
    if not len(records):
        result.status = "failed"
        result.error = (
            f"kind: read as {parsed.kind!r}, no row of {result.rows:,} landed ({result.quarantined:,} "
            "quarantined); not recorded as imported: is --kind right?"
        )
    elif len(records) < min_landed_share * own:
        result.status = "failed"
        result.error = (
            f"min_landed_share: read as {parsed.kind!r}, {len(records):,} of {own:,} rows landed "
            f"({len(records) / own:.1%} < {min_landed_share:.0%}; {result.quarantined:,} quarantined): "
            "nothing kept, not recorded as imported; is --kind right? (--min-landed-share 0 keeps them)"
        )
    else:
        result.landed = len(records)
        ts = _column(records, "ts_ms", parsed.arrays)
        result.first_ts_ms, result.last_ts_ms = int(ts.min()), int(ts.max())
    return records


def _column(records: np.ndarray | pa.Table, name: str, views: Mapping[str, np.ndarray]) -> np.ndarray:
    """A column of a file's records or Arrow table; `views`: the parser's numpy views of that table's columns
    (`ParsedFile.arrays`), read instead of the table where they hold it."""
    if isinstance(records, np.ndarray):
        return records[name]
    return views[name] if name in views else records.column(name).to_numpy()


def _converts(stream: str, instrument: Instrument) -> bool:
    """Whether `in_base_units` changes a file's rows of this stream for this instrument (contract amounts)."""
    return instrument.is_contract and (stream in ("trades", "tickers") or (stream == "ohlcv" and instrument.inverse))


def _fields_table(stream: str, records: np.ndarray | pa.Table) -> pa.Table:
    """A file's accepted rows as an Arrow table of the stream's record fields (`schema.columns_table`; a file
    read with others is one already). Its instrument id is set for all files at once (`_joined`)."""
    if isinstance(records, pa.Table):
        return records
    return schema.columns_table(stream, {name: records[name] for name in schema.public_fields(stream)}, len(records))


def _joined(parts: list[tuple[pa.Table, int]]) -> pa.Table:
    """The files' rows one after the other (each file a chunk, no copy), the instrument id column set once."""
    table = pa.concat_tables([part for part, _ in parts])
    ids = np.repeat(np.array([i for _, i in parts], dtype=np.int32), [part.num_rows for part, _ in parts])
    return table.set_column(table.schema.get_field_index("instrument_id"), "instrument_id", pa.array(ids))


def _sorted(records: np.ndarray) -> np.ndarray:
    return records[np.argsort(records["ts_ms"], kind="stable")]


def _detected(path: Path, raw: bytes | None = None) -> str | None:
    """The kind a file would be read as without --kind (None when it cannot be told: it will fail to parse);
    `raw`: its bytes, when read already."""
    try:
        return detect_kind(path, raw)
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

    Trades: amount = contracts x size (/ price, inverse), an inverse trade's cost its contracts x size (USD);
    bookTicker sizes at their own side's price. Candles: an inverse file's base-volume columns are read
    (`parse_file(inverse=)`) and its contract count becomes the quote volume (x size).
    """
    if not _converts(stream, instrument) or not len(records):
        return records
    if stream == "ohlcv":  # an inverse contract's (`_converts`)
        records["quote_volume"] = records["quote_volume"] * instrument.contract_size
    if stream == "trades":
        records["contracts"] = records["amount"]
        records["contract_size"] = instrument.contract_size
        records["amount"] = instrument.base_amounts(records["contracts"], records["price"])
        if instrument.inverse:
            records["cost"] = records["contracts"] * instrument.contract_size
    elif stream == "tickers":
        records["bid_contracts"], records["ask_contracts"] = records["bid_size"], records["ask_size"]
        records["contract_size"] = instrument.contract_size
        records["bid_size"] = instrument.base_amounts(records["bid_contracts"], records["bid"])
        records["ask_size"] = instrument.base_amounts(records["ask_contracts"], records["ask"])
    return records


def _records_for(parsed: ParsedFile, exchange: str, symbol: str, result: FileResult) -> np.ndarray | pa.Table:
    """The rows of this (exchange, symbol): all of a single-instrument file (records, or the Arrow table of a
    file read with others), the matching part of a table."""
    dtype = schema.dtype_of(parsed.stream)
    chosen: np.ndarray | pa.Table = np.zeros(0, dtype=dtype)
    for (part_exchange, part_symbol), records in parsed.parts.items():
        if (part_exchange is None or part_exchange == exchange) and (part_symbol is None or part_symbol == symbol):
            chosen = np.concatenate([chosen, records]) if len(chosen) else records  # the parsed file's own
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
    registry: InstrumentRegistry,
    exchange: str,
    symbol: str,
    records: np.ndarray | pa.Table,
    source: str,
    views: Mapping[str, np.ndarray],
) -> None:
    intervals = _column(records, "interval_h", views)
    changes = np.concatenate([[True], intervals[1:] != intervals[:-1]])  # only where the value changes
    settled = _column(records, "funding_ts_ms", views)
    for ts, interval_h in zip(settled[changes].tolist(), intervals[changes].tolist(), strict=True):
        if interval_h > 0:
            registry.observe_interval(exchange, symbol, int(ts), float(interval_h), source=source)


def _quarantine(parsed: ParsedFile, result: FileResult, data_dir: Path, instrument_id: int) -> np.ndarray:
    """Keep a landed file's rejects: a JSONL beside the data, and the `capture_events` rows (QUARANTINED, one
    per reason) the import lands with its data, so the warehouse counts them too."""
    if not parsed.reject_counts:
        return schema.empty("capture_events", 0)
    _write_rejects(parsed, result, data_dir, instrument_id)
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
    return events


def _write_rejects(parsed: ParsedFile, result: FileResult, data_dir: Path, instrument_id: int) -> None:
    """The rejects of a file as JSONL under data_dir/quarantine (the first thousand with line, field, value)."""
    if not parsed.reject_counts:
        return
    folder = data_dir / "quarantine"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"import-{result.digest[:_DIGEST_CHARS]}-{instrument_id}.jsonl"
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    with open(tmp, "w") as handle:
        handle.write(json.dumps({"file": str(parsed.path), "counts": dict(parsed.reject_counts)}) + "\n")
        for reject in parsed.rejects:
            handle.write(json.dumps(asdict(reject)) + "\n")
    os.replace(tmp, target)


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
            f"  {name}: {f.kind} -> {f.stream}{' ' + f.symbol if f.symbol != summary.symbol else ''}: "
            f"{f.rows:,} rows read, {f.landed:,} landed, {f.quarantined:,} quarantined{tail}"
        )
        for warning in f.warnings:
            lines.append(f"      warning: {warning}")
        for reason, count in sorted(f.reasons.items(), key=lambda kv: -kv[1]):
            lines.append(f"      quarantined {count:,} x {reason}")
        for sample in f.samples[:5]:
            lines.append(f"        e.g. {sample}")
    totals = Counter(f.status for f in summary.files)
    lines.append(
        f"total: {summary.landed:,} rows landed in {len(summary.landing_files):,} day files, "
        f"{summary.quarantined:,} quarantined; "
        f"{totals['imported']} imported, {totals['skipped']} skipped, {totals['failed']} failed"
    )
    return "\n".join(lines)
