"""Backtest assets: build the panel from the warehouse, run a strategy, store runs/equity/trades/positions/book,
and sweep a parameter grid with a walk-forward split. Thin: SQL in sql/backtest, maths in core/backtest.

Both are partitioned by strategy (`STRATEGY_PARTITIONS`, one partition per registered strategy), so each
strategy keeps its own latest materialization, metadata and plots in the UI; `backtest_runs`' page also
compares every strategy's latest run and the sweeps' best points."""

# No `from __future__ import annotations` here: Dagster resolves the Config annotations of the asset
# functions when they are decorated, and string annotations fail that.

import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetOut,
    Config,
    MaterializeResult,
    MetadataValue,
    Output,
    StaticPartitionsDefinition,
    asset,
    multi_asset,
)
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ...core.backtest import STRATEGIES, BacktestParams, Panel, get_strategy, run_backtest, sweep, walk_forward
from ...core.backtest.book_costs import leg_notionals, with_book_slippage
from ...core.backtest.metrics import drawdown
from ...core.backtest.panel import with_dated_fees, with_tiers
from ...core.backtest.plots import attribution_png, equity_drawdown_png, heatmap_png
from ...core.backtest.records import capital_unused
from ...core.backtest.sizing import capacity_caps
from ...core.backtest.strategies import PairSet
from ...core.backtest.sweeps import sweep_table
from ...core.config import BacktestSection, validate_backtest
from ...core.sql import execute, load_sql, table_exists
from ...core.venues import VENUE_FACTS
from ..common.metadata import column_schema, metadata_table, number, png_md
from ..common.panel import INPUT_TABLES, load_books, load_borrow_rates, load_panel, load_tiers
from ..common.tables import write_run
from ..resources import POOL, SourceConfigResource, warehouse_connection

DOMAIN = "backtest"
OWNERS = ["team:backtest"]
# One partition per registered strategy: a strategy's run never replaces another's in the UI.
STRATEGY_PARTITIONS = StaticPartitionsDefinition(sorted(STRATEGIES))


