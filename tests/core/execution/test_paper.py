"""Paper trading on a replay: `fundarb trade --venue paper` over a recording of the simulator's streams (landed
by the capture's path, replayed by `ReplayExchange`), checked against the recording itself.

- every fill is at a recorded quote of its market that was in force at the fill: the ask for a buy, the bid for
  a sell (a paper venue without captured depth fills at the quote);
- every funding payment is -units x the venue's settled rate (recorded by the capture from the venue's history
  as its stream moved past the settlement; the stream's last prediction where none was recorded) x the
  reference price streamed last before it (the mark on binance, the oracle/index on hyperliquid), to the cent,
  with the units from the fills before the settlement; every settlement with a position held is paid."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core.config import ConfigError, ExchangeConfig, ReplayConfig
from fundarb_dagster.core.execution.launch import TradeRun, check, open_trader, trade
from fundarb_dagster.core.execution.ledger import decoded, read_landed
from fundarb_dagster.core.execution.recovery import recover
from fundarb_dagster.core.execution.trader import Trader
from fundarb_dagster.core.landing import stream_glob
from fundarb_dagster.core.units import HOUR_MS

from .trading import capture_in_process, landed_payments, trade_config

pytestmark = pytest.mark.slow
HOURS = 10
SYMBOLS = {
    "binance": ("BTC/USDT", "BTC/USDT:USDT", "ETH/USDT", "ETH/USDT:USDT"),
    "hyperliquid": ("BTC/USDC", "BTC/USDC:USDC"),
}
QUOTE_WINDOW_MS = 20 * 60_000  # a recorded quote counts as in force this long (spacing ~100 s; the Feed may lag)


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    recorded = tmp_path_factory.mktemp("recorded")
    capture = trade_config(recorded, "cash_carry", tuple(SYMBOLS))
    capture = replace(
        capture,
        exchanges=tuple(ExchangeConfig(id=e, symbols=s) for e, s in SYMBOLS.items()),
        sim=replace(capture.sim, speed=7200.0),
    )
    asyncio.run(capture_in_process(capture, recorded, HOURS, ("tickers", "funding")))

    data_dir = tmp_path_factory.mktemp("paper")
    config = replace(
        capture,
        data_dir=str(data_dir),
        source="replay",
        # a pace the Feed keeps up with on a loaded 2-core machine (~50 quotes per wall second)
        replay=ReplayConfig(path=str(recorded), format="landing", speed=900.0),
        trade=replace(capture.trade, enter_apr=0.05, exit_apr=0.01, progress_interval_s=1e9),
    )
    said: list[str] = []
    until = config.sim.start_ms + (HOURS - 1) * HOUR_MS

    async def run() -> tuple[Trader, dict[str, int]]:
        run = TradeRun(venue="paper", until_ms=until)
        trader = await open_trader(check(config, run), run, said.append)
        try:
            await recover(trader)
            await trader.run(until_ms=until)
        finally:
            await trader.gateway.close()
        return trader, {e: v.market.max_quote_age_ms for e, v in trader.gateway.exchanges.items()}

    trader, lag = asyncio.run(run())
    return {
        "config": config,
        "recorded": recorded,
        "trader": trader,
        "lag": lag,
        "said": said,
        "writer": "trader-trader",
    }


def recorded(path: Path, stream: str) -> duckdb.DuckDBPyRelation:
    return duckdb.sql(f"SELECT * FROM read_parquet('{stream_glob(path, stream)}', hive_partitioning = true)")


def test_paper_run_trades_on_quotes_the_stream_kept_up_with(paper_run: dict) -> None:
    assert not paper_run["trader"].unhedged(), paper_run["said"]
    # every paper fill of every venue is landed: the venues' replays run on one clock, the trader's
    fills = read_landed(paper_run["config"].data_path, "fills", paper_run["writer"])
    landed = sorted(zip(decoded(fills, "exchange"), decoded(fills, "trade_id"), strict=True))
    venues = paper_run["trader"].gateway.exchanges
    made = sorted((e, str(t["id"])) for e, v in venues.items() for t in v.private.matching.trades)
    assert landed == made and {e for e, _ in made} == set(SYMBOLS)
    # the oldest quote any order met: the recording's spacing (~100 s), not a Feed falling behind the replay
    assert max(paper_run["lag"].values()) < QUOTE_WINDOW_MS, paper_run["lag"]
    fills = read_landed(paper_run["config"].data_path, "fills", paper_run["writer"])
    assert len(fills) >= 2
    assert set(decoded(fills, "exchange")) <= set(SYMBOLS)


def test_every_fill_is_at_a_recorded_quote_in_force(paper_run: dict) -> None:
    fills = read_landed(paper_run["config"].data_path, "fills", paper_run["writer"])
    quotes = recorded(paper_run["recorded"], "tickers").df()
    for rec, exchange, symbol in zip(fills, decoded(fills, "exchange"), decoded(fills, "symbol"), strict=True):
        t = int(rec["ts_ms"])
        mine = quotes[(quotes["exchange"] == exchange) & (quotes["symbol"] == symbol)]
        mine = mine[(mine["ts_ms"] <= t) & (mine["ts_ms"] > t - QUOTE_WINDOW_MS)]
        side = "ask" if rec["side"] > 0 else "bid"
        assert float(rec["price"]) in set(mine[side].astype(float)), (exchange, symbol, t, float(rec["price"]))


def test_funding_paid_is_the_streamed_rate_on_the_streamed_reference_price(paper_run: dict) -> None:
    config = paper_run["config"]
    fills = read_landed(config.data_path, "fills", paper_run["writer"])
    payments = read_landed(config.data_path, "funding_payments", paper_run["writer"])
    funding = recorded(paper_run["recorded"], "funding").df().sort_values("ts_ms", kind="stable")
    settled = funding[funding["is_settled"] == 1]
    funding = funding[funding["is_settled"] == 0]
    assert len(settled), "the capture recorded the venues' settled rates"
    trades: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for rec, e, s in zip(fills, decoded(fills, "exchange"), decoded(fills, "symbol"), strict=True):
        trades[(e, s)].append((int(rec["ts_ms"]), float(rec["side"]) * float(rec["amount"])))
    expected = {}
    until = config.sim.start_ms + (HOURS - 1) * HOUR_MS
    for (exchange, symbol), rows in trades.items():
        if ":" not in symbol:
            continue
        stream = funding[(funding["exchange"] == exchange) & (funding["symbol"] == symbol)]
        for settlement in sorted(set(stream["funding_ts_ms"].astype(int))):
            units = sum(u for t, u in rows if t < settlement)
            if not units or settlement > until:
                continue
            final = settled[(settled["exchange"] == exchange) & (settled["symbol"] == symbol)
                            & (settled["funding_ts_ms"] == settlement)]  # fmt: skip
            rate = float(
                (final if len(final) else stream[stream["funding_ts_ms"] == settlement])["funding_rate"].iloc[-1]
            )
            before = stream[stream["ts_ms"] <= settlement].iloc[-1]
            price = float(before["index_price"] if exchange == "hyperliquid" else before["mark_price"])
            expected[(exchange, symbol, settlement)] = -units * rate * price
    booked = landed_payments(payments)
    assert expected, "the run held a perp through at least one settlement"
    # paid once the stream moved past the settlement: all but one at the very end of the run are paid
    assert {k for k in expected if k[2] < until - HOUR_MS} <= set(booked) <= set(expected)
    for key, amount in booked.items():
        assert amount == pytest.approx(expected[key], abs=0.01), key


def test_a_paper_account_does_not_outlive_its_run_so_its_name_is_not_reused(paper_run: dict) -> None:
    run = TradeRun(venue="paper", until_ms=paper_run["config"].sim.start_ms + HOUR_MS)
    with pytest.raises(ConfigError, match="already has a journal"):
        asyncio.run(trade(paper_run["config"], run, say=lambda _: None))


def test_a_paper_run_closes_its_pairs_at_its_end_because_its_account_ends_with_it(paper_run: dict) -> None:
    # the same replay and strategy as the fixture's trader (which held pairs at its end), under a new name
    config = replace(paper_run["config"], trade=replace(paper_run["config"].trade, name="closing"))
    said: list[str] = []
    until = config.sim.start_ms + (HOURS - 1) * HOUR_MS
    assert asyncio.run(trade(config, TradeRun(venue="paper", until_ms=until), say=said.append)) == 0
    assert any("the paper account ends with this run: flat" in line for line in said), said
    positions = read_landed(config.data_path, "positions", "trader-closing")
    legs = list(zip(decoded(positions, "exchange"), decoded(positions, "symbol"), strict=True))
    last: dict[tuple[str, str], tuple[int, float]] = {}
    held = False
    for rec, leg in zip(positions, legs, strict=True):
        held = held or abs(float(rec["units"])) > 0
        if leg not in last or int(rec["ts_ms"]) >= last[leg][0]:
            last[leg] = (int(rec["ts_ms"]), float(rec["units"]))
    assert held, "the run held pairs before its end"
    # every leg's last landed snapshot is flat, taken after the run's end: nothing is left for funding to accrue on
    assert last and all(units == pytest.approx(0.0, abs=1e-9) for _, units in last.values()), last
    assert min(ts for ts, _ in last.values()) >= until


def test_the_end_of_a_paper_run_does_not_wait_for_funding_streams_whose_replay_ended(paper_run: dict) -> None:
    """At its end a paper venue waits (bounded) for its funding streams to pass the clock, as a lagging stream
    pays late; a replay that ran out never will, so once every funding stream of the venue has ended `end`
    returns, not caught up, whatever the bound (an hour here, asked past the recording's end). The replay's
    last hour, binance's perps (whose funding it streams)."""
    config = paper_run["config"]
    last_hour = config.sim.start_ms + (HOURS - 1) * HOUR_MS
    replay = replace(config.replay, start=pd.Timestamp(last_hour, unit="ms").isoformat())
    config = replace(config, replay=replay, trade=replace(config.trade, name="ended"))
    run = TradeRun(venue="paper", until_ms=last_hour + HOUR_MS)
    perps = {s for s in SYMBOLS["binance"] if ":" in s}

    async def end() -> bool:
        trader = await open_trader(check(config, run), run, lambda _: None)
        try:
            venue = trader.gateway.exchanges["binance"]
            await venue.load_markets()  # starts its streams

            async def streamed() -> None:  # nothing streamed counts as caught up: wait for the perps' funding
                while not perps <= set(venue.market.funding):
                    await asyncio.sleep(0.05)

            # bounded only so that a venue that waits out its hour fails the test instead of holding it up
            await asyncio.wait_for(streamed(), timeout=120)
            return await asyncio.wait_for(venue.end(last_hour + 10 * HOUR_MS, 3_600.0), 120)
        finally:
            await trader.gateway.close()

    assert asyncio.run(end()) is False


def test_a_settlement_is_paid_on_the_streams_last_prediction_however_far_the_clock_ran_ahead() -> None:
    """The account's clock passes a settlement by far more than the grace while the funding stream lags (a busy
    machine under a fast replay): nothing is paid until the stream delivers its last prediction and moves on."""
    from fundarb_dagster.core import schema
    from fundarb_dagster.core.execution.paper import SETTLE_GRACE_MS, PaperMarket

    settlement = 1_793_516_400_000

    def rows(*items: tuple[int, int, float, float]) -> np.ndarray:
        out = schema.empty("funding", len(items))
        for row, (ts, funding_ts, rate, index) in zip(out, items, strict=True):
            row["ts_ms"], row["funding_ts_ms"], row["funding_rate"], row["index_price"] = ts, funding_ts, rate, index
            row["interval_h"], row["mark_price"] = 1.0, index + 5.0
        return out

    class Account:
        paid: list[tuple[str, int, float, float]] = []

        def on_funding(self, symbol: str, t: int, rate: float, price: float) -> None:
            self.paid.append((symbol, t, rate, price))

    market, account, symbol = PaperMarket(source=None, oracle=True), Account(), "BTC/USDC:USDC"
    market.add_funding(symbol, rows((settlement - 120_000, settlement, 1.0e-5, 61_000.0)))
    market._pay_funding(account, upto=settlement + 10 * SETTLE_GRACE_MS)  # the clock far ahead of the stream
    assert account.paid == []
    # the stream catches up: its last prediction for the settlement, then a row naming the next one
    market.add_funding(symbol, rows((settlement - 1_000, settlement, 2.0e-5, 61_413.0)))
    market._pay_funding(account, upto=settlement + 10 * SETTLE_GRACE_MS)
    assert account.paid == []  # not moved on, not streamed past the grace: the last word may still come
    market.add_funding(symbol, rows((settlement + 1_000, settlement + HOUR_MS, 3.0e-5, 61_500.0)))
    market._pay_funding(account, upto=settlement + 10 * SETTLE_GRACE_MS)
    assert account.paid == [(symbol, settlement, 2.0e-5, 61_413.0)]  # the last prediction, on the oracle before it
    # the next settlement: the source ends before the stream moves past it; the run's end settles it as streamed
    market.add_funding(symbol, rows((settlement + HOUR_MS - 1_000, settlement + HOUR_MS, 4.0e-5, 61_600.0)))
    market._pay_funding(account, upto=settlement + HOUR_MS + 10 * SETTLE_GRACE_MS)
    assert len(account.paid) == 1
    market.ended_at = settlement + HOUR_MS + 300_000
    market._pay_funding(account, upto=settlement + HOUR_MS + 300_000)
    assert account.paid[1:] == [(symbol, settlement + HOUR_MS, 4.0e-5, 61_600.0)]


def test_a_settlement_is_paid_on_the_venues_settled_rate_where_the_stream_carries_it() -> None:
    """The capture missed the interval's last minutes (its last prediction 3.5 min before): the settled row the
    Feed fetched as the stream moved on is paid, not the stale prediction; without one, the prediction is."""
    from fundarb_dagster.core import schema
    from fundarb_dagster.core.execution.paper import PaperMarket

    settlement = 1_793_516_400_000

    def rows(*items: tuple[int, int, float, int]) -> np.ndarray:
        out = schema.empty("funding", len(items))
        for row, (ts, funding_ts, rate, is_settled) in zip(out, items, strict=True):
            row["ts_ms"], row["funding_ts_ms"], row["funding_rate"], row["is_settled"] = (
                ts,
                funding_ts,
                rate,
                is_settled,
            )
            row["interval_h"], row["mark_price"], row["index_price"] = 1.0, 61_000.0, 60_990.0
        return out

    class Account:
        def __init__(self) -> None:
            self.paid: list[tuple[str, int, float, float]] = []

        def on_funding(self, symbol: str, t: int, rate: float, price: float) -> None:
            self.paid.append((symbol, t, rate, price))

    for fetched, rate in ((True, 1.3e-5), (False, 1.0e-5)):
        market, account, symbol = PaperMarket(source=None, oracle=True), Account(), "BTC/USDC:USDC"
        market.add_funding(symbol, rows((settlement - 210_000, settlement, 1.0e-5, 0)))
        if fetched:  # the Feed's order: the settled row before the row naming the next settlement
            market.add_funding(symbol, rows((settlement + 5, settlement + 5, 1.3e-5, 1)))
        market.add_funding(symbol, rows((settlement + 45_000, settlement + HOUR_MS, 2.0e-5, 0)))
        market._pay_funding(account, upto=settlement + 60_000)
        assert account.paid == [(symbol, settlement, rate, 60_990.0)]


def test_a_paper_venue_catches_up_when_its_funding_streams_pass_the_clock() -> None:
    from fundarb_dagster.core import schema
    from fundarb_dagster.core.execution.paper import PaperMarket

    market = PaperMarket(source=None, oracle=False)
    assert market.caught_up(1_000)  # nothing streamed: nothing to wait for
    for symbol, last in (("BTC/USDT:USDT", 2_000), ("ETH/USDT:USDT", 900)):
        rows = schema.empty("funding", 1)
        rows["ts_ms"], rows["funding_ts_ms"] = last, 28_800_000
        market.add_funding(symbol, rows)
    assert not market.caught_up(1_000)  # ETH's stream is behind the clock: its settlements may not be final
    rows = schema.empty("funding", 1)
    rows["ts_ms"], rows["funding_ts_ms"] = 1_001, 28_800_000
    market.add_funding("ETH/USDT:USDT", rows)
    assert market.caught_up(1_000) and not market.caught_up(1_001)
