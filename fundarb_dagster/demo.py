"""`fundarb demo`: the whole pipeline, offline, on the simulator, in a few minutes.

1. pull 7 days of sim history (OHLCV, settled funding) for 3 venues x 3 assets, spot and perp, into the
   landing zone;
2. run the MPI capture job for about a minute of wall time at a high speed factor (days of market);
3. paper-trade the first half-day of the capture on its own replay (`fundarb trade --venue paper`: cash-and-carry
   on binance and hyperliquid, BTC and ETH), landing orders, fills, positions, balances and funding payments;
4. start `dagster-daemon` on a local instance (DAGSTER_HOME under the data folder) and let the sensors run the
   pipeline, as in a deployment: raw tables, bars, funding, signals, daily tables, backtests, risk, alerts;
5. print the runs the sensors launched, then funding, basis, the top opportunities, backtest metrics, the
   risk report, the paper trader's positions, realised funding and its reconciliation, and the alerts.

Steps 1 and 2 land files (what a capture or an import does); no Dagster step runs by hand.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import warnings
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import yaml

from .core import arguments
from .core.config import ExchangeConfig, FundarbConfig, ReplayConfig, default_config
from .core.execution.launch import journaled
from .core.landing import landing_root, stream_files
from .core.schema import DEFAULT_STREAMS, MARKET_STREAMS
from .core.sql import bind, load_sql
from .core.units import DAY_MS, HOUR_MS
from .core.venues import venue_facts
from .core.warehouse import connect, warehouse_target
from .instance import dagster_env, start_daemon, stop_daemon


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def positioning(exchange_id: str) -> list[str]:
    """The positioning streams a venue gives: open interest everywhere, liquidations where it has a channel."""
    facts = venue_facts(exchange_id)
    return ["open_interest", *(["liquidations"] if facts is not None and facts.liquidation_side else [])]


def write_demo_config(data_dir: Path, speed: float, ranks: int, now_ms: int | None = None) -> Path:
    """The embedded defaults spelled out as a YAML file the capture job (and the user) can read.

    After the capture, `now_ms` pins the sim's clock at the capture's end, so the warehouse (and the UI
    later) can fetch the REST history of the simulated days that were captured."""
    config = default_config(data_dir=str(data_dir))
    raw = {
        "source": "sim",
        "data_dir": str(data_dir),
        # Order books too, for the opportunities' capacity: one kept per 5 market minutes of a book the sim
        # renews every market minute (at this speed a book a second would cost a core for nothing kept). Open
        # interest (polled every 5 market minutes) and liquidation prints (a few an hour) of every perp: cheap;
        # liquidations only where the venue has a public channel (not hyperliquid).
        "exchanges": [
            {"id": e.id, "symbols": list(e.symbols), "streams": [*DEFAULT_STREAMS, "order_book", *positioning(e.id)]}
            for e in config.exchanges
        ],
        # A trade rate the capture keeps up with at this speed, so trades cover the same market time as
        # tickers and candles (18 symbols x 0.25/s x 4320 = ~19k trades per wall second).
        "sim": {
            "seed": config.sim.seed,
            "speed": speed,
            "start": config.sim.start,
            "trades_per_s": 0.25,
            "book_interval_s": 60,
        },
        # At thousands of market seconds per wall second, a busy second on 2 cores is many market minutes:
        # staleness limits (the watchdog's and the alert rule's) are set in market time to match.
        "capture": {
            "ranks": ranks,
            "flush_interval_s": 2.0,
            "stale_timeout_s": {"trades": 900, "tickers": 900, "funding": 3600, "ohlcv": 900, "order_book": 900},
            "book_interval_s": 300,
            "open_interest_interval_s": 300,
        },
        # The backtests size each pair by the capacity of its captured books at entry (the even split where the
        # window has no book: the REST history before the capture), a carry held about a month.
        "backtest": {"sizing": "capacity", "capacity_share": 0.5, "capacity_horizon_h": 720.0},
    }
    if now_ms is not None:
        raw["sim"]["now"] = _iso(now_ms)
    path = data_dir / "demo_config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def landed_streams(data_dir: Path) -> dict[str, tuple[int, int, int, int]]:
    """stream -> (files, rows, first ts_ms, last ts_ms) in the landing zone, read with DuckDB."""
    out = {}
    sql = load_sql("reports", "landed_stream")
    con = duckdb.connect()
    for stream_dir in sorted(p for p in landing_root(data_dir).glob("*") if p.is_dir()):
        files = stream_files(data_dir, stream_dir.name)
        if files:
            rows, first, last = con.execute(sql, {"files": files}).fetchone()
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

    say(f"1/5 pulling {history_days:g} days of sim history {_iso(since_ms)} .. {_iso(start_ms)}")
    counts = pull_history(config, since_ms, start_ms, streams=("ohlcv", "funding"))
    say("    " + ", ".join(f"{stream}: {rows:,} rows" for stream, rows in counts.items()))

    if capture_seconds > 0:
        days = capture_seconds * speed / 86400
        say(f"2/5 capturing {capture_seconds:g} s of wall time at speed {speed:g} (~{days:.1f} days of market)")
        code = launch_capture(str(config_path), ranks=ranks, duration_s=capture_seconds)
        if code != 0:
            raise RuntimeError(f"capture job exited with code {code}")
    streams = landed_streams(data_dir)
    end_ms = max(start_ms, landed_until_ms(streams))
    # Pin the sim clock at the end of what landed: the warehouse can then fetch those days' REST history.
    write_demo_config(data_dir, speed, ranks, now_ms=end_ms)
    say("landed:\n" + landed_summary(streams))

    if end_ms > start_ms and journaled(data_dir, PAPER_NAME):
        say(f"3/5 the paper trader {PAPER_NAME!r} already traded in this folder (a paper account does not outlive")
        say("    its run): its landed orders, fills and funding stand; --fresh trades again")
    elif end_ms > start_ms:
        until_ms = min(end_ms, start_ms + PAPER_HOURS * HOUR_MS)
        say(f"3/5 paper-trading {_iso(start_ms)} .. {_iso(until_ms)} on the capture's replay at x{PAPER_SPEED:g}")
        code = paper_trade(data_dir, start_ms, until_ms)
        if code != 0:
            raise RuntimeError(f"the paper trader exited with code {code}")

    say(
        "4/5 the pipeline runs itself: dagster-daemon with landing_sensor (complete hours -> hourly_job) and "
        "pipeline_sensor (each stage after the stages it reads), as `fundarb ui` runs them"
    )
    env = dagster_env(data_dir)
    run_pipeline(env, data_dir)

    say("5/5 results")
    show_results(warehouse_target(data_dir))
    print(
        f"\nDemo done in {time.perf_counter() - started:.0f} s. Data: {data_dir}\n"
        f"Open the Dagster UI on this instance (its daemon keeps the pipeline running: files landed under "
        f"{data_dir / 'landing'} load by themselves):\n  fundarb ui --data-dir {data_dir}\n"
        f"(or: DAGSTER_HOME={env['DAGSTER_HOME']} FUNDARB_DATA_DIR={data_dir} FUNDARB_CONFIG={config_path} \\\n"
        "       dagster dev -m fundarb_dagster.definitions)"
    )
    return 0


PAPER_NAME = "demo"
PAPER_HOURS = 12  # the paper trader trades the first half-day of the capture (an 8h and hourly settlements)
PAPER_SPEED = 1800.0  # market seconds per wall second of the replay (its own wall latency stays ~a minute of market)
PAPER_SYMBOLS = {
    "binance": ("BTC/USDT", "BTC/USDT:USDT", "ETH/USDT", "ETH/USDT:USDT"),
    "hyperliquid": ("BTC/USDC", "BTC/USDC:USDC", "ETH/USDC", "ETH/USDC:USDC"),
}


def paper_config(data_dir: Path, start_ms: int) -> FundarbConfig:
    """The paper trader's config: a paced replay of the capture (from its start, the history before it
    skipped), cash-and-carry on an 8h and a 1h venue."""
    config = default_config(data_dir=str(data_dir))
    return replace(
        config,
        source="replay",
        exchanges=tuple(ExchangeConfig(id=e, symbols=s) for e, s in PAPER_SYMBOLS.items()),
        replay=ReplayConfig(path=str(data_dir), format="landing", speed=PAPER_SPEED, start=_iso(start_ms)),
        # a lower entry bar than the default (10 % APR) so that a short capture shows trades
        trade=replace(
            config.trade, name=PAPER_NAME, strategy="cash_carry", enter_apr=0.05, exit_apr=0.01, progress_interval_s=5.0
        ),
    )


def paper_trade(data_dir: Path, start_ms: int, until_ms: int) -> int:
    """`fundarb trade --venue paper --until <until>` on the capture's replay; returns its exit code."""
    from .core.execution.launch import TradeRun, trade

    config = paper_config(data_dir, start_ms)
    return asyncio.run(trade(config, TradeRun(venue="paper", until_ms=until_ms), say=lambda line: say("    " + line)))


