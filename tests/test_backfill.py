"""`fundarb backfill`: imported history materialized in bounded runs by one command, checked against the files."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from fundarb_dagster import cli
from fundarb_dagster.core.importer import import_files
from tests.core.binance_archives import write_csv

HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
T1 = T0 + 30 * 24 * HOUR  # 2024-01-31 00:00 UTC: history across a month's end
DAYS = 2


def _funding(
    folder: Path, name: str, interval_h: int, seed: int, days: int = DAYS, t0: int = T0, early: int | None = None
) -> list[list]:
    """Settlements 7 ms after each grid point; the one at `early` 2 s before it (jitter the other way)."""
    rng = np.random.default_rng(seed)
    rows = [[t + 7 if t != early else t - 2_000, interval_h, f"{rng.normal(1e-4, 5e-5) * interval_h / 8:.8f}"]
            for t in range(t0, t0 + days * 24 * HOUR, interval_h * HOUR)]  # fmt: skip
    write_csv(folder / f"{name}-fundingRate-2024-01.csv", rows, None, [], False)
    return rows


def _klines(
    folder: Path, name: str, days: int = DAYS, seed: int = 3, t0: int = T0, gap: tuple[int, int] = (0, 0)
) -> list[list]:
    """A 1m kline a minute from `t0`, none in [gap[0], gap[1])."""
    rng = np.random.default_rng(seed)
    rows, price = [], 42_000.0
    for i in range(days * 1440):
        o, c = price, price * (1 + rng.normal(0, 5e-4))
        t = t0 + i * 60_000
        if gap[0] <= t < gap[1]:
            continue
        rows.append([t, f"{o:.2f}", f"{max(o, c) + 1:.2f}", f"{min(o, c) - 1:.2f}", f"{c:.2f}", "1.5", t + 59_999])
        price = c
    rows = [r + ["63000", 10, "0.7", "29400", 0] for r in rows]
    write_csv(folder / f"{name}-1m-2024-01.csv", rows, None, [], False)
    return rows


@pytest.mark.slow
def test_one_command_loads_imported_history_in_bounded_runs(tmp_path: Path, monkeypatch, capsys) -> None:
    import fundarb_dagster.defs.partitions as partitions_module

    data = tmp_path / "data"
    binance = _funding(tmp_path / "binance", "BTCUSDT", 8, 1)
    bybit = _funding(tmp_path / "bybit", "BTCUSDT", 1, 2)
    klines = _klines(tmp_path / "binance", "BTCUSDT")
    for exchange in ("binance", "bybit"):
        summary = import_files([tmp_path / exchange], data, exchange=exchange, symbol="BTC/USDT:USDT", progress=None)
        assert summary.ok
    monkeypatch.setattr(partitions_module, "MAX_RUN_PARTITIONS", 24)  # a day per run: two runs per job
    monkeypatch.delenv("FUNDARB_PARTITIONS_START", raising=False)
    assert cli.main(["backfill", "--data-dir", str(data), "--hourly-only"]) == 0
    out = capsys.readouterr().out.splitlines()
    runs = [line for line in out if line.startswith(("hourly_job ", "signals_job "))]
    assert len([r for r in runs if r.startswith("hourly_job")]) == DAYS
    assert len([r for r in runs if r.startswith("signals_job")]) == DAYS  # the first window starts at the start
    assert all("Dagster" in r and "FAILED" not in r for r in runs) and out[-1].startswith(f"backfill: {2 * DAYS} runs")
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        raw = con.execute("SELECT exchange, count(*) FROM raw_funding GROUP BY 1 ORDER BY 1").fetchall()
        assert raw == [("binance", len(binance)), ("bybit", len(bybit))]
        rates = con.execute(
            "SELECT exchange, count(*), sum(funding_rate) FROM funding_rates GROUP BY 1 ORDER BY 1"
        ).fetchall()
        for (exchange, n, total), rows in zip(rates, (binance, bybit), strict=True):
            assert n == len(rows) and total == pytest.approx(sum(float(r[2]) for r in rows), rel=1e-12), exchange
        bars = con.execute("SELECT count(*), sum(volume) FROM ohlcv_1m WHERE exchange = 'binance'").fetchone()
        assert bars == (len(klines), pytest.approx(1.5 * len(klines)))
        hours = con.execute(
            "SELECT epoch_ms(ts), open, high, low, close FROM ohlcv_1h WHERE exchange = 'binance' ORDER BY ts"
        ).fetchall()
        assert len(hours) == DAYS * 24
        for t, o, h, low, c in hours:  # an independent resample of the file's minutes
            minutes = [r for r in klines if t <= r[0] < t + HOUR]
            assert (o, c) == (float(minutes[0][1]), float(minutes[-1][4]))
            assert (h, low) == (max(float(r[2]) for r in minutes), min(float(r[3]) for r in minutes))
        spreads = con.execute(
            "SELECT count(*), count(DISTINCT ts) FROM funding_spreads WHERE underlying = 'BTC'"
        ).fetchone()
        assert spreads[0] > 0 and spreads[1] >= DAYS * 24 - 8
    from dagster import AssetKey, DagsterEventType, DagsterInstance, EventRecordsFilter, RunsFilter

    with DagsterInstance.from_config(str(data / "dagster_home")) as instance:  # the UI's instance lists the runs
        records = instance.get_run_records(RunsFilter(tags={"fundarb/trigger": "fundarb backfill"}))
        assert len(records) == 2 * DAYS
        planned = instance.get_event_records(
            EventRecordsFilter(DagsterEventType.ASSET_MATERIALIZATION_PLANNED, asset_key=AssetKey("raw_funding"))
        )
        assert len(planned) == DAYS  # one per run, not one per hour of it (24 per run)
        assert set(instance.get_materialized_partitions(AssetKey("raw_funding"))) == {
            f"2024-01-0{d + 1}-{h:02d}:00" for d in range(DAYS) for h in range(24)
        }


def _import_history(tmp_path: Path, data: Path, days: int, t0: int, seam: int | None = None) -> None:
    """Three venues' funding (8h, 1h, 4h), perp and spot 1m klines over `days` days from `t0`, imported. With
    `seam`: no kline in the 30 minutes from it (their bars carry the close from before it), and the 8h venue's
    settlement there lands 2 s early (on the day before; its key is the seam)."""
    if not (tmp_path / "files").exists():
        gap = (seam, seam + 30 * 60_000) if seam is not None else (0, 0)
        _funding(tmp_path / "files" / "binance", "BTCUSDT", 8, 1, days, t0, early=seam)
        _funding(tmp_path / "files" / "bybit", "BTCUSDT", 1, 2, days, t0)
        _funding(tmp_path / "files" / "okx", "BTCUSDT", 4, 4, days, t0)
        _klines(tmp_path / "files" / "binance", "BTCUSDT", days, t0=t0, gap=gap)
        _klines(tmp_path / "files" / "spot", "BTCUSDT", days, seed=5, t0=t0, gap=gap)
    for folder, exchange, symbol in (
        ("binance", "binance", "BTC/USDT:USDT"),
        ("bybit", "bybit", "BTC/USDT:USDT"),
        ("okx", "okx", "BTC/USDT:USDT"),
        ("spot", "binance", "BTC/USDT"),
    ):
        summary = import_files([tmp_path / "files" / folder], data, exchange=exchange, symbol=symbol, progress=None)
        assert summary.ok, summary


# Made from the wall clock (alerts name the asset key that failed, history/... or not; the venues' tiers are
# fetched now), not from the history: not compared.
WALL_CLOCK = {"alerts", "alert_deliveries", "leverage_tiers"}


def _differing_rows(con: duckdb.DuckDBPyConnection, name: str) -> int:
    """Rows of table `name` in h with no equal row in d, and the reverse: every column equal, doubles to 1e-12
    (DuckDB's float sums depend on the order its threads add in, run to run)."""
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE h.{name})").fetchall())
    same = " AND ".join(
        f'(a."{c}" IS NOT DISTINCT FROM b."{c}" OR abs(a."{c}" - b."{c}") <= 1e-12 * greatest(1, abs(a."{c}")))'
        if t == "DOUBLE"
        else f'a."{c}" IS NOT DISTINCT FROM b."{c}"'
        for c, t in types.items()
        if c != "created_at"
    )
    return con.execute(
        f"SELECT count(*) FROM (SELECT *, true AS _in FROM h.{name}) a "
        f"FULL JOIN (SELECT *, true AS _in FROM d.{name}) b ON {same} WHERE a._in IS NULL OR b._in IS NULL"
    ).fetchone()[0]


