"""Checks on the raw tables: unique natural keys and valid trades (blocking), uncrossed quotes, freshness."""

from dagster import AssetCheckSeverity

from ...core.tables import RAW_TABLES
from ..common.checks import build_condition_check, build_freshness_check, build_unique_key_check
from . import assets

# capture_events has no natural key (exact duplicates are dropped on load): nothing to check unique.
UNIQUE_KEY_CHECKS = [
    build_unique_key_check(getattr(assets, name), name, spec.key, getattr(assets, name).partitions_def)
    for name, spec in RAW_TABLES.items()
    if spec.key
]
raw_trades_has_valid_prices = build_condition_check(
    assets.raw_trades,
    "raw_trades_has_valid_prices",
    "raw_trades",
    "NOT (price > 0 AND isfinite(price) AND amount >= 0 AND isfinite(amount))",
    "Every trade has a positive finite price and a non-negative finite amount.",
    assets.raw_trades.partitions_def,
)
raw_tickers_has_uncrossed_quotes = build_condition_check(
    assets.raw_tickers,
    "raw_tickers_has_uncrossed_quotes",
    "raw_tickers",
    "bid > ask",
    "Best bid never above best ask (a crossed book means a bad message or a mixed-up side).",
    assets.raw_tickers.partitions_def,
    severity=AssetCheckSeverity.WARN,
    blocking=False,
)
raw_liquidations_has_valid_prints = build_condition_check(
    assets.raw_liquidations,
    "raw_liquidations_has_valid_prints",
    "raw_liquidations",
    "NOT (price > 0 AND isfinite(price) AND amount > 0 AND isfinite(amount) AND value > 0)",
    "Every liquidation print has a positive finite price, amount and notional.",
    assets.raw_liquidations.partitions_def,
)

# Every closed hour is loaded (live: within 20 minutes after it ends; WARN: a stalled capture or sensor).
raw_trades_is_fresh = build_freshness_check(assets.raw_trades, deadline_minutes=20)

CHECKS = [
    *UNIQUE_KEY_CHECKS,
    raw_trades_has_valid_prices,
    raw_tickers_has_uncrossed_quotes,
    raw_liquidations_has_valid_prints,
    raw_trades_is_fresh,
]
