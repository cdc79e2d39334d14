"""Funding domain: history, interval history, settled and predicted rates, basis, spreads, opportunities.

Thin assets: read their window with `sql/funding/*.sql`, call `core.funding` / `core.basis` /
`core.spreads` / `core.opportunities`, write with `replace_window` (delete the window, insert: idempotent)
and return metadata (coverage tables, plots as base64 PNG in markdown).
"""

import asyncio
import base64
import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np
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
from ...core import opportunities as core_opps
from ...core import spreads as core_spreads
from ...core.sql import execute, load_sql, replace_all, replace_window, table_exists
from ..partitions import DAILY, FOLLOW_UPSTREAM, HOURLY, SINGLE_RUN, Window, partition_window
from ..raw.assets import ensure_raw_table
from ..resources import POOL, DataDirResource, SourceConfigResource, column_schema, warehouse_connection

OWNERS = ["team:carry"]
GROUP = "funding"
DOMAIN = "funding"
EPOCH = Window(datetime(1970, 1, 1), datetime(2200, 1, 1))

# -- column docs (the contract other domains code against; also shown in the UI) ----------------------
HISTORY_COLUMNS = [
    ("exchange", "string", "ccxt exchange id"),
    ("symbol", "string", "ccxt unified symbol (perp)"),
    ("funding_ts", "timestamp", "settlement time rounded to the hour (key)"),
    ("funding_ts_ms", "int64", "settlement time as the venue gave it, epoch ms (with its jitter)"),
    ("funding_rate", "float64", "settled rate, fraction per interval"),
    ("interval_h", "float64", "interval reported with the entry, NaN if the venue gives none"),
    ("mark_price", "float64", "mark price at settlement where given"),
    ("source", "string", "the source kind that served it (sim, replay, live, wire)"),
]
INTERVAL_COLUMNS = [
    ("exchange", "string", "ccxt exchange id"),
    ("symbol", "string", "ccxt unified symbol (perp)"),
    ("valid_from", "timestamp", "first settlement (UTC) this interval applies to"),
    ("valid_to", "timestamp", "start of the next span, NULL while in force"),
    ("interval_h", "float64", "funding interval, hours"),
    ("cap", "float64", "max funding rate per interval where known, else NULL"),
    ("floor", "float64", "min funding rate per interval where known, else NULL"),
    ("source", "string", "reported (stream/history/registry/market) or inferred (settlement spacing)"),
]
RATE_COLUMNS = [
    ("exchange", "string", "ccxt exchange id"),
    ("symbol", "string", "ccxt unified symbol (perp)"),
    ("funding_ts", "timestamp", "settlement time rounded to the interval grid (key)"),
    ("funding_ts_raw", "timestamp", "settlement time as reported (ms jitter, late minutes)"),
    ("funding_rate", "float64", "settled rate, fraction per interval"),
    ("interval_h", "float64", "interval in force at the settlement (funding_intervals)"),
    ("rate_per_hour", "float64", "funding_rate / interval_h"),
    ("funding_apr", "float64", "funding_rate x 8760 / interval_h (simple annual rate)"),
    ("predicted_rate", "float64", "last predicted rate known before settlement, NULL if none"),
    ("predicted_at", "timestamp", "when that prediction was known"),
    ("forecast_error", "float64", "funding_rate - predicted_rate"),
    ("mark_price", "float64", "mark price at settlement where known"),
    ("index_price", "float64", "index price at settlement where known"),
]
PREDICTION_COLUMNS = [
    ("exchange", "string", "ccxt exchange id"),
    ("symbol", "string", "ccxt unified symbol (perp)"),
    ("ts", "timestamp", "when the prediction was known (point in time, key)"),
    ("funding_ts", "timestamp", "the settlement it predicts, on the interval grid (key)"),
    ("predicted_rate", "float64", "predicted rate, fraction per interval"),
    ("next_predicted_rate", "float64", "the venue's estimate for the settlement after, NULL if none"),
    ("interval_h", "float64", "interval (reported, else from funding_intervals)"),
    ("rate_per_hour", "float64", "predicted_rate / interval_h"),
    ("predicted_apr", "float64", "predicted_rate x 8760 / interval_h"),
    ("mark_price", "float64", "mark price when known"),
    ("index_price", "float64", "index price when known"),
]
BASIS_COLUMNS = [
    ("exchange", "string", "ccxt exchange id"),
    ("symbol", "string", "perp symbol"),
    ("timeframe", "string", "1m or 1h (key)"),
    ("ts", "timestamp", "bucket start; values are the last quote in the bucket (key)"),
    ("underlying", "string", "asset priced, multiplier removed"),
    ("spot_symbol", "string", "the spot leg on the same venue"),
    *[(c, "float64", c.replace("_", " ")) for c in ("spot_bid", "spot_ask", "spot_mid", "perp_bid", "perp_ask")],
    ("perp_mid", "float64", "perp mid"),
    ("mark_price", "float64", "perp mark price"),
    ("index_price", "float64", "perp index price"),
    ("basis_bps", "float64", "(perp_mid / spot_mid - 1) x 1e4"),
    ("mark_index_bps", "float64", "(mark / index - 1) x 1e4"),
    ("interval_h", "float64", "funding interval in force"),
    ("basis_apr", "float64", "basis fraction x 8760 / interval_h"),
    ("spot_half_spread_bps", "float64", "(ask - bid) / 2 / mid x 1e4 of the spot leg"),
    ("perp_half_spread_bps", "float64", "(ask - bid) / 2 / mid x 1e4 of the perp"),
]
SPREAD_COLUMNS = [
    ("underlying", "string", "asset (key)"),
    ("exchange_a", "string", "venue a (key)"),
    ("symbol_a", "string", "perp a (key)"),
    ("exchange_b", "string", "venue b (key)"),
    ("symbol_b", "string", "perp b (key)"),
    ("ts", "timestamp", "hour start (key)"),
    ("rate_per_hour_a", "float64", "a's funding per hour accrued in this hour"),
    ("rate_per_hour_b", "float64", "b's funding per hour"),
    ("funding_apr_a", "float64", "rate_per_hour_a x 8760"),
    ("funding_apr_b", "float64", "rate_per_hour_b x 8760"),
    ("funding_spread_apr", "float64", "funding_apr_a - funding_apr_b"),
    ("is_predicted_a", "bool", "a's hour not settled yet: last prediction used"),
    ("is_predicted_b", "bool", "b's hour not settled yet"),
    ("basis_bps_a", "float64", "a's 1h basis vs its spot"),
    ("basis_bps_b", "float64", "b's 1h basis"),
    ("basis_spread_bps", "float64", "basis_bps_a - basis_bps_b"),
]
OPPORTUNITY_COLUMNS = [
    ("as_of", "timestamp", "the hour the ranking is for"),
    ("strategy", "string", "cash_carry | perp_perp"),
    ("underlying", "string", "asset"),
    ("long_exchange", "string", "venue of the long leg"),
    ("long_symbol", "string", "long leg"),
    ("short_exchange", "string", "venue of the short leg"),
    ("short_symbol", "string", "short leg"),
    ("current_apr", "float64", "carry of the latest hour, in the trade's direction"),
    ("mean_apr", "float64", "mean carry over the look-back"),
    ("expected_carry_apr", "float64", "mean AR(1) forecast of the carry over the horizon"),
    ("entry_cost_bps", "float64", "round-trip taker fees + half-spreads of both legs"),
    ("net_carry_apr", "float64", "expected carry minus the cost spread over the horizon"),
    ("horizon_h", "int32", "holding horizon, hours"),
    ("break_even_h", "float64", "hours of expected carry that pay the entry cost"),
    ("ar1_phi", "float64", "AR(1) coefficient of the hourly carry"),
    ("half_life_h", "float64", "half-life of the carry's mean reversion, hours"),
    ("same_sign_share", "float64", "share of look-back hours with the trade's sign"),
    ("n_obs", "int32", "hours in the look-back"),
    ("rank", "int32", "1 = best net carry"),
]


