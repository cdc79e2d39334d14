"""A DuckLake on Postgres that several processes write at the same time (`FUNDARB_WAREHOUSE=ducklake:...`).

Three real materializations in three processes, each its own six hours of raw_trades and its bars, run at once
against one lake: none waits on a lock or fails; their rows equal the same runs on a DuckDB file. A second
round re-materializes the same hours while a fourth process reads: every read sees each hour whole (the
rows before the replace or after it, never a deleted or half-inserted window).

The lake processes run with the `lake` extra's pins (`pip install 'fundarb[lake]'`: duckdb 1.5.5 and its
ducklake and postgres extensions) installed into a folder on their PYTHONPATH, since the suite's venv keeps
the newest duckdb, for which no ducklake extension exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from fundarb_dagster.core.units import HOUR_MS
from fundarb_dagster.defs.market.assets import ohlcv_1h, ohlcv_1m, ohlcv_5m
from fundarb_dagster.defs.raw.assets import raw_ohlcv, raw_trades
from tests.defs.raw.landing_fixtures import land_trades, query, run
from tests.servers import create_database, install_lake_extra, postgres_server

REPO = Path(__file__).resolve().parents[2]
H0 = 1_762_000_000_000 // HOUR_MS * HOUR_MS  # 2025-11-01 12:00 UTC
BLOCKS = [("2025-11-01-12:00", "2025-11-01-17:00"), ("2025-11-01-18:00", "2025-11-01-23:00")]
BLOCKS.append(("2025-11-02-00:00", "2025-11-02-05:00"))
HOURS = 6 * len(BLOCKS)

WRITER = textwrap.dedent(
    """
    import sys, time, warnings
    warnings.filterwarnings("ignore")
    from dagster import DagsterInstance, materialize
    from fundarb_dagster.defs.market.assets import ohlcv_1h, ohlcv_1m, ohlcv_5m
    from fundarb_dagster.defs.raw.assets import raw_ohlcv, raw_trades
    from fundarb_dagster.defs.resources import DataDirResource, SourceConfigResource, WarehouseResource
    data_dir, first, last = sys.argv[1:4]
    resources = {"duckdb": WarehouseResource(), "data_dir": DataDirResource(data_dir=data_dir),
                 "source": SourceConfigResource()}
    started = time.time()
    result = materialize(
        [raw_trades, raw_ohlcv, ohlcv_1m, ohlcv_5m, ohlcv_1h],
        resources=resources,
        instance=DagsterInstance.ephemeral(),
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        raise_on_error=False,
    )
    print("SPAN", started, time.time())
    sys.exit(0 if result.success else 1)
    """
)
READER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from fundarb_dagster.core.warehouse import connect
    stop = Path(sys.argv[1])
    reads, seen = [], {}
    while not stop.exists():
        conn = connect(sys.argv[2], read_only=True)
        try:
            for table in ("raw_trades", "ohlcv_1m"):
                rows = conn.execute(
                    f"SELECT epoch_ms(date_trunc('hour', ts)), count(*) FROM {table} GROUP BY 1"
                ).fetchall()
                seen.setdefault(f"{table} hours", set()).add(len(rows))  # an hour deleted, not yet inserted
                for hour, n in rows:
                    seen.setdefault(f"{table} {hour}", set()).add(n)
        finally:
            conn.close()
        reads.append(time.time())
    print(json.dumps({"reads": reads, "seen": {k: sorted(v) for k, v in seen.items()}}))
    """
)
REPLACER = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timedelta
    import pandas as pd
    from fundarb_dagster.core.sql import registered, replace_window
    from fundarb_dagster.core.warehouse import connect
    target, hour, times = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    start = datetime(2025, 11, 1) + timedelta(hours=hour)
    window = {"start": start, "end": start + timedelta(hours=1)}
    for i in range(times):  # 1,000 then 1,500 rows, each write's rows marked with its number
        frame = pd.DataFrame({"ts": pd.date_range(start, periods=1000 + 500 * (i % 2), freq="2s"), "write": i})
        conn = connect(target)
        with registered(conn, "frame", frame):
            sql = "SELECT * FROM frame WHERE ts >= $start AND ts < $end"
            replace_window(conn, "windows", sql, window, staged=i % 3 == 0)  # both of its paths
        conn.close()
    """
)
POLLER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from fundarb_dagster.core.warehouse import connect
    stop, seen, reads = Path(sys.argv[1]), set(), 0
    conn = connect(sys.argv[2], read_only=True)
    while not stop.exists():
        rows = conn.execute("SELECT hour(ts), count(*), count(DISTINCT write) FROM windows GROUP BY 1").fetchall()
        present = {hour: (n, writes) for hour, n, writes in rows}
        seen |= {(hour, *present.get(hour, (0, 0))) for hour in (0, 1)}  # an hour not there: (hour, 0, 0)
        reads += 1
    print(json.dumps({"reads": reads, "seen": sorted(seen)}))
    """
)
UNREACHABLE = textwrap.dedent(
    """
    import sys
    from fundarb_dagster.core.warehouse import connect
    try:
        connect(sys.argv[1])
    except ConnectionError as exc:
        print(exc)
    """
)
DUMP = textwrap.dedent(
    """
    import sys
    from fundarb_dagster.core.warehouse import connect
    conn = connect(sys.argv[1], read_only=True)
    for table in ("raw_trades", "ohlcv_1m", "ohlcv_1h"):
        conn.execute(f"COPY (SELECT * FROM {table}) TO '{sys.argv[2]}/{table}.parquet' (FORMAT parquet)")
    print(conn.execute("SELECT count(*) FROM ducklake_snapshots('lake')").fetchone()[0])
    """
)