class BacktestConfig(Config):
    """One strategy run over a window of the warehouse."""

    strategy: str = Field(
        default="",
        description="cash_carry | perp_perp (core/backtest/strategies); empty: the run's partition (else cash_carry)",
    )
    start: str = Field(default="", description="ISO start (UTC); empty: the first bar in the warehouse")
    end: str = Field(default="", description="ISO end, exclusive; empty: after the last bar")
    enter_apr: float = Field(default=0.10, description="enter when the expected carry APR reaches this")
    exit_apr: float = Field(default=0.02, description="exit when it falls to this")
    max_hold_h: float = Field(default=0.0, description="maximum holding time, hours (0: none)")
    leverage: float = Field(default=3.0, description="perp leverage (isolated margin = notional / leverage)")
    rebalance_h: float = Field(default=0.0, description="resize to target notional every N hours (0: never)")
    stop_distance: float = Field(default=0.0, description="risk stop within this fraction of liquidation (0: off)")
    drawdown_stop: float = Field(
        default=0.2,
        description=(
            "stop trading when the book's drawdown from its peak reaches this fraction: every pair closes and the "
            "run trades no more (0: off; 0.2 = risk_report's default max_drawdown)"
        ),
    )
    capital: float = Field(
        default=1_000_000.0, description="capital, USD, split evenly over the pairs (sizing: capacity caps each share)"
    )
    sizing: str = Field(
        default="",
        description=(
            "even (capital split evenly over the pairs) or capacity (each pair's notional per leg capped at the "
            "capacity of its captured books at entry, as opportunities computes it; even where no book); empty: "
            "the source config's backtest.sizing (default even)"
        ),
    )
    capacity_share: float | None = Field(
        default=None,
        description="sizing capacity: round trip at most this share of the expected carry (None: the source config's)",
    )
    capacity_horizon_h: float | None = Field(
        default=None,
        description="sizing capacity: hours the expected carry is earned over (None: the source config's)",
    )
    execution: str = Field(default="taker", description="taker (fee + half-spread) or maker (maker fee)")
    slippage_bps: float = Field(default=2.0, description="half-spread model where no quotes were recorded")
    units: float = Field(
        default=0.0, description="fixed size: units of the underlying held per leg (0: size by capital and leverage)"
    )
    fee_bps: float | None = Field(
        default=None,
        description=(
            "taker and maker fee, bps, on every venue (None: each venue's own, dated by the source config's "
            "`fees:` where it has them; 0: no fees)"
        ),
    )
    borrow_apr: float | None = Field(
        default=None,
        description=(
            "spot borrow APR for reverse carry where borrow_rates has no rate in force (None: no reverse there)"
        ),
    )
    book_slippage: bool = Field(
        default=True,
        description=(
            "charge each trade the book-walk cost of its leg's size on the last book captured within the hour "
            "before it (raw_order_book), the half-spread model elsewhere (sweeps: the model)"
        ),
    )
    leverage_tiers: bool = Field(
        default=True,
        description=(
            "liquidate each perp leg at the tier its notional falls in (leverage_tiers: the schedule in force at "
            "the window's end, else the first fetched), in sweeps too; else the venue's flat maintenance rate"
        ),
    )
    captured_borrow: bool = Field(
        default=True, description="charge the borrow_rates rate in force at each bar where one was captured"
    )
    underlyings: list[str] = Field(default_factory=list, description="restrict to these underlyings (empty: all)")
    exchanges: list[str] = Field(default_factory=list, description="restrict perp-perp to these venues")

    def params(self) -> BacktestParams:
        return BacktestParams(
            enter_apr=self.enter_apr,
            exit_apr=self.exit_apr,
            max_hold_h=self.max_hold_h,
            leverage=self.leverage,
            rebalance_h=self.rebalance_h,
            stop_distance=self.stop_distance,
            drawdown_stop=self.drawdown_stop,
            capital=self.capital,
            execution=self.execution,
            slippage_bps=self.slippage_bps,
            units=self.units,
        )

    def sizing_rule(self, source: SourceConfigResource) -> BacktestSection:
        """The run's sizing: its own fields where set, else the source config's `backtest` section (checked the
        same way, naming the field)."""
        defaults = source.load().backtest
        rule = BacktestSection(
            sizing=self.sizing or defaults.sizing,
            capacity_share=defaults.capacity_share if self.capacity_share is None else self.capacity_share,
            capacity_horizon_h=defaults.capacity_horizon_h
            if self.capacity_horizon_h is None
            else self.capacity_horizon_h,
        )
        validate_backtest(rule)
        return rule

    def fee_overrides(self) -> dict[str, dict[str, float]] | None:
        """Every venue's fees set to `fee_bps` (Market fees are fractions), or None: the venues' own."""
        if self.fee_bps is None:
            return None
        fee = self.fee_bps / 1e4
        return {e: {"taker_fee": fee, "maker_fee": fee} for e in VENUE_FACTS}

    def dated(self, panel: Panel, source: SourceConfigResource) -> tuple[Panel, dict[str, str]]:
        """The panel with the source config's dated fees (`fees:`, by venue, tier and date) unless `fee_bps`
        sets every venue's fee; and per market where its fees came from."""
        if self.fee_bps is not None:
            return panel, {f"{m.exchange} {m.symbol}": "fee_bps" for m in panel.markets}
        return with_dated_fees(panel, source.load().fee_table())

    def options(self) -> dict[str, Any]:
        return {
            "borrow_apr": self.borrow_apr,
            "underlyings": self.underlyings or None,
            "exchanges": self.exchanges or None,
        }


