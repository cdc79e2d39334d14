"""Funding domain: history, interval history, settled and predicted rates, basis, spreads, opportunities.

Thin assets: read their window with `sql/funding/*.sql`, call one function of `core.funding` / `core.basis` /
`core.spreads` / `core.opportunities` (exchange I/O in `core.history`), write with `write_window` (delete the
window, insert: idempotent) and return metadata (coverage tables, plots as base64 PNG in markdown).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
from dagster import (
    AssetDep,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ...core import basis as core_basis
from ...core import funding as core_funding
from ...core import funding_views
from ...core import history as core_history
from ...core import opportunities as core_opps
from ...core import spreads as core_spreads
from ...core.instruments import InstrumentRegistry
from ...core.sql import execute, load_sql, table_exists
from ...core.tables import table
from ...core.window import Window
from ..common.landing import ensure_raw_tables
from ..common.metadata import column_schema, figure, figure_png, md_table, metadata_table, number, png_md
from ..common.tables import ensure_tables, write_all, write_window
from ..jobs import STAGE_BY_JOB
from ..partitions import BOUNDED_RUNS, DAILY, HOURLY, history_reload_h, partition_window
from ..resources import POOL, DataDirResource, SourceConfigResource, warehouse_connection

OWNERS = ["team:carry"]
GROUP = "funding"
DOMAIN = "funding"


def _metadata(name: str) -> dict[str, Any]:
    """Column schema and natural key of a funding table (core/tables.py), shown in the UI."""
    return {"dagster/column_schema": column_schema(name), "natural_key": table(name).natural_key}


def _frame(conn: Any, name: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    return execute(conn, load_sql(DOMAIN, name), params or {}).df()


@contextmanager
def _inputs(
    duckdb: DuckDBResource, data_dir: DataDirResource, raw: tuple[str, ...], own: tuple[str, ...]
) -> Iterator[Any]:
    with warehouse_connection(duckdb) as conn:
        ensure_raw_tables(conn, data_dir.path(), *raw)
        ensure_tables(conn, *own)
        yield conn


def _intervals(conn: Any) -> pd.DataFrame:
    return conn.execute("SELECT * FROM funding_intervals").df()


# What the assets fetching a day of REST history from the configured source share.
DAILY_REST: dict[str, Any] = {"group_name": GROUP, "partitions_def": DAILY, "backfill_policy": BOUNDED_RUNS,
                              "pool": POOL, "owners": OWNERS, "kinds": {"duckdb", "ccxt"}}  # fmt: skip


# -- funding_history ------------------------------------------------------------------------------------
class FundingHistoryConfig(Config):
    page_limit: int = Field(default=1000, description="entries per fetch_funding_rate_history call")


@asset(
    **DAILY_REST,
    description=(
        "Settled funding rates back-filled with `fetch_funding_rate_history` from the configured source (sim, "
        "replay, live) for every configured perp, one day per partition. Coverage per venue and symbol in the "
        "metadata. Key: exchange, symbol, funding_ts (hour-rounded)."
    ),
    metadata=_metadata("funding_history"),
)
def funding_history(
    context: AssetExecutionContext,
    config: FundingHistoryConfig,
    duckdb: DuckDBResource,
    source: SourceConfigResource,
) -> MaterializeResult:
    window = partition_window(context)
    cfg = source.load()
    got = core_history.fetch_settled_funding(cfg, window.start_ms, window.end_ms, config.page_limit)
    for exchange in got.skipped:
        context.log.warning(f"funding_history: {exchange} has no fetchFundingRateHistory; skipped")
    for exchange, (rows, bad) in got.per_exchange.items():
        context.log.info(f"funding_history {window}: {exchange} {rows} settlements, {bad} quarantined")
    frame = core_funding.history_rows(got.rows, cfg.source)
    with warehouse_connection(duckdb) as conn:
        written = write_window(conn, "funding_history", frame, window, "funding_ts")
    coverage = core_funding.history_coverage(frame, window.start_ms, window.end_ms)
    for key, error in got.errors.items():
        context.log.error(f"funding_history: {key}: {error}")
    return MaterializeResult(
        metadata={
            "window": str(window),
            "rows": written,
            "coverage": md_table(coverage),
            "min_coverage_pct": float(coverage["coverage_pct"].min()) if len(coverage) else 0.0,
            "quarantined": got.quarantined,
            "errors": MetadataValue.json(got.errors),
        }
    )


# -- borrow_rates ---------------------------------------------------------------------------------------
class BorrowRatesConfig(Config):
    page_limit: int = Field(default=500, description="entries per fetch_borrow_rate_history call")


@asset(
    **DAILY_REST,
    description=(
        "Spot-margin borrow rates (fetch_borrow_rate_history) from the configured source for the base of every "
        "configured spot symbol (what a reverse carry borrows), one day per partition; venues whose source has "
        "no fetchBorrowRateHistory are skipped (logged). A rate holds from its ts until the next. "
        "Key: exchange, currency, ts."
    ),
    metadata=_metadata("borrow_rates"),
)
def borrow_rates(
    context: AssetExecutionContext, config: BorrowRatesConfig, duckdb: DuckDBResource, source: SourceConfigResource
) -> MaterializeResult:
    window = partition_window(context)
    cfg = source.load()
    got = core_history.fetch_borrow_history(cfg, window.start_ms, window.end_ms, config.page_limit)
    for exchange in got.skipped:
        context.log.warning(f"borrow_rates: {exchange} has no fetchBorrowRateHistory on this source; skipped")
    for key, error in got.errors.items():
        context.log.error(f"borrow_rates: {key}: {error}")
    frame = got.rows.assign(source=cfg.source)
    with warehouse_connection(duckdb) as conn:
        written = write_window(conn, "borrow_rates", frame, window, "ts")
    summary = (
        frame.groupby(["exchange", "currency"], as_index=False).agg(
            rows=("borrow_apr", "size"), min_apr=("borrow_apr", "min"), max_apr=("borrow_apr", "max")
        )
        if len(frame)
        else pd.DataFrame(columns=["exchange", "currency", "rows", "min_apr", "max_apr"])
    )
    return MaterializeResult(
        metadata={
            "window": str(window),
            "rows": written,
            "rates": md_table(summary),
            "skipped": MetadataValue.json(got.skipped),
            "errors": MetadataValue.json(got.errors),
        }
    )


# -- funding_intervals ----------------------------------------------------------------------------------
class FundingIntervalsConfig(Config):
    use_market_info: bool = Field(
        default=True, description="load markets from the configured source for published intervals and caps"
    )


def _market_observations(source: SourceConfigResource, log: Any) -> pd.DataFrame:
    """Published interval/cap/floor from the source's markets (optional evidence: failures are warnings)."""
    try:
        cfg = source.load()
    except Exception as exc:  # noqa: BLE001 - market info is optional evidence
        log.warning(f"funding_intervals: no source config ({exc}); market info skipped")
        return pd.DataFrame(columns=core_funding.OBSERVATION_COLUMNS)
    markets, errors = core_history.load_perp_markets(cfg)
    for exchange, error in errors.items():
        log.warning(f"funding_intervals: markets of {exchange} unavailable ({error})")
    return core_funding.market_observations(markets)