PIPELINE_TIMEOUT_S = 1800.0  # a stage that has not finished by then is stuck: say so rather than wait forever
STATUS_EVERY_S = 20.0


def run_pipeline(env: dict[str, str], data_dir: Path, timeout_s: float = PIPELINE_TIMEOUT_S) -> None:
    """Start `dagster-daemon` on the data folder's instance and wait until the pipeline has settled: every
    landed hour loaded, every stage run that follows from it finished, nothing left to start.

    Nothing is materialized here: landing_sensor and pipeline_sensor (on by default) request every run, as in a
    deployment where `fundarb ui` (dagster dev) is up while the capture lands files.
    """
    os.environ.update(env)  # the instance below reads DAGSTER_HOME; the partitions' start reads FUNDARB_*
    from dagster import DagsterInstance, SupersessionWarning

    warnings.filterwarnings("ignore", category=SupersessionWarning)
    from .defs.partitions import partitions_start
    from .defs.sensors import pipeline_status

    partitions = partitions_start(data_dir)  # what the daemon's code location computes from the same folder
    home = Path(env["DAGSTER_HOME"])
    say(f"    partitions from {partitions.start} ({partitions.origin}); daemon log: {home / 'daemon.log'}")
    with (home / "daemon.log").open("w") as log, DagsterInstance.get() as instance:
        daemon = start_daemon(env, log)
        try:
            started, last_said, settled_polls = time.monotonic(), 0.0, 0
            while True:
                if daemon.poll() is not None:
                    raise RuntimeError(f"dagster-daemon exited ({daemon.returncode}): see {home / 'daemon.log'}")
                status = pipeline_status(instance, data_dir, partitions)
                settled_polls = settled_polls + 1 if status.settled else 0
                if settled_polls >= 3:  # settled across a sensor tick: nothing was about to start
                    break
                elapsed = time.monotonic() - started
                if elapsed > timeout_s:
                    raise RuntimeError(f"the pipeline has not settled after {timeout_s:.0f} s: {status}")
                if elapsed - last_said >= STATUS_EVERY_S:
                    say(f"    {elapsed:4.0f} s: {status}")
                    last_said = elapsed
                time.sleep(3.0)
            say(f"    settled in {time.monotonic() - started:.0f} s; stopping the daemon")
        finally:
            stop_daemon(daemon)
        print(automation_report(instance, data_dir))
        failures = failed_steps(instance)
        if failures:
            raise RuntimeError("pipeline runs failed (`fundarb ui` shows them):\n" + "\n".join(failures))


