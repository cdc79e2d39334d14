"""The Dagster instance of a data folder: the environment that points Dagster at its home and warehouse, and
the daemon that runs the pipeline on it.

`fundarb demo` runs the daemon on it and `fundarb ui` opens it (`dagster dev`: webserver and daemon), so both
see the same runs, checks and plots. Its storage is sqlite files in the home (zero set-up), or Postgres when
`DAGSTER_PG_URL` is set (several daemons, webservers and run workers, on several machines, share one instance;
ranged runs of any size: see docs/deploy.md).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from .core.config import ConfigError
from .core.warehouse import WAREHOUSE_ENV, lake_target

DAGSTER_YAML = Path(__file__).resolve().parent.parent / "config" / "dagster.yaml"
PLANNED_EVENTS_ENV = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"
EVENT_BATCH_ENV = "DAGSTER_EVENT_BATCH_SIZE"
PG_URL_ENV = "DAGSTER_PG_URL"
# dagster-postgres connects through psycopg2; SQLAlchemy 2.1 reads a bare postgresql:// as psycopg (3)
PG_SCHEME = "postgresql+psycopg2"
# The URL (and its password) stays in the environment: the file names the variable, Dagster reads it.
POSTGRES_STORAGE = f"""
# {PG_URL_ENV} is set: runs, events, schedules and sensor cursors live in Postgres, which several daemons,
# webservers and run workers (on several machines) share; the URL is read from the environment at start.
storage:
  postgres:
    postgres_url:
      env: {PG_URL_ENV}
"""


# The pool every warehouse writer takes ("duckdb"): limit 1 for a DuckDB file (one writer process at a time);
# a DuckLake on Postgres takes several writers at once, so its runs share as many slots as runs may start.
ONE_WRITER = "    default_limit: 1\n"
LAKE_WRITERS = 4
LAKE_POOL = f"    default_limit: {LAKE_WRITERS}  # {WAREHOUSE_ENV} is a DuckLake: several writers at once\n"


def instance_yaml(pg_url: str | None, lake: bool = False) -> str:
    """The instance's dagster.yaml: config/dagster.yaml, with Postgres storage when a URL is given, and the
    warehouse writers' pool at `LAKE_WRITERS` when the warehouse is a DuckLake."""
    text = DAGSTER_YAML.read_text()
    if lake:
        if ONE_WRITER not in text:  # config/dagster.yaml changed shape: say so rather than keep the limit of 1
            raise ConfigError(f"{DAGSTER_YAML}: no {ONE_WRITER.strip()!r} under concurrency.pools to raise")
        text = text.replace(ONE_WRITER, LAKE_POOL)
    if not pg_url:
        return text
    parts = urlsplit(pg_url)
    if parts.scheme != PG_SCHEME or not parts.hostname or not parts.path.strip("/"):
        # never the whole URL: it may hold a password
        raise ConfigError(
            f"{PG_URL_ENV}: scheme {parts.scheme!r}, host {parts.hostname!r}, database {parts.path.strip('/')!r}: "
            f"expected {PG_SCHEME}://user[:password]@host[:port]/database"
        )
    return text + POSTGRES_STORAGE


def dagster_env(data_dir: Path) -> dict[str, str]:
    """The environment that points Dagster at a data folder's instance and warehouse."""
    data_dir = data_dir.resolve()
    home = data_dir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    lake = lake_target(os.environ.get(WAREHOUSE_ENV, "")) is not None  # a bad value stops here
    wanted = instance_yaml(os.environ.get(PG_URL_ENV), lake)
    written = home / "dagster.yaml"
    # a file fundarb wrote follows DAGSTER_PG_URL and FUNDARB_WAREHOUSE; one edited by hand is left alone
    ours = {instance_yaml(None, lake) + storage for lake in (False, True) for storage in ("", POSTGRES_STORAGE)}
    current = written.read_text() if written.exists() else None
    if current is None or (current in ours and current != wanted):
        written.write_text(wanted)
    env = {**os.environ, "DAGSTER_HOME": str(home), "FUNDARB_DATA_DIR": str(data_dir)}
    # A ranged run then records one "materialization planned" event per asset, not one per asset and hour:
    # a month-long run of hourly_job wrote ~18 k of them into sqlite before its first step (Dagster's own
    # switch; the cost: a failed run does not mark its partitions failed, they stay missing).
    env.setdefault(PLANNED_EVENTS_ENV, "true")
    # A ranged step's materializations (one per hour) are stored in batches of up to 1,000 rows instead of one
    # write each: a month of hourly partitions took 18.0 s instead of 39.7 s of sqlite bookkeeping
    # (benchmarks/bench_dagster_events.py). Dagster's own switch; the events are the same, written at once.
    env.setdefault(EVENT_BATCH_ENV, "1000")
    # The demo leaves its config beside its data, so the UI's funding_history pulls from the same sim.
    if (data_dir / "demo_config.yaml").exists():
        env.setdefault("FUNDARB_CONFIG", str(data_dir / "demo_config.yaml"))
    return env


def start_daemon(env: dict[str, str], log: IO[str]) -> subprocess.Popen[bytes]:
    """`dagster-daemon run` on the code location, in a session of its own: it starts the code server and
    every run in that process group, so `stop_daemon` ends them all (FACTS: setsid, then kill the group)."""
    command = [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-m", "fundarb_dagster.definitions"]
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_daemon(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM to the daemon's process group, SIGKILL to what is left after `timeout_s`."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        with contextlib.suppress(ProcessLookupError):  # the daemon is gone; its children may linger
            os.killpg(process.pid, signal.SIGKILL)
        return