@asset(
    group_name=GROUP,
    pool=POOL,
    owners=OWNERS,
    kinds={"duckdb"},
    deps=["raw_funding", "funding_history"],
    description=(
        "The funding-interval history per venue and symbol: what the sources reported (raw_funding's interval_h, "
        "history entries, the registry's interval history, market info with caps/floors), and before any report "
        "what the spacing of settlements shows. Every normalisation uses the span in force at the settlement."
    ),
    metadata=_metadata("funding_intervals"),
)
def funding_intervals(
    context: AssetExecutionContext,
    config: FundingIntervalsConfig,
    duckdb: DuckDBResource,
    data_dir: DataDirResource,
    source: SourceConfigResource,
) -> MaterializeResult:
    market = _market_observations(source, context.log) if config.use_market_info else pd.DataFrame()
    registry = core_funding.registry_observations(InstrumentRegistry.load(data_dir.registry_path()))
    with _inputs(duckdb, data_dir, ("raw_funding",), ("funding_history",)) as conn:
        reported = _frame(conn, "interval_observations")
        settlements = _frame(conn, "settlement_times")
        spans = core_funding.interval_spans(reported, settlements, registry, market)
        rows = write_all(conn, "funding_intervals", spans)
    by_source = spans.groupby("source").size().to_dict() if len(spans) else {}
    return MaterializeResult(
        metadata={
            "rows": rows,
            "keys": int(spans[["exchange", "symbol"]].drop_duplicates().shape[0]) if len(spans) else 0,
            "spans_by_source": MetadataValue.json({str(k): int(v) for k, v in by_source.items()}),
            "intervals": md_table(
                spans[["exchange", "symbol", "valid_from", "valid_to", "interval_h", "cap", "floor", "source"]]
            ),
        }
    )


