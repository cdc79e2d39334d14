"""The simulator's private API against independent computations: a market order's VWAP walked by hand, partial
fills beyond the book's depth, fees, resting orders reached by the market, venue rules and errors, funding paid
at a settlement (rate x size x reference price, from the funding formula on the premium samples), the
liquidation price and moment by hand, and exact fault counters.

Time is pinned (`sim.now`) and moved by the test (`ex.clock.now_ms`), so each scenario is deterministic."""

from __future__ import annotations

import asyncio
from typing import Any

import ccxt
import numpy as np
import pytest

from fundarb_dagster.core.config import FaultConfig, SimConfig
from fundarb_dagster.core.sources.sim import VENUES, SimExchange
from fundarb_dagster.core.units import HOUR_MS, MINUTE_MS
from fundarb_dagster.core.venues import fees_bps

from .common import START, START_MS, reference_by_hand, run, settled_rate_by_hand

T0 = START_MS + 20 * MINUTE_MS + 123  # inside a funding interval, well before the 08:00 settlement


def pinned(
    venue: str, at_ms: int = T0, faults: FaultConfig | None = None, balances: dict[str, float] | None = None
) -> SimExchange:
    iso = np.datetime_as_string(np.datetime64(at_ms, "ms"), unit="ms") + "Z"
    config = SimConfig(seed=7, start=START, now=iso, faults=faults or FaultConfig())
    ex = SimExchange(venue, config, balances=balances)
    run(ex.load_markets())
    return ex


def hand_walk(levels: list[list[float]], amount: float) -> list[tuple[float, float]]:
    fills, left = [], amount
    for price, size in levels:
        if left <= 1e-12:
            break
        take = min(size, left)
        fills.append((price, take))
        left -= take
    return fills


# -- market orders ---------------------------------------------------------------------------------------------
def test_market_order_walks_the_book_at_its_arrival_and_pays_the_taker_fee() -> None:
    ex = pinned("binance")
    symbol = "BTC/USDT:USDT"
    sent = ex.milliseconds()
    order = run(ex.create_order(symbol, "market", "buy", 1.5, params={"clientOrderId": "m1"}))
    arrival = order["timestamp"]
    assert 0.7 * 20 <= arrival - sent <= 1.3 * 20  # binance's simulated one-way latency
    book = ex.book.structure(ex._m[symbol], arrival)
    fills = hand_walk(book["asks"], 1.5)
    assert len(fills) > 1  # 1.5 BTC goes past the best ask
    assert [t["price"] for t in order["trades"]] == [p for p, _ in fills]
    assert [t["amount"] for t in order["trades"]] == pytest.approx([a for _, a in fills])
    vwap = sum(p * a for p, a in fills) / 1.5
    assert (order["status"], order["filled"], order["average"]) == ("closed", 1.5, pytest.approx(vwap))
    taker = fees_bps("binance").taker("perp") / 1e4
    assert order["fee"]["cost"] == pytest.approx(vwap * 1.5 * taker)
    assert order["clientOrderId"] == "m1" and order["type"] == "market" and order["side"] == "buy"

    balance = run(ex.fetch_balance())
    position = run(ex.fetch_positions())[0]
    margin = vwap * 1.5 / 10  # the default leverage
    assert position["positionMargin"] == pytest.approx(margin)
    assert position["collateral"] == pytest.approx(margin)  # the isolated wallet, as ccxt's binance says it
    assert balance["USDT"]["free"] == pytest.approx(100_000 - margin - vwap * 1.5 * taker)
    mark = position["markPrice"]
    assert balance["USDT"]["total"] == pytest.approx(100_000 - vwap * 1.5 * taker + 1.5 * (mark - vwap))
    assert (position["side"], position["contracts"], position["entryPrice"]) == ("long", 1.5, pytest.approx(vwap))


def test_a_market_order_beyond_the_book_depth_fills_the_depth_and_expires_the_rest() -> None:
    ex = pinned("binance", balances={"USDT": 50_000_000.0})
    symbol = "ETH/USDT:USDT"
    book = run(ex.fetch_order_book(symbol))
    depth = sum(size for _, size in book["bids"])
    amount = round(depth * 1.5, 3)
    order = run(ex.create_order(symbol, "market", "sell", amount))
    arrival_book = ex.book.structure(ex._m[symbol], order["timestamp"])
    available = sum(size for _, size in arrival_book["bids"])
    assert order["status"] == "expired"
    assert order["filled"] == pytest.approx(available) and order["remaining"] == pytest.approx(amount - available)
    assert len(order["trades"]) == len(arrival_book["bids"])
    # the liquidity it took is gone for the next order at the same book update
    again = run(ex.create_order(symbol, "market", "sell", 0.5))
    if ex.book.structure(ex._m[symbol], again["timestamp"])["nonce"] == arrival_book["nonce"]:
        assert again["filled"] == 0.0 and again["status"] == "expired"


