"""Backtests of funding-carry strategies: panel input, pluggable strategies, vectorized accounting, sweeps.

panel = build_panel(prices, markets, settlements, predictions)     # core/backtest/panel.py
pairs = get_strategy("cash_carry").pairs(panel, {"borrow_apr": None})
result = run_backtest(panel, pairs, BacktestParams(enter_apr=0.1, exit_apr=0.02))
table = sweep(panel, pairs, BacktestParams(), {"enter_apr": [...], "leverage": [...]})
"""

from __future__ import annotations

from .engine import GRID_FIELDS, BacktestParams, BacktestResult, make_grid, run_backtest, simulate
from .panel import Market, Panel, build_panel, make_market
from .strategies import STRATEGIES, PairSet, get_strategy, register
from .sweeps import sweep, walk_forward

__all__ = [
    "GRID_FIELDS",
    "STRATEGIES",
    "BacktestParams",
    "BacktestResult",
    "Market",
    "PairSet",
    "Panel",
    "build_panel",
    "get_strategy",
    "make_grid",
    "make_market",
    "register",
    "run_backtest",
    "simulate",
    "sweep",
    "walk_forward",
]
