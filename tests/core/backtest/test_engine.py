"""The vectorized engine: exact hand-computed cases, agreement with the plain event loop, no look-ahead."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fundarb_dagster.core.backtest import BacktestParams, get_strategy, run_backtest
from fundarb_dagster.core.backtest.panel import Panel, make_market
from fundarb_dagster.core.backtest.strategies import PairSet
from fundarb_dagster.core.units import HOUR_MS

from .reference_loop import reference_backtest


def tiny_panel(mid_perp: list[float], mid_spot: list[float], apr: list[float], cash: list[float],
               high: list[float] | None = None) -> Panel:  # fmt: skip
    T = len(mid_perp)
    markets = [make_market("binance", "X/USDT:USDT", "X", "perp"), make_market("binance", "X/USDT", "X", "spot")]
    mid = np.column_stack([mid_perp, mid_spot]).astype(float)
    hi = mid.copy() if high is None else np.column_stack([high, mid_spot]).astype(float)
    return Panel(
        ts_ms=np.arange(T, dtype=np.int64) * HOUR_MS,
        markets=markets,
        mid=mid,
        half_spread=np.zeros((T, 2)),
        ref=mid.copy(),
        ref_high=hi,
        ref_low=mid.copy(),
        funding_cash=np.column_stack([cash, np.zeros(T)]),
        expected_apr=np.column_stack([apr, np.full(T, np.nan)]),
    )


def test_one_funding_payment_and_fees_exact() -> None:
    # capital 1000, leverage 1: notional 500 per leg -> 5 units at 100. Taker fees 5 bp perp, 10 bp spot.
    panel = tiny_panel([100] * 4, [100] * 4, [0.5, 0.5, 0.0, 0.0], [0.0, 0.001 * 100, 0.0, 0.0])
    pairs = get_strategy("cash_carry").pairs(panel, {})
    r = run_backtest(panel, pairs, BacktestParams(capital=1000.0, leverage=1.0, enter_apr=0.1, exit_apr=0.02))
    entry_fees = 5 * 100 * 0.0005 + 5 * 100 * 0.001  # 0.75
    funding = 5 * 0.001 * 100  # the short perp receives 0.5
    np.testing.assert_allclose(
        r.equity["equity"], [1000 - entry_fees, 1000 - entry_fees + funding, 1000 - 2 * entry_fees + funding,
                             1000 - 2 * entry_fees + funding], rtol=0, atol=1e-12)  # fmt: skip
    assert r.attribution["funding"] == pytest.approx(0.5)
    assert r.attribution["fees"] == pytest.approx(1.5)
    assert list(r.trades["reason"]) == ["entry", "entry", "exit", "exit"]
    assert r.trades["fee_usd"].sum() == pytest.approx(1.5)
    assert r.positions.loc[0, "exit_reason"] == "exit"
    assert r.positions.loc[0, "funding_usd"] == pytest.approx(0.5)


def test_settlement_at_entry_bar_is_not_paid() -> None:
    # funding booked in bar 0 (settled at or before the entry decision) must not be received
    panel = tiny_panel([100] * 3, [100] * 3, [0.5, 0.5, 0.5], [0.1, 0.0, 0.0])
    r = run_backtest(panel, get_strategy("cash_carry").pairs(panel, {}), BacktestParams(capital=1000.0, leverage=1.0))
    assert r.attribution["funding"] == 0.0


def test_one_liquidation_exact() -> None:
    # capital 1100, leverage 10: notional 1000 -> 10 units at 100, perp wallet 100. mmr 0.5 %, taker 0.05 %.
    # Bar 1 trades up to 110: the short's liquidation price (100 + 100/10) / 1.0055 = 109.398... is crossed.
    mmr, taker = 0.005, 0.0005
    panel = tiny_panel([100, 110, 110], [100, 110, 110], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0], high=[100, 110, 110])
    panel.markets[0] = make_market("binance", "X/USDT:USDT", "X", "perp", mmr=mmr, taker_fee=taker)
    pairs = get_strategy("cash_carry").pairs(panel, {})
    r = run_backtest(panel, pairs, BacktestParams(capital=1100.0, leverage=10.0))
    p_liq = 110 / 1.0055
    perp_loss = -10 * (p_liq - 100) - 10 * p_liq * taker - 10 * p_liq * mmr
    assert perp_loss == pytest.approx(-100.0)  # the whole isolated wallet is lost, no more, no less
    spot_gain = 10 * (110 - 100)
    fees_in = 10 * 100 * taker + 10 * 100 * 0.001
    spot_exit_fee = 10 * 110 * 0.001
    expected = 1100 - fees_in + perp_loss + spot_gain - spot_exit_fee
    assert r.equity["equity"].iloc[1] == pytest.approx(expected, abs=1e-9)
    assert r.equity["equity"].iloc[2] == pytest.approx(expected, abs=1e-9)  # flat for the rest of the episode
    assert r.metrics["liquidations"] == 1
    liq = r.trades[r.trades["reason"] == "liquidation"]
    assert set(liq["leg"]) == {"a", "b"}
    assert liq.loc[liq["leg"] == "a", "price"].iloc[0] == pytest.approx(p_liq)
    assert r.attribution["liquidation"] == pytest.approx(10 * p_liq * mmr)
    assert r.positions.loc[0, "exit_reason"] == "liquidation"


def test_no_liquidation_when_price_stays_below() -> None:
    panel = tiny_panel([100, 109, 109], [100, 109, 109], [0.5] * 3, [0.0] * 3, high=[100, 109, 109])
    r = run_backtest(panel, get_strategy("cash_carry").pairs(panel, {}), BacktestParams(capital=1100.0, leverage=10.0))
    assert r.metrics["liquidations"] == 0
    assert r.equity["in_market"].all()


PARAMS = [
    BacktestParams(),
    BacktestParams(leverage=10, max_hold_h=240, rebalance_h=48),
    BacktestParams(leverage=5, stop_distance=0.05, enter_apr=0.2, exit_apr=0.0),
    BacktestParams(execution="maker", leverage=2, max_hold_h=7, slippage_bps=5),
    BacktestParams(leverage=20, enter_apr=0.05, exit_apr=0.01, rebalance_h=5),
]


def assert_matches_reference(panel: Panel, pairs: PairSet, params: BacktestParams) -> None:
    r = run_backtest(panel, pairs, params)
    ref = reference_backtest(panel, pairs, params)
    np.testing.assert_array_equal(r.arrays["A"][0], ref["direction"])
    np.testing.assert_allclose(r.equity["equity"], ref["equity"], rtol=1e-9, atol=0)
    np.testing.assert_allclose(r.arrays["pnl"][0], ref["pnl"], rtol=0, atol=1e-9 * params.capital)
    for key, value in ref["totals"].items():
        assert r.attribution[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
    assert r.metrics["liquidations"] == ref["liquidations"]
    assert r.metrics["trade_count"] == ref["entries"]
    assert r.arrays["halt"][0] == ref["halt"]
    # the open book's isolated wallets (what risk_report stresses) equal the loop's running wallets
    book = r.open_positions[r.open_positions["kind"] == "perp"]
    got = {(pairs.names.index(row.pair), 0 if row.leg == "a" else 1): row.wallet_usd for row in book.itertuples()}
    assert got.keys() == ref["final_wallets"].keys()
    for key, wallet in ref["final_wallets"].items():
        assert got[key] == pytest.approx(wallet, rel=1e-9), key


@pytest.mark.parametrize("params", PARAMS, ids=range(len(PARAMS)))
@pytest.mark.parametrize("strategy", ["cash_carry", "perp_perp"])
def test_engine_matches_event_loop_on_sim(sim_panel: Panel, strategy: str, params: BacktestParams) -> None:
    pairs = get_strategy(strategy).pairs(sim_panel, {"borrow_apr": 0.08})
    assert_matches_reference(sim_panel, pairs, params)


@pytest.mark.parametrize("params", PARAMS, ids=range(len(PARAMS)))
@pytest.mark.parametrize("strategy", ["cash_carry", "perp_perp"])
def test_drawdown_stop_matches_event_loop_and_trades_no_more(
    sim_panel: Panel, strategy: str, params: BacktestParams
) -> None:
    """Rule 6 with the limit at 60 % of the run's own max drawdown (or 0.5): the engine and the loop stop at
    the same bar with the same equity, and from there the book is flat and the equity constant."""
    pairs = get_strategy(strategy).pairs(sim_panel, {"borrow_apr": 0.08})
    free = run_backtest(sim_panel, pairs, params)
    limit = min(0.6 * free.metrics["max_drawdown"], 0.5)
    stopped = replace(params, drawdown_stop=limit)
    assert_matches_reference(sim_panel, pairs, stopped)
    r = run_backtest(sim_panel, pairs, stopped)
    halt = int(r.arrays["halt"][0])
    T = len(sim_panel.ts_ms)
    assert halt < T
    np.testing.assert_array_equal(r.arrays["A"][0][halt:], 0)
    assert np.ptp(r.equity["equity"].to_numpy()[halt:]) == 0.0
    np.testing.assert_allclose(r.equity["equity"].to_numpy()[:halt], free.equity["equity"].to_numpy()[:halt])
    assert set(r.trades.loc[r.trades["ts"] > r.equity["ts"].iloc[halt], "reason"]) == set()
    closes = r.trades[r.trades["ts"] == r.equity["ts"].iloc[halt]]
    assert set(closes["reason"]) <= {"drawdown", "liquidation", "stop"}
    if r.arrays["A"][0][halt - 1].any():  # the stop can also fire on the costs of a close the bar before
        assert "drawdown" in set(closes["reason"]) and "drawdown" in set(r.positions["exit_reason"])


def test_drawdown_stop_by_hand() -> None:
    """capital 1000, leverage 1: short 5 perp at 100 and long 5 spot, fees 5 and 10 bp. The perp jumps to 110
    in bar 2 while the spot stays (a basis blow-out): marked equity 1000 - 0.75 - 50 = 949.25 is 5.075 % below
    the peak (1000, the capital), so a 5 % limit closes both legs at bar 2's mids and nothing trades after."""
    panel = tiny_panel([100, 100, 110, 110, 110], [100] * 5, [0.5] * 5, [0.0] * 5)
    pairs = get_strategy("cash_carry").pairs(panel, {})
    r = run_backtest(panel, pairs, BacktestParams(capital=1000.0, leverage=1.0, drawdown_stop=0.05))
    entry_fees = 5 * 100 * 0.0005 + 5 * 100 * 0.001
    exit_fees = 5 * 110 * 0.0005 + 5 * 100 * 0.001
    after = 1000 - entry_fees - 50 - exit_fees
    np.testing.assert_allclose(r.equity["equity"], [1000 - entry_fees] * 2 + [after] * 3, rtol=0, atol=1e-12)
    assert int(r.arrays["halt"][0]) == 2
    assert list(r.trades["reason"]) == ["entry", "entry", "drawdown", "drawdown"]
    # a limit just above the marked drawdown never fires: the run holds to the end
    held = run_backtest(panel, pairs, BacktestParams(capital=1000.0, leverage=1.0, drawdown_stop=0.051))
    assert int(held.arrays["halt"][0]) == 5 and held.equity["in_market"].iloc[-1]


