"""Asset checks of the backtest domain, next to their assets."""

from __future__ import annotations

from dagster import AssetCheckResult, AssetCheckSeverity, asset_check
from dagster_duckdb import DuckDBResource

from ...core.sql import table_exists
from ..common.checks import no_data
from ..resources import warehouse_connection


@asset_check(asset="backtest_runs", blocking=True, description="equity - capital equals the PnL attribution sum")
def backtest_runs_attribution_adds_up(duckdb: DuckDBResource) -> AssetCheckResult:
    with warehouse_connection(duckdb, read_only=True) as conn:
        if not table_exists(conn, "backtest_runs"):
            return no_data("table backtest_runs does not exist")
        worst, runs = conn.execute(
            "SELECT coalesce(max(abs((final_equity_usd - capital_usd) - (basis_pnl + funding_pnl - borrow_cost - fees"
            " - slippage - liquidation_loss)) / capital_usd), 0), count(*) FROM backtest_runs"
        ).fetchone()
    if not runs:
        return no_data("0 runs in backtest_runs")
    return AssetCheckResult(
        passed=bool(worst < 1e-9), metadata={"worst_relative_gap": float(worst), "rows_checked": int(runs)}
    )


@asset_check(asset="backtest_equity", blocking=True, description="every run's equity curve is finite")
def backtest_equity_is_finite(duckdb: DuckDBResource) -> AssetCheckResult:
    with warehouse_connection(duckdb, read_only=True) as conn:
        if not table_exists(conn, "backtest_equity"):
            return no_data("table backtest_equity does not exist")
        bad, rows = conn.execute(
            "SELECT count(*) FILTER (WHERE NOT isfinite(equity) OR equity IS NULL), count(*) FROM backtest_equity"
        ).fetchone()
    if not rows:
        return no_data("0 rows of backtest_equity")
    return AssetCheckResult(passed=bad == 0, metadata={"bad_rows": int(bad), "rows_checked": int(rows)})


@asset_check(asset="backtest_trades", description="fees and slippage are costs (never negative), quantities positive")
def backtest_trades_costs_are_nonnegative(duckdb: DuckDBResource) -> AssetCheckResult:
    with warehouse_connection(duckdb, read_only=True) as conn:
        if not table_exists(conn, "backtest_trades"):
            return no_data("table backtest_trades does not exist")
        bad, rows = conn.execute(
            "SELECT count(*) FILTER (WHERE fee_usd < 0 OR slippage_usd < 0 OR qty <= 0), count(*) FROM backtest_trades"
        ).fetchone()
    if not rows:
        return no_data("0 trades in backtest_trades")
    return AssetCheckResult(
        passed=bad == 0, severity=AssetCheckSeverity.WARN, metadata={"bad_rows": int(bad), "rows_checked": int(rows)}
    )