# -- funding_predictions --------------------------------------------------------------------------------
@asset(
    group_name=GROUP,
    partitions_def=HOURLY,
    backfill_policy=BOUNDED_RUNS,
    pool=POOL,
    owners=OWNERS,
    kinds={"duckdb"},
    deps=["raw_funding", "funding_intervals"],
    description=(
        "Predicted funding rates as they were known at each capture time (point in time: a backtest reading "
        "rows with ts <= t uses only what was knowable at t). Hourly on ts."
    ),
    metadata=_metadata("funding_predictions"),
)
def funding_predictions(
    context: AssetExecutionContext, duckdb: DuckDBResource, data_dir: DataDirResource
) -> MaterializeResult:
    # a history run's first settlements read the predictions captured in the hours before its window
    window = partition_window(context, look_back_h=history_reload_h(context, "funding_predictions"))
    with _inputs(duckdb, data_dir, ("raw_funding",), ("funding_intervals",)) as conn:
        predicted = _frame(conn, "predicted_inputs", window.params())
        frame = core_funding.point_in_time_predictions(predicted, _intervals(conn))
        rows = write_window(conn, "funding_predictions", frame, window, "ts")
    missing = int(frame["interval_h"].isna().sum()) if len(frame) else 0
    if missing:
        context.log.warning(f"funding_predictions {window}: {missing} rows without a known interval (APR NULL)")
    return MaterializeResult(metadata={"window": str(window), "rows": rows, "rows_without_interval": missing})


# -- funding_rates --------------------------------------------------------------------------------------
def forecast_plot(rates: pd.DataFrame) -> MetadataValue | None:
    have = rates.dropna(subset=["forecast_error"])
    if have.empty:
        return None
    fig, ax = figure()
    for (exchange, symbol), group in have.groupby(["exchange", "symbol"]):
        ax.plot(
            group["funding_ts"], group["forecast_error"] * 1e4, marker=".", linewidth=0.8, label=f"{exchange} {symbol}"
        )
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylabel("settled - predicted (bps per interval)")
    ax.set_title("Funding forecast error")
    ax.legend(fontsize=7)
    fig.autofmt_xdate()
    return png_md(figure_png(fig), "Funding forecast error (settled - last prediction before settlement)", heading=True)


@asset(
    group_name=GROUP,
    partitions_def=HOURLY,
    backfill_policy=BOUNDED_RUNS,
    pool=POOL,
    owners=OWNERS,
    kinds={"duckdb"},
    deps=["raw_funding", "funding_history", "funding_intervals", "funding_predictions"],
    description=(
        "One row per settlement: the settled rate, its rate per hour and APR with the interval in force "
        "(rate x 8760 / interval_h), the last prediction known before settlement and the forecast error "
        "(plotted in the metadata). Keys round venue jitter to the interval grid; the raw time is kept."
    ),
    metadata=_metadata("funding_rates"),
)
def funding_rates(
    context: AssetExecutionContext, duckdb: DuckDBResource, data_dir: DataDirResource
) -> MaterializeResult:
    window = partition_window(context)
    with _inputs(
        duckdb, data_dir, ("raw_funding",), ("funding_history", "funding_intervals", "funding_predictions")
    ) as conn:
        settled = _frame(conn, "settled_inputs", window.params())
        predictions = _frame(conn, "prediction_inputs_for_settlement", window.params())
        rates = core_funding.settled_rates(settled, _intervals(conn), predictions)
        rows = write_window(conn, "funding_rates", rates, window, "funding_ts")
    in_window = (
        rates[(rates["funding_ts"] >= window.start) & (rates["funding_ts"] < window.end)] if len(rates) else rates
    )
    metadata: dict[str, Any] = {
        "window": str(window),
        "rows": rows,
        "rows_without_interval": int(in_window["interval_h"].isna().sum()) if len(in_window) else 0,
        "with_prediction": int(in_window["predicted_rate"].notna().sum()) if len(in_window) else 0,
    }
    if len(in_window) and in_window["forecast_error"].notna().any():
        err = in_window["forecast_error"].dropna()
        metadata["forecast_mae_bps"] = float(err.abs().mean() * 1e4)
        plot = forecast_plot(in_window)
        if plot is not None:
            metadata["forecast_error_plot"] = plot
    if len(in_window):
        summary = in_window.groupby(["exchange", "symbol"]).agg(
            settlements=("funding_rate", "size"), mean_apr=("funding_apr", "mean"), interval_h=("interval_h", "last")
        )
        metadata["summary"] = metadata_table(
            summary.reset_index(),
            {"mean_apr": "pct", "interval_h": "h"},
            {"mean_apr": "mean settled APR over the run's window"},
        )
        with warehouse_connection(duckdb, read_only=True) as conn:
            recent = _frame(conn, "heat_inputs", {"end": window.end})
        metadata.update(heat_metadata(recent))
    return MaterializeResult(metadata=metadata)