class SweepConfig(BacktestConfig):
    """A grid over thresholds, holding time and leverage, plus a walk-forward split."""

    enter_apr_grid: list[float] = Field(default_factory=lambda: [0.05, 0.1, 0.2, 0.3, 0.5])
    exit_apr_grid: list[float] = Field(default_factory=lambda: [0.0, 0.02])
    max_hold_h_grid: list[float] = Field(default_factory=lambda: [0.0, 168.0])
    leverage_grid: list[float] = Field(default_factory=lambda: [1.0, 2.0, 3.0, 5.0, 10.0])
    walk_folds: int = Field(default=4, description="walk-forward: test windows, each after its training window")
    walk_mode: str = Field(
        default="expanding", description="walk-forward training window: expanding (every bar before) or rolling"
    )
    walk_train_h: float = Field(
        default=0.0, description="walk-forward: hours of the first (rolling: every) training window; 0: equal chunks"
    )
    walk_test_h: float = Field(default=0.0, description="walk-forward: hours of each test window; 0: equal chunks")
    metric: str = Field(default="sharpe", description="metric to choose by and to draw")
    heatmap_x: str = Field(default="enter_apr")
    heatmap_y: str = Field(default="leverage")

    def axes(self) -> dict[str, list[float]]:
        pairs = [("enter_apr", self.enter_apr_grid), ("exit_apr", self.exit_apr_grid),
                 ("max_hold_h", self.max_hold_h_grid), ("leverage", self.leverage_grid)]  # fmt: skip
        # a combination with exit >= enter is impossible; thresholds are validated by make_grid
        return {name: list(values) for name, values in pairs if values}


def _window(config: BacktestConfig) -> tuple[datetime, datetime]:
    def parse(value: str, field: str, default: datetime) -> datetime:
        if not value:
            return default
        try:
            stamp = pd.Timestamp(value)
        except ValueError:
            raise ValueError(f"{field}: {value!r} is not an ISO timestamp") from None
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert("UTC").tz_localize(None)
        return stamp.to_pydatetime()

    start = parse(config.start, "start", datetime(1970, 1, 1))
    end = parse(config.end, "end", datetime(2200, 1, 1))
    if end <= start:
        raise ValueError(f"end: {config.end!r} must be after start {config.start!r}")
    return start, end


def run_strategy(context: AssetExecutionContext, config: BacktestConfig) -> str:
    """The strategy of a run: its partition's; the config may repeat it but not contradict it."""
    if context.has_partition_key:
        strategy = context.partition_key
        if config.strategy and config.strategy != strategy:
            raise ValueError(f"strategy: {config.strategy!r} contradicts the run's partition {strategy!r}")
        return strategy
    return config.strategy or "cash_carry"


