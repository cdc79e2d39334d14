"""Asset checks of the backtest domain, next to their assets."""

from __future__ import annotations

from dagster import AssetCheckResult, AssetCheckSeverity, asset_check
from dagster_duckdb import DuckDBResource

from ...core.sql import table_exists
from ..resources import warehouse_connection


@asset_check(asset="backtest_runs", blocking=True, description="equity - capital equals the PnL attribution sum")
def backtest_runs_attribution_adds_up(duckdb: DuckDBResource) -> AssetCheckResult:
    with warehouse_connection(duckdb, read_only=True) as conn:
        if not table_exists(conn, "backtest_runs"):
            return AssetCheckResult(passed=False, metadata={"reason": "no backtest_runs table"})
        worst = conn.execute(
            "SELECT coalesce(max(abs((final_equity_usd - capital_usd) - (basis_pnl + funding_pnl - borrow_cost - fees"
            " - slippage - liquidation_loss)) / capital_usd), 0) FROM backtest_runs"
        ).fetchone()[0]
    return AssetCheckResult(passed=bool(worst < 1e-9), metadata={"worst_relative_gap": float(worst)})


@asset_check(asset="backtest_equity", blocking=True, description="every run's equity curve is finite")
def backtest_equity_is_finite(duckdb: DuckDBResource) -> AssetCheckResult:
    with warehouse_connection(duckdb, read_only=True) as conn:
        bad = conn.execute(
            "SELECT count(*) FROM backtest_equity WHERE NOT isfinite(equity) OR equity IS NULL"
        ).fetchone()[0]
    return AssetCheckResult(passed=bad == 0, metadata={"bad_rows": int(bad)})


@asset_check(asset="backtest_trades", description="fees and slippage are costs (never negative), quantities positive")
def backtest_trades_costs_are_nonnegative(duckdb: DuckDBResource) -> AssetCheckResult:
    with warehouse_connection(duckdb, read_only=True) as conn:
        bad = conn.execute(
            "SELECT count(*) FROM backtest_trades WHERE fee_usd < 0 OR slippage_usd < 0 OR qty <= 0"
        ).fetchone()[0]
    return AssetCheckResult(passed=bad == 0, severity=AssetCheckSeverity.WARN, metadata={"bad_rows": int(bad)})
