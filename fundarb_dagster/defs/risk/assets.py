"""risk_report: the current book (the live book when the trader holds one, else the latest backtest's open legs,
or another run's) against the limits, a
price-shock stress of every open pair, and one alert per breach through the alert channels (core/alerts).
VaR/ES are of the current book: its PnL in each past hour's price and funding moves (core.risk.book_scenarios
on ohlcv_1h and funding_rates), not of the backtest's equity, which held other positions."""

# No `from __future__ import annotations` here: Dagster resolves the Config annotations of the asset
# functions when they are decorated, and string annotations fail that.

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetOut,
    Config,
    MaterializeResult,
    MetadataValue,
    Output,
    asset,
    multi_asset,
)
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ...core import history as core_history
from ...core.alerts import Alert, raise_alerts
from ...core.leverage_tiers import empty_tiers, merge_history
from ...core.risk import DEFAULT_SHOCKS, RiskLimits, apply_tiers, book_scenarios, evaluate_limits, stress_book
from ...core.sql import execute, load_sql, table_exists
from ...core.tables import table
from ..common.metadata import column_schema, metadata_table, number
from ..common.tables import ensure_tables, write_all, write_run
from ..resources import POOL, AlertChannelsResource, DataDirResource, SourceConfigResource, warehouse_connection


class RiskConfig(Config):
    """Limits (None: off) and the stress shocks. The book is the open legs of `run_id` (empty: latest run)."""

    run_id: str = Field(default="", description="backtest run whose book to evaluate; empty: the latest")
    book: str = Field(
        default="auto",
        description="auto: the live book (execution's positions) when the trader holds legs, else a backtest's; "
        "live: the trader's book, flat or not (execution_job); backtest",
    )
    max_gross_usd: float | None = None
    max_net_usd: float | None = None
    max_venue_share: float | None = 0.6
    max_asset_share: float | None = 0.6
    max_leverage: float | None = 5.0
    max_margin_utilization: float | None = 0.5
    min_liq_distance: float | None = 0.1
    max_drawdown: float | None = 0.2
    max_var_usd: float | None = None
    max_es_usd: float | None = None
    var_level: float = 0.99
    var_window_h: int = Field(
        default=24 * 90, description="hours of past price and funding moves the current book is run through for VaR/ES"
    )
    shocks: list[float] = Field(default_factory=lambda: list(DEFAULT_SHOCKS))
    alert_cooldown_h: float = Field(default=1.0, description="one alert per (rule, subject) per this many hours")

    def limits(self) -> RiskLimits:
        names = [f for f in RiskLimits.__dataclass_fields__]
        return RiskLimits(**{n: getattr(self, n) for n in names})


# The report's scalar figures as the asset's headline numbers (Plots tab), unit in the key.
HEADLINE_FIGURES = {
    "equity_usd": ("equity_usd", "usd"),
    "gross_usd": ("gross_usd", "usd"),
    "net_usd": ("net_usd", "usd"),
    "leverage": ("leverage", "ratio"),
    "drawdown": ("drawdown_pct", "pct"),
    "var_usd": ("var_usd", "usd"),
    "es_usd": ("es_usd", "usd"),
}
BREACH_ABOUT = {
    "severity": "critical (far beyond the limit: x1.5, or under 2/3 of a floor) or warning",
    "rule": "risk_<limit> (RiskConfig)",
    "subject": "the book, venue, underlying or leg",
    "value": "the figure, in the limit's unit (USD, a fraction for shares, drawdown and distances, x for leverage)",
    "threshold": "the limit, same unit",
}


STRESS_UNITS = {"margin_needed_usd": "usd", "donor_free_margin_usd": "usd", "pnl_usd": "usd"}
STRESS_ABOUT = {c.name: c.description for c in table("risk_stress").columns}


def worst_first(stress: pd.DataFrame) -> pd.DataFrame:
    """The stress table as a desk reads it: the shocks needing the most margin first, then the largest loss."""
    keys, ascending = ["margin_needed_usd", "pnl_usd", "pair", "shock_pct"], [False, True, True, True]
    return stress.sort_values(keys, ascending=ascending, ignore_index=True, na_position="last")


def _book_scenarios(conn: Any, book: pd.DataFrame, as_of: datetime, window_h: int) -> pd.DataFrame:
    """The current book's PnL in each of the `window_h` hours before `as_of` (core.risk.book_scenarios)."""
    params = {"start": as_of - timedelta(hours=window_h + 1), "end": as_of}
    tables = {"risk_book_closes": "ohlcv_1h", "risk_book_settlements": "funding_rates"}
    closes, settlements = (
        execute(conn, load_sql("backtest", name), params).df() if table_exists(conn, table) else pd.DataFrame()
        for name, table in tables.items()
    )
    if closes.empty:
        return book_scenarios(book.iloc[0:0], closes, settlements)
    if settlements.empty:
        settlements = pd.DataFrame(columns=["exchange", "symbol", "funding_ts", "funding_rate"])
    return book_scenarios(book, closes, settlements)


