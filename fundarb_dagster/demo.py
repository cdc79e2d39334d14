"""`fundarb demo`: the whole pipeline, offline, on the simulator, in a few minutes.

1. pull 7 days of sim history (OHLCV, settled funding) for 3 venues x 3 assets, spot and perp;
2. run the MPI capture job for about a minute of wall time at a high speed factor (days of market);
3. materialize the Dagster pipeline into DuckDB in a local instance (DAGSTER_HOME under the data folder);
4. print funding, basis, the top opportunities, backtest metrics, the risk report and the alerts.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import yaml

from .core import arguments
from .core.config import default_config
from .core.landing import landing_root, stream_glob
from .core.schema import MARKET_STREAMS
from .core.sql import bind, load_sql
from .core.units import DAY_MS, HOUR_MS
from .instance import dagster_env


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_demo_config(data_dir: Path, speed: float, ranks: int, now_ms: int | None = None) -> Path:
    """The embedded defaults spelled out as a YAML file the capture job (and the user) can read.

    After the capture, `now_ms` pins the sim's clock at the capture's end, so the warehouse (and the UI
    later) can fetch the REST history of the simulated days that were captured."""
    config = default_config(data_dir=str(data_dir))
    raw = {
        "source": "sim",
        "data_dir": str(data_dir),
        "exchanges": [{"id": e.id, "symbols": list(e.symbols)} for e in config.exchanges],
        # A trade rate the capture keeps up with at this speed, so trades cover the same market time as
        # tickers and candles (18 symbols x 0.25/s x 4320 = ~19k trades per wall second).
        "sim": {"seed": config.sim.seed, "speed": speed, "start": config.sim.start, "trades_per_s": 0.25},
        # At thousands of market seconds per wall second, a busy second on 2 cores is many market minutes:
        # staleness limits (the watchdog's and the alert rule's) are set in market time to match.
        "capture": {
            "ranks": ranks,
            "flush_interval_s": 2.0,
            "stale_timeout_s": {"trades": 900, "tickers": 900, "funding": 3600, "ohlcv": 900},
        },
    }
    if now_ms is not None:
        raw["sim"]["now"] = _iso(now_ms)
    path = data_dir / "demo_config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def landed_streams(data_dir: Path) -> dict[str, tuple[int, int, int, int]]:
    """stream -> (files, rows, first ts_ms, last ts_ms) in the landing zone, read with DuckDB's hive reader."""
    out = {}
    sql = load_sql("reports", "landed_stream")
    con = duckdb.connect()
    for stream_dir in sorted(p for p in landing_root(data_dir).glob("*") if p.is_dir()):
        files = list(stream_dir.glob("date=*/hour=*/*.parquet"))
        if files:
            rows, first, last = con.execute(sql, {"glob": stream_glob(data_dir, stream_dir.name)}).fetchone()
            out[stream_dir.name] = (len(files), rows, first, last)
    con.close()
    return out


def landed_summary(streams: dict[str, tuple[int, int, int, int]]) -> str:
    lines = []
    for stream, (files, rows, first, last) in streams.items():
        lines.append(f"  {stream:<15} {rows:>10,} rows in {files:>5} files  {_iso(first)} .. {_iso(last)}")
    return "\n".join(lines)


