"""Targets from signals: the strategy registry's pairs, the engine's rule 1 and rule 3, lots, limits."""

from __future__ import annotations

import numpy as np
import pytest

from fundarb_dagster.core.backtest.block import direction
from fundarb_dagster.core.execution.risk_gate import BookLeg, admit, breaches, order_check
from fundarb_dagster.core.execution.sizing import LegMarket, common_lot, pair_quantity
from fundarb_dagster.core.execution.targets import (
    choose_targets,
    desired_direction,
    one_bar_panel,
    pair_notional,
    pair_set,
    pair_specs,
)
from fundarb_dagster.core.risk import RiskLimits


def leg(exchange: str, symbol: str, lot: float = 0.001, contract: float = 1.0, min_cost: float = 5.0) -> LegMarket:
    kind = "perp" if ":" in symbol else "spot"
    base, quote = symbol.split("/")[0], symbol.split("/")[1].split(":")[0]
    return LegMarket(exchange, symbol, kind, base, quote, contract, lot, 0.0, min_cost)


def test_lots_in_base_units_and_the_common_lot_of_two_legs() -> None:
    okx_swap = leg("okx", "BTC/USDT:USDT", lot=1.0, contract=0.01)  # contracts of 0.01 BTC
    spot = leg("okx", "BTC/USDT", lot=0.00001)
    assert common_lot(okx_swap, spot) == pytest.approx(0.01)
    assert pair_quantity(0.1234, okx_swap, spot, 50_000) == pytest.approx(0.12)
    assert okx_swap.to_venue(0.12) == pytest.approx(12.0)  # sent as 12 contracts
    assert common_lot(leg("a", "X/U", lot=0.004), leg("b", "X/U", lot=0.006)) == pytest.approx(0.012)
    assert pair_quantity(0.0001, okx_swap, spot, 50_000) == 0.0  # under one lot
    assert pair_quantity(0.02, leg("a", "X/U", min_cost=1000.0), spot, 100.0) == 0.0  # under the minimum cost


def test_rule_one_step_by_step_equals_the_engine_over_the_whole_history() -> None:
    rng = np.random.default_rng(4)
    signal = np.cumsum(rng.normal(0, 0.04, 400))
    signal[rng.random(400) < 0.03] = np.nan
    engine = direction(
        signal[None], np.array([True]), np.array([0.03]), np.full((1, 1, 1), 0.1), np.full((1, 1, 1), 0.02)
    )
    d, stepped = 0, []
    for s in signal:
        d = desired_direction(d, s, 0.1, 0.02, True, 0.03)
        stepped.append(d)
    assert stepped == engine[0, 0].tolist() and {-1, 0, 1} <= set(stepped)


def test_pairs_and_signals_are_the_strategy_registrys() -> None:
    legs = {
        (m.exchange, m.symbol): m
        for m in (leg("bybit", "BTC/USDT:USDT"), leg("binance", "BTC/USDT:USDT"), leg("binance", "BTC/USDT"))
    }
    mids = {k: 100.0 for k in legs}
    apr = {("bybit", "BTC/USDT:USDT"): 0.05, ("binance", "BTC/USDT:USDT"): 0.30}
    panel = one_bar_panel(list(legs.values()), mids, apr, 0)
    pp = pair_set("perp_perp", panel, {})
    (spec,) = pair_specs(pp, panel, legs)
    assert spec.name == "binance:BTC/USDT:USDT|bybit:BTC/USDT:USDT" and pp.signal[0, 0] == pytest.approx(0.25)
    cc = pair_set("cash_carry", panel, {})
    assert cc.names == ["binance:BTC/USDT:USDT|binance:BTC/USDT"] and cc.signal[0, 0] == pytest.approx(0.30)


