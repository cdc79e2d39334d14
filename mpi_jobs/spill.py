"""Recovery files: what a flusher could not land by its shutdown deadline, kept for the next start to land.

A spill is one uncompressed `.npz` (one array per stream, in the stream's numpy dtype, no pickling) at
`<data_dir>/.fundarb/spill/<writer>-<seq:08d>.npz`, written like a landing file (`landing.write_atomic`:
temporary, fsync, rename, fsync of the folder). `seq` is a sequence number the writer reserved and never
used for a landing file. The next start lands each (stream, hour) of the spill under exactly the name
`<writer>-<seq>.parquet` in its partition folder, treating a name already on disk as landed, and deletes
the spill only once every one of them is there: a crash while landing a spill neither loses nor duplicates
a row, the next start finishes it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fundarb_dagster.core import landing, schema

SPILL_SUFFIX = ".npz"


def spill_root(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / ".fundarb" / "spill"


def spill_path(data_dir: str | os.PathLike[str], writer: str, seq: int) -> Path:
    return spill_root(data_dir) / f"{writer}-{seq:08d}{SPILL_SUFFIX}"


def write_spill(path: Path, records: dict[str, np.ndarray]) -> int:
    """Write the arrays of each stream atomically; returns the number of records written."""
    arrays = {stream: array for stream, array in records.items() if len(array)}
    landing.write_atomic(path, lambda handle: np.savez(handle, **arrays))
    return sum(len(a) for a in arrays.values())


def read_spill(path: Path) -> dict[str, np.ndarray]:
    """The records of a spill, per stream, checked against the stream's dtype."""
    out = {}
    with np.load(path, allow_pickle=False) as archive:
        for stream in archive.files:
            array = archive[stream]
            if stream not in schema.STREAMS or array.dtype != schema.dtype_of(stream):
                raise ValueError(f"spill {path}: {stream!r} is not a stream of this schema")
            out[stream] = array
    return out


def list_spills(data_dir: str | os.PathLike[str], writer_prefix: str) -> list[tuple[Path, str, int]]:
    """(path, writer, seq) of every spill whose writer starts with `writer_prefix`, oldest first."""
    root = spill_root(data_dir)
    found = []
    if root.exists():
        for path in root.glob(f"{writer_prefix}*{SPILL_SUFFIX}"):
            writer, _, seq = path.name[: -len(SPILL_SUFFIX)].rpartition("-")
            if writer and seq.isdigit():
                found.append((path, writer, int(seq)))
    return sorted(found, key=lambda item: (item[2], item[1]))


def next_spill_seq(data_dir: str | os.PathLike[str], writer: str) -> int:
    """One past the highest sequence number a spill of `writer` reserved (0 when there is none)."""
    seqs = [seq for _, name, seq in list_spills(data_dir, writer) if name == writer]
    return max(seqs) + 1 if seqs else 0


def remove_spill(path: Path) -> None:
    path.unlink(missing_ok=True)
    landing.fsync_dir(path.parent)