def heat_metadata(recent: pd.DataFrame) -> dict[str, Any]:
    """The funding heat map of the day and the week before the newest settlement: tables (venue x
    underlying, APR %) first, the picture second."""
    if recent.empty:
        return {}
    end = pd.Timestamp(recent["funding_ts"].max()).floor("h") + pd.Timedelta(hours=1)
    heats = {name: funding_views.funding_heat(recent, end, h) for name, h in funding_views.HEAT_WINDOWS_H.items()}
    metadata: dict[str, Any] = {"heat_map_to": MetadataValue.text(f"{end:%Y-%m-%d %H:%M} UTC")}
    for name, heat in heats.items():
        frame = heat.reset_index()
        units = {c: "pct" for c in heat.columns}
        about = {c: f"{c} perp funding, time-weighted APR over the {name} to {end:%Y-%m-%d %H:%M}" for c in units}
        metadata[f"funding_heat_{name}"] = metadata_table(frame, units, about)
    metadata["funding_heat_map"] = png_md(
        funding_views.funding_heat_png({f"last {k}": v for k, v in heats.items()}, end),
        "Funding heat map: annualised funding by venue and underlying, %",
        heading=True,
    )
    return metadata


# -- basis ----------------------------------------------------------------------------------------------
@asset(
    group_name=GROUP,
    partitions_def=HOURLY,
    backfill_policy=BOUNDED_RUNS,
    pool=POOL,
    owners=OWNERS,
    kinds={"duckdb"},
    deps=["raw_tickers", "raw_ohlcv", "funding_intervals", "ohlcv_1m", "ohlcv_1h"],
    description=(
        "Perp vs spot on the same venue at 1m and 1h (last quote in each bucket; where no quotes were recorded, "
        "the spot and perp bar closes: source column), and at 8h from the venue's own 8h bars (imported klines): "
        "basis and mark-index in bps "
        "and annualized at the venue's payment rule (core.basis.premium_period), plus the half-spreads a "
        "backtest charges."
    ),
    metadata=_metadata("basis"),
)
def basis(context: AssetExecutionContext, duckdb: DuckDBResource, data_dir: DataDirResource) -> MaterializeResult:
    window = partition_window(context)
    with _inputs(duckdb, data_dir, ("raw_tickers", "raw_ohlcv"), ("funding_intervals",)) as conn:
        intervals = _intervals(conn)
        frames = []
        with_bars = table_exists(conn, "ohlcv_1m") and table_exists(conn, "ohlcv_1h")
        no_rows = pd.DataFrame(columns=core_basis.QUOTE_COLUMNS)
        for timeframe, seconds in core_basis.BAR_TIMEFRAMES_S.items():
            quoted = timeframe in core_basis.TIMEFRAMES_S
            quotes = _frame(conn, "basis_quotes", window.params(bucket_ms=seconds * 1000)) if quoted else no_rows
            bars = (
                _frame(conn, "basis_bars", window.params(timeframe=timeframe))
                if with_bars
                else pd.DataFrame(columns=core_basis.BAR_COLUMNS)
            )
            frames.append(core_basis.basis_with_bars(quotes, bars, intervals, timeframe))
        frame = pd.concat(frames, ignore_index=True)
        rows = write_window(conn, "basis", frame, window, "ts")
    metadata: dict[str, Any] = {"window": str(window), "rows": rows}
    hourly = frame[frame["timeframe"] == "1h"] if len(frame) else frame
    if len(hourly):
        metadata["basis_1h"] = metadata_table(
            hourly.groupby(["exchange", "symbol"])
            .agg(
                basis_bps=("basis_bps", "mean"),
                basis_apr=("basis_apr", "mean"),
                perp_half_spread_bps=("perp_half_spread_bps", "mean"),
                spot_half_spread_bps=("spot_half_spread_bps", "mean"),
            )
            .reset_index(),
            {"basis_bps": "bps", "basis_apr": "pct", "perp_half_spread_bps": "bps", "spot_half_spread_bps": "bps"},
            {"basis_bps": "mean 1h basis over the run's window"},
        )
    return MaterializeResult(metadata=metadata)


