"""Execution: what the trader (`fundarb trade`, core/execution) landed, and what the warehouse makes of it.

- `orders`, `fills`, `positions`, `balances`, `funding_payments`: the trader's landed streams, hourly, loaded
  like the raw tables (one window per run, deduplicated on their keys: a record fetched again after a restart
  counts once).
- `funding_reconciliation`: funding the model expects (settled rate x the trader's position x the venue's
  reference price, the interval in force) against what the venue booked, per settlement; every difference
  beyond the tolerance is explained, alerted (core/alerts) and fails the blocking check next to it.
- `live_pnl`: the live book's P&L as of each hour, split as the backtest splits it (funding, basis, fees,
  slippage); its metadata plots live equity against the backtest of the trader's parameters over the same
  period and markets (core/execution/run_record.py says which).
"""

# No `from __future__ import annotations` here: Dagster resolves the Config annotations of the asset
# functions when they are decorated, and string annotations fail that.

from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, AssetsDefinition, Config, MaterializeResult, MetadataValue, asset
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ...core.alerts import Alert, raise_alerts
from ...core.backtest import BacktestParams, get_strategy, run_backtest
from ...core.execution import run_record
from ...core.execution.funding_reconciliation import reconcile
from ...core.execution.pnl import attribution
from ...core.sql import execute, load_sql
from ...core.tables import EXECUTION_TABLES
from ...core.venues import VENUE_FACTS
from ...core.window import Window
from ..common.landing import ensure_raw_tables, load_landed_window
from ..common.metadata import column_schema, figure, figure_png, md_table, png_md
from ..common.panel import INPUT_TABLES, load_panel
from ..common.tables import ensure_tables, write_window
from ..partitions import BOUNDED_RUNS, HOURLY, partition_window
from ..resources import POOL, AlertChannelsResource, DataDirResource, warehouse_connection

DOMAIN = "execution"
GROUP = "execution"
OWNERS = ["team:execution"]
LANDED = ("orders", "fills", "positions", "balances", "funding_payments")
SNAPSHOT_MS = 600_000  # a streamed price prices a settlement when it is at most this much older (10 min)
SLACK = timedelta(hours=2)  # payments and settlements near the window's edges are matched across them


def _landed_asset(name: str) -> AssetsDefinition:
    spec = EXECUTION_TABLES[name]

    @asset(
        name=name,
        group_name=GROUP,
        partitions_def=HOURLY,
        backfill_policy=BOUNDED_RUNS,
        pool=POOL,
        owners=OWNERS,
        kinds={"duckdb", "parquet"},
        description=(
            f"{spec.description} Loaded hourly from `landing/{spec.stream}/date=/hour=`; key: {spec.natural_key}."
        ),
        metadata={"dagster/column_schema": column_schema(name), "natural_key": spec.natural_key, "stream": name},
    )
    def _landed(context: AssetExecutionContext, duckdb: DuckDBResource, data_dir: DataDirResource) -> MaterializeResult:
        window = partition_window(context)
        meta = load_landed_window(duckdb, data_dir.path(), name, window)
        context.log.info(f"{name} {window}: {meta['rows']} rows from {meta['files']} files")
        return MaterializeResult(metadata=meta)

    return _landed


orders = _landed_asset("orders")
fills = _landed_asset("fills")
positions = _landed_asset("positions")
balances = _landed_asset("balances")
funding_payments = _landed_asset("funding_payments")


class ReconciliationConfig(Config):
    tolerance_usd: float = Field(default=0.01, description="a booked payment within this of the model is ok")
    alert_cooldown_h: float = Field(default=6.0, description="one alert per (market) per this many hours")


def _oracle_venues() -> list[str]:
    return sorted(i for f in VENUE_FACTS.values() if f.funding_price == "oracle" for i in f.ccxt_ids)