def test_targets_size_by_rule_three_hold_their_size_and_share_no_market() -> None:
    a, b, c = leg("binance", "BTC/USDT:USDT"), leg("bybit", "BTC/USDT:USDT"), leg("hyperliquid", "BTC/USDC:USDC")
    legs = {(m.exchange, m.symbol): m for m in (a, b, c)}
    panel = one_bar_panel([a, b, c], {}, {}, 0)
    specs = pair_specs(pair_set("perp_perp", panel, {}), panel, legs)
    mids = {k: 50_000.0 for k in legs}
    signals = [0.5, 0.2, -0.3]  # binance|bybit, binance|hyperliquid, bybit|hyperliquid
    targets = choose_targets(
        specs, signals, {}, mids, enter_apr=0.1, exit_apr=0.02, capital_usd=300_000, leverage=3.0, max_pairs=2
    )
    by = {t.pair: t for t in targets}
    q = pair_quantity(pair_notional(300_000, 3, a, b, 3.0) / 50_000, a, b, 50_000)
    assert q == pytest.approx(3.0)  # 100k capital per pair over 2 / 3: 150k notional, 3 BTC at 50k
    assert by[specs[0].name].units == (-q, q) and by[specs[0].name].direction == 1
    # the other two share a market with the strongest one: flat
    assert by[specs[1].name].direction == 0 and by[specs[2].name].direction == 0
    # a held pair keeps its size while the signal stays above exit; in reduce-only mode nothing new enters
    held = {specs[0].name: (-1.234, 1.234)}
    again = {
        t.pair: t
        for t in choose_targets(
            specs,
            [0.05, 0.9, 0.0],
            held,
            mids,
            enter_apr=0.1,
            exit_apr=0.02,
            capital_usd=300_000,
            leverage=3.0,
            max_pairs=2,
        )
    }
    assert again[specs[0].name].units == (-1.234, 1.234)
    flat = {
        t.pair: t
        for t in choose_targets(
            specs,
            [0.01, 0.9, 0.9],
            held,
            mids,
            enter_apr=0.1,
            exit_apr=0.02,
            capital_usd=300_000,
            leverage=3.0,
            max_pairs=2,
            reduce_only=True,
        )
    }
    assert flat[specs[0].name].units == (0.0, 0.0) and all(t.direction == 0 for t in flat.values())


def book_leg(pair: str, name: str, exchange: str, symbol: str, units: float, kind: str = "perp") -> BookLeg:
    wallet = abs(units) * 100.0 / 3 if kind == "perp" else 0.0
    return BookLeg(pair, name, exchange, symbol, "BTC", kind, units, 100.0, 100.0, wallet, 0.004, 0.0005)


def test_phase_one_admits_reductions_and_vetoes_growth_that_would_breach() -> None:
    template = {
        ("p1", "a"): book_leg("p1", "a", "binance", "BTC/USDT:USDT", 0.0),
        ("p1", "b"): book_leg("p1", "b", "binance", "BTC/USDT", 0.0, "spot"),
        ("p2", "a"): book_leg("p2", "a", "bybit", "BTC/USDT:USDT", 0.0),
        ("p2", "b"): book_leg("p2", "b", "bybit", "BTC/USDT", 0.0, "spot"),
    }
    limits = RiskLimits(max_gross_usd=25_000, max_venue_share=None, max_asset_share=None)
    out = admit([], [("p1", (-100.0, 100.0)), ("p2", (-100.0, 100.0))], template, 100_000, 0.0, limits, 3.0)
    assert set(out.admitted) == {"p1"}  # 20k gross; both would be 40k > 25k
    assert [b.rule for b in out.vetoed["p2"]] == ["risk_gross_exposure"]
    held = [
        book_leg("p1", "a", "binance", "BTC/USDT:USDT", -300.0),
        book_leg("p1", "b", "binance", "BTC/USDT", 300.0, "spot"),
    ]
    assert breaches(held, 100_000, 0.0, limits)  # already over
    out = admit(held, [("p1", (0.0, 0.0))], template, 100_000, 0.0, limits, 3.0)
    assert out.admitted == {"p1": (0.0, 0.0)} and not out.vetoed  # an exit is never vetoed
    # drawdown beyond the limit: no growth at all
    out = admit(
        [], [("p1", (-1.0, 1.0))], template, 100_000, 0.3, RiskLimits(max_venue_share=None, max_asset_share=None), 3.0
    )
    assert [b.rule for b in out.vetoed["p1"]] == ["risk_drawdown"]


def test_phase_two_sees_orders_in_flight_and_never_blocks_a_reduction() -> None:
    template = {
        ("p1", "a"): book_leg("p1", "a", "binance", "BTC/USDT:USDT", 0.0),
        ("p1", "b"): book_leg("p1", "b", "binance", "BTC/USDT", 0.0, "spot"),
    }
    limits = RiskLimits(max_gross_usd=25_000, max_venue_share=None, max_asset_share=None)
    in_flight = {("p1", "a"): -100.0}  # 10k on its way
    assert not order_check([], {}, (("p1", "b"), 100.0), template, 1e5, 0.0, limits, 3.0)
    found = order_check([], in_flight, (("p1", "b"), 200.0), template, 1e5, 0.0, limits, 3.0)
    assert [b.rule for b in found] == ["risk_gross_exposure"]  # 10k + 20k > 25k
    held = [book_leg("p1", "a", "binance", "BTC/USDT:USDT", -300.0)]
    assert not order_check(held, {}, (("p1", "a"), 300.0), template, 1e5, 0.0, limits, 3.0)  # closing it
