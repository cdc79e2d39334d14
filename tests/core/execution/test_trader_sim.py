"""The trader's proof on the simulator: multi-day runs of each strategy on an 8h venue (binance) and a 1h venue
(hyperliquid), with every order fault injected, checked against what the venues themselves booked.

- zero duplicate orders: every venue order has its own client id, and the trader landed its intent first;
- every fill the venue made is landed once, none invented;
- zero unhedged exposure after the leg timeout: from the venues' trades, every stretch in which a pair's legs
  differ closes within the repair rounds' time, and none is left open;
- every fault counted: the venue's counters per kind equal what the trader saw (refused, unanswered, not
  filled by the leg timeout);
- funding received equals the model to the cent, per settlement: -units x settled rate x reference price,
  computed here from the premium samples and the world's paths (`trading.expected_funding`).

The trader moves the clock itself (`--stepped`), so three days take seconds and each run is repeatable."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fundarb_dagster.core.execution.ids import Purpose, parse
from fundarb_dagster.core.execution.ledger import decoded, read_landed
from fundarb_dagster.core.execution.trader import flatten_file
from fundarb_dagster.core.schema import OrderStatus
from fundarb_dagster.core.units import HOUR_MS

from .trading import (
    FAULTS,
    expected_funding,
    landed_payments,
    run_stepped,
    stepped,
    trade_config,
    unhedged_stretches,
    venue_orders,
    venue_trades,
)

HOURS = 96.0
VENUES_8H_1H = ("binance", "hyperliquid")


STRATEGIES = ("cash_carry", "perp_perp")


@pytest.fixture(scope="module")
def proof_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    runs = {}
    for strategy in STRATEGIES:
        data_dir: Path = tmp_path_factory.mktemp(strategy)
        # hourly decisions; a lower entry bar than the default makes the run trade often enough to meet the faults
        config = trade_config(data_dir, strategy, VENUES_8H_1H, FAULTS, enter_apr=0.05, exit_apr=0.01)
        trader, said = stepped(config, HOURS)
        venues = dict(trader.gateway.exchanges)
        runs[strategy] = {
            "config": config,
            "trader": trader,
            "said": said,
            "venues": venues,
            "orders": venue_orders(venues),
            "trades": venue_trades(venues),
            "writer": trader.ledger.writer,
        }
    return runs


@pytest.fixture(params=STRATEGIES)
def proof_run(request: pytest.FixtureRequest, proof_runs: dict[str, dict]) -> dict:
    return proof_runs[request.param]


pytestmark = pytest.mark.slow


def injected_faults(run: dict) -> Counter[str]:
    injected: Counter[str] = Counter()
    for ex in run["venues"].values():
        for (kind, _, _), n in ex.faults_injected.items():
            injected[kind] += n
    return injected


def test_the_runs_met_every_fault_kind(proof_runs: dict[str, dict]) -> None:
    total = sum((injected_faults(run) for run in proof_runs.values()), Counter())
    assert set(total) == {"reject", "timeout", "never_fills", "disconnect"}, total


def test_every_fault_is_counted_by_the_trader(proof_run: dict) -> None:
    injected = injected_faults(proof_run)
    counters = proof_run["trader"].counters
    assert counters.refused == injected["reject"]  # the venue refused: nothing placed
    assert counters.unknown == injected["timeout"] + injected["disconnect"]  # placed, the answer lost
    assert counters.lookups_found == counters.unknown  # each found again by its client id
    assert counters.notes["timeout"] == injected["never_fills"]  # the leg that never fills hits the leg timeout


def test_no_order_is_sent_twice_and_every_venue_order_was_journaled_first(proof_run: dict) -> None:
    orders = proof_run["orders"]
    ids = [o.client_order_id for _, o in orders]
    assert all(parse(cid) is not None for cid in ids)  # every venue order is the trader's
    assert len(ids) == len(set(ids)), [cid for cid, n in Counter(ids).items() if n > 1]
    landed = read_landed(proof_run["config"].data_path, "orders", proof_run["writer"])
    intents = {
        cid
        for cid, status in zip(decoded(landed, "client_order_id"), landed["status"], strict=True)
        if status == OrderStatus.INTENT
    }
    assert set(ids) <= intents
    assert len(ids) >= 10  # the run traded: entries, exits and repairs


def test_every_venue_fill_is_landed_once(proof_run: dict) -> None:
    fills = read_landed(proof_run["config"].data_path, "fills", proof_run["writer"])
    landed = Counter(zip(decoded(fills, "exchange"), decoded(fills, "trade_id"), strict=True))
    venue = Counter((t.exchange, t.trade_id) for t in proof_run["trades"])
    assert landed == venue
    by_trade = {(t.exchange, t.trade_id): t for t in proof_run["trades"]}
    cids = decoded(fills, "client_order_id")
    for rec, exchange, trade_id, cid in zip(
        fills, decoded(fills, "exchange"), decoded(fills, "trade_id"), cids, strict=True
    ):
        venue = by_trade[(exchange, trade_id)]
        assert rec["side"] * rec["amount"] == pytest.approx(venue.units, rel=1e-12)
        # attributed to the order that made it (venue order ids repeat across venues: "1" on each)
        assert cid == venue.client_id and int(rec["leg"]) == parse(cid).leg


def test_one_position_snapshot_per_leg_and_instant(proof_run: dict) -> None:
    # a decision and the reconciliation of the same turn both look at the positions: the later look is landed,
    # not both (the positions table keeps one record per pair, leg and instant)
    positions = read_landed(proof_run["config"].data_path, "positions", proof_run["writer"])
    keys = Counter(zip(decoded(positions, "pair"), positions["leg"].tolist(), positions["ts_ms"].tolist(), strict=True))
    assert len(keys) > 100 and max(keys.values()) == 1


def test_no_pair_stays_unhedged_past_its_repair_rounds(proof_run: dict) -> None:
    trader = proof_run["trader"]
    stretches = unhedged_stretches(trader, proof_run["trades"])
    assert all(end is not None for runs in stretches.values() for _, end in runs), stretches
    timeout_ms = trader.rules.leg_timeout_ms
    # the worst case: the leg timeout, then each repair round (a refused or unanswered repair waits a timeout)
    bound = timeout_ms * (trader.config.max_repairs + 2) + 1_000
    longest = max((end - start for runs in stretches.values() for start, end in runs), default=0)
    assert longest <= bound, (longest, bound)
    assert not trader.unhedged()


def test_funding_received_equals_the_model_to_the_cent(proof_run: dict) -> None:
    config = proof_run["config"]
    start, end = config.sim.start_ms, config.sim.start_ms + int(HOURS * 3_600_000)
    expected = expected_funding(proof_run["venues"], proof_run["trades"], start, end)
    payments = read_landed(config.data_path, "funding_payments", proof_run["writer"])
    booked = landed_payments(payments)
    assert set(booked) == set(expected)
    for key, amount in expected.items():
        assert booked[key] == pytest.approx(amount, abs=0.005), key
    assert sum(booked.values()) == pytest.approx(sum(expected.values()), abs=0.01)
    # the venue's own history says the same (the trader landed what the venue booked, once)
    venue = {
        (e, r["symbol"], r["timestamp"]): r["amount"]
        for e, ex in proof_run["venues"].items()
        for r in ex.private.account.funding_history
    }
    assert venue == booked


def test_a_running_trader_obeys_its_kill_switch_file_and_then_opens_nothing(tmp_path: Path) -> None:
    # `fundarb trade --flatten` beside a running trader touches this file (launch.py); the trader polls it
    config = trade_config(tmp_path, "cash_carry", ("binance", "hyperliquid"), enter_apr=0.05, exit_apr=0.01)
    said: list[str] = []

    async def run() -> tuple[bool, int, Any]:
        trader = await run_stepped(config, 12.0, said.append)
        held = not trader.flat()
        switch = flatten_file(config.data_path, config.trade.name)
        switch.parent.mkdir(parents=True, exist_ok=True)
        switch.touch()
        switched_ms = trader.clock.now()
        await trader.run(until_ms=config.sim.start_ms + 36 * HOUR_MS)  # a day of signals after it
        venue = {e: await ex.fetch_positions() for e, ex in trader.gateway.exchanges.items()}
        await trader.gateway.close()
        return held, switched_ms, (trader, venue)

    held, switched_ms, (trader, venue) = asyncio.run(run())
    assert held, "the trader held pairs when the switch was touched"
    assert any("kill switch" in line for line in said)
    assert trader.flat() and all(p == [] for p in venue.values())
    orders = read_landed(config.data_path, "orders", f"trader-{config.trade.name}")
    after = [
        parse(cid)
        for cid, ts in zip(decoded(orders, "client_order_id"), orders["ts_ms"].tolist(), strict=True)
        if ts >= switched_ms
    ]
    assert after and all(key.purpose is Purpose.FLATTEN for key in after)  # flattened, nothing entered again