@asset(
    group_name=GROUP,
    partitions_def=HOURLY,
    backfill_policy=BOUNDED_RUNS,
    pool=POOL,
    owners=OWNERS,
    deps=["funding_rates", "raw_funding", "fills", "funding_payments"],
    kinds={"duckdb"},
    metadata={"dagster/column_schema": column_schema("funding_reconciliation")},
    description=EXECUTION_TABLES["funding_reconciliation"].description,
)
def funding_reconciliation(
    context: AssetExecutionContext,
    config: ReconciliationConfig,
    duckdb: DuckDBResource,
    data_dir: DataDirResource,
    alert_channels: AlertChannelsResource,
) -> MaterializeResult:
    window = partition_window(context)
    wide = {"start": window.start - SLACK, "end": window.end + SLACK}
    with warehouse_connection(duckdb) as conn:
        ensure_raw_tables(conn, data_dir.path(), "fills", "funding_payments", "raw_funding")
        ensure_tables(conn, "funding_rates")
        priced = {**wide, "oracle_venues": _oracle_venues(), "snapshot_ms": SNAPSHOT_MS}
        settlements = execute(conn, load_sql(DOMAIN, "reconciliation_settlements"), priced).df()
        payments = execute(conn, load_sql(DOMAIN, "reconciliation_payments"), wide).df()
        trades = execute(conn, load_sql(DOMAIN, "trader_fills"), wide).df()
        frame = reconcile(settlements, payments, trades, config.tolerance_usd)
        mine = frame[(frame["funding_ts"] >= window.start) & (frame["funding_ts"] < window.end)]
        rows = write_window(conn, "funding_reconciliation", frame, window, time_column="funding_ts")
        wrong = mine[mine["status"] == "mismatch"]
        alerts = [_alert(r, config.tolerance_usd) for r in wrong.itertuples(index=False)]
        channels = alert_channels.channels(context.log, data_dir.path())
        raised = raise_alerts(conn, alerts, channels, cooldown=timedelta(hours=config.alert_cooldown_h))
    bad = mine[mine["status"] == "mismatch"]
    shown = bad[
        ["exchange", "symbol", "funding_ts", "units", "expected_usd", "booked_usd", "difference_usd", "explanation"]
    ]
    return MaterializeResult(
        metadata={
            "window": str(window),
            "rows": rows,
            "settlements_ok": int((mine["status"] == "ok").sum()),
            "pending": int((mine["status"] == "pending").sum()),
            "mismatches": len(bad),
            "expected_usd": float(mine["expected_usd"].sum()),
            "booked_usd": float(mine["booked_usd"].sum()),
            "largest_difference_usd": float(mine["difference_usd"].abs().max()) if len(mine) else 0.0,
            "alerts_raised": len(raised.raised),
            "mismatch_table": md_table(shown, digits=6) if len(bad) else MetadataValue.md("every settlement matches"),
        }
    )


def _alert(row: Any, tolerance: float) -> Alert:
    subject = f"{row.exchange}:{row.symbol}"
    message = (
        f"funding at {row.funding_ts:%Y-%m-%d %H:%M}: booked {row.booked_usd:+.4f}, model {row.expected_usd:+.4f} "
        f"({row.explanation})"
    )
    severity = "critical" if abs(row.difference_usd) >= 100 * tolerance else "warning"
    return Alert(
        rule="funding_mismatch",
        subject=subject,
        severity=severity,
        value=float(row.difference_usd),
        threshold=tolerance,
        ts=row.funding_ts,
        message=message,
    )


@asset(
    group_name=GROUP,
    partitions_def=HOURLY,
    backfill_policy=BOUNDED_RUNS,
    pool=POOL,
    owners=OWNERS,
    deps=["fills", "funding_payments", "positions", *INPUT_TABLES],
    kinds={"duckdb"},
    metadata={"dagster/column_schema": column_schema("live_pnl")},
    description=EXECUTION_TABLES["live_pnl"].description,
)
def live_pnl(context: AssetExecutionContext, duckdb: DuckDBResource, data_dir: DataDirResource) -> MaterializeResult:
    window = partition_window(context)
    records = run_record.load_all(data_dir.path())
    capital = sum(r.capital_usd for r in records) if records else 0.0
    with warehouse_connection(duckdb) as conn:
        ensure_raw_tables(conn, data_dir.path(), "fills", "funding_payments", "positions")
        params = {"end": window.end}
        trades = execute(conn, load_sql(DOMAIN, "trader_fills"), params).df()
        funding = execute(conn, load_sql(DOMAIN, "trader_funding"), params).df()
        marks = execute(conn, load_sql(DOMAIN, "trader_marks"), params).df()
        frame = pnl_frame(trades, funding, marks, window, capital)
        rows = write_window(conn, "live_pnl", frame, window)
        history = conn.execute("SELECT ts, equity_usd FROM live_pnl ORDER BY ts").df()
    metadata: dict[str, Any] = {"window": str(window), "rows": rows, "traders": len(records)}
    if len(frame):
        last = frame.iloc[-1]
        metadata["pnl_split"] = md_table(
            {k: float(last[k]) for k in ("funding_usd", "basis_usd", "fees_usd", "slippage_usd", "pnl_usd")}
        )
    if len(records) == 1 and len(history) > 1:
        compared = _compare(duckdb, records[0], history)
        if compared is not None:
            png, backtest = compared
            metadata["live_vs_backtest"] = png_md(png, "live equity vs backtest", heading=True)
            # the plot's data, as plotted (tests assert it; a reader can take the numbers from the UI)
            metadata["live_vs_backtest_data"] = MetadataValue.json(
                {"live": _series(history["ts"], history["equity_usd"]), "backtest": _series(*backtest)}
            )
            metadata["backtest_final_equity_usd"] = float(backtest[1].iloc[-1])
            metadata["live_final_equity_usd"] = float(history["equity_usd"].iloc[-1])
    return MaterializeResult(metadata=metadata)


