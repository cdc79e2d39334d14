"""Accounting items of the backtest, each one small pure function (scalars or numpy arrays in and out).

Conventions (signs are from the position holder's side; `units` is signed: > 0 long, < 0 short):

- Funding: at a settlement with rate `r` (fraction per interval) and reference price `ref` (mark on most
  venues, oracle on hyperliquid) a position of `units` *receives* `-units * r * ref`: a short receives when
  `r > 0`, pays when `r < 0`. A position is liable for a settlement at `t_k` when `entry < t_k <= exit`.
- Fees: `fee_rate * |qty| * price` on every traded quantity (entry, exit, rebalance) of every leg.
- Slippage: a taker crosses half the spread: `half_spread * |qty| * mid` (half_spread as a fraction of mid).
- Isolated-margin liquidation price, from the equity condition `wallet + units * (P - entry) =
  (mmr + fee) * |units| * P`: short `(entry + wallet/size) / (1 + mmr + fee)`, long
  `(entry - wallet/size) / (1 - mmr - fee)` with `size = |units|`.
- At liquidation the leg is closed at the liquidation price, the liquidation fee (`fee * size * P_liq`) is
  charged and the maintenance margin (`mmr * size * P_liq`) is forfeited: the isolated wallet ends at zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..units import HOURS_PER_YEAR


def annualize(rate: Any, interval_h: Any) -> Any:
    """Rate per funding interval -> simple annual rate (what venues quote): `rate * 8760 / interval_h`."""
    return np.asarray(rate, dtype=float) * HOURS_PER_YEAR / np.asarray(interval_h, dtype=float)


def funding_payment(units: Any, rate: Any, ref_price: Any) -> Any:
    """Cash received by a position of `units` at one settlement: `-units * rate * ref_price`."""
    return -np.asarray(units, dtype=float) * np.asarray(rate, dtype=float) * np.asarray(ref_price, dtype=float)


def is_liable(entry_ms: Any, settlement_ms: Any, exit_ms: Any) -> Any:
    """A position opened at `entry_ms` and closed at `exit_ms` pays/receives the settlement at `settlement_ms`
    when `entry < settlement <= exit` (open at the settlement instant, not opened exactly at it)."""
    return (np.asarray(entry_ms) < np.asarray(settlement_ms)) & (np.asarray(settlement_ms) <= np.asarray(exit_ms))


def trade_fee(qty: Any, price: Any, fee_rate: Any) -> Any:
    """Exchange fee of trading `qty` (sign ignored) at `price`: `fee_rate * |qty| * price`."""
    return np.abs(np.asarray(qty, dtype=float)) * np.asarray(price, dtype=float) * np.asarray(fee_rate, dtype=float)


def slippage_cost(qty: Any, mid: Any, half_spread: Any) -> Any:
    """Cost of crossing half the spread: `half_spread * |qty| * mid` (half_spread a fraction of mid)."""
    return np.abs(np.asarray(qty, dtype=float)) * np.asarray(mid, dtype=float) * np.asarray(half_spread, dtype=float)


def half_spread_or_model(half_spread: Any, slippage_bps: float) -> Any:
    """The recorded half-spread where there is one, else the bps model (`slippage_bps / 1e4`)."""
    hs = np.asarray(half_spread, dtype=float)
    return np.where(np.isfinite(hs), hs, slippage_bps / 1e4)


def liquidation_price(entry: Any, wallet: Any, units: Any, mmr: Any, fee: Any) -> Any:
    """Isolated-margin liquidation price of a perp leg (NaN where `units == 0`).

    short: `(entry + wallet/size) / (1 + mmr + fee)`; long: `(entry - wallet/size) / (1 - mmr - fee)`.
    `wallet` is the isolated margin balance (initial margin plus funding received since, minus paid).
    """
    units = np.asarray(units, dtype=float)
    size = np.abs(units)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_unit = np.asarray(wallet, dtype=float) / size
        short = (entry + per_unit) / (1.0 + mmr + fee)
        long = (entry - per_unit) / (1.0 - mmr - fee)
    return np.where(units < 0, short, np.where(units > 0, long, np.nan))


def liquidation_loss(units: Any, liq_price: Any, mmr: Any) -> Any:
    """Maintenance margin forfeited to the venue at liquidation: `mmr * |units| * liq_price`."""
    return np.abs(np.asarray(units, dtype=float)) * np.asarray(liq_price, dtype=float) * np.asarray(mmr, dtype=float)


def notional_for_capital(capital: Any, leverage: Any, n_perp_legs: int, n_spot_legs: int) -> Any:
    """Per-leg notional that a capital allocation carries: spot legs fully paid, perp legs on `1/leverage`
    margin. Cash-and-carry: `C * L / (L + 1)`; perp-perp: `C * L / 2`."""
    leverage = np.asarray(leverage, dtype=float)
    return np.asarray(capital, dtype=float) / (n_spot_legs + n_perp_legs / leverage)


def borrow_cost(units: Any, price: Any, borrow_apr: Any, hours: Any) -> Any:
    """Cost of borrowing a shorted spot leg for `hours`: `|units| * price * borrow_apr * hours / 8760` for
    `units < 0`, zero for longs."""
    units = np.asarray(units, dtype=float)
    return np.where(units < 0, -units * np.asarray(price, dtype=float) * borrow_apr * hours / HOURS_PER_YEAR, 0.0)