def _schema(name: str) -> dict[str, Any]:
    return {"dagster/column_schema": column_schema(name)}


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@multi_asset(
    outs={
        "backtest_runs": AssetOut(
            description="one row per run: strategy, parameters, metrics, PnL attribution",
            metadata=_schema("backtest_runs"),
        ),
        "backtest_equity": AssetOut(
            description="equity curve and PnL by source per bar, key run_id, ts", metadata=_schema("backtest_equity")
        ),
        "backtest_trades": AssetOut(
            description="every leg trade (entry, exit, rebalance, stop, liquidation)",
            metadata=_schema("backtest_trades"),
        ),
        "backtest_positions": AssetOut(
            description="held episodes (round trips) with PnL and exit reason", metadata=_schema("backtest_positions")
        ),
        "backtest_book": AssetOut(
            description="legs open after the last bar, with isolated wallets", metadata=_schema("backtest_book")
        ),
    },
    deps=INPUT_TABLES,
    group_name="backtest",
    partitions_def=STRATEGY_PARTITIONS,
    pool=POOL,
    can_subset=False,
)
def backtest(
    context: AssetExecutionContext, config: BacktestConfig, duckdb: DuckDBResource, source: SourceConfigResource
) -> Any:
    """Run one strategy over the warehouse window; the run id is the Dagster run id (re-running replaces it)."""
    start, end = _window(config)
    rule = config.sizing_rule(source)
    params = replace(config.params(), sizing=rule.sizing)
    name = run_strategy(context, config)
    config = config.model_copy(update={"strategy": name, **rule_fields(rule)})  # params_json keeps what ran
    strategy = get_strategy(name)
    t0 = time.perf_counter()
    with warehouse_connection(duckdb, read_only=True) as conn:
        panel, fee_sources = config.dated(load_panel(conn, start, end, fee_overrides=config.fee_overrides()), source)
        options = {**config.options(), "borrow_rates": load_borrow_rates(conn, end) if config.captured_borrow else None}
        by_books = config.book_slippage or rule.sizing == "capacity"
        books = load_books(conn, start, end) if by_books else pd.DataFrame()
        tiers = load_tiers(conn, end) if config.leverage_tiers else pd.DataFrame()
    panel, margin_sources = with_tiers(panel, tiers)
    t_load = time.perf_counter() - t0
    pairs = sized_pairs(strategy.pairs(panel, options), panel, books, params, rule)
    # where books were captured, each leg's trades walk them for its size (the flat model elsewhere)
    walked = books if config.book_slippage else pd.DataFrame()
    panel, slippage_sources = with_book_slippage(panel, walked, leg_notionals(panel, pairs, params))
    if not pairs.names:
        raise ValueError(f"strategy: {config.strategy!r} found no tradable pairs in the window {start}..{end}")
    context.log.info(f"panel {panel.shape[0]} bars x {panel.shape[1]} markets, {len(pairs.names)} pairs")
    t1 = time.perf_counter()
    result = run_backtest(panel, pairs, params, config.strategy)
    t_run = time.perf_counter() - t1
    run_id = context.run.run_id
    created = _now()
    frames = result_frames(run_id, created, config, panel, result, len(pairs.names))
    with warehouse_connection(duckdb) as conn:
        for table, frame in frames.items():
            write_run(conn, table, frame, "run_id", run_id)
        latest = execute(conn, load_sql(DOMAIN, "latest_runs")).df()
        best = (
            execute(conn, load_sql(DOMAIN, "sweep_best"), {"per_strategy": 5}).df()
            if table_exists(conn, "backtest_sweep")
            else pd.DataFrame()
        )
    common = {"run_id": run_id, "strategy": config.strategy}
    run_row = frames["backtest_runs"]
    yield Output(
        None,
        output_name="backtest_runs",
        metadata={
            **common,
            "summary": metadata_table(run_row[SUMMARY_COLUMNS], SUMMARY_UNITS, SUMMARY_ABOUT),
            "attribution": metadata_table(attribution_frame(result.attribution), {"pnl": "usd"}, ATTRIBUTION_ABOUT),
            **headline_metrics(run_row.iloc[0]),
            "strategies_compared": metadata_table(
                latest[SUMMARY_COLUMNS + ["created_at"]],
                SUMMARY_UNITS,
                {**SUMMARY_ABOUT, "created_at": "when the strategy's latest run finished (UTC)"},
            ),
            "sweep_best_points": sweep_best_table(best),
            "equity_and_drawdown": png_md(equity_drawdown_png(result.equity, config.strategy), "equity"),
            "pnl_attribution": png_md(attribution_png(result.equity, result.attribution), "attribution"),
            "bars": panel.shape[0],
            "pairs": len(pairs.names),
            # which borrow rate each pair's reverse carry was charged: captured (borrow_rates), configured, none
            "borrow_source": MetadataValue.json(pd.Series(pairs.borrow_source).value_counts().to_dict()),
            # where each market's fees came from: config (dated `fees:`), venue_default, fee_bps
            "fee_source": MetadataValue.json(fee_sources),
            # per market: how many bars' trades were walked on a captured book (the rest: the half-spread model)
            "slippage_source": MetadataValue.json(slippage_sources),
            # per perp: liquidated at its leverage tiers, or at the venue's flat maintenance rate
            "margin_source": MetadataValue.json(margin_sources),
            # rule 3: even split or capped by the books' capacity; positions by what sized them
            "sizing": rule.sizing,
            "size_source": MetadataValue.json(result.positions["size_source"].value_counts().to_dict()),
            "capital_unused_usd": number(float(run_row["capital_unused_usd"].iloc[0]), "usd"),
            "load_s": round(t_load, 3),
            "backtest_s": round(t_run, 4),
        },
    )
    yield Output(None, output_name="backtest_equity", metadata={**common, "rows": len(frames["backtest_equity"]),
                 "max_drawdown_pct": number(result.metrics["max_drawdown"], "pct")})  # fmt: skip
    yield Output(None, output_name="backtest_trades", metadata={**common, "rows": len(frames["backtest_trades"]),
                 "by_reason": MetadataValue.json(result.trades["reason"].value_counts().to_dict())})  # fmt: skip
    yield Output(None, output_name="backtest_positions", metadata={**common, "rows": len(frames["backtest_positions"])})
    yield Output(None, output_name="backtest_book", metadata={**common, "open_legs": len(frames["backtest_book"])})


