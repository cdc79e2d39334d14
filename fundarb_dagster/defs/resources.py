"""Resources: the DuckDB warehouse, the data folder (landing zone + registry), the source config, the alert
channels. `definitions.py` instantiates them; assets of every domain take them by key.

Every setting is configurable in the launchpad or in code, and environment variables are read when a
resource is used, never at import time:

| key | resource | default |
|---|---|---|
| `duckdb` | `WarehouseResource` (a DuckDBResource) | `FUNDARB_WAREHOUSE`, else `<data_dir>/warehouse.duckdb` |
|  | (a lake: `FUNDARB_WAREHOUSE=ducklake:postgres:...`) | its Parquet files under `FUNDARB_LAKE_DATA` |
| `data_dir` | `DataDirResource` | `FUNDARB_DATA_DIR`, else `./data` |
| `source` | `SourceConfigResource` | `FUNDARB_CONFIG`, else the embedded default config |
| `alert_channels` | `AlertChannelsResource` | log, `<data_dir>/alerts/alerts.jsonl`, `FUNDARB_WEBHOOK_URL` if set |

DuckDB allows one read-write process per file (a writer blocks even read-only opens elsewhere), so writes
are serialised by the `duckdb` pool (see config/dagster.yaml), connections are short, and opening one
retries while another process holds the lock (`warehouse_connection`). A DuckLake on Postgres takes several
writers at once: the instance then gives the pool a larger limit (`instance.py`); how either target is
opened is `core/warehouse.py`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
from dagster import ConfigurableResource
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ..core import landing
from ..core.alerts import AlertChannel, JsonlChannel, LogChannel, WebhookChannel
from ..core.config import FundarbConfig, load_config
from ..core.instruments import registry_path
from ..core.warehouse import (  # noqa: F401  (re-exported for callers)
    add_missing_columns,
    connect,
    connect_with_retry,
    is_lock_error,
    warehouse_target,
)

DEFAULT_DATA_DIR = "data"
POOL = "duckdb"  # the concurrency pool every asset that writes the warehouse declares
WEBHOOK_ENV = "FUNDARB_WEBHOOK_URL"


def resolve_data_dir(value: str = "") -> Path:
    """An explicit folder, else `FUNDARB_DATA_DIR`, else `./data` (read now, not at import)."""
    return Path(value or os.environ.get("FUNDARB_DATA_DIR") or DEFAULT_DATA_DIR)


class DataDirResource(ConfigurableResource):
    """The data folder: the landing zone (`landing/<stream>/date=/hour=/`) and `instruments.json`."""

    data_dir: str = Field(default="", description="Data folder; empty: FUNDARB_DATA_DIR, else ./data")

    def path(self) -> Path:
        return resolve_data_dir(self.data_dir)

    def landing_root(self) -> Path:
        return landing.landing_root(self.path())

    def stream_glob(self, stream: str) -> str:
        return landing.stream_glob(self.path(), stream)

    def registry_path(self) -> Path:
        return registry_path(self.path())


class SourceConfigResource(ConfigurableResource):
    """The fundarb YAML config (exchanges, symbols, source kind); API keys stay in the environment."""

    config_path: str = Field(default="", description="Config file; empty: FUNDARB_CONFIG, else the defaults")

    def resolved_path(self) -> str | None:
        return self.config_path or os.environ.get("FUNDARB_CONFIG") or None

    def load(self) -> FundarbConfig:
        return load_config(self.resolved_path())


class WarehouseResource(DuckDBResource):
    """`DuckDBResource` whose database defaults to `<data_dir>/warehouse.duckdb` and waits out locks, or a
    DuckLake (`ducklake:postgres:...`) several processes write at once."""

    database: str = Field(
        default="", description="DuckDB file or ducklake:postgres:...; empty: FUNDARB_WAREHOUSE, else <data_dir>/..."
    )
    data_dir: str = Field(default="", description="Data folder for the default database path")
    lock_timeout_s: float = Field(default=300.0, description="How long to wait for another process's lock")
    lake_data: str = Field(default="", description="A lake's Parquet folder or URL; empty: FUNDARB_LAKE_DATA")

    def database_path(self) -> str:
        return self.database or warehouse_target(resolve_data_dir(self.data_dir))

    def open(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        return connect(
            self.database_path(),
            read_only=read_only,
            config=self.connection_config,
            timeout_s=self.lock_timeout_s,
            lake_data=self.lake_data,
        )

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        conn = self.open()
        try:
            yield conn
        finally:
            conn.close()


def database_path(resource: DuckDBResource) -> str:
    """The file a DuckDB resource points at (a plain `DuckDBResource` in tests, or ours)."""
    if isinstance(resource, WarehouseResource):
        return resource.database_path()
    return str(resource.database)


@contextmanager
def warehouse_connection(resource: DuckDBResource, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """The one way assets open the warehouse: short-lived, retried on lock, always closed."""
    if isinstance(resource, WarehouseResource):
        conn = resource.open(read_only=read_only)
    else:
        conn = connect(str(resource.database), read_only=read_only, config=resource.connection_config)
    try:
        if not read_only:
            add_missing_columns(conn)  # a warehouse made before a table gained columns (core/warehouse.py)
        yield conn
    finally:
        conn.close()


class AlertChannelsResource(ConfigurableResource):
    """Where alerts go (every domain that raises alerts uses this one). The webhook URL may carry a token: it
    comes from config (e.g. `EnvVar("FUNDARB_WEBHOOK_URL")`) or, when empty, from that variable at run time;
    it is never logged."""

    log: bool = Field(default=True, description="write each alert to the run's log")
    jsonl_path: str = Field(default="", description="JSONL file; empty: <data_dir>/alerts/alerts.jsonl, '-': off")
    data_dir: str = Field(default="", description="data folder for the default JSONL path; empty: the run's")
    webhook_url: str = Field(default="", description=f"POST target; empty: ${WEBHOOK_ENV}, unset: no webhook")
    webhook_timeout_s: float = Field(default=5.0, description="per attempt")
    retries: int = Field(default=3, description="attempts per alert and channel")
    backoff_s: float = Field(default=1.0, description="first retry delay, doubling")

    def jsonl_file(self, run_data_dir: Path | None = None) -> Path | None:
        """The JSONL file: explicit, else under this resource's data_dir, else the run's data folder."""
        if self.jsonl_path == "-":
            return None
        if self.jsonl_path:
            return Path(self.jsonl_path)
        base = Path(self.data_dir) if self.data_dir else run_data_dir or resolve_data_dir()
        return base / "alerts" / "alerts.jsonl"

    def resolved_webhook_url(self) -> str:
        return self.webhook_url or os.environ.get(WEBHOOK_ENV, "")

    def channels(self, logger: Any = None, run_data_dir: Path | None = None) -> list[AlertChannel]:
        """The configured channels; pass the run's logger (`context.log`) and data folder."""
        out: list[AlertChannel] = []
        if self.log:
            out.append(LogChannel(logger) if logger is not None else LogChannel())
        path = self.jsonl_file(run_data_dir)
        if path is not None:
            out.append(JsonlChannel(path))
        url = self.resolved_webhook_url()
        if url:
            out.append(WebhookChannel(url, timeout_s=self.webhook_timeout_s))
        return out
