"""Every warehouse table once: its domain, natural key, partitioning and columns (name, kind, description).

The assets publish these columns as their column schema, create a table empty from them when no run has made it
yet, and the tests hold them against the SQL files' output and against the tables described in docs/architecture.md.
The raw tables are derived from the landed streams (`schema.py`): a stream field is a raw column. Kinds: string,
timestamp (UTC, microseconds), float64, int64, int32, int8, bool, float64[] (a list of floats: a book's levels).
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from . import schema
from .table_spec import DUCKDB_TYPES, KINDS, PANDAS_DTYPES, PARTITIONS, Column, Table
from .table_spec import columns as _columns

__all__ = ["DUCKDB_TYPES", "KINDS", "PARTITIONS", "Column", "Table"]


# -- raw: one table per landed stream, columns derived from its record dtype ----------------------------
_ARROW_KINDS = {
    pa.int64(): "int64",
    pa.int32(): "int32",
    pa.int8(): "int8",
    pa.float64(): "float64",
    pa.list_(pa.float64()): "float64[]",
}
_IDENTITY = ("ts_ms", "recv_ts_ms", "instrument_id", "exchange", "symbol")


def raw_columns(stream: str) -> tuple[Column, ...]:
    """A raw table's columns from the stream's landed schema: `ts` (TIMESTAMP from ts_ms) first, then the
    identity columns (times, instrument, names), then the stream's values, as the raw SQL selects them."""
    fields = {f.name: f.type for f in schema.arrow_schema(stream)}
    order = [n for n in _IDENTITY if n in fields] + [n for n in fields if n not in _IDENTITY]
    rows = [("ts", "timestamp", "event time (UTC, microseconds), from ts_ms")]
    if stream == "funding":
        rows.append(("funding_ts", "timestamp", "the settlement the rate applies to (UTC)"))
    for name in order:
        kind = "string" if pa.types.is_string(fields[name]) else _ARROW_KINDS[fields[name]]
        doc = schema.RAW_DOC_OVERRIDES.get((stream, name)) or schema.FIELD_DOCS.get((stream, name))
        doc = doc or schema.RAW_DOCS[name]
        rows.append((name, kind, doc))
    return _columns(rows)


def _raw(name: str, stream: str, key: tuple[str, ...], description: str) -> Table:
    return Table(name, "raw", key, "hourly", raw_columns(stream), stream=stream, description=description)


RAW = [
    _raw(
        "raw_trades",
        "trades",
        ("exchange", "symbol", "trade_id"),
        "Every public trade captured, one row per venue trade (deduplicated on trade id).",
    ),
    _raw(
        "raw_tickers",
        "tickers",
        ("exchange", "symbol", "ts_ms"),
        "Best bid/ask snapshots with mark and index prices (NaN where a venue has none).",
    ),
    _raw(
        "raw_funding",
        "funding",
        ("exchange", "symbol", "funding_ts_ms", "ts_ms", "is_settled"),
        "Funding observations: predicted rates as streamed (is_settled=0) and settled rates (1).",
    ),
    _raw(
        "raw_ohlcv",
        "ohlcv",
        ("exchange", "symbol", "timeframe_s", "ts_ms"),
        "Venue candles as streamed (the last update of each bar wins).",
    ),
    _raw(
        "raw_order_book",
        "order_book",
        ("exchange", "symbol", "ts_ms"),
        "L2 order-book snapshots, the top levels per side, sampled (one per capture.book_interval_s).",
    ),
    _raw(
        "raw_open_interest",
        "open_interest",
        ("exchange", "symbol", "ts_ms"),
        "Perps' open interest as the venue gives it (polled: one row per new value).",
    ),
    _raw(
        "raw_liquidations",
        "liquidations",
        ("exchange", "symbol", "liquidation_id"),
        "Perps' public liquidation prints, one row per print (the side of the liquidated position).",
    ),
    _raw(
        "capture_events",
        "capture_events",
        (),
        "What happened while capturing: gaps, reconnects, quarantined messages, drops, stalls.",
    ),
    _raw(
        "capture_stats",
        "capture_stats",
        ("node", "rank", "stream", "ts_ms"),
        "The capture job's throughput samples per rank and stream (ring fill, flush latency, drops).",
    ),
]
INSTRUMENTS = Table(
    "instruments",
    "raw",
    ("exchange", "symbol"),
    "none",
    _columns(
        [
            ("instrument_id", "int32", "stable small id (instruments.json)"),
            ("exchange", "string", "ccxt exchange id"),
            ("symbol", "string", "ccxt unified symbol"),
            ("type", "string", "spot, swap (perpetual) or future (dated)"),
            ("base", "string", "ccxt base, e.g. 1000PEPE"),
            ("quote", "string", "quote currency"),
            ("settle", "string", "settlement currency, null for spot"),
            ("underlying", "string", "asset priced, multiplier removed"),
            ("multiplier", "float64", "units of underlying per base unit"),
            ("contract_size", "float64", "ccxt contractSize: base (linear) or quote (inverse) units per contract"),
            ("venue_symbol", "string", "the exchange's own market id"),
            ("inverse", "bool", "settled in the base coin; contracts worth contract_size quote units"),
            ("expiry", "timestamp", "dated futures: expiry (UTC), NULL otherwise"),
        ]
    ),
    frame="registry_frame",
)