# -- funding_spreads ------------------------------------------------------------------------------------
@asset(
    group_name=GROUP,
    partitions_def=HOURLY,
    backfill_policy=BOUNDED_RUNS,
    pool=POOL,
    owners=OWNERS,
    kinds={"duckdb"},
    deps=[
        # An 8h settlement up to 8 hours after this hour pays for it: depend on those partitions too.
        AssetDep(
            "funding_rates",
            partition_mapping=TimeWindowPartitionMapping(
                start_offset=0, end_offset=8, allow_nonexistent_upstream_partitions=True
            ),
        ),
        "funding_predictions",
        "basis",
    ],
    description=(
        "For each underlying, every pair of venues hour by hour: funding per hour of each (settlements spread "
        "over the hours they accrued, the last prediction for hours not settled yet), the APR differential and "
        "the 1h basis differential. 8h and 1h venues compare on this common hourly grid."
    ),
    metadata=_metadata("funding_spreads"),
)
def funding_spreads(
    context: AssetExecutionContext, duckdb: DuckDBResource, data_dir: DataDirResource
) -> MaterializeResult:
    # On history months also the hours before the window whose settlements are at its start (the run of the month
    # before could not see them yet), as signals_job's look-back does on the live path.
    window = partition_window(context, look_back_h=STAGE_BY_JOB["signals_job"].look_back_h)
    with _inputs(duckdb, data_dir, (), ("funding_rates", "funding_predictions", "basis")) as conn:
        rows = core_spreads.replace_funding_spreads(conn, window.params())
        predicted = _frame(conn, "spread_predicted_share", window.params())["share"].iloc[0]
    metadata: dict[str, Any] = {"window": str(window), "rows": rows}
    if rows:
        metadata["predicted_share_pct"] = number(predicted, "pct")
        with warehouse_connection(duckdb, read_only=True) as conn:
            history = _frame(conn, "spread_history", {"end": window.end})
        metadata.update(spread_metadata(history))
    return MaterializeResult(metadata=metadata)


def spread_metadata(history: pd.DataFrame) -> dict[str, Any]:
    """Every venue pair's spread: a table (latest hour, day and week means) first, the plot over the week second."""
    if history.empty:
        return {}
    end = pd.Timestamp(history["ts"].max()) + pd.Timedelta(hours=1)
    summary = funding_views.spread_summary(history, end)
    units = {"funding_spread_apr": "pct", "day_mean_apr": "pct", "week_mean_apr": "pct", "basis_spread_bps": "bps"}
    about = {
        "funding_spread_apr": "funding APR of venue a minus venue b in the latest hour (long b / short a earns it)",
        "day_mean_apr": "mean hourly spread over the last 24 h",
        "week_mean_apr": "mean hourly spread over the last 7 days",
        "latest_ts": "the latest hour, UTC",
    }
    return {
        "widest_spread_apr_pct": number(summary["funding_spread_apr"].abs().max(), "pct"),
        "spreads_by_pair": metadata_table(summary, units, about),
        "spread_plot": png_md(
            funding_views.spread_png(history),
            f"Funding spread per venue pair over the last week (the {funding_views.SPREAD_PLOT_PAIRS} widest), APR %",
            heading=True,
        ),
    }


