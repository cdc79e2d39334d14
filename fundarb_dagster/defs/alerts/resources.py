"""The alert channels: Dagster log, a JSONL file, a webhook. Settings resolve when used, never at import."""

import os
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from ...core.alerts import AlertChannel, JsonlChannel, LogChannel, WebhookChannel
from ..resources import resolve_data_dir

WEBHOOK_ENV = "FUNDARB_WEBHOOK_URL"


class AlertChannelsResource(ConfigurableResource):
    """Where alerts go. The webhook URL may carry a token: it comes from config (e.g.
    `EnvVar("FUNDARB_WEBHOOK_URL")`) or, when empty, from that variable at run time; it is never logged."""

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