def rule_fields(rule: BacktestSection) -> dict[str, Any]:
    return {"sizing": rule.sizing, "capacity_share": rule.capacity_share, "capacity_horizon_h": rule.capacity_horizon_h}


def sized_pairs(
    pairs: PairSet, panel: Panel, books: pd.DataFrame, params: BacktestParams, rule: BacktestSection
) -> PairSet:
    """The pairs with their capacities at each bar under sizing by capacity (core/backtest/sizing.py)."""
    if rule.sizing != "capacity" or not pairs.names:
        return pairs
    caps = capacity_caps(panel, pairs, books, params.execution, rule.capacity_share, rule.capacity_horizon_h)
    return replace(pairs, size_cap=caps)


# A run's summary row on the page: what it returned, at what risk, how it traded (stored fractions shown in %).
SUMMARY_COLUMNS = ["strategy", "total_return", "annual_return", "sharpe", "max_drawdown", "final_equity_usd",
                   "capital_usd", "n_pairs", "trade_count", "avg_holding_h", "time_in_market"]  # fmt: skip
SUMMARY_UNITS = {
    "capital_usd": "usd",
    "final_equity_usd": "usd",
    "total_return": "pct",
    "annual_return": "pct",
    "sharpe": "ratio",
    "max_drawdown": "pct",
    "avg_holding_h": "h",
    "time_in_market": "pct",
}
SUMMARY_ABOUT = {
    "n_pairs": "pairs traded",
    "total_return": "final equity / capital - 1",
    "annual_return": "total return annualised over the window",
    "sharpe": "annualised Sharpe ratio of the bar returns",
    "max_drawdown": "largest fall from an equity peak",
    "trade_count": "entries",
    "time_in_market": "share of bars with a position open",
}
ATTRIBUTION_ABOUT = {
    "source": "basis and funding earned; borrow, fees, slippage and liquidation losses are costs",
    "pnl": "total over the run, USD",
}


def sweep_best_table(best: pd.DataFrame) -> MetadataValue:
    """The best grid points of each strategy's latest sweep (by Sharpe), beside the runs' comparison."""
    if best.empty:
        return MetadataValue.md("_no sweep yet: materialize backtest_sweep_")
    units = {"annual_return": "pct", "max_drawdown": "pct", "sharpe": "ratio", "enter_apr": "pct", "exit_apr": "pct",
             "max_hold_h": "h"}  # fmt: skip
    about = {"point": "grid point of the sweep", "enter_apr": "enter threshold", "exit_apr": "exit threshold",
             "leverage": "perp leverage"}  # fmt: skip
    return metadata_table(best, units, about)


def attribution_frame(attribution: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"source": list(attribution), "pnl": [float(v) for v in attribution.values()]})


def headline_metrics(run: pd.Series) -> dict[str, Any]:
    """A run's headline figures as typed numbers with the unit in the key (the Plots tab charts them)."""
    return {
        "final_equity_usd": number(run["final_equity_usd"], "usd"),
        "total_return_pct": number(run["total_return"], "pct"),
        "annual_return_pct": number(run["annual_return"], "pct"),
        "sharpe": number(run["sharpe"], "ratio"),
        "max_drawdown_pct": number(run["max_drawdown"], "pct"),
        "trade_count": int(run["trade_count"]),
    }