# -- helpers --------------------------------------------------------------------------------------------
def _frame(conn: Any, name: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    return execute(conn, load_sql(DOMAIN, name), params or {}).df()


@contextmanager
def registered(conn: Any, name: str, frame: pd.DataFrame) -> Iterator[None]:
    """A frame visible to SQL as `name` for the block. DuckDB 2 refuses (un)register while a result is
    half-fetched (`fetchone`), so any such result is finished first."""
    conn.execute("SELECT 1").fetchall()
    conn.register(name, frame)
    try:
        yield
    finally:
        conn.execute("SELECT 1").fetchall()
        conn.unregister(name)


def _write_window(conn: Any, table: str, frame_name: str, frame: pd.DataFrame, window: Window, ts: str) -> int:
    with registered(conn, frame_name, frame):
        return replace_window(conn, table, load_sql(DOMAIN, table), window.params(), time_column=ts)


_PANDAS_TYPES = {"timestamp": "datetime64[us]", "string": "object", "bool": "bool", "int32": "int32", "int64": "int64"}


def empty_frame(columns: list[tuple[str, str, str]]) -> pd.DataFrame:
    """A zero-row frame with the documented column types (so the SQL's casts bind)."""
    return pd.DataFrame({name: pd.Series(dtype=_PANDAS_TYPES.get(kind, "float64")) for name, kind, _ in columns})


def ensure_table(conn: Any, table: str, frame_name: str, columns: list[tuple[str, str, str]]) -> None:
    """Create one of this domain's tables, empty, when no run has made it yet (read as no rows)."""
    if table_exists(conn, table):
        return
    with registered(conn, frame_name, empty_frame(columns)):
        execute(conn, f"CREATE TABLE IF NOT EXISTS {table} AS {load_sql(DOMAIN, table)}", EPOCH.params())


TABLE_FRAMES: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "funding_history": ("history_frame", HISTORY_COLUMNS),
    "funding_intervals": ("intervals_frame", INTERVAL_COLUMNS),
    "funding_rates": ("rates_frame", RATE_COLUMNS),
    "funding_predictions": ("predictions_frame", PREDICTION_COLUMNS),
    "basis": ("basis_frame", BASIS_COLUMNS),
    "funding_spreads": ("spreads_frame", SPREAD_COLUMNS),
    "opportunities": ("opportunities_frame", OPPORTUNITY_COLUMNS),
}


