"""core/venues.py: one row of facts per venue, checked against ccxt's own classes, real recorded data, and
every reader (Feed, live source, simulator, backtest fees, opportunity costs, config)."""

from __future__ import annotations

import ast
import csv
import re
from pathlib import Path

import ccxt.pro
import pytest

import fundarb_dagster
from fundarb_dagster.core import opportunities, venues
from fundarb_dagster.core.backtest.panel import make_market
from fundarb_dagster.core.config import LiveConfig, SimConfig, default_exchanges, known_exchanges
from fundarb_dagster.core.instruments import InstrumentRegistry
from fundarb_dagster.core.sources.feed import Feed
from fundarb_dagster.core.sources.live import create_live_exchange, exchange_settings
from fundarb_dagster.core.sources.sim import VENUES, SimExchange

PACKAGE = Path(fundarb_dagster.__file__).parent
CCXT_IDS = [(facts.id, ccxt_id) for facts in venues.VENUE_FACTS.values() for ccxt_id in facts.ccxt_ids]


def test_every_simulated_venue_has_a_facts_row_and_the_sim_reads_it() -> None:
    assert set(VENUES) == set(venues.simulated_venues()) == set(known_exchanges("sim"))
    for venue_id, spec in VENUES.items():
        assert spec.facts is venues.VENUE_FACTS[venue_id]
        assert spec.id == venue_id and spec.quote == spec.facts.quote


def test_each_row_is_found_by_every_ccxt_id_and_nothing_else() -> None:
    for venue_id, ccxt_id in CCXT_IDS:
        assert venues.venue_facts(ccxt_id) is venues.VENUE_FACTS[venue_id]
        assert getattr(ccxt.pro, ccxt_id, None) is not None, f"{ccxt_id} is not a ccxt.pro exchange"
    assert venues.venue_facts("kraken") is None
    assert {venues.VENUE_FACTS[v].funding_channel for v in venues.VENUE_FACTS} <= set(venues.FUNDING_CHANNELS)


@pytest.mark.parametrize(("venue_id", "ccxt_id"), CCXT_IDS)
def test_feed_reads_funding_where_the_row_says_on_the_real_ccxt_class(venue_id: str, ccxt_id: str) -> None:
    facts = venues.VENUE_FACTS[venue_id]
    ex = create_live_exchange(ccxt_id, LiveConfig(), {})
    assert Feed(ex, InstrumentRegistry()).funding_mode() == facts.funding_channel
    # the row agrees with ccxt about the venue's streams
    assert bool(ex.has.get("watchMarkPrice")) == facts.mark_price_stream
    if facts.funding_channel == "funding_rate":
        assert ex.has["watchFundingRate"]
    # and the live source loads only the kinds the row names, each one ccxt's class knows
    types = exchange_settings(ccxt_id, {})["options"]["fetchMarkets"]["types"]
    assert types == list(facts.market_types[ccxt_id])
    assert set(types) <= set(ex.options["fetchMarkets"]["types"])


@pytest.mark.parametrize("venue_id", sorted(VENUES))
def test_feed_reads_the_simulated_venues_funding_channel_from_the_same_row(venue_id: str) -> None:
    facts = venues.VENUE_FACTS[venue_id]
    sim = SimExchange(venue_id, SimConfig())
    assert Feed(sim, InstrumentRegistry()).funding_mode() == facts.funding_channel == sim.funding_via
    assert sim.has["watchMarkPrice"] == facts.mark_price_stream
    unified = SimExchange(venue_id, SimConfig(), funding_channel="unified")
    assert Feed(unified, InstrumentRegistry()).funding_mode() == "funding_rate"


def test_an_unknown_venue_streams_funding_if_ccxt_can_else_is_polled() -> None:
    kraken = create_live_exchange("krakenfutures", LiveConfig(), {})
    expected = "funding_rate" if kraken.has.get("watchFundingRate") else "poll"
    assert Feed(kraken, InstrumentRegistry()).funding_mode() == expected
    assert "fetchMarkets" not in exchange_settings("krakenfutures", {})["options"]


def test_market_ids_spell_the_symbols_of_real_recorded_funding(fixtures_dir: Path) -> None:
    """The funding fixture names each series by venue id and by canonical symbol (BTC-USDT-PERP)."""
    path = fixtures_dir / "funding_2025_2026" / "funding_btc_eth_binance_bybit_hyperliquid_utc.csv"
    with path.open() as f:
        pairs = {(r["venue"], r["venue_symbol"], r["canonical_symbol"]) for r in csv.DictReader(f)}
    assert len(pairs) == 6
    for venue, venue_symbol, canonical in pairs:
        base, quote, kind = canonical.split("-")
        assert kind == "PERP" and quote == venues.VENUE_FACTS[venue].quote
        assert venues.venue_market_id(venue, f"{base}/{quote}:{quote}") == venue_symbol


@pytest.mark.parametrize(
    ("exchange_id", "symbol", "market_id"),
    [
        ("okx", "BTC/USDT", "BTC-USDT"),  # the okx recording's topics (ws_recordings)
        ("okx", "UNI/USD:UNI", "UNI-USD-SWAP"),
        ("okx", "BTC/USD:BTC-220624", "BTC-USD-220624"),
        ("binance", "BTC/USD:BTC", "BTCUSD_PERP"),
        ("binancecoinm", "ETH/USD:ETH-260327", "ETHUSD_260327"),
        ("bybit", "BTC/USDT:USDT-260327", "BTCUSDT-260327"),
        ("hyperliquid", "PURR/USDC", "PURR/USDC"),
        ("kraken", "BTC/USD", "BTCUSD"),
    ],
)
def test_market_id_formats(exchange_id: str, symbol: str, market_id: str) -> None:
    assert venues.venue_market_id(exchange_id, symbol) == market_id