# -- market ---------------------------------------------------------------------------------------------
_BAR = [
    ("ts", "timestamp", "bar open time (UTC)"),
    ("instrument_id", "int32", "registry id (1:1 with exchange + symbol; the grouping key)"),
    ("exchange", "string", "ccxt exchange id"),
    ("symbol", "string", "ccxt unified symbol"),
    ("open", "float64", "first price"),
    ("high", "float64", "highest price"),
    ("low", "float64", "lowest price"),
    ("close", "float64", "last price"),
    ("volume", "float64", "base units traded"),
    ("trade_count", "int64", "trades in the bar"),
    (
        "quote_volume",
        "float64",
        "quote units traded: trades' cost (else price x amount), venue bars' own; NULL unknown",
    ),
    ("taker_buy_volume", "float64", "base units bought by takers (trades' side, klines' taker-buy); NULL unknown"),
]
_RESAMPLED = _columns(
    [
        *_BAR,
        ("filled_minutes", "int64", "minutes of the bar that were filled"),
        ("minutes", "int64", "minutes the bar covers (60 for a whole hour)"),
        ("is_filled", "bool", "every minute of the bar was filled"),
        ("source", "string", "the finer bar table it was resampled from, or venue (the venue's own bar: klines)"),
    ]
)
_BAR_KEY = ("exchange", "symbol", "ts")
_HOUR_SERIES = [
    ("exchange", "string", "ccxt exchange id"),
    ("symbol", "string", "ccxt unified symbol"),
    ("ts", "timestamp", "hour (UTC)"),
]
MARKET = [
    Table(
        "ohlcv_1m",
        "market",
        _BAR_KEY,
        "hourly",
        _columns(
            [
                *_BAR,
                ("source", "string", "trades | venue (venue candle, no trades captured) | filled"),
                ("is_filled", "bool", "an empty minute: previous close carried, zero volume"),
            ]
        ),
    ),
    Table("ohlcv_5m", "market", _BAR_KEY, "hourly", _RESAMPLED),
    Table("ohlcv_1h", "market", _BAR_KEY, "hourly", _RESAMPLED),
    Table("ohlcv_8h", "market", _BAR_KEY, "daily", _RESAMPLED),
    Table("ohlcv_1d", "market", _BAR_KEY, "daily", _RESAMPLED),
    Table(
        "indicators",
        "market",
        _BAR_KEY,
        "hourly",
        _columns(
            [
                ("exchange", "string", "ccxt exchange id"),
                ("symbol", "string", "ccxt unified symbol"),
                ("ts", "timestamp", "1h bar open time (UTC)"),
                ("close", "float64", "1h close"),
                ("sma", "float64", "simple moving average of close (sma_period)"),
                ("ema", "float64", "exponential moving average of close (ema_period)"),
                ("rsi", "float64", "relative strength index 0-100 (rsi_period)"),
                ("macd", "float64", "MACD line (macd_fast, macd_slow)"),
                ("macd_signal", "float64", "MACD signal (macd_signal)"),
                ("macd_hist", "float64", "MACD histogram"),
                ("bb_upper", "float64", "Bollinger upper band (bb_period, bb_stddev)"),
                ("bb_middle", "float64", "Bollinger middle band"),
                ("bb_lower", "float64", "Bollinger lower band"),
                ("atr", "float64", "average true range (atr_period)"),
            ]
        ),
        frame="indicator_values",  # an Arrow table keyed by instrument_id and ts_us (core.indicators)
    ),
    Table(
        "book_depth",
        "market",
        ("exchange", "symbol", "ts", "notional_usd"),
        "hourly",
        _columns(
            [
                ("exchange", "string", "ccxt exchange id"),
                ("symbol", "string", "ccxt unified symbol"),
                ("ts", "timestamp", "minute (UTC)"),
                ("notional_usd", "float64", "the notional the walk costs are for (quote currency)"),
                ("snapshots", "int64", "book snapshots captured in the minute"),
                ("mid", "float64", "mean mid"),
                ("spread_bps", "float64", "mean best ask - best bid, bps of the mid"),
                *(
                    (f"{side}_depth_{b}bps_usd", "float64", f"mean {side} notional within {b} bp of the mid")
                    for b in (1, 5, 10, 25)
                    for side in ("bid", "ask")
                ),
                ("buy_cost_bps", "float64", "mean VWAP cost of buying the notional (walking the asks), bps of mid"),
                ("sell_cost_bps", "float64", "mean VWAP cost of selling the notional (walking the bids), bps of mid"),
                ("buy_filled_share", "float64", "share of the minute's books deep enough to buy the notional"),
                ("sell_filled_share", "float64", "share of the minute's books deep enough to sell the notional"),
            ]
        ),
        frame="book_depth_frame",  # core.book_depth.book_depth_frame of the window's raw_order_book rows
        description="Order-book depth within 1/5/10/25 bp of mid and book-walk costs per notional, per minute.",
    ),
    Table(
        "open_interest",
        "market",
        _BAR_KEY,
        "hourly",
        _columns(
            [
                *_HOUR_SERIES,
                ("samples", "int64", "open-interest values captured in the hour"),
                ("last_ts", "timestamp", "time of the hour's last value (UTC)"),
                ("oi_contracts", "float64", "last open interest, contracts (ccxt openInterestAmount)"),
                ("oi_amount", "float64", "last open interest, base units (NaN for inverse contracts)"),
                ("oi_value", "float64", "last open interest value, quote currency (NaN where the venue gives none)"),
                ("oi_amount_low", "float64", "lowest open interest of the hour, base units"),
                ("oi_amount_high", "float64", "highest open interest of the hour, base units"),
                ("oi_amount_change", "float64", "oi_amount minus the previous captured hour's last (within 24 h)"),
                ("oi_amount_change_pct", "float64", "oi_amount_change, % of the previous hour's last"),
                ("oi_value_change", "float64", "oi_value minus the previous captured hour's last, quote currency"),
                ("oi_notional", "float64", "last open interest, quote: oi_value, else oi_amount x its minute's close"),
                ("notional_source", "string", "venue (the venue's value), close (ohlcv_1m's close), NULL: neither"),
            ]
        ),
        description="Per perp and hour: the last open interest captured and its change since the previous hour.",
    ),
    Table(
        "liquidations",
        "market",
        _BAR_KEY,
        "hourly",
        _columns(
            [
                *_HOUR_SERIES,
                ("prints", "int64", "liquidation prints captured in the hour"),
                ("long_prints", "int64", "prints of liquidated longs"),
                ("short_prints", "int64", "prints of liquidated shorts"),
                ("long_notional", "float64", "liquidated longs' notional, quote currency (0 without a print)"),
                ("short_notional", "float64", "liquidated shorts' notional, quote currency"),
                ("long_amount", "float64", "liquidated longs, base units"),
                ("short_amount", "float64", "liquidated shorts, base units"),
                ("largest_notional", "float64", "the hour's largest print, quote currency"),
            ]
        ),
        description="Per perp and hour with prints: liquidation count and long/short notional (no print, no row).",
    ),
]