def test_okx_amounts_count_contracts_and_cost_uses_the_contract_size() -> None:
    ex = pinned("okx")
    order = run(ex.create_order("BTC/USDT:USDT", "market", "buy", 30))  # 30 contracts of 0.01 BTC
    assert order["filled"] == 30
    assert order["cost"] == pytest.approx(sum(t["price"] * t["amount"] * 0.01 for t in order["trades"]))
    assert run(ex.fetch_positions())[0]["contracts"] == 30 and run(ex.fetch_positions())[0]["contractSize"] == 0.01


# -- limit orders ------------------------------------------------------------------------------------------------
def first_cross_by_hand(ex: SimExchange, symbol: str, side: str, price: float, after: int) -> int:
    m = ex._m[symbol]
    for h in range(after // HOUR_MS, after // HOUR_MS + 48):
        chunk = ex.data.chunk(m, h)
        for s in range(3600):
            t = h * HOUR_MS + s * 1000
            if t <= after:
                continue
            if (side == "buy" and chunk.ask[s] <= price) or (side == "sell" and chunk.bid[s] >= price):
                return t
    raise AssertionError("the market never reached the price")


def test_a_resting_limit_order_fills_at_its_price_as_maker_when_the_market_reaches_it() -> None:
    ex = pinned("bybit")
    symbol = "ETH/USDT:USDT"
    bid = run(ex.fetch_ticker(symbol))["bid"]
    price = round(bid * (1 - 0.0008), 2)
    order = run(ex.create_order(symbol, "limit", "buy", 2.0, price, params={"clientOrderId": "l1"}))
    assert (order["status"], order["filled"]) == ("open", 0.0)
    expected = first_cross_by_hand(ex, symbol, "buy", price, order["timestamp"])
    assert run(ex.fetch_open_orders(symbol))[0]["id"] == order["id"]
    ex.clock.now_ms = expected - 1
    assert run(ex.fetch_order(order["id"]))["status"] == "open"
    ex.clock.now_ms = expected + 10 * MINUTE_MS
    done = run(ex.fetch_order(None, params={"clientOrderId": "l1"}))
    fills = done["trades"]
    assert fills[0]["timestamp"] == expected and {t["takerOrMaker"] for t in fills} == {"maker"}
    assert {t["price"] for t in fills} == {price}
    maker = fees_bps("bybit").maker("perp") / 1e4
    assert done["fee"]["cost"] == pytest.approx(done["filled"] * price * maker)
    assert run(ex.fetch_my_trades(symbol))[-len(fills) :] == fills
    if done["status"] == "closed":
        assert done["filled"] == 2.0 and run(ex.fetch_open_orders(symbol)) == []


def test_post_only_crossing_is_refused_on_binance_and_canceled_on_bybit() -> None:
    for venue, outcome in (("binance", ccxt.OrderNotFillable), ("bybit", "canceled")):
        ex = pinned(venue)
        ask = run(ex.fetch_ticker("BTC/USDT:USDT"))["ask"]
        call = ex.create_order("BTC/USDT:USDT", "limit", "buy", 0.01, ask * 1.001, params={"postOnly": True})
        if outcome == "canceled":
            order = run(call)
            assert (order["status"], order["filled"], order["postOnly"]) == ("canceled", 0.0, True)
        else:
            with pytest.raises(outcome, match="-5022"):
                run(call)


def test_ioc_and_fok_limits_take_what_crosses_and_leave_nothing_resting() -> None:
    ex = pinned("binance", balances={"USDT": 10_000_000.0})
    symbol = "SOL/USDT:USDT"
    book = run(ex.fetch_order_book(symbol))
    amount = round(sum(size for _, size in book["asks"][:8]), 2)  # more than the levels up to the limit hold
    limit = book["asks"][2][0]
    ioc = run(ex.create_order(symbol, "limit", "buy", amount, limit, params={"timeInForce": "IOC"}))
    arrival_asks = ex.book.structure(ex._m[symbol], ioc["timestamp"])["asks"]
    crossing = sum(size for price, size in arrival_asks if price <= limit)
    assert ioc["status"] == "canceled" and ioc["filled"] == pytest.approx(min(crossing, amount))
    assert max(t["price"] for t in ioc["trades"]) <= limit
    fok = run(ex.create_order(symbol, "limit", "buy", amount, limit, params={"timeInForce": "FOK"}))
    assert (fok["status"], fok["filled"]) == ("expired", 0.0)
    assert run(ex.fetch_open_orders(symbol)) == []


# -- venue rules -------------------------------------------------------------------------------------------------
def test_venue_rules_precision_min_notional_reduce_only_margin_and_leverage() -> None:
    ex = pinned("hyperliquid")
    btc = "BTC/USDC:USDC"
    with pytest.raises(ccxt.InvalidOrder, match=r"minimum value of \$10"):
        run(ex.create_order(btc, "market", "buy", 0.0001))  # ~$6 < hyperliquid's $10
    with pytest.raises(ccxt.InvalidOrder, match="minimum amount precision"):
        run(ex.create_order(btc, "market", "buy", 0.00001))
    with pytest.raises(ccxt.InvalidOrder, match="Reduce only"):
        run(ex.create_order(btc, "market", "sell", 0.01, params={"reduceOnly": True}))  # nothing to reduce
    with pytest.raises(ccxt.InsufficientFunds, match="Insufficient margin"):
        run(ex.create_order(btc, "market", "buy", 100.0))  # ~$6M at 10x on 100k
    with pytest.raises(ccxt.ExchangeError, match="Invalid leverage"):
        run(ex.set_leverage(41, btc))  # hyperliquid BTC: 40x at most
    order = run(ex.create_order(btc, "market", "buy", 0.012345))
    assert order["amount"] == 0.0123  # truncated to the lot, as ccxt does before sending
    assert run(ex.set_leverage(40, btc))["longLeverage"] == 40
    with pytest.raises(ccxt.NotSupported, match="isolated"):
        run(ex.set_margin_mode("cross", btc))
    assert run(ex.set_margin_mode("isolated", btc))["marginMode"] == "isolated"
    with pytest.raises(ccxt.InvalidOrder, match="Reduce only"):
        run(ex.create_order(btc, "market", "buy", 0.01, params={"reduceOnly": True}))  # it would add
    closing = run(ex.create_order(btc, "market", "sell", 0.02, params={"reduceOnly": True}))
    assert closing["filled"] == 0.0123  # a reduce-only order fills the position, not past it
    assert run(ex.fetch_positions()) == []


def test_client_order_ids_are_unique_among_open_orders_on_binance_and_forever_on_bybit() -> None:
    for venue, reusable in (("binance", True), ("bybit", False)):
        ex = pinned(venue)
        bid = run(ex.fetch_ticker("ETH/USDT:USDT"))["bid"]
        first = run(ex.create_order("ETH/USDT:USDT", "limit", "buy", 0.1, round(bid * 0.98, 2), {"clientOrderId": "c"}))
        with pytest.raises(ccxt.InvalidOrder):
            run(ex.create_order("ETH/USDT:USDT", "limit", "buy", 0.1, round(bid * 0.98, 2), {"clientOrderId": "c"}))
        assert run(ex.cancel_order(first["id"], "ETH/USDT:USDT"))["status"] == "canceled"
        with pytest.raises(ccxt.OrderNotFound):
            run(ex.cancel_order(first["id"], "ETH/USDT:USDT"))
        again = ex.create_order("ETH/USDT:USDT", "market", "buy", 0.1, params={"clientOrderId": "c"})
        if reusable:
            assert run(again)["status"] == "closed"
        else:
            with pytest.raises(ccxt.InvalidOrder, match="110072"):
                run(again)


def test_leverage_tiers_are_ccxt_structures_and_bound_leverage() -> None:
    ex = pinned("binance")
    tiers = run(ex.fetch_market_leverage_tiers("BTC/USDT:USDT"))
    assert [t["maxLeverage"] for t in tiers[:3]] == [125.0, 100.0, 75.0]
    assert set(tiers[0]) == {
        "tier",
        "symbol",
        "currency",
        "minNotional",
        "maxNotional",
        "maintenanceMarginRate",
        "maxLeverage",
        "info",
    }
    assert run(ex.fetch_leverage_tiers(["ETH/USDT:USDT"]))["ETH/USDT:USDT"][0]["maxLeverage"] == 125.0
    assert ex.markets["SOL/USDT:USDT"]["limits"]["leverage"]["max"] == 75.0
    with pytest.raises(ccxt.BadRequest, match="-4028"):
        run(ex.set_leverage(76, "SOL/USDT:USDT"))
    # at 125x only the first tier's 50 000 USDT of notional is allowed
    run(ex.set_leverage(125, "BTC/USDT:USDT"))
    with pytest.raises(ccxt.OperationRejected, match="-2027"):
        run(ex.create_order("BTC/USDT:USDT", "market", "buy", 1.0))


# -- funding ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("venue", "symbol", "side"),
    [("binance", "BTC/USDT:USDT", "sell"), ("hyperliquid", "ETH/USDC:USDC", "buy"), ("okx", "ETH/USDT:USDT", "sell")],
)
def test_funding_paid_at_each_settlement_is_rate_times_size_times_reference_price(
    venue: str, symbol: str, side: str
) -> None:
    ex = pinned(venue)
    amount = 20 if venue == "okx" else 0.4
    order = run(ex.create_order(symbol, "market", side, amount))
    spec = VENUES[venue]
    cash_before = run(ex.fetch_balance())["info"]["cash"][spec.quote]
    ex.clock.now_ms = START_MS + 16 * HOUR_MS + 1  # two binance/okx settlements, 16 hyperliquid ones
    rows = run(ex.fetch_funding_history(symbol))
    interval_h = spec.funding_interval_h
    settlements = list(
        range(START_MS + int(interval_h * HOUR_MS), START_MS + 16 * HOUR_MS + 1, int(interval_h * HOUR_MS))
    )
    assert [r["timestamp"] for r in rows] == settlements
    base = order["filled"] * ex.markets[symbol]["contractSize"]
    sign = 1 if side == "buy" else -1
    for row in rows:
        t = row["timestamp"]
        rate = settled_rate_by_hand(ex, symbol, t, interval_h)
        reference = reference_by_hand(ex, symbol, t, oracle=venue == "hyperliquid")
        assert row["amount"] == pytest.approx(-sign * base * reference * rate, rel=1e-12, abs=1e-12)
        assert row["code"] == spec.quote and row["symbol"] == symbol and row["id"]
    cash_after = run(ex.fetch_balance())["info"]["cash"][spec.quote]
    assert cash_after - cash_before == pytest.approx(sum(r["amount"] for r in rows))
    position = run(ex.fetch_positions())[0]
    assert position["positionMargin"] == pytest.approx(order["cost"] / 10 + sum(r["amount"] for r in rows))