def ensure_tables(conn: Any, *tables: str) -> None:
    for table in tables:
        frame_name, columns = TABLE_FRAMES[table]
        ensure_table(conn, table, frame_name, columns)


@contextmanager
def _inputs(
    duckdb: DuckDBResource, data_dir: DataDirResource, raw: tuple[str, ...], own: tuple[str, ...]
) -> Iterator[Any]:
    with warehouse_connection(duckdb) as conn:
        for table in raw:
            ensure_raw_table(conn, data_dir.path(), table)
        ensure_tables(conn, *own)
        yield conn


def png_markdown(fig: Any, title: str) -> MetadataValue:
    """A matplotlib figure as a base64 PNG inside markdown (shown behind "Show Markdown" in the UI)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return MetadataValue.md(f"### {title}\n\n![{title}](data:image/png;base64,{encoded})")


def _figure(width: float = 8, height: float = 3.5) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def md_table(frame: pd.DataFrame, max_rows: int = 30) -> MetadataValue:
    if frame.empty:
        return MetadataValue.md("_no rows_")
    shown = frame.head(max_rows)
    lines = ["| " + " | ".join(map(str, shown.columns)) + " |", "|" + "---|" * len(shown.columns)]
    for row in shown.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    if len(frame) > max_rows:
        lines.append(f"\n_{len(frame) - max_rows} more rows_")
    return MetadataValue.md("\n".join(lines))


def _cell(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "" if np.isnan(value) else f"{value:.6g}"
    return "" if value is None or value is pd.NaT else str(value)


# -- funding_history ------------------------------------------------------------------------------------
class FundingHistoryConfig(Config):
    page_limit: int = Field(default=1000, description="entries per fetch_funding_rate_history call")


async def fetch_history(
    exchange: Any, symbols: list[str], start_ms: int, end_ms: int, history_limit: int
) -> tuple[pd.DataFrame, int, dict[str, str]]:
    """Settled funding of [start_ms, end_ms) per symbol through the Feed (paginated, retried, validated).

    Returns the rows, how many entries the validator quarantined, and an error per symbol that failed (one
    failing symbol must not lose the others).
    """
    from ...core.instruments import InstrumentRegistry
    from ...core.schema import EventKind
    from ...core.sources.feed import Feed

    frames: list[pd.DataFrame] = []
    quarantined = 0
    errors: dict[str, str] = {}
    try:
        markets = await exchange.load_markets()
        registry = InstrumentRegistry()
        listed = [s for s in symbols if s in markets]
        errors.update({s: "not listed by the exchange" for s in symbols if s not in markets})
        registry.add_markets(exchange.id, markets, listed)
        feed = Feed(exchange, registry, history_limit=history_limit)
        for symbol in listed:
            try:
                async for batch in feed.history("funding", symbol, start_ms, end_ms):
                    records = batch.records
                    quarantined += int(batch.events["count"][batch.events["kind"] == int(EventKind.QUARANTINED)].sum())
                    if len(records):
                        frames.append(
                            pd.DataFrame(
                                {
                                    "exchange": exchange.id,
                                    "symbol": symbol,
                                    "funding_ts_ms": records["funding_ts_ms"],
                                    "funding_rate": records["funding_rate"],
                                    "interval_h": records["interval_h"],
                                    "mark_price": records["mark_price"],
                                }
                            )
                        )
            except Exception as exc:  # noqa: BLE001 - one failing symbol must not lose the others
                errors[symbol] = f"{type(exc).__name__}: {exc}"
    finally:
        await exchange.close()
    columns = ["exchange", "symbol", "funding_ts_ms", "funding_rate", "interval_h", "mark_price"]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    rows = rows[(rows["funding_ts_ms"] >= start_ms) & (rows["funding_ts_ms"] < end_ms)]
    return rows, quarantined, errors


@asset(
    group_name=GROUP,
    partitions_def=DAILY,
    backfill_policy=SINGLE_RUN,
    pool=POOL,
    owners=OWNERS,
    kinds={"duckdb", "ccxt"},
    description=(
        "Settled funding rates back-filled with `fetch_funding_rate_history` from the configured source (sim, "
        "replay, live) for every configured perp, one day per partition. Coverage per venue and symbol in the "
        "metadata. Key: exchange, symbol, funding_ts (hour-rounded)."
    ),
    metadata={"dagster/column_schema": column_schema(HISTORY_COLUMNS), "natural_key": "exchange, symbol, funding_ts"},
)
def funding_history(
    context: AssetExecutionContext,
    config: FundingHistoryConfig,
    duckdb: DuckDBResource,
    source: SourceConfigResource,
) -> MaterializeResult:
    from ...core.sources import open_exchange

    window = partition_window(context)
    cfg = source.load()
    frames: list[pd.DataFrame] = []
    errors: dict[str, str] = {}
    quarantined = 0
    for exchange_cfg in cfg.exchanges:
        perps = [s for s in exchange_cfg.symbols if ":" in s]
        if not perps or "funding" not in exchange_cfg.streams:
            continue
        exchange = open_exchange(cfg, exchange_cfg.id)
        if not exchange.has.get("fetchFundingRateHistory"):
            context.log.warning(f"funding_history: {exchange_cfg.id} has no fetchFundingRateHistory; skipped")
            asyncio.run(exchange.close())
            continue
        got, bad, failed = asyncio.run(
            fetch_history(exchange, perps, window.start_ms, window.end_ms, config.page_limit)
        )
        frames.append(got)
        quarantined += bad
        errors.update({f"{exchange_cfg.id} {s}": e for s, e in failed.items()})
        context.log.info(f"funding_history {window}: {exchange_cfg.id} {len(got)} settlements, {bad} quarantined")
    columns = ["exchange", "symbol", "funding_ts_ms", "funding_rate", "interval_h", "mark_price"]
    frame = (
        pd.concat([f for f in frames if len(f)], ignore_index=True)
        if any(len(f) for f in frames)
        else pd.DataFrame(columns=columns)
    )
    frame["funding_ts_ms"] = frame["funding_ts_ms"].astype("int64")
    frame["funding_ts"] = core_funding.to_timestamp(core_funding.round_to_grid(frame["funding_ts_ms"].to_numpy(), 1.0))
    frame["source"] = cfg.source
    with warehouse_connection(duckdb) as conn:
        written = _write_window(conn, "funding_history", "history_frame", frame, window, "funding_ts")
    intervals = core_funding.build_intervals(core_funding.infer_intervals(frame))
    coverage = core_funding.coverage(frame, intervals, window.start_ms, window.end_ms)
    for key, error in errors.items():
        context.log.error(f"funding_history: {key}: {error}")
    return MaterializeResult(
        metadata={
            "window": str(window),
            "rows": written,
            "coverage": md_table(coverage),
            "min_coverage_pct": float(coverage["coverage_pct"].min()) if len(coverage) else 0.0,
            "quarantined": quarantined,
            "errors": MetadataValue.json(errors),
        }
    )


# -- funding_intervals ----------------------------------------------------------------------------------
class FundingIntervalsConfig(Config):
    use_market_info: bool = Field(
        default=True, description="load markets from the configured source for published intervals and caps"
    )


def _registry_observations(data_dir: DataDirResource) -> pd.DataFrame:
    from ...core.instruments import InstrumentRegistry

    registry = InstrumentRegistry.load(data_dir.registry_path())
    rows = []
    for instrument in registry:
        if not instrument.is_perp:
            continue
        for span in registry.interval_history(instrument.exchange, instrument.symbol):
            rows.append(
                core_funding.observation(instrument.exchange, instrument.symbol, span.valid_from_ms, span.interval_h)
            )
    return pd.DataFrame(rows, columns=core_funding.OBSERVATION_COLUMNS)


def _market_observations(source: SourceConfigResource, log: Any) -> pd.DataFrame:
    """Published interval/cap/floor from the source's markets (observed 'now': caps apply to the whole key)."""
    from ...core.sources import open_exchange

    rows = []
    try:
        cfg = source.load()
    except Exception as exc:  # noqa: BLE001 - market info is optional evidence
        log.warning(f"funding_intervals: no source config ({exc}); market info skipped")
        return pd.DataFrame(columns=core_funding.OBSERVATION_COLUMNS)
    for exchange_cfg in cfg.exchanges:
        perps = [s for s in exchange_cfg.symbols if ":" in s]
        if not perps:
            continue
        try:
            exchange = open_exchange(cfg, exchange_cfg.id)

            async def load(ex: Any = exchange) -> dict[str, Any]:
                try:
                    return await ex.load_markets()
                finally:
                    await ex.close()

            markets = asyncio.run(load())
        except Exception as exc:  # noqa: BLE001
            log.warning(f"funding_intervals: markets of {exchange_cfg.id} unavailable ({type(exc).__name__}: {exc})")
            continue
        for symbol in perps:
            market = markets.get(symbol)
            if not market:
                continue
            interval_h, cap, floor = core_funding.market_funding_info(market)
            for start_ms, hours in core_funding.market_interval_history(market):
                rows.append(
                    core_funding.observation(exchange_cfg.id, symbol, start_ms, hours, cap, floor, source="history")
                )
            if interval_h is None and cap is None and floor is None:
                continue
            # Caps without an interval still matter: they ride on whatever interval is known (NaN here).
            rows.append(
                core_funding.observation(
                    exchange_cfg.id, symbol, 0, interval_h if interval_h else np.nan, cap, floor, source="market"
                )
            )
    return pd.DataFrame(rows, columns=core_funding.OBSERVATION_COLUMNS)