def landed_until_ms(streams: dict[str, tuple[int, int, int, int]]) -> int:
    """The end of the last event-time hour that holds landed market data."""
    newest = max(last for stream, (_, _, _, last) in streams.items() if stream in MARKET_STREAMS)
    return (newest // HOUR_MS + 1) * HOUR_MS


def run_demo(
    data_dir: Path,
    history_days: float = 7.0,
    capture_seconds: float = 60.0,
    speed: float = 4320.0,
    ranks: int = 3,
    fresh: bool = False,
) -> int:
    arguments.demo(data_dir, history_days, capture_seconds, speed, ranks)  # before any work
    from mpi_jobs.launcher import launch_capture

    from .core.history import pull_history

    started = time.perf_counter()
    data_dir = data_dir.resolve()
    if fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    config_path = write_demo_config(data_dir, speed, ranks)
    config = default_config(data_dir=str(data_dir))
    start_ms = config.sim.start_ms
    since_ms = start_ms - int(history_days * DAY_MS)

    say(f"1/4 pulling {history_days:g} days of sim history {_iso(since_ms)} .. {_iso(start_ms)}")
    counts = pull_history(config, since_ms, start_ms, streams=("ohlcv", "funding"))
    say("    " + ", ".join(f"{stream}: {rows:,} rows" for stream, rows in counts.items()))

    if capture_seconds > 0:
        days = capture_seconds * speed / 86400
        say(f"2/4 capturing {capture_seconds:g} s of wall time at speed {speed:g} (~{days:.1f} days of market)")
        code = launch_capture(str(config_path), ranks=ranks, duration_s=capture_seconds)
        if code != 0:
            raise RuntimeError(f"capture job exited with code {code}")
    streams = landed_streams(data_dir)
    end_ms = max(start_ms, landed_until_ms(streams))
    # Pin the sim clock at the end of what landed: the warehouse can then fetch those days' REST history.
    write_demo_config(data_dir, speed, ranks, now_ms=end_ms)
    say("landed:\n" + landed_summary(streams))

    say(f"3/4 materializing the Dagster pipeline into {data_dir / 'warehouse.duckdb'}")
    env = dagster_env(data_dir)
    materialize_all(env, since_ms, end_ms)

    say("4/4 results")
    show_results(data_dir / "warehouse.duckdb")
    print(
        f"\nDemo done in {time.perf_counter() - started:.0f} s. Data: {data_dir}\n"
        f"Open the Dagster UI on this instance:\n  fundarb ui --data-dir {data_dir}\n"
        f"(or: DAGSTER_HOME={env['DAGSTER_HOME']} FUNDARB_DATA_DIR={data_dir} FUNDARB_CONFIG={config_path} \\\n"
        "       dagster dev -m fundarb_dagster.definitions)"
    )
    return 0


# Ranged runs need every selected asset on one partitions definition, so the graph is cut where it changes.
MARKET_HOURLY = ("ohlcv_1m", "ohlcv_5m", "ohlcv_1h", "indicators")
FUNDING_HOURLY = ("funding_predictions", "funding_rates", "basis", "funding_spreads")
BACKTEST = ("backtest_runs", "backtest_equity", "backtest_trades", "backtest_positions", "backtest_book")
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def _hour_key(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d-%H:00")


def _day_key(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def materialize_all(env: dict[str, str], since_ms: int, end_ms: int) -> None:
    """Materialize the whole graph in the local instance: one ranged run per partitions definition.

    Runs in this process (one load of the definitions, no CLI start-up per step) against the instance in
    DAGSTER_HOME, so every run, materialization, check and plot is there when the UI opens on it.
    """
    os.environ.update(env)  # resources read FUNDARB_* and the instance DAGSTER_HOME when they are used
    from dagster import AssetSelection, DagsterInstance, SupersessionWarning, materialize

    # The freshness-check builders are superseded in Dagster 1.13 (developers see it in pytest's summary);
    # a demo user has nothing to act on.
    warnings.filterwarnings("ignore", category=SupersessionWarning)

    from . import definitions
    from .defs.raw.assets import RAW_HOURLY

    everything = [*definitions.all_assets, *definitions.all_checks]
    resources = definitions.defs.resources
    instance = DagsterInstance.get()
    last_hour = end_ms - HOUR_MS
    hours = {RANGE_START_TAG: _hour_key(since_ms), RANGE_END_TAG: _hour_key(last_hour)}
    days = {RANGE_START_TAG: _day_key(since_ms), RANGE_END_TAG: _day_key(last_hour)}

    def run(names: Sequence[str], tags: dict[str, str] | None = None, config: dict | None = None) -> None:
        what = f"{', '.join(names)}" + (f" [{tags[RANGE_START_TAG]} .. {tags[RANGE_END_TAG]}]" if tags else "")
        say(f"  materializing {what}")
        started = time.perf_counter()
        result = materialize(
            everything,
            selection=AssetSelection.assets(*names),
            instance=instance,
            resources=resources,
            tags=tags,
            # The run's events all go to the instance (the UI shows them); the terminal gets warnings only.
            run_config={**(config or {}), "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=False,
        )
        if not result.success:
            failed = sorted({event.step_key for event in result.get_step_failure_events()})
            raise RuntimeError(f"dagster run {result.run_id} failed in {failed}: `fundarb ui` shows why")
        say(f"    done in {time.perf_counter() - started:.1f} s (run {result.run_id[:8]})")

    run(["instruments"])
    run(RAW_HOURLY, hours)
    run(["funding_history"], days)
    run(["funding_intervals"])
    run(MARKET_HOURLY, hours)
    run(FUNDING_HOURLY, hours)
    run(["ohlcv_1d"], days)
    run(["opportunities"])
    for strategy in ("cash_carry", "perp_perp"):
        run(BACKTEST, config={"ops": {"backtest": {"config": {"strategy": strategy}}}})
    run(["risk_report", "risk_stress"])
    run(["alerts"])


REPORTS = (
    ("latest settled funding per venue (rate per interval, annualized for the interval in force)", "latest_funding"),
    ("latest hourly basis per venue (perp mid vs spot mid)", "latest_basis"),
    ("top opportunities (net of round-trip fees and half-spreads)", "top_opportunities"),
    ("backtests: metrics", "backtest_metrics"),
    ("backtests: PnL attribution, USD", "backtest_attribution"),
    ("risk report: limit breaches of the latest backtest's open book", "risk_breaches"),
    ("alerts raised", "recent_alerts"),
)


def print_report(con: duckdb.DuckDBPyConnection, title: str, name: str) -> None:
    """Print one `sql/reports/<name>.sql` query as a table."""
    print(f"\n== {title}")
    sql = load_sql("reports", name)
    try:
        frame = con.execute(sql, bind(sql, {"limit": 12})).fetchdf()
    except duckdb.Error as exc:
        print(f"  (not available: {exc})")
        return
    print(frame.to_string(index=False) if len(frame) else "  (none)")


def show_results(database: Path) -> None:
    con = duckdb.connect(str(database), read_only=True)
    try:
        for title, name in REPORTS:
            print_report(con, title, name)
    finally:
        con.close()
