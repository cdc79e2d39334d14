"""Each accounting item on hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest

from fundarb_dagster.core.backtest import accounting as acc


def test_short_receives_positive_funding_and_pays_negative() -> None:
    assert acc.funding_payment(-2.0, 0.0001, 50_000.0) == pytest.approx(10.0)
    assert acc.funding_payment(-2.0, -0.0001, 50_000.0) == pytest.approx(-10.0)
    assert acc.funding_payment(3.0, 0.0002, 100.0) == pytest.approx(-0.06)


def test_liability_window_is_entry_exclusive_exit_inclusive() -> None:
    assert not acc.is_liable(8, 8, 16)  # opened exactly at the settlement: not liable
    assert acc.is_liable(7, 8, 8)  # closed exactly at the settlement: liable
    assert not acc.is_liable(0, 9, 8)


def test_fee_and_slippage_on_absolute_quantity() -> None:
    assert acc.trade_fee(-4.0, 250.0, 0.0005) == pytest.approx(0.5)
    assert acc.slippage_cost(4.0, 250.0, 0.0002) == pytest.approx(0.2)
    np.testing.assert_allclose(acc.half_spread_or_model([np.nan, 0.0003], 2.0), [0.0002, 0.0003])


def test_liquidation_price_short_and_long_isolated() -> None:
    # short 10 @ 100 with 100 of margin, mmr 0.5 %, taker 0.05 %: (100 + 10) / 1.0055
    assert acc.liquidation_price(100.0, 100.0, -10.0, 0.005, 0.0005) == pytest.approx(110 / 1.0055)
    # long mirror: (100 - 10) / (1 - 0.0055)
    assert acc.liquidation_price(100.0, 100.0, 10.0, 0.005, 0.0005) == pytest.approx(90 / 0.9945)
    assert np.isnan(acc.liquidation_price(100.0, 100.0, 0.0, 0.005, 0.0005))


def test_liquidation_price_moves_with_wallet_funding() -> None:
    base = acc.liquidation_price(100.0, 100.0, -10.0, 0.005, 0.0005)
    richer = acc.liquidation_price(100.0, 100.0 + acc.funding_payment(-10.0, 0.001, 100.0), -10.0, 0.005, 0.0005)
    assert richer > base  # funding received pushes a short's liquidation further away


def test_equity_at_liquidation_equals_maintenance_plus_fee() -> None:
    entry, wallet, units, mmr, fee = 100.0, 37.0, -3.0, 0.004, 0.0005
    p = acc.liquidation_price(entry, wallet, units, mmr, fee)
    equity = wallet + units * (p - entry)
    assert equity == pytest.approx((mmr + fee) * abs(units) * p)
    assert acc.liquidation_loss(units, p, mmr) == pytest.approx(mmr * 3 * p)


def test_notional_for_capital_cash_carry_and_perp_perp() -> None:
    assert acc.notional_for_capital(1100.0, 10.0, 1, 1) == pytest.approx(1000.0)
    assert acc.notional_for_capital(1000.0, 5.0, 2, 0) == pytest.approx(2500.0)


def test_borrow_cost_only_for_shorts() -> None:
    assert acc.borrow_cost(-2.0, 100.0, 0.0876, 1.0) == pytest.approx(2 * 100 * 0.0876 / 8760)
    assert acc.borrow_cost(2.0, 100.0, 0.0876, 1.0) == 0.0


def test_annualize_uses_the_interval() -> None:
    assert acc.annualize(0.0001, 8) == pytest.approx(0.1095)
    assert acc.annualize(0.0001, 1) == pytest.approx(0.876)