def _apply_market_caps(spans: pd.DataFrame, market: pd.DataFrame) -> pd.DataFrame:
    """Fill cap/floor of spans from market info where the streams gave none (market info is today's)."""
    if market.empty or spans.empty:
        return spans
    caps = market.dropna(subset=["cap"]).drop_duplicates(["exchange", "symbol"]).set_index(["exchange", "symbol"])
    out = spans.copy()
    for i, row in out.iterrows():
        key = (row["exchange"], row["symbol"])
        if key in caps.index and pd.isna(row["cap"]):
            out.at[i, "cap"] = caps.loc[key, "cap"]
            out.at[i, "floor"] = caps.loc[key, "floor"]
    return out


@asset(
    group_name=GROUP,
    pool=POOL,
    owners=OWNERS,
    kinds={"duckdb"},
    deps=["raw_funding", "funding_history"],
    automation_condition=FOLLOW_UPSTREAM,
    description=(
        "The funding-interval history per venue and symbol: what the sources reported (raw_funding's interval_h, "
        "history entries, the registry's interval history, market info with caps/floors), and before any report "
        "what the spacing of settlements shows. Every normalisation uses the span in force at the settlement."
    ),
    metadata={"dagster/column_schema": column_schema(INTERVAL_COLUMNS), "natural_key": "exchange, symbol, valid_from"},
)
def funding_intervals(
    context: AssetExecutionContext,
    config: FundingIntervalsConfig,
    duckdb: DuckDBResource,
    data_dir: DataDirResource,
    source: SourceConfigResource,
) -> MaterializeResult:
    market = _market_observations(source, context.log) if config.use_market_info else pd.DataFrame()
    with _inputs(duckdb, data_dir, ("raw_funding",), ("funding_history",)) as conn:
        reported = _frame(conn, "interval_observations")
        settlements = _frame(conn, "settlement_times")
        reported = reported.assign(cap=np.nan, floor=np.nan, source="reported")
        registry = _registry_observations(data_dir)
        market_intervals = market.dropna(subset=["interval_h"]) if not market.empty else market
        observations = (
            pd.concat([f for f in (reported, registry, market_intervals) if not f.empty], ignore_index=True)
            if any(not f.empty for f in (reported, registry, market_intervals))
            else reported
        )
        if not market_intervals.empty and not observations.empty:
            # A market's current interval applies to the next settlement: place it half an hour after the last
            # one seen. Keys with a published history (source "history") already have it in force.
            last = settlements.groupby(["exchange", "symbol"])["funding_ts_ms"].max()
            with_history = set(map(tuple, market.loc[market["source"] == "history", ["exchange", "symbol"]].values))
            is_market = observations["source"] == "market"
            keys = list(
                zip(observations.loc[is_market, "exchange"], observations.loc[is_market, "symbol"], strict=True)
            )
            observations.loc[is_market, "ts_ms"] = [int(last.get(k, 0)) + 1_800_000 for k in keys]
            drop = pd.Series(False, index=observations.index)
            drop.loc[is_market] = [k in with_history for k in keys]
            observations = observations[~drop]
        inferred = core_funding.infer_intervals(settlements)
        spans = _apply_market_caps(core_funding.build_intervals(observations, inferred), market)
        with registered(conn, "intervals_frame", spans):
            rows = replace_all(conn, "funding_intervals", load_sql(DOMAIN, "funding_intervals"))
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