def test_sim_cases_exercise_every_path(sim_panel: Panel) -> None:
    """The agreement above means something only if liquidations, stops, rebalances and reverse carry occur."""
    pairs = get_strategy("cash_carry").pairs(sim_panel, {"borrow_apr": 0.08})
    reasons = set()
    for params in PARAMS:
        reasons |= set(run_backtest(sim_panel, pairs, params).trades["reason"])
    pp = get_strategy("perp_perp").pairs(sim_panel, {})
    reasons |= set(run_backtest(sim_panel, pp, PARAMS[1]).trades["reason"])
    assert {"entry", "exit", "max_hold", "stop", "liquidation", "rebalance", "flip"} <= reasons
    r = run_backtest(sim_panel, pairs, PARAMS[0])
    assert r.attribution["borrow"] > 0


@pytest.mark.parametrize("params", PARAMS[:3], ids=range(3))
def test_engine_matches_event_loop_on_real_funding(funding_panel: Panel, params: BacktestParams) -> None:
    pairs = get_strategy("perp_perp").pairs(funding_panel, {})
    assert "binance:BTC/USDT:USDT|hyperliquid:BTC/USDC:USDC" in pairs.names  # 8h against 1h settlements
    small = funding_panel.slice(0, 24 * 90)
    from dataclasses import replace

    assert_matches_reference(small, replace(pairs, signal=pairs.signal[: 24 * 90]), params)