def pnl_frame(
    trades: pd.DataFrame, funding: pd.DataFrame, marks: pd.DataFrame, window: Window, capital: float
) -> pd.DataFrame:
    """live_pnl's rows of a window: the P&L split as of each hour's start, the book's exposure then."""
    if trades.empty:
        return pd.DataFrame(columns=EXECUTION_TABLES["live_pnl"].column_names)
    first = pd.Timestamp(trades["ts"].min()).floor("h")
    grid = pd.date_range(max(pd.Timestamp(window.start), first), pd.Timestamp(window.end), freq="h", inclusive="left")
    parts = attribution(trades, funding, marks, grid)
    gross = np.zeros(len(grid))
    legs = np.zeros(len(grid), dtype=np.int64)
    t = grid.values.astype("datetime64[us]")
    for (exchange, symbol), rows in trades.groupby(["exchange", "symbol"]):
        at = np.searchsorted(t, rows["ts"].values.astype("datetime64[us]"), side="left")
        units = np.zeros(len(grid))
        np.add.at(units, at[at < len(grid)], (rows["side"] * rows["amount"]).to_numpy(float)[at < len(grid)])
        units = np.cumsum(units)
        m = marks[(marks["exchange"] == exchange) & (marks["symbol"] == symbol)].sort_values("ts")
        pos = np.searchsorted(m["ts"].values.astype("datetime64[us]"), t, side="right") - 1
        mark = np.where(pos >= 0, m["mark"].to_numpy(float)[np.clip(pos, 0, None)] if len(m) else np.nan, np.nan)
        held = np.abs(units) > 1e-12
        gross += np.where(held, np.abs(units) * np.nan_to_num(mark), 0.0)
        legs += held
    return pd.DataFrame(
        {
            "ts": grid,
            "funding_usd": parts["funding"],
            "basis_usd": parts["basis"],
            "fees_usd": parts["fees"],
            "slippage_usd": parts["slippage"],
            "pnl_usd": parts["pnl"],
            "equity_usd": capital + parts["pnl"],
            "gross_exposure_usd": gross,
            "open_legs": legs,
        }
    )


def _series(ts: pd.Series, equity: pd.Series) -> dict[str, list]:
    return {"ts": [t.isoformat() for t in pd.to_datetime(ts)], "equity_usd": [float(v) for v in equity]}


def _compare(
    duckdb: DuckDBResource, record: run_record.RunRecord, live: pd.DataFrame
) -> tuple[bytes, tuple[pd.Series, pd.Series]] | None:
    """The backtest of the trader's parameters on its markets over the live period, plotted with live equity;
    the plot and the backtest's equity curve (ts, equity)."""
    # a panel bar at t prices the hour before it (sql/backtest/panel_quotes.sql): hours [first row, last row) give
    # bars (first row, last row], as of the same instants as live_pnl's rows (one more hour ran the backtest past
    # the live period, and its final equity an hour later than live's)
    start = pd.Timestamp(live["ts"].iloc[0]).to_pydatetime()
    end = pd.Timestamp(live["ts"].iloc[-1]).to_pydatetime()
    with warehouse_connection(duckdb, read_only=True) as conn:
        try:
            panel = load_panel(conn, start, end, markets=record.markets)
        except ValueError:
            return None  # no market data for the period in the warehouse: nothing to compare with
    pairs = get_strategy(record.strategy).pairs(panel, dict(record.options))
    if not pairs.names or len(panel.ts_ms) < 2:
        return None
    params = BacktestParams(
        enter_apr=record.enter_apr, exit_apr=record.exit_apr, leverage=record.leverage, capital=record.capital_usd
    )
    result = run_backtest(panel, pairs, params, record.strategy)
    fig, ax = figure()
    ax.plot(pd.to_datetime(live["ts"]), live["equity_usd"], label="live")
    ax.plot(pd.to_datetime(result.equity["ts"]), result.equity["equity"], label="backtest, same parameters")
    ax.set_ylabel("equity, USD")
    ax.legend()
    return figure_png(fig), (result.equity["ts"], result.equity["equity"])


EXECUTION_ASSETS = [orders, fills, positions, balances, funding_payments, funding_reconciliation, live_pnl]