def _stage_runs(instance: Any) -> list[Any]:
    from dagster import RunsFilter

    from .defs.jobs import STAGES

    runs = [run for stage in STAGES for run in instance.get_runs(RunsFilter(job_name=stage.job))]
    return sorted(runs, key=lambda run: instance.get_run_record_by_id(run.run_id).create_timestamp)


def failed_steps(instance: Any) -> list[str]:
    """One line per failed step of a failed stage run: job, run id, step and the error's first line."""
    from dagster import DagsterEventType

    lines = []
    for run in _stage_runs(instance):
        if run.status.value != "FAILURE":
            continue
        records = instance.get_records_for_run(run.run_id, of_type={DagsterEventType.STEP_FAILURE}).records
        for record in records or [None]:
            error = record.event_log_entry.dagster_event.event_specific_data.error if record else None
            while error is not None and error.cause is not None:  # the user code's own exception
                error = error.cause
            message = error.message.strip().splitlines()[0] if error is not None else "run failed"
            step = record.event_log_entry.step_key if record else "-"
            lines.append(f"  {run.job_name} {run.run_id[:8]} {step}: {message}")
    return lines


def automation_report(instance: Any, data_dir: Path) -> str:
    """The runs the sensors launched (job, window, time, trigger) and whether every asset has a materialization
    (the execution stage's own assets wait for the trader's first fill: said, not counted as missing)."""
    from dagster import AssetKey

    from .defs.jobs import STAGE_BY_JOB, STAGES, stage_asset_names
    from .defs.sensors import first_landed_hours

    lines = ["\n== runs the sensors launched by themselves (nothing above ran a Dagster step by hand)"]
    for run in _stage_runs(instance):
        stats = instance.get_run_stats(run.run_id)
        seconds = (stats.end_time or 0) - (stats.start_time or 0) if stats.start_time else 0.0
        what = run.tags.get("fundarb/window") or run.tags.get("dagster/partition", "")
        trigger = run.tags.get("fundarb/trigger", "").split(" after ")[0]
        assets = len(STAGE_BY_JOB[run.job_name].assets)
        lines.append(
            f"  {run.job_name:<14} {what:<44} {assets:>2} assets {stats.materializations:>5} partitions "
            f"{seconds:6.1f} s  {run.status.value:<8} by {trigger}"
        )
    names = stage_asset_names()
    events = instance.get_latest_materialization_events([AssetKey(name) for name in names])
    missing = sorted(name for name in names if events.get(AssetKey(name)) is None)
    landed = first_landed_hours(data_dir)
    waiting = {}  # asset -> the streams it waits for: its only stages need streams that have not landed
    for name in missing:
        stages = [stage for stage in STAGES if name in stage.assets]
        unmet = {s for stage in stages for s in stage.needs_streams if s not in landed}
        if stages and all(set(stage.needs_streams) & unmet for stage in stages):
            waiting[name] = sorted(unmet)
    lines.append(f"  assets with a materialization: {len(names) - len(missing)} of {len(names)}")
    if waiting:
        streams = sorted({s for unmet in waiting.values() for s in unmet})
        lines.append(
            f"  waiting for the trader ({', '.join(streams)} not landed yet; `fundarb trade` lands them): "
            f"{', '.join(sorted(waiting))}"
        )
    if set(missing) - set(waiting):
        lines.append(f"  never materialized: {', '.join(sorted(set(missing) - set(waiting)))}")
    return "\n".join(lines)


REPORTS = (
    ("latest settled funding per venue (rate per interval, annualized for the interval in force)", "latest_funding"),
    ("latest hourly basis per venue (perp mid vs spot mid)", "latest_basis"),
    (
        "top opportunities (net of round-trip costs walked on the captured books, or fees and half-spreads; "
        "capacity per leg within half the expected carry)",
        "top_opportunities",
    ),
    ("backtests: metrics", "backtest_metrics"),
    ("backtests: PnL attribution, USD", "backtest_attribution"),
    ("risk report: limit breaches of the latest backtest's open book", "risk_breaches"),
    ("paper trader: positions at the end of its run (base units, mark)", "trader_positions"),
    ("paper trader: funding received by settlement, booked vs the model", "trader_funding"),
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


def show_results(database: str) -> None:
    con = connect(database, read_only=True)  # the data folder's file, or FUNDARB_WAREHOUSE's lake
    try:
        for title, name in REPORTS:
            print_report(con, title, name)
    finally:
        con.close()