# -- opportunities --------------------------------------------------------------------------------------
class OpportunitiesConfig(Config):
    horizon_h: int = Field(default=168, description="holding horizon the net carry is computed over, hours")
    lookback_h: int = Field(default=336, description="hours of history the forecast and stats use")
    min_obs: int = Field(default=24, description="fewest hours of history a candidate needs")
    recent_h: int = Field(
        default=72, description="the forecast never exceeds the carry's median over this many last hours"
    )
    error_step_h: int = Field(
        default=1,
        description=(
            "the forecast is replayed every this many hours over the horizon before the look-back (with the "
            "look-back before each) to measure its error against the carry realized after"
        ),
    )
    taker_fees_bps: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description=(
            "taker fees in bps per venue and market type ({venue: {spot: x, swap: y}}), merged over the documented "
            "defaults (core.opportunities.DEFAULT_TAKER_FEES_BPS); '*' is any other venue. A dated fee of the "
            "source config's `fees:` in force at as_of for the venue's tier wins over both"
        ),
    )
    capacity_share: float = Field(
        default=0.5,
        description=(
            "capacity: the largest notional per leg whose round trip (book walks + fees) costs at most this share "
            "of the carry expected over the horizon"
        ),
    )
    trade_notional_usd: float = Field(
        default=10_000.0, description="per-leg size entry_cost_bps is walked at where both legs have a captured book"
    )
    book_max_age_h: int = Field(
        default=1,
        description=(
            "books captured more than this many hours before the as-of hour's start are not used (the last "
            "book sampled before a new hour is as good as one sampled minutes into it)"
        ),
    )
    borrow_apr: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description=(
            "spot borrow APR (fraction) per venue and asset ({venue: {asset: apr}}, '*' any asset of the venue): "
            "the fallback where borrow_rates has no rate in force at the as-of time; a reverse cash-and-carry "
            "(negative funding: long perp, short spot) is ranked only where a rate is known"
        ),
    )
    borrow_max_age_h: int = Field(
        default=48, description="captured borrow rates published more than this many hours before as_of are not used"
    )


def opportunities_plot(frame: pd.DataFrame) -> MetadataValue | None:
    if frame.empty:
        return None
    top = frame.head(15).iloc[::-1]
    fig, ax = figure(8, 0.35 * len(top) + 1.2)
    labels = [
        f"{r.strategy} {r.underlying}: L {r.long_exchange} / S {r.short_exchange}" for r in top.itertuples(index=False)
    ]
    colors = ["tab:green" if v > 0 else "tab:red" for v in top["net_carry_apr"]]
    ax.barh(labels, top["net_carry_apr"] * 100, color=colors)
    ax.set_xlabel("net carry APR % (after round-trip fees and half-spreads)")
    ax.tick_params(axis="y", labelsize=7)
    return png_md(figure_png(fig), "Top carry opportunities", heading=True)