def test_engine_matches_event_loop_on_real_xrp_carry(xrp: Panel) -> None:
    pairs = get_strategy("cash_carry").pairs(xrp, {})
    for params in (
        BacktestParams(enter_apr=0.05, exit_apr=0.01),
        BacktestParams(enter_apr=0.05, exit_apr=0.0, leverage=25),
    ):
        assert_matches_reference(xrp, pairs, params)
    r = run_backtest(xrp, pairs, BacktestParams(enter_apr=0.05, exit_apr=0.01))
    assert r.attribution["funding"] > 0  # 1 bp per 8h on a short perp


def test_real_funding_year_collects_positive_carry(funding_panel: Panel) -> None:
    pairs = get_strategy("perp_perp").pairs(funding_panel, {})
    r = run_backtest(funding_panel, pairs, BacktestParams(enter_apr=0.08, exit_apr=0.02, leverage=3))
    # hand check of the funding leg from the raw matrix: sum over held bars of -units * cash
    xa, xb = r.arrays["xa"][0], r.arrays["xb"][0]
    cash = funding_panel.funding_cash
    manual = 0.0
    for j in range(len(pairs.names)):
        for t in range(1, len(cash)):
            manual += -xa[t - 1, j] * cash[t, pairs.leg_a[j]] - xb[t - 1, j] * cash[t, pairs.leg_b[j]]
    assert r.attribution["funding"] == pytest.approx(manual, rel=1e-9)
    assert r.attribution["funding"] > 0


