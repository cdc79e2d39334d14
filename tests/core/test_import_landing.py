"""An import lands its day files in rounds while it parses on (`core/import_landing.py`): the same day files and
manifest as one round, a day written early never loses a row that comes later, and an import interrupted
between rounds leaves nothing that a re-run does not remove."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from fundarb_dagster.core import importer, landing
from fundarb_dagster.core.import_landing import DayLanding, journal_dir
from fundarb_dagster.core.importer import import_files, load_manifest
from tests.core.binance_archives import write_csv

HOUR = 3_600_000
DAY = 24 * HOUR
JAN = 1_704_067_200_000  # 2024-01-01 00:00 UTC
FEB = JAN + 31 * DAY
MAR = FEB + 29 * DAY  # 2024 is a leap year


def write_months(root: Path, stray: bool = False) -> Path:
    """Monthly fundingRate archives of two symbols (8-hourly, hourly) for January and February 2024, as Binance
    names them, in one folder per symbol (the order a folder walk gives: symbol by symbol). `stray`: ETH's
    February file also holds a settlement of 15 January (a file with a row outside its name's period)."""
    folder = root / "futures" / "um" / "monthly" / "fundingRate"
    for name, step in (("BTCUSDT", 8), ("ETHUSDT", 1)):
        for month, (lo, hi) in (("2024-01", (JAN, FEB)), ("2024-02", (FEB, MAR))):
            times = list(range(lo + 5, hi, step * HOUR))
            if stray and name == "ETHUSDT" and month == "2024-02":
                times = [JAN + 14 * DAY + 30 * 60_000, *times]  # 15 January 00:30, before February's rows
            rows = [[t, step, f"{(t // HOUR % 11 - 5) * 1e-5:.8f}"] for t in times]
            write_csv(folder / name / f"{name}-fundingRate-{month}.csv", rows, None, [], False)
    return root


def import_folder(root: Path, data: Path) -> importer.ImportSummary:
    return import_files(
        [root],
        data,
        exchange="binance",
        symbol=None,
        progress=None,
        symbol_of=lambda path, kind: f"{path.name[:3]}/USDT:USDT",
    )


def day_tables(data: Path) -> dict[str, list[pd.DataFrame]]:
    """Each day folder's day files, read back (sorted by name)."""
    days: dict[str, list[pd.DataFrame]] = {}
    for path in sorted(landing.landing_root(data).rglob("*.parquet")):
        days.setdefault(f"{path.parent.parent.name}/{path.parent.name}", []).append(pq.read_table(path).to_pandas())
    return days


def manifest_without_times(data: Path) -> dict:
    return {
        digest: {key: {k: v for k, v in entry.items() if k not in ("imported_at_ms", "writer")}}
        for digest, entries in load_manifest(data).items()
        for key, entry in entries.items()
    }


def test_rounds_write_days_early_and_land_the_day_files_and_manifest_of_one_round(tmp_path: Path, monkeypatch) -> None:
    """Read a file at a time (four rounds), January's days go to the writers before the last file is parsed (ETH's
    February), and the import lands the same day files, row for row and in the same order, and the same
    manifest as one chunk (one round) does. Files are parsed month by month, not symbol by symbol."""
    root = write_months(tmp_path / "archives")
    parsed: list[tuple[list[str], int]] = []  # per chunk: its files, the day files handed to the writers by then
    real_parse = importer._parse_planned

    def watched(planned, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - _parse_planned's
        journals = list(journal_dir(args[3]).glob("import-*.json")) if journal_dir(args[3]).is_dir() else []
        handed = sum(len(json.loads(j.read_text())["files"]) for j in journals)  # listed before they are written
        parsed.append(([Path(p).name for _, _, _, p in planned], handed))
        return real_parse(planned, *args, **kwargs)

    monkeypatch.setattr(importer, "_parse_planned", watched)
    one = import_folder(root, tmp_path / "one")
    assert one.ok and [names for names, _ in parsed] == [
        [f"{s}-fundingRate-2024-0{m}.csv" for m in (1, 2) for s in ("BTCUSDT", "ETHUSDT")]
    ]
    assert parsed[0][1] == 0  # one chunk: nothing written before it is parsed

    parsed.clear()
    monkeypatch.setattr(importer, "READ_CHUNK_FILES", 1)
    rounds = import_folder(root, tmp_path / "rounds")
    assert [names for names, _ in parsed] == [
        [f"{s}-fundingRate-2024-0{m}.csv"] for m in (1, 2) for s in ("BTCUSDT", "ETHUSDT")
    ]
    # January's 31 day files went to the writers before ETH's February was parsed (BTC's February closed it)
    assert [handed for _, handed in parsed] == [0, 0, 31, 31]
    assert rounds.ok and rounds.landed == one.landed == 31 * 3 + 31 * 24 + 29 * 3 + 29 * 24
    assert [f.path for f in rounds.files] == [f.path for f in one.files]  # in the order of the paths
    mine, theirs = day_tables(tmp_path / "rounds"), day_tables(tmp_path / "one")
    assert list(mine) == list(theirs) and len(mine) == 31 + 29
    for day, tables in mine.items():
        assert len(tables) == len(theirs[day]) == 1 and tables[0].equals(theirs[day][0]), day
    assert manifest_without_times(tmp_path / "rounds") == manifest_without_times(tmp_path / "one")
    assert not list(journal_dir(tmp_path / "rounds").iterdir())


def test_a_row_of_a_day_written_already_lands_in_a_day_file_of_its_own(tmp_path: Path, monkeypatch) -> None:
    """ETH's February archive holds a settlement of 15 January, which rounds of one file each wrote before that
    archive was read: the row is not lost, 15 January gets a second day file with it, and the day's rows are the
    one round's. Every other day keeps one file."""
    root = write_months(tmp_path / "archives", stray=True)
    one = import_folder(root, tmp_path / "one")
    monkeypatch.setattr(importer, "READ_CHUNK_FILES", 1)
    rounds = import_folder(root, tmp_path / "rounds")
    assert rounds.ok and rounds.landed == one.landed == 31 * 27 + 29 * 27 + 1
    mine, theirs = day_tables(tmp_path / "rounds"), day_tables(tmp_path / "one")
    assert list(mine) == list(theirs)
    assert {day for day, tables in mine.items() if len(tables) > 1} == {"funding/date=2024-01-15"}
    assert all(len(tables) == 1 for tables in theirs.values())
    for day, tables in mine.items():
        got = pd.concat(tables).sort_values(["ts_ms", "instrument_id"], ignore_index=True)
        expected = theirs[day][0].sort_values(["ts_ms", "instrument_id"], ignore_index=True)
        assert got.equals(expected), day


def test_an_import_interrupted_between_rounds_is_redone_as_one_copy(tmp_path: Path, monkeypatch) -> None:
    """The power goes while February's days are written, January's being on disk already: the journal lists
    every file of both rounds, nothing is in the manifest, no temporary is visible; the next import removes
    what the journal lists and lands the day files a clean import lands, once."""
    root = write_months(tmp_path / "archives")
    clean = import_folder(root, tmp_path / "clean")
    monkeypatch.setattr(importer, "READ_CHUNK_FILES", 1)
    data = tmp_path / "data"
    real_write = landing.write_parquet_atomic

    def cut_in_february(table, path, compression="zstd", **kwargs):  # noqa: ANN001, ANN003, ANN202 - its signature
        if "date=2024-02-10" in str(path):
            raise KeyboardInterrupt("power cut")
        return real_write(table, path, compression, **kwargs)

    monkeypatch.setattr(landing, "write_parquet_atomic", cut_in_february)
    with pytest.raises(KeyboardInterrupt):
        import_folder(root, data)
    left = sorted(landing.landing_root(data).rglob("*.parquet"))
    assert 31 <= len(left) < 31 + 29 and "date=2024-01-31" in " ".join(map(str, left))
    assert not list(landing.landing_root(data).rglob(".tmp-*")) and load_manifest(data) == {}
    (journal,) = journal_dir(data).glob("import-*.json")
    listed = json.loads(journal.read_text())["files"]
    assert len(listed) == 31 + 29 and {str(p) for p in left} <= set(listed)
    monkeypatch.setattr(landing, "write_parquet_atomic", real_write)
    again = import_folder(root, data)
    assert again.ok and again.landed == clean.landed and again.skipped == 0
    mine, theirs = day_tables(data), day_tables(tmp_path / "clean")
    assert list(mine) == list(theirs)
    for day, tables in mine.items():
        assert len(tables) == 1 and tables[0].equals(theirs[day][0]), day
    assert not list(journal_dir(data).iterdir())
    assert import_folder(root, data).landed == 0  # and the manifest says so


def test_an_import_that_dies_after_saving_its_manifest_keeps_its_day_files(tmp_path: Path, monkeypatch) -> None:
    """Killed between the manifest's save and the journal's removal: the import had finished. The next import
    removes only the journal (it names the writer the manifest records), keeps every day file, and lands
    nothing new; before, it deleted the files the manifest still said were imported."""
    root = write_months(tmp_path / "archives")
    monkeypatch.setattr(importer, "READ_CHUNK_FILES", 1)  # several rounds: the journal named after the first
    data = tmp_path / "data"

    def killed(self: DayLanding) -> None:
        raise KeyboardInterrupt("killed after the manifest, before the journal goes")

    monkeypatch.setattr(DayLanding, "done", killed)
    with pytest.raises(KeyboardInterrupt):
        import_folder(root, data)
    files = sorted(landing.landing_root(data).rglob("*.parquet"))
    (journal,) = journal_dir(data).glob("import-*.json")
    assert files and load_manifest(data) and json.loads(journal.read_text())["files"]  # the journal outlived it
    monkeypatch.undo()
    again = import_folder(root, data)
    assert again.ok and again.landed == 0 and again.skipped > 0
    assert sorted(landing.landing_root(data).rglob("*.parquet")) == files
    assert not list(journal_dir(data).iterdir())