# -- funding --------------------------------------------------------------------------------------------
FUNDING = [
    Table(
        "funding_history",
        "funding",
        ("exchange", "symbol", "funding_ts"),
        "daily",
        _columns(
            [
                ("exchange", "string", "ccxt exchange id"),
                ("symbol", "string", "ccxt unified symbol (perp)"),
                ("funding_ts", "timestamp", "settlement time rounded to the hour (key)"),
                ("funding_ts_ms", "int64", "settlement time as the venue gave it, epoch ms (with its jitter)"),
                ("funding_rate", "float64", "settled rate, fraction per interval"),
                ("interval_h", "float64", "interval reported with the entry, NaN if the venue gives none"),
                ("mark_price", "float64", "mark price at settlement where given"),
                ("source", "string", "the source kind that served it (sim, replay, live, wire)"),
            ]
        ),
        frame="history_frame",
    ),
    Table(
        "borrow_rates",
        "funding",
        ("exchange", "currency", "ts"),
        "daily",
        _columns(
            [
                ("exchange", "string", "ccxt exchange id"),
                ("currency", "string", "ccxt currency code borrowed (the spot base a reverse carry sells)"),
                ("ts", "timestamp", "when the venue published the rate (key): in force until the next row's ts"),
                ("ts_ms", "int64", "the same, epoch ms as the venue gave it"),
                ("rate", "float64", "the venue's rate per its period (ccxt's `rate`), fraction"),
                ("period_h", "float64", "the period the rate is quoted per, hours (binance 24, bybit/okx 1)"),
                ("rate_per_h", "float64", "rate per hour: rate / period_h"),
                ("borrow_apr", "float64", "rate_per_h x 8760 (simple interest, as venues charge it)"),
                ("source", "string", "the source kind that served it (sim, replay, live, wire)"),
            ]
        ),
        frame="borrow_frame",
        description="Spot-margin borrow rates (fetch_borrow_rate_history), point in time: a rate holds until the next.",
    ),
    Table(
        "funding_intervals",
        "funding",
        ("exchange", "symbol", "valid_from"),
        "none",
        _columns(
            [
                ("exchange", "string", "ccxt exchange id"),
                ("symbol", "string", "ccxt unified symbol (perp)"),
                ("valid_from", "timestamp", "first settlement (UTC) this interval applies to"),
                ("valid_to", "timestamp", "start of the next span, NULL while in force"),
                ("interval_h", "float64", "funding interval, hours"),
                ("cap", "float64", "max funding rate per interval where known, else NULL"),
                ("floor", "float64", "min funding rate per interval where known, else NULL"),
                ("source", "string", "reported (stream/history/registry/market) or inferred (settlement spacing)"),
            ]
        ),
        frame="intervals_frame",
    ),
    Table(
        "funding_predictions",
        "funding",
        ("exchange", "symbol", "ts", "funding_ts"),
        "hourly",
        _columns(
            [
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
        ),
        frame="predictions_frame",
    ),
    Table(
        "funding_rates",
        "funding",
        ("exchange", "symbol", "funding_ts"),
        "hourly",
        _columns(
            [
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
        ),
        frame="rates_frame",
    ),
    Table(
        "basis",
        "funding",
        ("exchange", "symbol", "timeframe", "ts"),
        "hourly",
        _columns(
            [
                ("exchange", "string", "ccxt exchange id"),
                ("symbol", "string", "perp symbol"),
                ("timeframe", "string", "1m or 1h; 8h from the venue's 8h bars only (key)"),
                ("ts", "timestamp", "bucket start; values are the last quote in the bucket (key)"),
                ("underlying", "string", "asset priced, multiplier removed"),
                ("spot_symbol", "string", "the spot leg on the same venue"),
                *[
                    (c, "float64", c.replace("_", " "))
                    for c in ("spot_bid", "spot_ask", "spot_mid", "perp_bid", "perp_ask")
                ],
                ("perp_mid", "float64", "perp mid"),
                ("mark_price", "float64", "perp mark price"),
                ("index_price", "float64", "perp index price"),
                ("basis_bps", "float64", "(perp_mid / spot_mid - 1) x 1e4"),
                ("mark_index_bps", "float64", "(mark / index - 1) x 1e4"),
                ("interval_h", "float64", "funding interval in force"),
                ("basis_apr", "float64", "basis fraction x 8760 / premium period (interval; hyperliquid 8 h)"),
                ("spot_half_spread_bps", "float64", "(ask - bid) / 2 / mid x 1e4 of the spot leg"),
                ("perp_half_spread_bps", "float64", "(ask - bid) / 2 / mid x 1e4 of the perp"),
                ("source", "string", "quotes (last tickers of the bucket) | bars (spot and perp bar closes)"),
            ]
        ),
        frame="basis_frame",
    ),
    Table(
        "funding_spreads",
        "funding",
        ("underlying", "exchange_a", "symbol_a", "exchange_b", "symbol_b", "ts"),
        "hourly",
        _columns(
            [
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
        ),
        frame="spreads_frame",
    ),
    Table(
        "opportunities",
        "funding",
        ("as_of", "strategy", "long_exchange", "long_symbol", "short_exchange", "short_symbol"),
        "none",
        _columns(
            [
                ("as_of", "timestamp", "the hour the ranking is for"),
                ("strategy", "string", "cash_carry | perp_perp"),
                ("underlying", "string", "asset"),
                ("long_exchange", "string", "venue of the long leg"),
                ("long_symbol", "string", "long leg"),
                ("short_exchange", "string", "venue of the short leg"),
                ("short_symbol", "string", "short leg"),
                ("current_apr", "float64", "carry of the latest hour, in the trade's direction"),
                ("mean_apr", "float64", "mean carry over the look-back"),
                ("run_apr", "float64", "mean carry over the run (hours on the latest's side of the mean)"),
                ("run_h", "int32", "hours of that run"),
                ("recent_median_apr", "float64", "median carry of the last recent_h hours: the forecast's cap"),
                ("expected_carry_apr", "float64", "carry expected over the horizon: shrunk to the mean, capped"),
                ("entry_cost_bps", "float64", "round-trip taker fees + half-spreads of both legs"),
                ("borrow_apr", "float64", "spot borrow rate a reverse cash-and-carry pays (else 0)"),
                ("borrow_source", "string", "captured: borrow_rates in force at as_of; configured: the config's; none"),
                ("net_carry_apr", "float64", "expected carry minus borrow and the cost spread over the horizon"),
                ("horizon_h", "int32", "holding horizon, hours"),
                ("break_even_h", "float64", "hours of expected carry that pay the entry cost"),
                ("ar1_phi", "float64", "AR(1) coefficient of the hourly carry"),
                ("half_life_h", "float64", "half-life of the carry's mean reversion, hours"),
                ("same_sign_share", "float64", "share of look-back hours with the trade's sign"),
                ("n_obs", "int32", "hours in the look-back"),
                ("forecast_mae_apr", "float64", "mean absolute error of this forecast at past hours of the series"),
                ("forecast_max_err_apr", "float64", "its largest absolute error there"),
                ("last_hour_mae_apr", "float64", "mean absolute error of the AR(1) forecast from the last hour"),
                ("last_hour_max_err_apr", "float64", "its largest absolute error"),
                ("error_origins", "int32", "past hours the forecast errors were measured at"),
                ("cost_source", "string", "book: entry cost walked on both legs' books; flat: fees + half-spreads"),
                (
                    "capacity_usd",
                    "float64",
                    "largest notional per leg whose round trip costs at most the capacity "
                    "share of the expected carry (NaN without books)",
                ),
                ("capacity_net_carry_apr", "float64", "net carry at capacity_usd (NaN when it is 0 or unknown)"),
                ("capacity_capped", "bool", "the captured depth ran out first: capacity_usd is a lower bound"),
                ("rank", "int32", "1 = best net carry"),
            ]
        ),
        frame="opportunities_frame",
    ),
]

# -- alerts ---------------------------------------------------------------------------------------------
ALERTS = [
    Table(
        "alerts",
        "alerts",
        ("alert_id",),
        "none",
        _columns(
            [
                ("alert_id", "string", "hash of rule, subject and ts (key)"),
                ("ts", "timestamp", "when the condition was observed (data time, UTC)"),
                ("severity", "string", "info | warning | critical"),
                (
                    "rule",
                    "string",
                    "funding_spread | carry | basis_dislocation | stream_gap | stream_stale | asset_check_failed",
                ),
                ("subject", "string", "what the alert is about (pair, instrument, stream, check)"),
                ("value", "float64", "the observed value"),
                ("threshold", "float64", "the limit it crossed"),
                ("message", "string", "human-readable summary"),
            ]
        ),
    ),
    Table(
        "alert_deliveries",
        "alerts",
        ("alert_id", "channel"),
        "none",
        _columns(
            [
                ("alert_id", "string", "the alert delivered"),
                ("channel", "string", "log | jsonl | webhook"),
                ("ts", "timestamp", "when the delivery finished (UTC)"),
                ("ok", "bool", "delivered"),
                ("attempts", "int32", "attempts made (retries with doubling back-off)"),
                ("error", "string", "the last error, NULL when delivered"),
            ]
        ),
    ),
]

# -- backtest and risk ----------------------------------------------------------------------------------
_METRICS = [
    ("total_return", "float64", "final / initial equity - 1"),
    ("annual_return", "float64", "annualized return"),
    ("volatility", "float64", "annualized volatility of bar returns"),
    ("sharpe", "float64", "annualized Sharpe ratio"),
    ("sortino", "float64", "annualized Sortino ratio"),
    ("max_drawdown", "float64", "largest fall from a peak, fraction"),
    ("calmar", "float64", "annual return / max drawdown"),
    ("time_in_market", "float64", "share of bars with an open position"),
    ("turnover", "float64", "traded notional / capital"),
    ("trade_count", "float64", "leg trades"),
    ("avg_holding_h", "float64", "mean hours per held episode"),
]
_RUN_ID = ("run_id", "string", "the Dagster run that produced it (key)")
BACKTEST = [
    Table(
        "backtest_runs",
        "backtest",
        ("run_id",),
        "none",
        _columns(
            [
                _RUN_ID,
                ("created_at", "timestamp", "when the run finished (UTC)"),
                ("strategy", "string", "cash_carry | perp_perp"),
                ("params_json", "string", "the run's config and window, JSON"),
                ("start_ts", "timestamp", "first bar"),
                ("end_ts", "timestamp", "last bar"),
                ("n_bars", "int64", "bars simulated"),
                ("n_pairs", "int64", "pairs traded"),
                ("capital_usd", "float64", "starting capital"),
                ("sizing", "string", "even (capital split evenly over the pairs) | capacity (capped by the books)"),
                ("capital_unused_usd", "float64", "mean over bars in market of the capital the sizing left unused"),
                ("final_equity_usd", "float64", "equity after the last bar"),
                ("drawdown_stop_ts", "timestamp", "when the drawdown stop closed the book, NULL if it never did"),
                *_METRICS,
                ("liquidations", "float64", "legs liquidated"),
                ("stops", "float64", "risk stops taken"),
                ("basis_pnl", "float64", "price PnL of both legs, USD"),
                ("funding_pnl", "float64", "funding received minus paid, USD"),
                ("borrow_cost", "float64", "spot borrow paid (reverse carry), USD"),
                ("fees", "float64", "trading fees, USD"),
                ("slippage", "float64", "half-spread and slippage cost, USD"),
                ("liquidation_loss", "float64", "wallets lost to liquidation, USD"),
            ]
        ),
        frame="runs_frame",
    ),
    Table(
        "backtest_equity",
        "backtest",
        ("run_id", "ts"),
        "none",
        _columns(
            [
                _RUN_ID,
                ("ts", "timestamp", "bar time (key)"),
                ("equity", "float64", "equity, USD"),
                ("drawdown", "float64", "fall from the running peak, fraction"),
                ("basis_pnl", "float64", "price PnL in the bar, USD"),
                ("funding_pnl", "float64", "funding in the bar, USD"),
                ("borrow_cost", "float64", "borrow paid in the bar, USD"),
                ("fees", "float64", "fees paid in the bar, USD"),
                ("slippage", "float64", "slippage paid in the bar, USD"),
                ("liquidation_loss", "float64", "liquidation losses in the bar, USD"),
                ("gross_exposure_usd", "float64", "sum of |notional| of the open legs"),
                ("in_market", "bool", "a position is open"),
            ]
        ),
        frame="equity_frame",
    ),
    Table(
        "backtest_trades",
        "backtest",
        ("run_id", "trade_no"),
        "none",
        _columns(
            [
                _RUN_ID,
                ("trade_no", "int64", "order of the fill in the run (key)"),
                ("ts", "timestamp", "fill time"),
                ("pair", "string", "the pair traded"),
                ("leg", "string", "which leg"),
                ("exchange", "string", "ccxt exchange id"),
                ("symbol", "string", "ccxt unified symbol"),
                ("side", "string", "buy | sell"),
                ("qty", "float64", "base units"),
                ("price", "float64", "fill price"),
                ("notional_usd", "float64", "qty x price"),
                ("fee_usd", "float64", "fee paid"),
                ("slippage_usd", "float64", "half-spread and slippage paid"),
                ("reason", "string", "entry | exit | flip | rebalance | max_hold | stop | liquidation | drawdown"),
            ]
        ),
        frame="trades_frame",
    ),
    Table(
        "backtest_positions",
        "backtest",
        ("run_id", "pair", "entry_ts"),
        "none",
        _columns(
            [
                _RUN_ID,
                ("pair", "string", "the pair (key)"),
                ("direction", "int32", "+1 or -1: which leg is long"),
                ("entry_ts", "timestamp", "entry (key)"),
                ("exit_ts", "timestamp", "exit, NULL while open"),
                ("hours", "float64", "hours held"),
                ("units", "float64", "base units per leg"),
                ("entry_price_a", "float64", "entry price of leg a"),
                ("entry_price_b", "float64", "entry price of leg b"),
                ("pnl_usd", "float64", "PnL of the round trip"),
                ("funding_usd", "float64", "funding of the round trip"),
                ("exit_reason", "string", "why it closed"),
                (
                    "size_source",
                    "string",
                    "what sized it: capacity (the books) | capital (the even share) | even (no book)",
                ),
                ("capital_unused_usd", "float64", "the pair's capital share its size left unused, USD"),
            ]
        ),
        frame="positions_frame",
    ),
    Table(
        "backtest_book",
        "backtest",
        ("run_id", "pair", "leg"),
        "none",
        _columns(
            [
                _RUN_ID,
                ("ts", "timestamp", "the run's last bar"),
                ("pair", "string", "the pair (key)"),
                ("leg", "string", "which leg (key)"),
                ("exchange", "string", "ccxt exchange id"),
                ("symbol", "string", "ccxt unified symbol"),
                ("underlying", "string", "asset priced"),
                ("kind", "string", "spot | perp"),
                ("units", "float64", "signed base units"),
                ("entry_price", "float64", "entry price"),
                ("mark_price", "float64", "price at the last bar"),
                ("wallet_usd", "float64", "isolated margin wallet"),
                ("notional_usd", "float64", "|units| x mark"),
                ("mmr", "float64", "maintenance margin rate"),
                ("taker_fee", "float64", "taker fee rate of the venue"),
                ("leverage", "float64", "leverage of the leg"),
            ]
        ),
        frame="book_frame",
    ),
    Table(
        "backtest_sweep",
        "backtest",
        ("run_id", "part", "fold", "point"),
        "none",
        _columns(
            [
                _RUN_ID,
                ("created_at", "timestamp", "when the sweep finished (UTC)"),
                ("strategy", "string", "cash_carry | perp_perp"),
                ("part", "string", "full | train | test | stitched (key)"),
                ("fold", "int64", "walk-forward fold; -1 for full and stitched (key)"),
                ("point", "int64", "grid point; -1 for stitched (key)"),
                ("window_start", "timestamp", "first bar of the window the row covers"),
                ("window_end", "timestamp", "last bar of it"),
                ("enter_apr", "float64", "grid value"),
                ("exit_apr", "float64", "grid value"),
                ("max_hold_h", "float64", "grid value"),
                ("leverage", "float64", "grid value"),
                ("rebalance_h", "float64", "grid value"),
                ("stop_distance", "float64", "grid value"),
                ("drawdown_stop", "float64", "grid value"),
                ("chosen", "bool", "the point the fold chose on its training window"),
                *_METRICS,
                ("final_equity_usd", "float64", "equity after the last bar"),
                ("liquidations", "float64", "legs liquidated"),
                ("funding_pnl", "float64", "funding, USD"),
                ("basis_pnl", "float64", "price PnL, USD"),
                ("fees", "float64", "fees, USD"),
                ("slippage", "float64", "slippage, USD"),
            ]
        ),
        frame="sweep_frame",
    ),
]
_REPORT_ID = ("report_id", "string", "the Dagster run that produced it (key)")
RISK = [
    Table(
        "leverage_tiers",
        "backtest",
        ("exchange", "symbol", "tier", "valid_from"),
        "none",
        _columns(
            [
                ("exchange", "string", "ccxt exchange id"),
                ("symbol", "string", "ccxt unified symbol (perp)"),
                ("tier", "int64", "tier number, 1 = smallest notionals"),
                ("min_notional", "float64", "notional where the tier starts (quote)"),
                ("max_notional", "float64", "notional where it ends (a notional exactly here is in this tier)"),
                ("mmr", "float64", "maintenance margin rate"),
                ("maintenance_amount", "float64", "cum: maintenance margin = notional x mmr - this"),
                ("max_leverage", "float64", "highest leverage the tier allows"),
                ("valid_from", "timestamp", "first fetched with these values (UTC, the source's clock)"),
                ("valid_to", "timestamp", "replaced by a different schedule then; NULL while current"),
            ]
        ),
        frame="leverage_tiers_frame",
        description="The venues' leverage tiers (fetch_leverage_tiers) with the interval each schedule was in force.",
    ),
    Table(
        "risk_report",
        "backtest",
        ("report_id", "section", "name", "subject"),
        "none",
        _columns(
            [
                _REPORT_ID,
                ("ts", "timestamp", "the book's time (the run's last bar)"),
                ("created_at", "timestamp", "when the report was made (UTC)"),
                ("source_run_id", "string", "the backtest run whose book it is"),
                ("section", "string", "figure | breach (key)"),
                ("name", "string", "figure or limit name (key)"),
                ("subject", "string", "what it is about (key)"),
                ("value", "float64", "the figure"),
                ("threshold", "float64", "the limit, for breaches"),
                ("severity", "string", "warning | critical, for breaches"),
                ("message", "string", "human-readable summary, for breaches"),
            ]
        ),
        frame="report_frame",
    ),
    Table(
        "risk_stress",
        "backtest",
        ("report_id", "pair", "shock_pct"),
        "none",
        _columns(
            [
                _REPORT_ID,
                ("pair", "string", "open pair (key)"),
                ("shock_pct", "float64", "price shock, percent (key)"),
                ("first_liquidated", "string", "the leg liquidated first, NULL if none"),
                ("liq_price_first", "float64", "its liquidation price"),
                ("margin_needed_usd", "float64", "margin to move to avoid it"),
                ("donor_free_margin_usd", "float64", "free margin of the other leg"),
                ("transfer_prevents", "bool", "moving that margin prevents the liquidation"),
                ("pnl_usd", "float64", "PnL of the pair under the shock"),
            ]
        ),
        frame="stress_frame",
    ),
]


# -- execution: the trader's landed streams (loaded like the raw ones) and what the warehouse makes of them --
def _landed(name: str, key: tuple[str, ...], description: str) -> Table:
    return Table(name, "execution", key, "hourly", raw_columns(name), stream=name, description=description)


EXECUTION = [
    _landed(
        "orders",
        ("exchange", "client_order_id", "ts_ms", "status"),
        "Every state of every order the trader sent: journaled intent, acknowledgement, fills, final status.",
    ),
    _landed("fills", ("exchange", "symbol", "trade_id"), "The trader's fills as the venue reported them."),
    _landed(
        "positions",
        ("pair", "leg", "ts_ms"),
        "Snapshots of each pair leg: the trader's units and target beside the venue's position, marks, margin.",
    ),
    _landed("balances", ("exchange", "currency", "ts_ms"), "The trader's venue balances, as fetched."),
    _landed(
        "funding_payments",
        ("exchange", "symbol", "ts_ms"),
        "Funding the venue booked to the trader's positions (fetch_funding_history).",
    ),
    Table(
        "funding_reconciliation",
        "execution",
        ("exchange", "symbol", "funding_ts_ms"),
        "hourly",
        _columns(
            [
                ("exchange", "string", "ccxt exchange id (key)"),
                ("symbol", "string", "ccxt unified symbol (key)"),
                ("funding_ts", "timestamp", "the settlement (the grid time; a payment off the schedule: its own)"),
                ("funding_ts_ms", "int64", "the settlement as the venue stamps it, epoch ms (key)"),
                ("booked_ts_ms", "int64", "the payment matched to it, epoch ms; NULL if none"),
                ("units", "float64", "the trader's position just before the settlement, signed base units"),
                ("funding_rate", "float64", "settled rate of the interval in force (funding_rates)"),
                ("interval_h", "float64", "the interval in force"),
                ("ref_price", "float64", "the price the venue pays on (mark; oracle where the venue says so)"),
                ("expected_usd", "float64", "-units x rate x ref_price: what the model expects, + received"),
                ("booked_usd", "float64", "what the venue booked (0 if nothing)"),
                ("difference_usd", "float64", "booked - expected"),
                ("implied_price", "float64", "the price the booking implies: booked / (-units x rate)"),
                (
                    "status",
                    "string",
                    "ok | mismatch (beyond the tolerance, a cent by default) | pending (its settled rate not loaded)",
                ),
                (
                    "explanation",
                    "string",
                    "missing payment | unexpected payment | wrong sign | interval change | "
                    "wrong reference price | unexplained",
                ),  # fmt: skip
            ]
        ),
        frame="reconciliation_frame",
        description="Funding the model expects against what the venue booked, per settlement and position.",
    ),
    Table(
        "live_pnl",
        "execution",
        ("ts",),
        "hourly",
        _columns(
            [
                ("ts", "timestamp", "as of this instant (the hour's start; key)"),
                ("funding_usd", "float64", "funding booked so far, + received"),
                ("basis_usd", "float64", "price P&L of the positions from the mids the trader decided on"),
                ("fees_usd", "float64", "fees paid so far"),
                ("slippage_usd", "float64", "fills against the decision's mid so far (a cost when positive)"),
                ("pnl_usd", "float64", "funding + basis - fees - slippage"),
                ("equity_usd", "float64", "the trader's capital plus pnl_usd"),
                ("gross_exposure_usd", "float64", "sum of |units x mark| over the legs held"),
                ("open_legs", "int64", "legs held"),
            ]
        ),
        frame="pnl_frame",
        description="The live book's P&L so far, split as the backtest splits it.",
    ),
]

TABLES: dict[str, Table] = {
    t.name: t for t in [INSTRUMENTS, *RAW, *MARKET, *FUNDING, *ALERTS, *BACKTEST, *RISK, *EXECUTION]
}
RAW_TABLES: dict[str, Table] = {t.name: t for t in RAW}
LANDED_TABLES: dict[str, Table] = {t.name: t for t in [*RAW, *EXECUTION] if t.stream}  # loaded from landing
EXECUTION_TABLES: dict[str, Table] = {t.name: t for t in EXECUTION}
STREAM_TABLES: dict[str, str] = {t.stream: t.name for t in LANDED_TABLES.values()}


def table(name: str) -> Table:
    """A warehouse table by name; a clear error naming it when it is unknown."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"table: {name!r} is not a warehouse table (core/tables.py)") from None


def empty_frame(name: str) -> pd.DataFrame:
    """A zero-row frame with a table's columns and types (so the SQL's casts bind)."""
    return pd.DataFrame({c.name: pd.Series(dtype=PANDAS_DTYPES[c.kind]) for c in table(name).columns})