def perturb_after(panel: Panel, k: int, seed: int) -> Panel:
    rng = np.random.default_rng(seed)
    out = panel.slice(0, len(panel.ts_ms))
    for name in ("mid", "ref", "ref_high", "ref_low", "half_spread", "funding_cash", "expected_apr"):
        arr = getattr(out, name).copy()
        arr[k + 1 :] *= rng.uniform(0.5, 1.5, arr[k + 1 :].shape)
        if name == "expected_apr":
            arr[k + 1 :] = -arr[k + 1 :]  # flip every later signal
        setattr(out, name, arr)
    out.ref_high = np.maximum(out.ref_high, out.ref)
    out.ref_low = np.minimum(out.ref_low, out.ref)
    return out


@pytest.mark.parametrize(
    "strategy,drawdown_stop",
    # with a drawdown stop that fires (bar 1000 of 1080, bar 703)
    [("cash_carry", 0.0), ("perp_perp", 0.0), ("cash_carry", 0.08), ("perp_perp", 0.3)],
)
def test_perturbing_data_after_t_never_changes_decisions_up_to_t(
    sim_panel: Panel, strategy: str, drawdown_stop: float
) -> None:
    params = BacktestParams(leverage=8, max_hold_h=100, rebalance_h=24, stop_distance=0.03, drawdown_stop=drawdown_stop)
    base_pairs = get_strategy(strategy).pairs(sim_panel, {"borrow_apr": 0.08})
    base = run_backtest(sim_panel, base_pairs, params)
    for k in (50, 400, 900):
        other = perturb_after(sim_panel, k, seed=k)
        r = run_backtest(other, get_strategy(strategy).pairs(other, {"borrow_apr": 0.08}), params)
        np.testing.assert_array_equal(r.arrays["A"][0][: k + 1], base.arrays["A"][0][: k + 1])
        np.testing.assert_array_equal(r.arrays["q"][0][: k + 1], base.arrays["q"][0][: k + 1])
        np.testing.assert_allclose(r.equity["equity"][: k + 1], base.equity["equity"][: k + 1], rtol=1e-12)
        cut = sim_panel.ts_ms[k]
        before = base.trades[base.trades["ts"].astype("int64") // 1000 <= cut].reset_index(drop=True)
        after = r.trades[r.trades["ts"].astype("int64") // 1000 <= cut].reset_index(drop=True)
        assert before.equals(after)
        if k < base.arrays["halt"][0]:  # after a drawdown stop the book is flat whatever the data
            assert not np.array_equal(r.arrays["A"][0], base.arrays["A"][0])  # the perturbation did bite later
    assert (base.arrays["halt"][0] < len(sim_panel.ts_ms)) == (drawdown_stop > 0)


def test_bad_parameters_name_field_and_value() -> None:
    with pytest.raises(ValueError, match=r"enter_apr: 0.01"):
        BacktestParams(enter_apr=0.01, exit_apr=0.02)
    with pytest.raises(ValueError, match="leverage"):
        BacktestParams(leverage=0)
    with pytest.raises(ValueError, match="execution"):
        BacktestParams(execution="market")
    with pytest.raises(ValueError, match="strategy: unknown 'nope'"):
        get_strategy("nope")


@pytest.mark.parametrize("strategy", ["cash_carry", "perp_perp"])
def test_trade_and_position_tables_add_up_to_the_attribution(sim_panel: Panel, strategy: str) -> None:
    params = BacktestParams(leverage=12, max_hold_h=48, rebalance_h=24, stop_distance=0.03)
    r = run_backtest(sim_panel, get_strategy(strategy).pairs(sim_panel, {}), params)
    assert r.trades["fee_usd"].sum() == pytest.approx(r.attribution["fees"], rel=1e-9)
    assert r.trades["slippage_usd"].sum() == pytest.approx(r.attribution["slippage"], rel=1e-9)
    assert len(r.positions) == r.metrics["trade_count"]
    assert (r.positions["exit_reason"] == "liquidation").sum() == r.metrics["liquidations"]
    assert (r.trades["reason"] == "entry").sum() >= len(r.positions)  # two legs per entry, minus flips
    if strategy == "cash_carry":  # no flips: every bar's funding belongs to exactly one episode
        assert r.positions["funding_usd"].sum() == pytest.approx(r.attribution["funding"], rel=1e-9)
        assert r.positions["pnl_usd"].sum() == pytest.approx(r.equity["equity"].iloc[-1] - params.capital, rel=1e-9)