def test_fees_are_bps_in_the_row_and_fractions_in_the_backtest() -> None:
    # published base-tier schedules (bps): bybit perp taker 5.5, hyperliquid perp maker 1.5, okx spot maker 8
    assert venues.VENUE_FACTS["bybit"].fees_bps.taker("perp") == 5.5
    bybit = make_market("bybit", "BTC/USDT:USDT", "BTC", "perp")
    assert (bybit.taker_fee, bybit.maker_fee, bybit.mmr) == (0.00055, 0.0002, 0.005)
    hl_spot = make_market("hyperliquid", "BTC/USDC", "BTC", "spot")
    assert (hl_spot.taker_fee, hl_spot.maker_fee, hl_spot.mmr) == (0.0007, 0.0004, 0.0)
    assert make_market("okx", "BTC/USDT", "BTC", "spot").maker_fee == 0.0008
    unknown = make_market("kraken", "BTC/USD:USD", "BTC", "perp")
    assert (unknown.taker_fee, unknown.mmr) == (0.0006, 0.005)
    for facts in venues.VENUE_FACTS.values():
        fees = facts.fees_bps
        for value in (fees.spot_taker, fees.spot_maker, fees.perp_taker, fees.perp_maker):
            assert 0 < value < 50  # bps, not fractions (a fraction would be < 0.01)
        for ccxt_id in facts.ccxt_ids:
            expected = {"spot": fees.spot_taker, "swap": fees.perp_taker}
            assert opportunities.DEFAULT_TAKER_FEES_BPS[ccxt_id] == expected
            assert opportunities.FeeSchedule().fee_bps(ccxt_id, "swap") == fees.taker("swap")
            perp = make_market(ccxt_id, "X/USDT:USDT", "X", "perp")
            assert perp.taker_fee * 1e4 == pytest.approx(fees.perp_taker, rel=1e-12)
    assert opportunities.FeeSchedule().fee_bps("kraken", "swap") == venues.DEFAULT_FEES_BPS.perp_taker == 6.0


def test_default_config_quotes_each_venue_in_its_rows_quote() -> None:
    for exchange in default_exchanges():
        quote = venues.VENUE_FACTS[exchange.id].quote
        assert all(s.split("/")[1].split(":")[0] == quote for s in exchange.symbols)


def test_the_panel_query_pays_funding_on_the_oracle_price_exactly_where_the_rows_say() -> None:
    sql = (PACKAGE.parent / "sql" / "backtest" / "panel_quotes.sql").read_text()
    in_sql = set(re.findall(r"exchange = '([a-z]+)' THEN coalesce\(index_price", sql))
    assert in_sql == {v for v, f in venues.VENUE_FACTS.items() if f.funding_price == "oracle"} == {"hyperliquid"}


@pytest.mark.parametrize(
    "module", ["core/sources/feed.py", "core/sources/live.py", "core/backtest/panel.py", "core/opportunities.py"]
)
def test_generic_code_names_no_venue(module: str) -> None:
    """Readers of the rows never compare or key on an exchange id themselves."""
    ids = {ccxt_id for _, ccxt_id in CCXT_IDS}
    tree = ast.parse((PACKAGE / module).read_text())
    named = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in ids}
    assert not named


@pytest.mark.parametrize(("venue_id", "ccxt_id"), CCXT_IDS)
def test_quotes_come_from_the_rows_channel_which_the_real_ccxt_class_has(venue_id: str, ccxt_id: str) -> None:
    """binance's ticker (miniTicker) and bybit's spot ticker carry no bid/ask: their rows name the bid/ask
    channel, and the Feed calls it on the real class (spot and contract legs alike)."""
    facts = venues.VENUE_FACTS[venue_id]
    ex = create_live_exchange(ccxt_id, LiveConfig(), {})
    feed = Feed(ex, InstrumentRegistry())
    flags = {"ticker": "watchTicker", "bids_asks": "watchBidsAsks", "order_book": "watchOrderBook"}
    for kind, contract in (("spot", False), ("contract", True)):
        mode = facts.quote_channel(kind)
        assert mode in venues.QUOTE_CHANNELS and ex.has[flags[mode]], (ccxt_id, kind)
        instrument = InstrumentRegistry().add_market(
            ccxt_id, {"symbol": "BTC/USDT:USDT" if contract else "BTC/USDT", "base": "BTC", "quote": "USDT",
                      "settle": "USDT" if contract else None, "swap": contract, "spot": not contract}
        )  # fmt: skip
        assert feed.quote_mode(instrument) == mode
    assert venues.VENUE_FACTS["binance"].quote_channel("spot") == "bids_asks"
    assert venues.VENUE_FACTS["bybit"].quote_channel("spot") == "bids_asks"


def test_the_readme_lists_each_venues_channels_as_the_rows_say() -> None:
    readme = (PACKAGE.parent / "README.md").read_text()
    assert venues.channel_table() in readme
    for facts in venues.VENUE_FACTS.values():
        assert set(facts.channels) == set(venues.CHANNEL_TOPICS), facts.id