@pytest.fixture(scope="session")
def lake_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `lake` extra's pins installed into a folder (what `pip install 'fundarb[lake]'` gives a deployment)."""
    return install_lake_extra(tmp_path_factory.mktemp("lake-site"))


def land_blocks(data_dir: Path) -> None:
    for block in range(len(BLOCKS)):  # six hours each: one block per writer
        ts = H0 + block * 6 * HOUR_MS + pd.RangeIndex(0, 6 * HOUR_MS, 7_000)
        trades = pd.DataFrame({"ts_ms": ts, "trade_id": ts, "price": 100.0 + (ts % 13) / 7, "amount": 1.0 + ts % 3})
        land_trades(data_dir, trades, seq=block)


def start(script: str, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    out = subprocess.PIPE
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env, cwd=REPO, stdout=out, stderr=out, text=True)


def start_writers(data_dir: Path, env: dict[str, str]) -> list[subprocess.Popen[str]]:
    return [start(WRITER, env, str(data_dir), first, last) for first, last in BLOCKS]


def finish(writers: list[subprocess.Popen[str]]) -> list[tuple[float, float]]:
    """Each writer's (start, end) wall times; every one must have succeeded without a lock error."""
    spans = []
    for writer in writers:
        output = "\n".join(writer.communicate(timeout=600))
        assert writer.returncode == 0, output[-4000:]
        assert "Could not set lock" not in output and "Conflicting lock" not in output, output[-4000:]  # DuckDB's
        line = next(line for line in output.splitlines() if line.startswith("SPAN "))
        spans.append((float(line.split()[1]), float(line.split()[2])))
    return spans


def sorted_frame(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys).reset_index(drop=True)[sorted(frame.columns)]