def _intervals(conn: Any) -> pd.DataFrame:
    return conn.execute("SELECT * FROM funding_intervals").df()


# -- funding_predictions --------------------------------------------------------------------------------
@asset(
    group_name=GROUP,
    partitions_def=HOURLY,
    backfill_policy=SINGLE_RUN,
    pool=POOL,
    owners=OWNERS,
    kinds={"duckdb"},
    deps=["raw_funding", "funding_intervals"],
    automation_condition=FOLLOW_UPSTREAM,
    description=(
        "Predicted funding rates as they were known at each capture time (point in time: a backtest reading "
        "rows with ts <= t uses only what was knowable at t). Hourly on ts."
    ),
    metadata={
        "dagster/column_schema": column_schema(PREDICTION_COLUMNS),
        "natural_key": "exchange, symbol, ts, funding_ts",
    },
)
def funding_predictions(
    context: AssetExecutionContext, duckdb: DuckDBResource, data_dir: DataDirResource
) -> MaterializeResult:
    window = partition_window(context)
    with _inputs(duckdb, data_dir, ("raw_funding",), ("funding_intervals",)) as conn:
        predicted = _frame(conn, "predicted_inputs", window.params())
        frame = core_funding.point_in_time_predictions(predicted, _intervals(conn))
        rows = _write_window(conn, "funding_predictions", "predictions_frame", frame, window, "ts")
    missing = int(frame["interval_h"].isna().sum()) if len(frame) else 0
    if missing:
        context.log.warning(f"funding_predictions {window}: {missing} rows without a known interval (APR NULL)")
    return MaterializeResult(metadata={"window": str(window), "rows": rows, "rows_without_interval": missing})


