"""Two materializations in two processes write one DuckDB file while a third process reads it: all succeed.

DuckDB lets a single process hold the file read-write, and that holder blocks even read-only opens
elsewhere. The pool "duckdb" (limit 1, from config/dagster.yaml in DAGSTER_HOME) serialises the writing
steps of both runs; the reader (and anything else) waits out the lock with `connect_with_retry`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from fundarb_dagster.core.units import HOUR_MS
from tests.defs.raw.landing_fixtures import land_trades, query

REPO = Path(__file__).resolve().parents[2]
H0 = 1_762_000_000_000 // HOUR_MS * HOUR_MS  # 2025-11-01 12:00 UTC

WRITER = textwrap.dedent(
    """
    import sys, warnings
    warnings.filterwarnings("ignore")
    from dagster import DagsterInstance, materialize
    from fundarb_dagster.defs.market.assets import ohlcv_1h, ohlcv_1m, ohlcv_5m
    from fundarb_dagster.defs.raw.assets import raw_ohlcv, raw_trades
    from tests.defs.raw.landing_fixtures import resources
    from pathlib import Path
    data_dir, first, last = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    with DagsterInstance.get() as instance:
        result = materialize(
            [raw_trades, raw_ohlcv, ohlcv_1m, ohlcv_5m, ohlcv_1h],
            resources=resources(data_dir),
            instance=instance,
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        )
    sys.exit(0 if result.success else 1)
    """
)
READER = textwrap.dedent(
    """
    import sys, time
    from fundarb_dagster.defs.resources import connect_with_retry
    database, seconds = sys.argv[1], float(sys.argv[2])
    reads, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn = connect_with_retry(database, read_only=True, timeout_s=120)
        try:
            conn.execute("SELECT count(*) FROM information_schema.tables").fetchall()
        finally:
            conn.close()
        reads += 1
        time.sleep(0.05)
    print(reads)
    """
)


@pytest.mark.slow
def test_two_writer_processes_and_a_reader_all_succeed(tmp_path):
    data_dir = tmp_path / "data"
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "config" / "dagster.yaml", home / "dagster.yaml")
    for block in range(2):  # two blocks of 6 hours: each writer loads one
        start = H0 + block * 6 * HOUR_MS
        ts = start + pd.RangeIndex(0, 6 * HOUR_MS, 7_000)
        land_trades(
            data_dir,
            pd.DataFrame({"ts_ms": ts, "trade_id": ts, "price": 100.0 + (ts % 13), "amount": 1.0}),
            seq=block,
        )
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)}
    duckdb.connect(str(data_dir / "warehouse.duckdb")).close()  # the reader opens read-only: the file must exist
    # Create the instance's sqlite storage once, as `fundarb ui`/`demo` do before any run: two processes
    # creating it at the same moment race on its schema (a set-up race, not the concurrency under test).
    subprocess.run(
        [sys.executable, "-c", "from dagster import DagsterInstance; DagsterInstance.get()"], env=env, check=True
    )
    ranges = [("2025-11-01-12:00", "2025-11-01-17:00"), ("2025-11-01-18:00", "2025-11-01-23:00")]
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(data_dir), a, b],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for a, b in ranges
    ]
    time.sleep(0.5)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(data_dir / "warehouse.duckdb"), "8"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    outputs = [w.communicate(timeout=300)[0] for w in writers]
    reader_out, reader_err = reader.communicate(timeout=300)
    for writer, output in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, output[-3000:]
    assert reader.returncode == 0, reader_err[-3000:]
    assert int(reader_out.strip()) > 0
    counts = query(data_dir, "SELECT count(*) AS trades, count(DISTINCT trade_id) AS ids FROM raw_trades")
    assert counts["trades"][0] == counts["ids"][0] == 2 * len(range(0, 6 * HOUR_MS, 7_000))
    bars = query(data_dir, "SELECT count(*) AS n, min(ts) AS a, max(ts) AS b FROM ohlcv_1m")
    assert bars["n"][0] == 12 * 60