BOOKS = ("auto", "live", "backtest")


def _live_book(conn: Any) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The trader's open legs (latest snapshot of each; none when it is flat) and its equity curve; None
    when it has no equity curve yet (it never filled)."""
    if not (table_exists(conn, "positions") and table_exists(conn, "live_pnl")):
        return None
    book = execute(conn, load_sql("backtest", "risk_live_book")).df()
    equity = execute(conn, load_sql("backtest", "risk_live_equity")).df()
    if equity.empty:
        return None
    return book.drop(columns=["ts"]), equity


def _latest_run(conn: Any, run_id: str) -> str:
    if not table_exists(conn, "backtest_runs"):
        raise ValueError("run_id: no backtest_runs table yet; materialize backtest_runs first")
    if run_id:
        found = conn.execute("SELECT count(*) FROM backtest_runs WHERE run_id = $r", {"r": run_id}).fetchone()[0]
        if not found:
            raise ValueError(f"run_id: {run_id!r} is not in backtest_runs")
        return run_id
    row = conn.execute("SELECT run_id FROM backtest_runs ORDER BY created_at DESC LIMIT 1").fetchone()
    if row is None:
        raise ValueError("run_id: backtest_runs is empty")
    return str(row[0])


@asset(
    group_name="risk",
    pool=POOL,
    kinds={"duckdb", "ccxt"},
    description=(
        "The venues' leverage tiers (fetch_leverage_tiers from the configured source) with validity intervals: a "
        "schedule that differs from the one in force closes it and opens a new one. Key: exchange, symbol, tier, "
        "valid_from. Risk and stress use the tier a leg's notional falls in."
    ),
    metadata={"dagster/column_schema": column_schema("leverage_tiers")},
)
def leverage_tiers(context: AssetExecutionContext, duckdb: DuckDBResource, source: SourceConfigResource) -> Any:
    fetched, errors, now_ms = core_history.fetch_leverage_tiers(source.load())
    for exchange, error in errors.items():
        context.log.warning(f"leverage_tiers: no tiers from {exchange} ({error}); its rows stay as they were")
    with warehouse_connection(duckdb) as conn:
        ensure_tables(conn, "leverage_tiers")
        current = conn.execute("SELECT * FROM leverage_tiers").df()
        now = (
            pd.Timestamp(now_ms, unit="ms")
            if now_ms is not None
            else pd.Timestamp(datetime.now(UTC).replace(tzinfo=None))
        )
        frame = merge_history(current, fetched, now)
        rows = write_all(conn, "leverage_tiers", frame)
    current_rows = frame[frame["valid_to"].isna()]
    return MaterializeResult(
        metadata={
            "rows": rows,
            "markets": int(current_rows.groupby(["exchange", "symbol"]).ngroups),
            "schedules_changed": int((frame["valid_from"] == now).any() and len(current)),
            "without_tiers": MetadataValue.text(", ".join(sorted(errors)) or "none"),
        }
    )


@multi_asset(
    outs={
        "risk_report": AssetOut(
            description="risk figures and limit breaches of the current book, key report_id",
            metadata={"dagster/column_schema": column_schema("risk_report")},
        ),
        "risk_stress": AssetOut(
            description="per open pair and price shock: first leg liquidated, margin to move",
            metadata={"dagster/column_schema": column_schema("risk_stress")},
        ),
    },
    deps=[
        "backtest_runs",
        "backtest_equity",
        "backtest_book",
        "ohlcv_1h",
        "funding_rates",
        "positions",
        "live_pnl",
        "leverage_tiers",
    ],  # fmt: skip
    group_name="risk",
    pool=POOL,
    can_subset=False,
)
def risk(
    context: AssetExecutionContext,
    config: RiskConfig,
    duckdb: DuckDBResource,
    data_dir: DataDirResource,
    alert_channels: AlertChannelsResource,
) -> Any:
    limits = config.limits()
    if config.book not in BOOKS:
        raise ValueError(f"book: {config.book!r}; expected one of {list(BOOKS)}")
    with warehouse_connection(duckdb, read_only=True) as conn:
        live = _live_book(conn) if config.book in ("auto", "live") else None
        if live is None and config.book == "live":
            raise ValueError("book: 'live' but the trader has no live book yet (no positions, or no live_pnl)")
        if live is not None and live[0].empty and config.book == "auto":
            live = None  # auto: a flat trader leaves the backtest's book to evaluate; 'live' reports it flat
        if live is not None:
            run_id, (book, equity) = "live", live
        else:
            run_id = _latest_run(conn, config.run_id)
            book = conn.execute("SELECT * FROM backtest_book WHERE run_id = $r ORDER BY pair, leg", {"r": run_id}).df()
            equity = conn.execute(
                "SELECT ts, equity, drawdown FROM backtest_equity WHERE run_id = $r ORDER BY ts", {"r": run_id}
            ).df()
        if equity.empty:
            raise ValueError(f"run_id: {run_id!r} has no rows in backtest_equity")
        as_of = pd.Timestamp(equity["ts"].iloc[-1]).to_pydatetime()
        scenarios = _book_scenarios(conn, book, as_of, config.var_window_h)
        tiers = (
            execute(conn, load_sql("backtest", "risk_tiers"), {"as_of": as_of}).df()
            if table_exists(conn, "leverage_tiers")
            else empty_tiers()
        )
    # each perp leg's maintenance from the tier its notional falls in (where the venue's tiers were fetched)
    book = apply_tiers(book, tiers)
    # the book's ts is when its last bar was known (the bar's open + 1h): bars opened before it are history
    pnl = scenarios["pnl_usd"].to_numpy() if len(book) else np.zeros(1)  # a flat book risks nothing
    subject = "live book" if run_id == "live" else f"run {run_id[:8]}"
    figures, breaches = evaluate_limits(
        book, float(equity["equity"].iloc[-1]), float(equity["drawdown"].iloc[-1]), pnl, limits, subject
    )
    figures["var_scenarios"] = len(scenarios)
    stress = stress_book(book, config.shocks)  # an empty book gives an empty table with every column
    report_id = context.run.run_id
    rows = [("figure", k, subject, float(v), np.nan, "", "") for k, v in figures.items() if np.isscalar(v)]
    for kind in ("venue_share", "asset_share", "margin_utilization", "liq_distance", "net_by_asset"):
        rows += [("figure", kind, f"{subject} {who}", float(v), np.nan, "", "") for who, v in figures[kind].items()]
    rows += [("breach", b.rule, b.subject, b.value, b.threshold, b.severity, b.message) for b in breaches]
    report = pd.DataFrame(rows, columns=["section", "name", "subject", "value", "threshold", "severity", "message"])
    report.insert(0, "source_run_id", run_id)
    report.insert(0, "created_at", datetime.now(UTC).replace(tzinfo=None))
    report.insert(0, "ts", as_of)
    report.insert(0, "report_id", report_id)
    stress_frame = stress.copy()
    stress_frame.insert(0, "report_id", report_id)
    alerts = [Alert(rule=b.rule, subject=b.subject, severity=b.severity, value=b.value, threshold=b.threshold,
                    ts=as_of, message=b.message) for b in breaches]  # fmt: skip
    # The same channels as every other alert (log, JSONL, FUNDARB_WEBHOOK_URL), so a desk watches one place.
    channels = alert_channels.channels(context.log, data_dir.path())
    with warehouse_connection(duckdb) as conn:
        write_run(conn, "risk_report", report, "report_id", report_id)
        write_run(conn, "risk_stress", stress_frame, "report_id", report_id)
        raised = raise_alerts(conn, alerts, channels, cooldown=timedelta(hours=config.alert_cooldown_h))
    breach_table = pd.DataFrame([(b.severity, b.rule, b.subject, b.value, b.threshold, b.message) for b in breaches],
                                columns=["severity", "rule", "subject", "value", "threshold", "message"])  # fmt: skip
    breach_table = breach_table.sort_values(["severity", "rule", "subject"], ignore_index=True)  # critical first
    yield Output(
        None,
        output_name="risk_report",
        metadata={
            "source_run_id": run_id,
            "open_legs": len(book),
            "breaches": len(breaches),
            "alerts_raised": len(raised.raised),
            "alerts_suppressed": raised.suppressed,
            "failed_deliveries": raised.failed_deliveries,
            "breach_table": metadata_table(breach_table, descriptions=BREACH_ABOUT),
            "critical_breaches": int((breach_table["severity"] == "critical").sum()),
            **{f"{key}": number(figures[name], unit) for name, (key, unit) in HEADLINE_FIGURES.items()},
        },
    )
    yield Output(
        None,
        output_name="risk_stress",
        metadata={
            "rows": len(stress),
            "stress_table": metadata_table(worst_first(stress), units=STRESS_UNITS, descriptions=STRESS_ABOUT),
            "worst_margin_needed_usd": number(stress["margin_needed_usd"].max() if len(stress) else 0.0, "usd"),
            "pairs_liquidated_at_worst_shock": int(stress["first_liquidated"].notna().sum()) if len(stress) else 0,
        },
    )