# -- funding_rates --------------------------------------------------------------------------------------
def forecast_plot(rates: pd.DataFrame) -> MetadataValue | None:
    have = rates.dropna(subset=["forecast_error"])
    if have.empty:
        return None
    fig, ax = _figure()
    for (exchange, symbol), group in have.groupby(["exchange", "symbol"]):
        ax.plot(
            group["funding_ts"], group["forecast_error"] * 1e4, marker=".", linewidth=0.8, label=f"{exchange} {symbol}"
        )
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylabel("settled - predicted (bps per interval)")
    ax.set_title("Funding forecast error")
    ax.legend(fontsize=7)
    fig.autofmt_xdate()
    return png_markdown(fig, "Funding forecast error (settled - last prediction before settlement)")


@asset(
    group_name=GROUP,
    partitions_def=HOURLY,
    backfill_policy=SINGLE_RUN,
    pool=POOL,
    owners=OWNERS,
    kinds={"duckdb"},
    deps=["raw_funding", "funding_history", "funding_intervals", "funding_predictions"],
    automation_condition=FOLLOW_UPSTREAM,
    description=(
        "One row per settlement: the settled rate, its rate per hour and APR with the interval in force "
        "(rate x 8760 / interval_h), the last prediction known before settlement and the forecast error "
        "(plotted in the metadata). Keys round venue jitter to the interval grid; the raw time is kept."
    ),
    metadata={"dagster/column_schema": column_schema(RATE_COLUMNS), "natural_key": "exchange, symbol, funding_ts"},
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
        rows = _write_window(conn, "funding_rates", "rates_frame", rates, window, "funding_ts")
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
        metadata["summary"] = md_table(summary.reset_index())
    return MaterializeResult(metadata=metadata)


# -- basis ----------------------------------------------------------------------------------------------
@asset(
    group_name=GROUP,
    partitions_def=HOURLY,
    backfill_policy=SINGLE_RUN,
    pool=POOL,
    owners=OWNERS,
    kinds={"duckdb"},
    deps=["raw_tickers", "funding_intervals"],
    automation_condition=FOLLOW_UPSTREAM,
    description=(
        "Perp vs spot on the same venue at 1m and 1h (last quote in each bucket): basis and mark-index in bps "
        "and annualized with the funding interval in force, plus the half-spreads a backtest charges."
    ),
    metadata={"dagster/column_schema": column_schema(BASIS_COLUMNS), "natural_key": "exchange, symbol, timeframe, ts"},
)
def basis(context: AssetExecutionContext, duckdb: DuckDBResource, data_dir: DataDirResource) -> MaterializeResult:
    window = partition_window(context)
    with _inputs(duckdb, data_dir, ("raw_tickers",), ("funding_intervals",)) as conn:
        intervals = _intervals(conn)
        frames = []
        for timeframe, seconds in core_basis.TIMEFRAMES_S.items():
            quotes = _frame(conn, "basis_quotes", window.params(bucket_ms=seconds * 1000))
            pairs = core_basis.pair_instruments(quotes[["exchange", "symbol"]].drop_duplicates())
            frames.append(core_basis.compute_basis(quotes, pairs, intervals, timeframe))
        frame = pd.concat(frames, ignore_index=True)
        rows = _write_window(conn, "basis", "basis_frame", frame, window, "ts")
    metadata: dict[str, Any] = {"window": str(window), "rows": rows}
    hourly = frame[frame["timeframe"] == "1h"] if len(frame) else frame
    if len(hourly):
        metadata["basis_1h"] = md_table(
            hourly.groupby(["exchange", "symbol"])
            .agg(
                basis_bps=("basis_bps", "mean"),
                basis_apr=("basis_apr", "mean"),
                perp_half_spread_bps=("perp_half_spread_bps", "mean"),
                spot_half_spread_bps=("spot_half_spread_bps", "mean"),
            )
            .reset_index()
        )
    return MaterializeResult(metadata=metadata)


# -- funding_spreads ------------------------------------------------------------------------------------
@asset(
    group_name=GROUP,
    partitions_def=HOURLY,
    backfill_policy=SINGLE_RUN,
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
    automation_condition=FOLLOW_UPSTREAM,
    description=(
        "For each underlying, every pair of venues hour by hour: funding per hour of each (settlements spread "
        "over the hours they accrued, the last prediction for hours not settled yet), the APR differential and "
        "the 1h basis differential. 8h and 1h venues compare on this common hourly grid."
    ),
    metadata={
        "dagster/column_schema": column_schema(SPREAD_COLUMNS),
        "natural_key": "underlying, exchange_a, symbol_a, exchange_b, symbol_b, ts",
    },
)
def funding_spreads(
    context: AssetExecutionContext, duckdb: DuckDBResource, data_dir: DataDirResource
) -> MaterializeResult:
    window = partition_window(context)
    with _inputs(duckdb, data_dir, (), ("funding_rates", "funding_predictions", "basis")) as conn:
        rates = _frame(conn, "spread_inputs_rates", window.params())
        predictions = _frame(conn, "spread_inputs_predictions", window.params())
        basis_1h = _frame(conn, "spread_inputs_basis", window.params())
        hourly = core_spreads.hourly_rates(rates, predictions, pd.Timestamp(window.start), pd.Timestamp(window.end))
        frame = core_spreads.funding_spreads(hourly, basis_1h)
        rows = _write_window(conn, "funding_spreads", "spreads_frame", frame, window, "ts")
    metadata: dict[str, Any] = {"window": str(window), "rows": rows}
    if len(frame):
        metadata["predicted_share"] = float((frame["is_predicted_a"] | frame["is_predicted_b"]).mean())
        metadata["mean_spreads"] = md_table(
            frame.groupby(["underlying", "exchange_a", "exchange_b"])["funding_spread_apr"]
            .agg(["mean", "min", "max"])
            .reset_index()
        )
    return MaterializeResult(metadata=metadata)


# -- opportunities --------------------------------------------------------------------------------------
class OpportunitiesConfig(Config):
    horizon_h: int = Field(default=168, description="holding horizon the net carry is computed over, hours")
    lookback_h: int = Field(default=336, description="hours of history the AR(1) and stats use")
    min_obs: int = Field(default=24, description="fewest hours of history a candidate needs")
    taker_fees_bps: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description=(
            "taker fees in bps per venue and market type ({venue: {spot: x, swap: y}}), merged over the documented "
            "defaults (core.opportunities.DEFAULT_TAKER_FEES_BPS); '*' is any other venue"
        ),
    )