@pytest.mark.slow
def test_three_writer_processes_share_one_lake_and_a_reader_never_sees_half_a_window(tmp_path, lake_site):
    data_dir = tmp_path / "data"
    land_blocks(data_dir)
    with postgres_server() as server:
        url = create_database(server, "lake")
        port = url.rsplit(":", 1)[1].split("/")[0]
        target = f"ducklake:postgres:dbname=lake host=127.0.0.1 port={port} user=postgres"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(lake_site), str(REPO)]),
            "FUNDARB_WAREHOUSE": target,
            "FUNDARB_LAKE_DATA": str(tmp_path / "lake_files"),
        }
        # round 1: three processes write their own hours of the same tables at once
        spans = finish(start_writers(data_dir, env))
        assert max(start for start, _ in spans) < min(end for _, end in spans), f"the writers did not overlap: {spans}"

        # round 2: the same hours again (idempotent) while a reader polls every hour's row count
        stop = tmp_path / "stop"
        reader = start(READER, env, str(stop), target)
        time.sleep(1.0)  # reading before the writers start
        spans = finish(start_writers(data_dir, env))
        stop.touch()
        reader_out, reader_err = reader.communicate(timeout=120)
        assert reader.returncode == 0, reader_err[-4000:]
        dump = tmp_path / "dump"
        dump.mkdir()
        snapshots = subprocess.run(
            [sys.executable, "-c", DUMP, target, str(dump)], env=env, cwd=REPO, capture_output=True, text=True
        )
        assert snapshots.returncode == 0, snapshots.stderr[-4000:]

    # a lake whose server is down: the error names the variable, never the password DuckDB's message repeats
    down = f"ducklake:postgres:dbname=lake host=127.0.0.1 port={port} user=postgres password=s3cret"
    said = subprocess.run([sys.executable, "-c", UNREACHABLE, down], env=env, cwd=REPO, capture_output=True, text=True)
    assert said.stdout.startswith("FUNDARB_WAREHOUSE: cannot attach") and "password=***" in said.stdout, said
    assert "s3cret" not in said.stdout + said.stderr

    # the same runs, one after another, on a DuckDB file in this process (the suite's duckdb)
    file_dir = tmp_path / "file"
    land_blocks(file_dir)
    for first, last in BLOCKS:
        run([raw_trades, raw_ohlcv, ohlcv_1m, ohlcv_5m, ohlcv_1h], file_dir, first=first, last=last)

    landed = pq.read_table(data_dir / "landing" / "trades", partitioning="hive").to_pandas()
    per_hour = landed.groupby(landed["ts_ms"] // HOUR_MS * HOUR_MS).size()
    assert len(per_hour) == HOURS
    for table, keys in (("raw_trades", ["trade_id"]), ("ohlcv_1m", ["ts"]), ("ohlcv_1h", ["ts"])):
        lake = pd.read_parquet(dump / f"{table}.parquet")
        single = query(file_dir, f"SELECT * FROM {table}")
        assert len(lake) == len(single) > 0, table
        pd.testing.assert_frame_equal(sorted_frame(lake, keys), sorted_frame(single, keys), check_dtype=False)
    assert len(pd.read_parquet(dump / "raw_trades.parquet")) == len(landed)
    assert len(pd.read_parquet(dump / "ohlcv_1m.parquet")) == HOURS * 60

    # the reader: each hour's count was always the whole hour, before the replace and after it
    report = json.loads(reader_out)
    during = [t for t in report["reads"] if min(s for s, _ in spans) < t < max(e for _, e in spans)]
    assert len(during) >= 3, (report["reads"], spans)
    expected = {f"raw_trades {hour}": [int(n)] for hour, n in per_hour.items()}
    expected |= {f"ohlcv_1m {hour}": [60] for hour in per_hour.index}
    expected |= {"raw_trades hours": [HOURS], "ohlcv_1m hours": [HOURS]}
    assert report["seen"] == expected
    assert int(snapshots.stdout.strip()) > 2 * len(BLOCKS)  # each write committed its own snapshot


@pytest.mark.slow
def test_a_reader_sees_each_window_before_or_after_its_replace_never_half(tmp_path, lake_site):
    """Two processes replace their own hour of one lake table 30 times each (1,000 and 1,500 rows by turns)
    while a third reads: every read sees each hour as one write left it, whole."""
    with postgres_server() as server:
        port = create_database(server, "lake").rsplit(":", 1)[1].split("/")[0]
        target = f"ducklake:postgres:dbname=lake host=127.0.0.1 port={port} user=postgres"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(lake_site), str(REPO)])}
        env["FUNDARB_LAKE_DATA"] = str(tmp_path / "lake_files")
        for hour in ("0", "1"):  # both hours there before the reader starts
            seed = subprocess.run([sys.executable, "-c", REPLACER, target, hour, "1"], env=env, cwd=REPO)
            assert seed.returncode == 0
        stop = tmp_path / "stop"
        reader = start(POLLER, env, str(stop), target)
        writers = [start(REPLACER, env, target, str(hour), "30") for hour in (0, 1)]
        for writer in writers:
            assert writer.wait(timeout=600) == 0, writer.communicate()[1][-3000:]
        stop.touch()
        out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err[-3000:]
    report = json.loads(out)
    assert report["reads"] >= 20, report
    seen = {tuple(row) for row in report["seen"]}
    assert seen <= {(0, 1000, 1), (0, 1500, 1), (1, 1000, 1), (1, 1500, 1)}, seen  # never none, half or two
    assert {(0, 1500, 1), (1, 1500, 1)} <= seen  # the reader did see writes land
