"""Private PostgreSQL and Redis servers for the tests that need one: each in a temporary folder on a free port
of localhost, stopped and removed afterwards. They use the OS's server binaries (`.ci/run` installs them:
`apt-get install postgresql redis-server`); as root, PostgreSQL runs as the `postgres` user its package
creates. Also the `lake` extra's packages in a folder of their own, for the processes that open a DuckLake."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yields its URL without a database (`postgresql+psycopg2://postgres@127.0.0.1:<port>`)."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb) not installed: apt-get install postgresql (.ci/run does)")
    folder = Path(tempfile.mkdtemp(prefix="fundarb-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port, pg_ctl = folder / "data", _free_port(), str(bin_dir / "pg_ctl")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    try:
        subprocess.run(
            [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-o", options, "-w", "start"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Start a Redis server (no persistence); yields its URL (`redis://127.0.0.1:<port>/0`)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed: apt-get install redis-server (.ci/run does)")
    folder = Path(tempfile.mkdtemp(prefix="fundarb-redis-"))
    port = _free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):  # up within a second or two
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.1):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    """A new database on the server; its URL."""
    import psycopg2

    with contextlib.closing(psycopg2.connect(_dsn(server_url, "postgres"))) as conn:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"


def query(url: str, sql: str) -> list[tuple]:
    """Rows of `sql` on the database of `url`, read with psycopg2 (independent of Dagster's own storage code)."""
    import psycopg2

    server, name = url.rsplit("/", 1)
    with contextlib.closing(psycopg2.connect(_dsn(server, name))) as conn, conn.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def install_lake_extra(site: Path) -> Path:
    """The `lake` extra's packages (pyproject.toml: duckdb 1.5.5 and its DuckLake and Postgres extensions) installed
    into `site`: put it first on a process's PYTHONPATH to run it as `pip install 'fundarb[lake]'` would."""
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    pins = pyproject["project"]["optional-dependencies"]["lake"]
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), *pins]
    subprocess.run(command, check=True, capture_output=True)
    return site


def _dsn(server_url: str, database: str) -> str:
    return server_url.replace("postgresql+psycopg2://", "postgresql://") + f"/{database}"
