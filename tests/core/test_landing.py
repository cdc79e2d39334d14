"""The landing zone: hour partitions, path layout, atomic writes, sequence numbers, DuckDB's hive reader."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fundarb_dagster.core import landing, schema

HOUR = landing.HOUR_MS
T0 = 1_793_491_200_000  # 2026-11-01 00:00:00 UTC
NAMES = {0: ("binance", "BTC/USDT"), 1: ("bybit", "ETH/USDT:USDT")}


def trades_table(ts: np.ndarray) -> pa.Table:
    records = schema.empty("trades", len(ts))
    records["ts_ms"] = ts
    records["recv_ts_ms"] = ts + 3
    records["instrument_id"] = np.arange(len(ts)) % 2
    records["trade_id"] = np.arange(len(ts))
    records["price"] = 100.0 + np.arange(len(ts))
    records["amount"] = 1.0
    return schema.to_arrow("trades", records, NAMES)


def test_split_by_hour_groups_rows_by_event_hour_in_time_order() -> None:
    rng = np.random.default_rng(5)
    ts = T0 + rng.integers(0, 5 * HOUR, 1000)
    seen = []
    for hour_ms, rows in landing.split_by_hour(ts):
        assert (ts[rows] // HOUR * HOUR == hour_ms).all()
        seen.append((hour_ms, len(rows)))
    expected = np.unique(ts // HOUR * HOUR, return_counts=True)
    assert seen == list(zip(expected[0].tolist(), expected[1].tolist(), strict=True))
    assert list(landing.split_by_hour(np.array([], dtype=np.int64))) == []


def test_partition_paths_follow_the_hive_layout() -> None:
    path = landing.partition_dir("/data", "funding", T0 + 13 * HOUR + 59_999)
    assert path == Path("/data/landing/funding/date=2026-11-01/hour=13")
    assert landing.partition_key(T0 + 13 * HOUR) == "2026-11-01-13:00"
    assert landing.hour_start_ms(T0 + 13 * HOUR + 59_999) == T0 + 13 * HOUR
    assert landing.stream_glob("/data", "trades") == "/data/landing/trades/date=*/hour=*/*.parquet"


def test_write_stream_writes_one_file_per_hour_with_the_right_rows(tmp_path: Path) -> None:
    ts = T0 + np.array([10, HOUR + 5, 20, 3 * HOUR, HOUR + 1])
    table = trades_table(ts)
    paths = landing.write_stream(tmp_path, "trades", table, "node0-rank1", 7)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "landing/trades/date=2026-11-01/hour=00/node0-rank1-00000007.parquet",
        "landing/trades/date=2026-11-01/hour=01/node0-rank1-00000007.parquet",
        "landing/trades/date=2026-11-01/hour=03/node0-rank1-00000007.parquet",
    ]
    assert [pq.read_table(p).column("ts_ms").to_pylist() for p in paths] == [
        [T0 + 10, T0 + 20],
        [T0 + HOUR + 5, T0 + HOUR + 1],
        [T0 + 3 * HOUR],
    ]
    assert pq.read_table(paths[0]).schema == schema.arrow_schema("trades")


def test_landed_files_keep_statistics_for_times_ids_and_names_not_for_floats(tmp_path: Path) -> None:
    # DuckDB skips row groups by time, instrument and names; no query selects by a price, so floats carry none
    path = landing.write_parquet_atomic(trades_table(T0 + np.arange(100)), tmp_path / "t.parquet")
    row_group = pq.ParquetFile(path).metadata.row_group(0)
    columns = {row_group.column(i).path_in_schema: row_group.column(i) for i in range(row_group.num_columns)}
    assert columns["ts_ms"].statistics.min == T0 and columns["ts_ms"].statistics.max == T0 + 99
    assert columns["instrument_id"].is_stats_set and columns["symbol"].is_stats_set
    assert not columns["price"].is_stats_set and not columns["amount"].is_stats_set


def test_duckdb_reads_the_landing_layout_with_hive_partitioning(tmp_path: Path) -> None:
    ts = T0 + np.arange(0, 3 * HOUR, 600_000)  # 18 rows over 3 hours
    landing.write_stream(tmp_path, "trades", trades_table(ts), "w", 0)
    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT hour, count(*), min(ts_ms), sum(price) FROM read_parquet($g, hive_partitioning = true) "
            "GROUP BY hour ORDER BY hour",
            {"g": landing.stream_glob(tmp_path, "trades")},
        ).fetchall()
        dates = con.execute(
            "SELECT DISTINCT date::VARCHAR, symbol FROM read_parquet($g, hive_partitioning = true) ORDER BY 2",
            {"g": landing.stream_glob(tmp_path, "trades")},
        ).fetchall()
    prices = 100.0 + np.arange(len(ts))
    assert [(int(h), n, lo) for h, n, lo, _ in rows] == [(0, 6, T0), (1, 6, T0 + HOUR), (2, 6, T0 + 2 * HOUR)]
    assert [s for *_, s in rows] == pytest.approx([prices[i * 6 : i * 6 + 6].sum() for i in range(3)])
    assert dates == [("2026-11-01", "BTC/USDT"), ("2026-11-01", "ETH/USDT:USDT")]


def test_an_existing_landing_file_is_never_overwritten(tmp_path: Path) -> None:
    table = trades_table(T0 + np.array([1, 2]))
    [path] = landing.write_stream(tmp_path, "trades", table, "w", 0)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        landing.write_stream(tmp_path, "trades", trades_table(T0 + np.array([3])), "w", 0)
    assert path.read_bytes() == before


@pytest.mark.parametrize("stage", ["write", "fsync", "rename"])
def test_a_failed_write_leaves_no_temporary_and_no_file(tmp_path: Path, monkeypatch, stage: str) -> None:
    """A full disk or an I/O error part-way (the process survives it) removes the temporary at once."""

    def disk_full(*args: object, **kwargs: object) -> None:
        if stage == "write":  # part of the file reached the disk, then it filled up
            args[1].write(b"PAR1 half a file")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    target = {"write": (landing.pq, "write_table"), "fsync": (os, "fsync"), "rename": (os, "rename")}[stage]
    monkeypatch.setattr(*target, disk_full)
    with pytest.raises(OSError, match="No space left"):
        landing.write_stream(tmp_path, "trades", trades_table(T0 + np.array([1])), "w", 0)
    monkeypatch.undo()
    folder = landing.partition_dir(tmp_path, "trades", T0)
    assert list(folder.iterdir()) == []
    # The same name is free for the retry.
    assert landing.write_stream(tmp_path, "trades", trades_table(T0 + np.array([1])), "w", 0)


def test_a_crash_before_the_rename_leaves_only_an_invisible_temporary(tmp_path: Path) -> None:
    # What a SIGKILL between the write and the rename leaves: a temporary nobody removed.
    folder = landing.partition_dir(tmp_path, "trades", T0)
    folder.mkdir(parents=True)
    (folder / f"{landing.TMP_PREFIX}w-00000000.parquet.4242").write_bytes(b"PAR1 half a file")
    assert list(landing.landing_root(tmp_path).glob("*/date=*/hour=*/*.parquet")) == []
    with duckdb.connect() as con, pytest.raises(duckdb.IOException):  # DuckDB's glob sees no file at all
        con.execute("SELECT * FROM read_parquet($g)", {"g": landing.stream_glob(tmp_path, "trades")})
    # Another writer's temporary (it may be mid-rename right now) is not this writer's to delete.
    assert landing.remove_stale_temporaries(tmp_path, "other") == 0
    assert landing.remove_stale_temporaries(tmp_path, "w") == 1
    assert list(folder.iterdir()) == []
    assert landing.remove_stale_temporaries(tmp_path, "w") == 0


def test_next_seq_continues_after_a_restart_and_per_writer(tmp_path: Path) -> None:
    assert landing.next_seq(tmp_path, "node0-rank1") == 0
    landing.write_stream(tmp_path, "trades", trades_table(T0 + np.array([1])), "node0-rank1", 0)
    landing.write_stream(tmp_path, "tickers", _tickers(T0 + 2 * HOUR), "node0-rank1", 41)
    landing.write_stream(tmp_path, "trades", trades_table(T0 + np.array([1])), "node0-rank10", 99)
    # a restarted writer scans the landing zone and continues after its own highest number
    assert landing.next_seq(tmp_path, "node0-rank1") == 42
    assert landing.next_seq(tmp_path, "node0-rank10") == 100
    assert landing.next_seq(tmp_path, "node1-rank1") == 0


def _tickers(ts: int) -> pa.Table:
    records = schema.empty("tickers", 1)
    records["ts_ms"] = ts
    return schema.to_arrow("tickers", records, NAMES)


@pytest.mark.parametrize("min_piece_rows", [1, 10**9])  # days assembled from their pieces / taken from one sort
def test_write_days_lands_each_day_sorted_as_one_stable_sort_of_the_whole_table(
    tmp_path: Path, min_piece_rows: int
) -> None:
    """An import's table is its files one after the other (each a chunk, most sorted): each day file holds the
    rows of its day in the order a stable sort of the whole table by time gives (ties in table order), whether
    the day is assembled from its pieces or taken from the table sorted once; a chunk out of order is sorted."""
    day = 24 * HOUR
    chunks = [
        T0 + np.arange(0, 3 * day, 7 * HOUR),  # sorted, three days
        T0 + np.arange(0, 3 * day, 7 * HOUR),  # the same times: ties with the first chunk
        T0 + day + np.array([5 * HOUR, 2 * HOUR, 2 * HOUR, 9 * HOUR, -1]),  # out of order, across midnight
        T0 + 4 * day + np.arange(3),  # a day of its own
    ]
    tables = []
    for i, ts in enumerate(chunks):
        table = trades_table(ts)
        trade_id = pa.array(np.arange(len(ts)) + 100 * i)
        tables.append(table.set_column(table.schema.get_field_index("trade_id"), "trade_id", trade_id))
    table = pa.concat_tables(tables)
    split = landing.split_days(table, min_piece_rows)
    written = landing.write_days(tmp_path, "trades", table, "import-test", split)
    whole = np.concatenate(chunks)
    order = np.argsort(whole, kind="stable")
    ids = table.column("trade_id").to_numpy()[order]
    expected = {}
    for ts, trade_id in zip(whole[order].tolist(), ids.tolist(), strict=True):
        expected.setdefault(ts // day, []).append((ts, trade_id))
    got = {}
    for path in written:
        landed = pq.read_table(path)
        assert path.name == "import-test.parquet" and landed.schema == schema.arrow_schema("trades")
        rows = list(zip(landed.column("ts_ms").to_pylist(), landed.column("trade_id").to_pylist(), strict=True))
        got[rows[0][0] // day] = rows
        assert path == landing.day_file_path(tmp_path, "trades", rows[0][0], "import-test")
    assert got == expected and len(written) == 4
    assert landing.write_days(tmp_path / "again", "trades", table, "import-test") == [
        tmp_path / "again" / path.relative_to(tmp_path) for path in written
    ]
