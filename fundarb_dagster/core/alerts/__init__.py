"""Alerts: rules that turn tables into alerts, dedup with a cooldown (rules.py, pure), delivery with retries
and the alert tables (delivery.py).

The plain API other domains call (risk breaches, backtests):

    from fundarb_dagster.core.alerts import Alert, JsonlChannel, WebhookChannel, raise_alerts
    result = raise_alerts(conn, [Alert(rule="risk_drawdown", subject="run 42", severity="critical",
                                       value=0.31, threshold=0.2, ts=now, message="drawdown 31% > 20%")],
                          channels=[JsonlChannel("data/alerts.jsonl")], cooldown=timedelta(hours=1))

`raise_alerts` keeps one alert per condition: an alert whose (rule, subject) was already raised less than
`cooldown` before it is suppressed, so a condition that persists across runs raises once (and again as a
reminder once the cooldown has passed). New alerts are written to the `alerts` table, then delivered to
every channel; each channel retries with back-off, and every outcome (success or the final error) is a row
of `alert_deliveries`. A failing channel never raises out of `raise_alerts`.
"""

from __future__ import annotations

from .delivery import (
    DELIVERY_COLUMNS,
    AlertChannel,
    Delivery,
    DeliveryError,
    JsonlChannel,
    LogChannel,
    RaiseResult,
    WebhookChannel,
    deliver,
    ensure_tables,
    last_raised,
    raise_alerts,
)
from .rules import (
    ALERT_COLUMNS,
    SEVERITIES,
    Alert,
    CheckOutcome,
    alerts_frame,
    basis_rule,
    carry_rule,
    dedupe,
    failed_check_rule,
    funding_spread_rule,
    staleness_rule,
    stream_gap_rule,
)

__all__ = [
    "ALERT_COLUMNS",
    "DELIVERY_COLUMNS",
    "SEVERITIES",
    "Alert",
    "AlertChannel",
    "CheckOutcome",
    "Delivery",
    "DeliveryError",
    "JsonlChannel",
    "LogChannel",
    "RaiseResult",
    "WebhookChannel",
    "alerts_frame",
    "basis_rule",
    "carry_rule",
    "dedupe",
    "deliver",
    "ensure_tables",
    "failed_check_rule",
    "funding_spread_rule",
    "last_raised",
    "raise_alerts",
    "staleness_rule",
    "stream_gap_rule",
]