@pytest.mark.slow
def test_history_months_load_the_same_rows_as_hourly_partitions_with_fewer_events(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """The same imports (2024-01-31 .. 2024-02-02: a month's end crossed) loaded twice: on hourly partitions
    only (the live path's way) and by the month (history_job for the months up to the newest day, a month per
    run so the runs' seam is crossed, each month partial: January holds one landed day, February's run loads
    its first day and the newest day, which then loads again by the hour as the live path goes on). Every table
    both made holds the same rows (a FULL JOIN on every column in DuckDB over the two files); Dagster recorded
    a month of history as one partition per asset."""
    from dagster import AssetKey, DagsterEventType, DagsterInstance, EventRecordsFilter, RunsFilter

    import fundarb_dagster.defs.history as history_module

    days = 3
    monkeypatch.delenv("FUNDARB_PARTITIONS_START", raising=False)
    monkeypatch.setattr(history_module, "HISTORY_RUN_MONTHS", 1)
    hourly, monthly = tmp_path / "hourly", tmp_path / "monthly"
    for data in (hourly, monthly):
        _import_history(tmp_path, data, days, T1)
    assert cli.main(["backfill", "--data-dir", str(hourly), "--hourly-only"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert not [line for line in out if line.startswith("history_job")]
    assert cli.main(["backfill", "--data-dir", str(monthly)]) == 0
    out = capsys.readouterr().out.splitlines()
    history_runs = [line for line in out if line.startswith("history_job ")]
    assert [line.split(":")[0] for line in history_runs] == ["history_job 2024-01-01 00", "history_job 2024-02-01 00"]
    assert all("(1 month)" in line for line in history_runs), history_runs
    assert [line.split()[1] for line in out if line.startswith(("hourly_job ", "signals_job "))] == [
        "2024-02-02",
        "2024-02-01",  # signals_job from 8 h before: the spreads the newest day's settlements pay
    ]

    with duckdb.connect() as con:
        con.execute(f"ATTACH '{hourly / 'warehouse.duckdb'}' AS h (READ_ONLY)")
        con.execute(f"ATTACH '{monthly / 'warehouse.duckdb'}' AS d (READ_ONLY)")
        tables, monthly_tables = (
            {
                r[0]
                for r in con.execute(f"SELECT table_name FROM duckdb_tables() WHERE database_name = '{w}'").fetchall()
            }
            for w in ("h", "d")
        )
        compared = {}
        for name in sorted(set(tables) - WALL_CLOCK):
            assert name in monthly_tables, name
            n_h, n_d = (con.execute(f"SELECT count(*) FROM {w}.{name}").fetchone()[0] for w in ("h", "d"))
            assert (n_h, _differing_rows(con, name)) == (n_d, 0), name
            compared[name] = n_h
    for name in ("raw_funding", "raw_ohlcv", "ohlcv_1m", "ohlcv_1h", "funding_rates", "basis", "funding_spreads"):
        assert compared[name] > 0, (name, compared)
    assert compared["raw_funding"] == days * (3 + 24 + 6)  # 8h, 1h, 4h venues
    assert compared["ohlcv_1m"] == 2 * days * 1440

    def events(data: Path) -> tuple[int, int, set[str], set[str]]:
        with DagsterInstance.from_config(str(data / "dagster_home")) as instance:
            runs = len(instance.get_run_records(RunsFilter(tags={"fundarb/trigger": "fundarb backfill"})))
            materialized = len(instance.get_event_records(EventRecordsFilter(DagsterEventType.ASSET_MATERIALIZATION)))
            hours = set(instance.get_materialized_partitions(AssetKey("raw_funding")))
            history_months = set(instance.get_materialized_partitions(AssetKey(["history", "raw_funding"])))
        return runs, materialized, hours, history_months

    runs_h, events_h, hours_h, months_h = events(hourly)
    runs_m, events_m, hours_m, months_m = events(monthly)
    assert (len(hours_h), months_h) == (days * 24, set())
    assert months_m == {"2024-01-01", "2024-02-01"} and hours_m == {f"2024-02-02-{h:02d}:00" for h in range(24)}
    assert events_m < events_h / 2, (events_m, events_h)
    print(f"hourly: {runs_h} runs, {events_h} materializations; by month: {runs_m} runs, {events_m} materializations")


@pytest.mark.slow
def test_a_backfill_of_history_months_launched_as_from_the_ui_runs_in_bounded_runs(tmp_path: Path, monkeypatch) -> None:
    """A backfill of 13 months of `history/*` launched as the UI launches one (an asset backfill on the
    instance, run by the daemon's backfill loop against the code location loaded in its own process): cut into
    runs of at most HISTORY_RUN_MONTHS months by the backfill policy, each run succeeding, every landed
    settlement in the warehouse."""
    from dagster import AssetKey, DagsterRunStatus
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
    from dagster._core.instance_for_test import instance_for_test
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.backfill import execute_backfill_iteration

    from fundarb_dagster.defs.history import HISTORY_RUN_MONTHS

    data = tmp_path / "data"
    rows = _funding(tmp_path / "files", "BTCUSDT", 8, 1, days=396)  # 2024-01-01 .. 2025-01-31: 13 months
    summary = import_files([tmp_path / "files"], data, exchange="binance", symbol="BTC/USDT:USDT", progress=None)
    assert summary.ok
    monkeypatch.setenv("FUNDARB_DATA_DIR", str(data))
    monkeypatch.delenv("FUNDARB_PARTITIONS_START", raising=False)
    months = [f"2024-{m:02d}-01" for m in range(1, 13)] + ["2025-01-01"]
    (data / "dagster_home").mkdir()
    target = ModuleTarget("fundarb_dagster.definitions", None, str(Path(__file__).parents[1]), "fundarb")
    with (
        instance_for_test(
            temp_dir=str(data / "dagster_home"), synchronous_run_launcher=True, synchronous_run_coordinator=True
        ) as instance,
        create_test_daemon_workspace_context(target, instance) as context,
    ):
        graph = context.create_request_context().asset_graph
        keys = [key for key in graph.get_all_asset_keys() if key.path[0] == "history"]
        backfill = PartitionBackfill.from_asset_partitions(
            backfill_id="history",
            asset_graph=graph,
            partition_names=months,
            asset_selection=keys,
            backfill_timestamp=time.time(),
            tags={},
            dynamic_partitions_store=instance,
            all_partitions=False,
            title=None,
            description=None,
            run_config=None,
        )
        instance.add_backfill(backfill)
        for _ in range(200):
            errors = [e for e in execute_backfill_iteration(context, logging.getLogger("backfill")) if e]
            assert not errors, errors[0].to_string()
            if instance.get_backfill("history").status != BulkActionStatus.REQUESTED:
                break
        runs = instance.get_runs()
        assert instance.get_backfill("history").status == BulkActionStatus.COMPLETED_SUCCESS, [
            (run.status, run.tags) for run in runs
        ]
        assert runs and all(run.status == DagsterRunStatus.SUCCESS for run in runs)
        one = "dagster/partition"
        first, last = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"

        def months_of(run: object) -> tuple[str, str]:
            return run.tags.get(first, run.tags.get(one)), run.tags.get(last, run.tags.get(one))

        partitioned = [run for run in runs if first in run.tags or one in run.tags]  # not funding_intervals' run
        # the policy's runs of at most HISTORY_RUN_MONTHS (12) months: the raw tables in a year, then the
        # thirteenth month (Dagster runs the assets behind funding_spreads' month-before mapping in runs of
        # their own, cut the same way)
        raw = AssetKey(["history", "raw_funding"])
        assert sorted(months_of(run) for run in partitioned if raw in (run.asset_selection or ())) == [
            ("2024-01-01", "2024-12-01"),
            ("2025-01-01", "2025-01-01"),
        ]
        for a, b in map(months_of, partitioned):
            assert (int(b[:4]) - int(a[:4])) * 12 + int(b[5:7]) - int(a[5:7]) < HISTORY_RUN_MONTHS == 12, (a, b)
        assert set(instance.get_materialized_partitions(AssetKey(["history", "raw_funding"]))) == set(months)
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw_funding").fetchone()[0] == len(rows)
        assert con.execute("SELECT count(*) FROM funding_rates").fetchone()[0] == len(rows)


@pytest.mark.slow
def test_history_months_loaded_in_either_order_give_the_same_rows(tmp_path: Path, monkeypatch) -> None:
    """Two consecutive history months (2024-01-31 .. 2024-02-02 imported: the bars, funding and spreads cross the
    month's end) loaded as two `history_job` runs, in time order in one warehouse and the later month first in
    another, as a UI backfill's runs may go: every table holds the same rows. The later month's first hours read
    the month before (the close carried into its first minutes, the indicators' look-back, the settlements the
    spreads of its first hours are paid by), which must not depend on that month having loaded first. The run that
    went first reloaded the hours before its window; the later month run again, its month before loaded now,
    reloads nothing and changes no row."""
    from datetime import date

    from fundarb_dagster.backfill import backfill

    monkeypatch.delenv("FUNDARB_PARTITIONS_START", raising=False)
    january = (date(2024, 1, 31), date(2024, 2, 1))
    february = (date(2024, 2, 1), date(2024, 2, 2))  # --to on the newest day: history_job only, no hourly runs
    in_order, reversed_ = tmp_path / "in_order", tmp_path / "reversed"
    for data, months in ((in_order, (january, february)), (reversed_, (february, january))):
        _import_history(tmp_path, data, 3, T1, seam=T1 + 24 * HOUR)
        for start, end in months:
            timings = backfill(data, start, end, progress=None)
            assert [(t.job, t.ok) for t in timings] == [("history_job", True)], timings
    compared = _assert_same_tables(in_order, reversed_)
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{reversed_ / 'warehouse.duckdb'}' AS d (READ_ONLY)")
        # what the later month's first hours read from the month before, in the warehouse loaded backwards: the
        # seam's 30 minutes without klines carry the last close before it, the settlement landed 2 s before the
        # seam is keyed at the seam
        seam = "TIMESTAMP '2024-02-01 00:00'"
        carried = con.execute(
            f"SELECT exchange, symbol, count(*), count(DISTINCT close), bool_and(is_filled), any_value(close) "
            f"FROM d.ohlcv_1m WHERE ts >= {seam} AND ts < {seam} + INTERVAL 30 MINUTE GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        last = con.execute(
            f"SELECT exchange, symbol, close FROM d.raw_ohlcv WHERE ts = {seam} - INTERVAL 1 MINUTE ORDER BY ALL"
        ).fetchall()
        assert [(e, s, 30, 1, True, c) for e, s, c in last] == carried and len(carried) == 2
        early = con.execute(
            f"SELECT epoch_ms(funding_ts) - epoch_ms({seam}), epoch_ms(funding_ts_raw) - epoch_ms({seam}) "
            f"FROM d.funding_rates "
            f"WHERE exchange = 'binance' AND funding_ts < {seam} + INTERVAL 1 HOUR ORDER BY funding_ts"
        ).fetchall()
        assert early[-1] == (0, -2_000), early
    for name in ("ohlcv_1m", "ohlcv_1h", "indicators", "funding_rates", "basis", "funding_spreads"):
        assert compared[name] > 0, (name, compared)
    assert compared["ohlcv_1m"] == 2 * 3 * 1440  # every minute: 30 of them filled on each series

    # February again in the warehouse loaded backwards: January is loaded now, so it reads the hours before its
    # window from the tables (the in-order path) and reloads none of them; no row changes
    timings = backfill(reversed_, *february, progress=None)
    assert [(t.job, t.ok) for t in timings] == [("history_job", True)], timings
    assert _assert_same_tables(in_order, reversed_) == compared
    for name in ("raw_trades", "raw_ohlcv", "ohlcv_1m", "ohlcv_1h", "raw_funding", "funding_predictions"):
        assert _month_windows(reversed_, name, "2024-02-01") == ["[2024-01-31 00:00", "[2024-02-01 00:00"], name
    assert _month_windows(in_order, "raw_trades", "2024-02-01") == ["[2024-02-01 00:00"]


def _assert_same_tables(a: Path, b: Path) -> dict[str, int]:
    """Every table of warehouse `a` holds the same rows as `b`'s (not the wall-clock ones); its row counts."""
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{a / 'warehouse.duckdb'}' AS h (READ_ONLY)")
        con.execute(f"ATTACH '{b / 'warehouse.duckdb'}' AS d (READ_ONLY)")
        names = sorted(
            r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'h'").fetchall()
        )
        differing, compared = {}, {}
        for name in sorted(set(names) - WALL_CLOCK):
            n_h, n_d = (con.execute(f"SELECT count(*) FROM {w}.{name}").fetchone()[0] for w in ("h", "d"))
            compared[name], diff = n_h, _differing_rows(con, name)
            if (n_h, diff) != (n_d, 0):
                differing[name] = {"in order": n_h, "reversed": n_d, "differing rows": diff}
    assert differing == {}
    return compared


def _month_windows(data: Path, table: str, month: str) -> list[str]:
    """The start of the window each materialization of `history/<table>`'s month wrote, oldest first."""
    from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

    with DagsterInstance.from_config(str(data / "dagster_home")) as instance:
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(["history", table]), asset_partitions=[month]), limit=10
        ).records
    return [r.asset_materialization.metadata["window"].value.split(",")[0] for r in reversed(records)]