def opportunities_plot(frame: pd.DataFrame) -> MetadataValue | None:
    if frame.empty:
        return None
    top = frame.head(15).iloc[::-1]
    fig, ax = _figure(8, 0.35 * len(top) + 1.2)
    labels = [
        f"{r.strategy} {r.underlying}: L {r.long_exchange} / S {r.short_exchange}" for r in top.itertuples(index=False)
    ]
    colors = ["tab:green" if v > 0 else "tab:red" for v in top["net_carry_apr"]]
    ax.barh(labels, top["net_carry_apr"] * 100, color=colors)
    ax.set_xlabel("net carry APR % (after round-trip fees and half-spreads)")
    ax.tick_params(axis="y", labelsize=7)
    return png_markdown(fig, "Top carry opportunities")


@asset(
    group_name=GROUP,
    pool=POOL,
    owners=OWNERS,
    kinds={"duckdb"},
    deps=["funding_spreads", "funding_rates", "funding_predictions", "basis"],
    automation_condition=FOLLOW_UPSTREAM,
    description=(
        "Ranked carry trades as of the latest hour: cash-and-carry on one venue and perp-perp across venues, "
        "with expected carry over a configurable horizon (mean AR(1) forecast), net of round-trip taker fees and "
        "half-spreads, break-even hours, and persistence (AR(1) half-life, share of hours with the same sign)."
    ),
    metadata={
        "dagster/column_schema": column_schema(OPPORTUNITY_COLUMNS),
        "natural_key": "as_of, strategy, long_exchange, long_symbol, short_exchange, short_symbol",
    },
)
def opportunities(
    context: AssetExecutionContext, config: OpportunitiesConfig, duckdb: DuckDBResource, data_dir: DataDirResource
) -> MaterializeResult:
    fees = core_opps.FeeSchedule({**core_opps.DEFAULT_TAKER_FEES_BPS, **config.taker_fees_bps})
    with _inputs(duckdb, data_dir, (), ("funding_rates", "funding_predictions", "basis", "opportunities")) as conn:
        # The last hour with carry data: a settlement at T pays for the hour before T; a prediction known
        # at t is the rate of the hour containing t.
        latest = conn.execute(
            "SELECT greatest((SELECT max(funding_ts) - INTERVAL 1 HOUR FROM funding_rates), "
            "(SELECT date_trunc('hour', max(ts)) FROM funding_predictions))"
        ).fetchall()[0][0]
        if latest is None:
            context.log.warning("opportunities: no funding data yet; the table is left empty")
            frame = pd.DataFrame(columns=core_opps.OPPORTUNITY_COLUMNS)
        else:
            as_of = pd.Timestamp(latest).floor("h")
            end = as_of + pd.Timedelta(hours=1)
            start = end - pd.Timedelta(hours=config.lookback_h)
            params = Window(start.to_pydatetime(), end.to_pydatetime()).params()
            rates = _frame(conn, "opportunity_inputs_rates", params)
            predictions = _frame(conn, "spread_inputs_predictions", params)
            costs = _frame(conn, "opportunity_inputs_costs", params)
            hourly = core_spreads.hourly_rates(rates, predictions, start, end)
            frame = core_opps.rank_opportunities(hourly, costs, fees, config.horizon_h, as_of, config.min_obs)
        with registered(conn, "opportunities_frame", frame):
            rows = replace_all(conn, "opportunities", load_sql(DOMAIN, "opportunities"))
    metadata: dict[str, Any] = {"rows": rows, "horizon_h": config.horizon_h}
    if len(frame):
        metadata["best_net_carry_apr"] = float(frame["net_carry_apr"].iloc[0])
        metadata["ranking"] = md_table(
            frame[
                [
                    "rank",
                    "strategy",
                    "underlying",
                    "long_exchange",
                    "short_exchange",
                    "net_carry_apr",
                    "break_even_h",
                    "half_life_h",
                    "same_sign_share",
                ]
            ],
            20,
        )
        plot = opportunities_plot(frame)
        if plot is not None:
            metadata["top_opportunities"] = plot
    return MaterializeResult(metadata=metadata)


FUNDING_ASSETS = [
    funding_history,
    funding_intervals,
    funding_predictions,
    funding_rates,
    basis,
    funding_spreads,
    opportunities,
]