def result_frames(
    run_id: str, created: datetime, config: BacktestConfig, panel: Panel, result: Any, n_pairs: int
) -> dict[str, pd.DataFrame]:
    """The five tables' rows of one run."""
    ts = pd.to_datetime(panel.ts_ms, unit="ms")
    halt = int(result.arrays["halt"][0])
    run = {
        "run_id": run_id,
        "created_at": created,
        "strategy": config.strategy,
        "params_json": json.dumps(
            {**config.model_dump(), "window": [str(ts[0]), str(ts[-1])]}, sort_keys=True, default=str
        ),
        "start_ts": ts[0],
        "end_ts": ts[-1],
        "n_bars": panel.shape[0],
        "n_pairs": n_pairs,
        "capital_usd": config.capital,
        "sizing": config.sizing or "even",
        "capital_unused_usd": capital_unused(result.arrays),
        "final_equity_usd": float(result.equity["equity"].iloc[-1]),
        "drawdown_stop_ts": ts[halt] if halt < len(ts) else pd.NaT,
        **result.metrics,
        **{f"{k}_pnl": v for k, v in result.attribution.items()},
    }
    equity = result.equity.copy()
    equity.insert(0, "run_id", run_id)
    trades = result.trades.copy()
    trades.insert(0, "trade_no", range(len(trades)))
    trades.insert(0, "run_id", run_id)
    positions = result.positions.copy()
    positions.insert(0, "run_id", run_id)
    book = result.open_positions.copy()
    book.insert(0, "ts", ts[-1])
    book.insert(0, "run_id", run_id)
    return {
        "backtest_runs": pd.DataFrame([run]),
        "backtest_equity": equity,
        "backtest_trades": trades,
        "backtest_positions": positions,
        "backtest_book": book,
    }