@asset(
    group_name=GROUP,
    pool=POOL,
    owners=OWNERS,
    kinds={"duckdb"},
    deps=["funding_spreads", "funding_rates", "funding_predictions", "basis", "borrow_rates"],
    description=(
        "Ranked carry trades as of the latest hour: cash-and-carry on one venue and perp-perp across venues, "
        "with expected carry over a configurable horizon (mean AR(1) forecast), net of round-trip taker fees and "
        "half-spreads, break-even hours, and persistence (AR(1) half-life, share of hours with the same sign)."
    ),
    metadata=_metadata("opportunities"),
)
def opportunities(
    context: AssetExecutionContext,
    config: OpportunitiesConfig,
    duckdb: DuckDBResource,
    data_dir: DataDirResource,
    source: SourceConfigResource,
) -> MaterializeResult:
    taker_bps = {**core_opps.DEFAULT_TAKER_FEES_BPS, **config.taker_fees_bps}
    dated_fees = source.load().fee_table()  # the config's dated fees by venue and tier, in force at as_of
    configured = core_opps.BorrowRates(config.borrow_apr)  # the fallback under the rates captured at as_of
    rule = core_opps.CapacityRule(config.capacity_share, config.trade_notional_usd)
    tables = ("funding_rates", "funding_predictions", "basis", "borrow_rates", "opportunities")
    with _inputs(duckdb, data_dir, ("raw_order_book",), tables) as conn:
        latest = _frame(conn, "opportunity_as_of")["as_of"].iloc[0]
        if pd.isna(latest):
            context.log.warning("opportunities: no funding data yet; the table is left empty")
            frame = pd.DataFrame(columns=core_opps.OPPORTUNITY_COLUMNS)
        else:
            as_of = pd.Timestamp(latest).floor("h")
            fees = core_opps.FeeSchedule(taker_bps, dated_fees, int(as_of.value // 10**6))
            end = as_of + pd.Timedelta(hours=1)
            # the look-back, and a horizon before it: past hours whose forecast can be checked against what came
            start = end - pd.Timedelta(hours=config.lookback_h + config.horizon_h)
            params = Window(start.to_pydatetime(), end.to_pydatetime()).params()
            rates = _frame(conn, "opportunity_inputs_rates", params)
            predictions = _frame(conn, "spread_inputs_predictions", params)
            costs = _frame(conn, "opportunity_inputs_costs", params)
            book_since = as_of - pd.Timedelta(hours=config.book_max_age_h)
            book_params = Window(book_since.to_pydatetime(), end.to_pydatetime()).params()
            books = core_opps.books_from_frame(_frame(conn, "opportunity_inputs_books", book_params))
            borrow_since = as_of - pd.Timedelta(hours=config.borrow_max_age_h)
            borrow_params = {"since": borrow_since.to_pydatetime(), "as_of": as_of.to_pydatetime()}
            captured = _frame(conn, "opportunity_inputs_borrow", borrow_params)
            borrow = configured.with_captured(captured.rename(columns={"currency": "asset"}))
            hourly = core_spreads.hourly_rates(rates, predictions, start, end)
            window = core_opps.ForecastWindow(config.lookback_h, config.recent_h, config.error_step_h)
            frame = core_opps.rank_opportunities(
                hourly, costs, fees, config.horizon_h, as_of, config.min_obs, borrow, window, books, rule
            )
            context.log.info(f"opportunities: {len(captured)} captured borrow rates in force at {as_of}")
        write_all(conn, "opportunities", frame)
    return MaterializeResult(metadata=opportunities_metadata(frame, config.horizon_h))


RANKING_UNITS = {
    "net_carry_apr": "pct",
    "borrow_apr": "pct",
    "capacity_usd": "usd",
    "capacity_net_carry_apr": "pct",
    "entry_cost_bps": "bps",
    "break_even_h": "h",
    "half_life_h": "h",
    "run_h": "h",
    "same_sign_share": "pct",
    "forecast_mae_apr": "pct",
}


def opportunities_metadata(frame: pd.DataFrame, horizon_h: int) -> dict[str, Any]:
    """The ranking as a table (the first thing on the page), the headline numbers, then the plot."""
    metadata: dict[str, Any] = {"ranked": len(frame), "horizon_h": horizon_h}
    if frame.empty:
        metadata["ranking"] = MetadataValue.md("_no opportunity ranked: not enough funding history yet_")
        return metadata
    metadata["as_of"] = MetadataValue.text(f"{pd.Timestamp(frame['as_of'].iloc[0]):%Y-%m-%d %H:%M} UTC")
    about = {c.name: c.description for c in table("opportunities").columns}
    # the net carry right after what the trade is: the column a trader reads first, visible without scrolling
    columns = ["rank", "strategy", "underlying", "net_carry_apr", "long_exchange", "short_exchange", "cost_source",
               "borrow_source", *[c for c in RANKING_UNITS if c != "net_carry_apr"]]  # fmt: skip
    metadata["ranking"] = metadata_table(frame[columns], RANKING_UNITS, about, max_rows=20)
    metadata["best_net_carry_apr_pct"] = number(frame["net_carry_apr"].iloc[0], "pct")
    metadata["positive_carry_count"] = int((frame["net_carry_apr"] > 0).sum())
    errors = core_opps.forecast_error_summary(frame)
    metadata["forecast_error"] = metadata_table(
        errors, {c: "pct" for c in errors.columns if c.endswith("_apr")} if len(errors) else {}
    )
    plot = opportunities_plot(frame)
    if plot is not None:
        metadata["top_opportunities"] = plot
    return metadata


FUNDING_ASSETS = [
    funding_history,
    borrow_rates,
    funding_intervals,
    funding_predictions,
    funding_rates,
    basis,
    funding_spreads,
    opportunities,
]
