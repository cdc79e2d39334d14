"""An import's rows -> day files, in rounds, while the import parses on: `importer.import_files` lands with it.

An import parses its files in chunks (`importer._read_ahead`), in the order of the period their names end with
(Binance archives: `...-2024-01.zip`, `...-2024-01-15.zip`; `formats.period_start_ms`). After each chunk, the
days before the first period still to be parsed hold every row they will get: `DayLanding.land` hands their day
files to writer threads, which write them while the main thread parses the next chunk (the Parquet writer
releases the GIL: the per-file Python of parsing and the writes share both cores instead of following each
other), and keeps the other rows for a later round. Each day file is still one per stream and day, sorted by
time, with the rows a single round would give it. The names are a hint, never trusted: a row of a day already
written (a file holding rows outside its name's period) lands in a day file of its own round, so nothing is
lost (that day then has two files); a file whose name says no period holds every day back until it is parsed
(such files are parsed first). An import of one chunk (one file, a small folder) lands in one round, as
before.

Crash safety, without listing the landing zone: a journal `data_dir/.fundarb/imports/<import>.json` lists the
files the import may have written, rewritten atomically before each round's writes; the manifest records the
imported files once after the last round and one `os.sync()`, then the journal goes (`DayLanding.done`). An
import that did not finish leaves its journal, and the next import removes the files it lists
(`recover_interrupted`): it is redone as one copy. Once its files are on disk the journal also names the writer
the manifest records them under: an import killed after saving its manifest had finished, and the next import
removes its journal alone. A round's day files are named after the venue and the
digests of the files accepted up to it (`writer_name`): a redone import writes the same names, and another set
of files never collides with them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import numpy as np
import pyarrow as pa

from . import landing, schema
from .units import DAY_MS


def writer_name(exchange: str, digests: Sequence[str]) -> str:
    """The landing writer of an import's round: a digest of the venue and the digests of the files accepted up
    to it, so a redone import (after a crash) writes the same names and a different set of files never collides
    with it. The last round's is the import's name (every accepted file's digest)."""
    joined = hashlib.sha256(" ".join([exchange, *sorted(digests)]).encode()).hexdigest()
    return f"import-{joined[:16]}"


class DayLanding:
    """The day files of one import, written in rounds (see the module docstring). `add` a chunk's rows per
    stream (`accept` their files' digests), `land` the days before a time (the writes run on while the caller
    goes on), `finish` the last round (every row; waits for the writes and syncs them to disk), `done` once the
    manifest records them. Use it as a context manager: leaving it waits for the writes in flight (an error
    cancels the ones not started); their files are in the journal either way."""

    def __init__(self, data_dir: Path, exchange: str, names: Callable[[], dict[int, tuple[str, str]]]) -> None:
        self.data_dir, self.exchange, self.names = Path(data_dir), exchange, names
        self.pending: dict[str, list[pa.Table]] = {}  # rows not written yet, per stream: record fields, no names
        self.digests: list[str] = []  # of the files accepted so far
        self.planned: list[str] = []  # every file the rounds so far write: the journal's list
        self.journal: Path | None = None
        self.writer = ""  # the last round's
        self._writes: list[Future[Path]] = []  # the last round's, in flight
        self._pool = ThreadPoolExecutor(max_workers=landing.WRITE_THREADS, thread_name_prefix="day-files")

    def __enter__(self) -> DayLanding:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._pool.shutdown(wait=True, cancel_futures=error is not None)

    def add(self, stream: str, table: pa.Table) -> None:
        """Rows to land: a stream's record fields, `instrument_id` set (`exchange`/`symbol` are added as they
        land), or a table with its names already."""
        if table.num_rows:
            self.pending.setdefault(stream, []).append(table)

    def accept(self, digests: Sequence[str]) -> None:
        """The digests of the files whose rows were added: the next round's name covers them."""
        self.digests += digests

    def land(self, before_ms: int | None) -> None:
        """Hand the day files of every day before `before_ms` (None: every day) to the writer threads, after the
        previous round's writes are done (one round in flight: memory holds it and the rows kept, not the
        import; a round with nothing to write does not wait for them); the rows of later days wait for a later
        round."""
        cut_ms = None if before_ms is None else before_ms // DAY_MS * DAY_MS
        jobs: list[tuple[str, landing.DaySplit]] = []
        kept: dict[str, list[pa.Table]] = {}
        for stream, tables in self.pending.items():
            now, later = _cut(tables, cut_ms)
            if later:
                kept[stream] = later
            if now:
                jobs.append((stream, now))
        self.pending = kept
        if not jobs:
            return
        names = self.names()
        splits = []
        for stream, now in jobs:
            table = pa.Table.from_batches(now)
            if "exchange" not in table.column_names:
                table = schema.with_names(stream, table, names, dictionary_strings=True)
            splits.append((stream, landing.split_days(table)))
        self.writer = writer_name(self.exchange, self.digests)
        self._wait()
        for stream, split in splits:
            self.planned += [str(p) for p in landing.day_file_paths(self.data_dir, stream, split.days, self.writer)]
        self.journal = write_journal(self.data_dir, self.journal.stem if self.journal else self.writer, self.planned)
        for stream, split in splits:
            writes = landing.submit_days(self._pool, self.data_dir, stream, split, self.writer)
            self._writes += [future for _, future in writes]

    def finish(self) -> list[str]:
        """The last round: every row kept lands, the writes are waited for and synced to disk (one `os.sync()`
        for every round's files: `landing.write_parquet_atomic(durable=False)`) before anything records them.
        Returns every day file written (the journal's list: what the rounds planned, they wrote)."""
        self.land(None)
        self._wait()
        if self.planned:
            os.sync()
        if self.journal is not None:  # the name the manifest will record them under: see recover_interrupted
            self.journal = write_journal(self.data_dir, self.journal.stem, self.planned, recorded_as=self.writer)
        return list(self.planned)

    def done(self) -> None:
        """The manifest records the files: the journal is no longer needed."""
        if self.journal is not None:
            self.journal.unlink()
            self.journal = None

    def _wait(self) -> None:
        writes, self._writes = self._writes, []
        for future in writes:
            future.result()  # a write that failed raises here; its file is in the journal


def _cut(tables: list[pa.Table], cut_ms: int | None) -> tuple[list[pa.RecordBatch], list[pa.Table]]:
    """The rows before `cut_ms` (None: all) as record batches, and the others, each batch sorted by time first if
    it is not (a file's rows nearly always are): a batch's rows before a time are a prefix of it, so each side is
    a zero-copy slice, in the order of the files (the stable sort of each day then gives the rows one round would
    give it)."""
    now: list[pa.RecordBatch] = []
    later: list[pa.Table] = []
    for table in tables:
        for batch in table.to_batches():
            if cut_ms is None:
                now.append(batch)
                continue
            ts = batch.column("ts_ms").to_numpy()
            if not bool(np.all(ts[1:] >= ts[:-1])):
                order = np.argsort(ts, kind="stable")
                batch, ts = batch.take(pa.array(order)), ts[order]
            k = int(np.searchsorted(ts, cut_ms))
            if k:
                now.append(batch.slice(0, k))
            if k < batch.num_rows:
                later.append(pa.Table.from_batches([batch.slice(k)]))
    return now, later


# -- crash safety: a journal per import, not a scan of the landing zone --------------------------------
def journal_dir(data_dir: Path) -> Path:
    return Path(data_dir) / ".fundarb" / "imports"


def write_journal(data_dir: Path, name: str, planned: Sequence[Path | str], recorded_as: str = "") -> Path:
    """Before an import lands anything (and before each further round): the files it will have written, so an
    interrupted import's are removed; once they are on disk, `recorded_as` the writer name the manifest is about
    to record them under (an import that dies after saving its manifest has finished: its files stay)."""
    entry = {"pid": os.getpid(), "files": [str(p) for p in planned], "recorded_as": recorded_as}
    # atomic and durable (the folder fsynced too): the journal survives a power loss with the files it lists
    return landing.write_atomic(journal_dir(data_dir) / f"{name}.json", lambda h: h.write(json.dumps(entry).encode()))


def recover_interrupted(data_dir: Path, recorded: Collection[str] = ()) -> int:
    """Remove what imports that did not finish left (their journals list the files they were writing, and
    each file's temporaries); returns how many files were removed. Journals of a live process stay: an
    import may be running beside this one. A journal whose `recorded_as` is among the writers the manifest
    records (`recorded`) is of an import that finished but died before removing it: only the journal goes.
    Costs the journals' length, never a listing of the landing zone."""
    removed = 0
    folder = journal_dir(data_dir)
    if not folder.is_dir():
        return 0
    for journal in sorted(folder.glob("import-*.json")):
        entry = json.loads(journal.read_text())
        if _alive(int(entry.get("pid", 0))):
            continue
        if entry.get("recorded_as") and entry["recorded_as"] in recorded:
            journal.unlink()
            continue
        for name in entry.get("files", []):
            path = Path(name)
            if path.exists():
                path.unlink()
                removed += 1
            for tmp in path.parent.glob(f"{landing.TMP_PREFIX}{path.name}.*") if path.parent.is_dir() else []:
                tmp.unlink(missing_ok=True)
        journal.unlink()
    return removed


def _alive(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