@asset(
    deps=INPUT_TABLES,
    group_name="backtest",
    partitions_def=STRATEGY_PARTITIONS,
    pool=POOL,
    owners=OWNERS,
    kinds={"duckdb", "python"},
    metadata=_schema("backtest_sweep"),
    description=(
        "Metrics of a parameter grid on the full window, and a walk-forward over rolling or expanding windows: "
        "choose on each training window, report on the next test window, stitch the chosen test windows"
    ),
)
def backtest_sweep(
    context: AssetExecutionContext, config: SweepConfig, duckdb: DuckDBResource, source: SourceConfigResource
) -> MaterializeResult:
    start, end = _window(config)
    rule = config.sizing_rule(source)
    config = config.model_copy(update={"strategy": run_strategy(context, config), **rule_fields(rule)})
    with warehouse_connection(duckdb, read_only=True) as conn:
        panel, fee_sources = config.dated(load_panel(conn, start, end, fee_overrides=config.fee_overrides()), source)
        options = {**config.options(), "borrow_rates": load_borrow_rates(conn, end) if config.captured_borrow else None}
        books = load_books(conn, start, end) if rule.sizing == "capacity" else pd.DataFrame()
        tiers = load_tiers(conn, end) if config.leverage_tiers else pd.DataFrame()
    # leverage tiers and capacity caps as the full backtest has them (each grid point then runs the full
    # simulator's rules: engine.simulate); slippage stays the half-spread model
    panel, margin_sources = with_tiers(panel, tiers)
    axes = config.axes()
    base = replace(config.params(), sizing=rule.sizing)
    pairs = sized_pairs(get_strategy(config.strategy).pairs(panel, options), panel, books, base, rule)
    if not pairs.names:
        raise ValueError(f"strategy: {config.strategy!r} found no tradable pairs in the window {start}..{end}")
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        context.log.info(f"sweep: {done}/{total} grid points")

    full = sweep(panel, pairs, base, axes, progress=progress)
    t_full = time.perf_counter() - t0
    bars = [int(round(h / panel.bar_h)) for h in (config.walk_train_h, config.walk_test_h)]
    wf = walk_forward(panel, pairs, base, axes, config.walk_folds, config.walk_mode, config.metric, *bars)
    frame = sweep_table(full, wf, panel.ts_ms)
    frame.insert(0, "strategy", config.strategy)
    frame.insert(0, "created_at", _now())
    frame.insert(0, "run_id", context.run.run_id)
    with warehouse_connection(duckdb) as conn:
        write_run(conn, "backtest_sweep", frame, "run_id", context.run.run_id)
    best = full.sort_values(config.metric, ascending=False).head(10)
    show = ["point", *axes, "sharpe", "annual_return", "max_drawdown", "trade_count", "liquidations"]
    heat = png_md(heatmap_png(full, config.heatmap_x, config.heatmap_y, config.metric), "heatmap")
    wf_heat = png_md(heatmap_png(wf["test"], config.heatmap_x, config.heatmap_y, config.metric), "test heatmap")
    stitched = wf["stitched"].assign(ts=lambda f: pd.to_datetime(f["ts_ms"], unit="ms"))
    stitched["drawdown"] = drawdown(stitched["equity"].to_numpy()[None])[0]
    title = f"walk-forward ({config.walk_mode}, {config.walk_folds} folds): chosen points on their test windows"
    stitched_metrics = pd.DataFrame([wf["stitched_metrics"]])
    return MaterializeResult(
        metadata={
            "run_id": context.run.run_id,
            "strategy": config.strategy,
            "grid_points": len(full),
            "sizing": rule.sizing,
            "margin_source": MetadataValue.json(margin_sources),
            "top_points": metadata_table(top := best[[c for c in show if c in best]], _units(top)),
            "walk_forward_folds": metadata_table(fold_table := _fold_table(wf, panel, axes), _units(fold_table)),
            "walk_forward_stitched": metadata_table(stitched_metrics, _units(stitched_metrics)),
            f"best_{config.metric}": number(best[config.metric].iloc[0] if len(best) else None, "ratio"),
            "sweep_s": round(t_full, 3),
            "heatmap": heat,
            "walk_forward_test_heatmap": wf_heat,
            "walk_forward_equity": png_md(equity_drawdown_png(stitched, title), "stitched equity"),
        }
    )


# Columns of the sweep's tables shown in percent (fractions as stored) or hours.
SWEEP_PCT = ("enter_apr", "exit_apr", "total_return", "annual_return", "max_drawdown", "volatility", "time_in_market")


def _units(frame: pd.DataFrame) -> dict[str, str]:
    units = {c: "pct" for c in frame.columns if c in SWEEP_PCT}
    units.update({c: "h" for c in frame.columns if c in ("max_hold_h", "avg_holding_h")})
    return units


def _fold_table(wf: dict[str, Any], panel: Panel, axes: dict[str, list[float]]) -> pd.DataFrame:
    """Each fold's windows (as times), the grid values it chose, and the scores on train and test."""
    folds = wf["folds"]
    stamps = pd.to_datetime(panel.ts_ms, unit="ms")
    chosen = wf["train"].set_index(["fold", "point"])
    out = pd.DataFrame(
        {
            "fold": folds["fold"],
            "train": [f"{stamps[a]:%m-%d %H:%M}..{stamps[b - 1]:%m-%d %H:%M}" for a, b in
                      zip(folds["train_start"], folds["train_end"], strict=True)],
            "test": [f"{stamps[a]:%m-%d %H:%M}..{stamps[b - 1]:%m-%d %H:%M}" for a, b in
                     zip(folds["test_start"], folds["test_end"], strict=True)],
            "point": folds["chosen"],
        }
    )  # fmt: skip
    for name in axes:
        out[name] = [chosen.loc[(k, p), name] for k, p in zip(folds["fold"], folds["chosen"], strict=True)]
    out[f"train_{wf['metric']}"] = folds["train_score"]
    out[f"test_{wf['metric']}"] = folds["test_score"]
    return out