def test_every_position_is_paid_at_a_settlement_they_share() -> None:
    """Two perps of one venue settle at the same instant: each position is paid, none skipped."""
    ex = pinned("binance")
    symbols = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")
    for symbol, amount in zip(symbols, (0.2, 3.0, 50.0), strict=True):
        run(ex.create_order(symbol, "market", "sell", amount))
    ex.clock.now_ms = START_MS + 24 * HOUR_MS + 1
    rows = run(ex.fetch_funding_history())
    paid = sorted((r["timestamp"], r["symbol"]) for r in rows)
    settlements = [START_MS + k * 8 * HOUR_MS for k in (1, 2, 3)]
    assert paid == sorted((t, s) for t in settlements for s in symbols)
    assert all(r["amount"] != 0 for r in rows)


# -- liquidation ---------------------------------------------------------------------------------------------------
def test_a_125x_long_is_liquidated_at_the_first_mark_at_its_maintenance_margin() -> None:
    ex = pinned("binance")
    symbol = "ETH/USDT:USDT"
    run(ex.set_leverage(125, symbol))
    order = run(ex.create_order(symbol, "market", "buy", 5.0))
    position = run(ex.fetch_positions())[0]
    entry, q = position["entryPrice"], 5.0
    margin = position["positionMargin"]
    assert margin == pytest.approx(order["cost"] / 125)
    # tier 1 of binance ETH (notional <= 50 000): mmr 0.4 %, maintenance amount 0
    hand_price = (margin + 0.0 - q * entry) / (q * 0.004 - q)
    assert position["liquidationPrice"] == pytest.approx(hand_price)
    # the first second whose mark takes the equity to the maintenance margin, scanned by hand
    m = ex._m[symbol]
    expected = None
    for h in range(order["timestamp"] // HOUR_MS, order["timestamp"] // HOUR_MS + 8):
        chunk = ex.data.chunk(m, h)
        times = h * HOUR_MS + np.arange(3600) * 1000
        equity = margin + q * (chunk.mark - entry)
        hits = np.flatnonzero((equity <= q * chunk.mark * 0.004) & (times > order["timestamp"]))
        if hits.size:
            expected = int(times[hits[0]])
            break
    assert expected is not None and expected < START_MS + 8 * HOUR_MS  # before any funding settlement
    ex.clock.now_ms = expected + HOUR_MS
    liquidations = run(ex.fetch_my_liquidations(symbol))
    assert [(x["timestamp"], x["contracts"], x["side"]) for x in liquidations] == [(expected, 5.0, "long")]
    assert run(ex.fetch_positions()) == []
    balance = run(ex.fetch_balance())["USDT"]
    assert balance["total"] == pytest.approx(100_000 - order["fee"]["cost"] - margin)
    closing = run(ex.fetch_orders(symbol))[-1]
    assert (closing["side"], closing["reduceOnly"], closing["info"]["reason"]) == ("sell", True, "liquidation")


# -- faults and private streams ---------------------------------------------------------------------------------------
def test_order_faults_happen_as_drawn_and_their_counters_are_exact() -> None:
    faults = FaultConfig(
        order_reject_rate=0.15, order_timeout_rate=0.15, order_never_fill_rate=0.1, order_disconnect_rate=0.1
    )
    ex = pinned("bybit", faults=faults)
    symbol = "ETH/USDT:USDT"
    seen: dict[str, int] = {"reject": 0, "timeout": 0, "never_fills": 0, "disconnect": 0}
    placed_after_error = []
    for i in range(80):
        cid = f"f{i}"
        try:
            order = run(
                ex.create_order(symbol, "market", "buy" if i % 2 else "sell", 0.05, params={"clientOrderId": cid})
            )
            if order["status"] == "open":
                seen["never_fills"] += 1
        except ccxt.RequestTimeout:
            seen["timeout"] += 1
            placed_after_error.append(cid)
        except ccxt.NetworkError as error:  # after RequestTimeout: it is a NetworkError too
            seen["reject" if isinstance(error, ccxt.ExchangeNotAvailable) else "disconnect"] += 1
            if not isinstance(error, ccxt.ExchangeNotAvailable):
                placed_after_error.append(cid)
        except ccxt.ExchangeError:
            seen["reject"] += 1
    assert {k: ex.faults_injected[(k, "orders", symbol)] for k in seen} == seen
    assert all(v > 0 for v in seen.values())
    # a timed-out or disconnected order was placed: it is found by its client id, and a retry is a duplicate
    for cid in placed_after_error:
        assert run(ex.fetch_order(None, symbol, {"clientOrderId": cid}))["clientOrderId"] == cid
        refused_as_duplicate = False
        for _ in range(5):  # a busy venue (the reject fault) refuses before it looks at the id: try again
            try:
                run(ex.create_order(symbol, "market", "buy", 0.05, params={"clientOrderId": cid}))
                break
            except ccxt.InvalidOrder:
                refused_as_duplicate = True
                break
            except ccxt.ExchangeError:
                continue
        assert refused_as_duplicate
    stuck = [o for o in run(ex.fetch_open_orders(symbol))]
    assert len(stuck) == seen["never_fills"]
    ex.clock.now_ms = T0 + 6 * HOUR_MS
    assert len(run(ex.fetch_open_orders(symbol))) == seen["never_fills"]  # never fills, even much later


def test_watch_orders_and_my_trades_stream_fills_and_a_disconnect_breaks_them() -> None:
    async def go() -> dict[str, Any]:
        ex = SimExchange("binance", SimConfig(seed=7, start=START, speed=600.0))
        await ex.load_markets()
        symbol = "ETH/USDT:USDT"
        orders = asyncio.ensure_future(ex.watch_orders(symbol))
        trades = asyncio.ensure_future(ex.watch_my_trades())
        await asyncio.sleep(0)
        placed = await ex.create_order(symbol, "market", "buy", 0.2)
        got = {"placed": placed, "orders": await orders, "trades": await trades}
        bid = (await ex.fetch_ticker(symbol))["bid"]
        resting = await ex.create_order(symbol, "limit", "sell", 0.2, round(bid * 1.0005, 2))
        got["resting"] = resting
        got["updates"] = []
        while not got["updates"] or got["updates"][-1]["filled"] == 0:
            got["updates"] += await asyncio.wait_for(ex.watch_orders(symbol), 30)
        ex.private._break_streams()
        with pytest.raises(ccxt.NetworkError):
            await ex.watch_my_trades()
        return got

    got = run(go())
    assert [o["id"] for o in got["orders"]] == [got["placed"]["id"]] and got["orders"][0]["status"] == "closed"
    assert [t["order"] for t in got["trades"]] == [got["placed"]["id"]] * len(got["trades"])
    # the resting sell's own updates: placed (open), then filled by the market, as maker
    updates = got["updates"]
    assert {u["id"] for u in updates} == {got["resting"]["id"]}
    assert updates[0]["status"] == "open" and updates[0]["filled"] == 0 and updates[-1]["filled"] > 0
    assert updates[-1]["trades"][0]["takerOrMaker"] == "maker"
