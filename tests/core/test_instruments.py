"""The instrument registry: ccxt markets -> instruments, multipliers, stable ids, funding-interval history."""

from __future__ import annotations

import json
from pathlib import Path

import ccxt
import pytest

from fundarb_dagster.core.instruments import (
    InstrumentRegistry,
    IntervalSpan,
    instrument_from_market,
    registry_path,
    split_multiplier,
)

H = 3_600_000


def real_markets(exchange_id: str, raw_markets: list[dict]) -> dict:
    """Markets parsed by the real ccxt class from venue-shaped market rows (offline: set_markets)."""
    exchange = getattr(ccxt, exchange_id)()
    exchange.set_markets(raw_markets)
    return exchange.markets


def market(symbol: str, **extra: object) -> dict:
    pair, _, settle = symbol.partition(":")
    base, quote = pair.split("/")
    swap = bool(settle)
    return {
        "id": f"{base}{quote}",
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": settle or None,
        "type": "swap" if swap else "spot",
        "spot": not swap,
        "swap": swap,
        "contractSize": 1.0 if swap else None,
        **extra,
    }


def test_ccxt_markets_become_instruments_with_their_venue_details() -> None:
    markets = real_markets(
        "binance",
        [
            market("BTC/USDT"),
            market("1000PEPE/USDT:USDT", id="1000PEPEUSDT"),
            market("ETH/USDT:USDT", id="ETHUSDT", contractSize=1.0),
        ],
    )
    registry = InstrumentRegistry()
    registry.add_markets("binance", markets, ["BTC/USDT", "1000PEPE/USDT:USDT", "ETH/USDT:USDT"])
    spot, pepe, eth = (registry.get("binance", s) for s in ("BTC/USDT", "1000PEPE/USDT:USDT", "ETH/USDT:USDT"))
    assert (spot.type, spot.settle, spot.is_perp, spot.venue_symbol) == ("spot", None, False, "BTCUSDT")
    assert (pepe.type, pepe.settle, pepe.underlying, pepe.multiplier) == ("swap", "USDT", "PEPE", 1000.0)
    assert pepe.venue_symbol == "1000PEPEUSDT" and pepe.is_perp
    assert eth.contract_size == 1.0 and eth.underlying == "ETH" and eth.multiplier == 1.0
    assert registry.names() == {
        0: ("binance", "BTC/USDT"),
        1: ("binance", "1000PEPE/USDT:USDT"),
        2: ("binance", "ETH/USDT:USDT"),
    }
    assert [i.id for i in registry] == [0, 1, 2] and len(registry) == 3
    assert ("binance", "BTC/USDT") in registry and registry.by_id(1) is pepe


def test_okx_contract_size_and_hyperliquid_k_prefix() -> None:
    registry = InstrumentRegistry()
    okx = registry.add_market("okx", market("BTC/USDT:USDT", id="BTC-USDT-SWAP", contractSize=0.01))
    hl = registry.add_market("hyperliquid", market("kPEPE/USDC:USDC", id="kPEPE"))
    assert okx.contract_size == 0.01 and okx.venue_symbol == "BTC-USDT-SWAP"
    assert (hl.underlying, hl.multiplier, hl.base) == ("PEPE", 1000.0, "kPEPE")


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("1000PEPE", ("PEPE", 1000.0)),
        ("kPEPE", ("PEPE", 1000.0)),
        ("1000000MOG", ("MOG", 1_000_000.0)),
        ("1MBABYDOGE", ("BABYDOGE", 1_000_000.0)),
        ("10000SATS", ("SATS", 10_000.0)),
        ("BTC", ("BTC", 1.0)),
        ("1INCH", ("1INCH", 1.0)),  # a name starting with a digit, not a multiplier
        ("KAVA", ("KAVA", 1.0)),  # capital K is part of the name
    ],
)
def test_split_multiplier(base: str, expected: tuple[str, float]) -> None:
    assert split_multiplier(base) == expected


def test_markets_that_are_neither_spot_nor_swap_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="market.type: 'option' for deribit 'BTC/USD:BTC-261225-100000-C'"):
        instrument_from_market(
            0, "deribit", {"symbol": "BTC/USD:BTC-261225-100000-C", "type": "option", "base": "BTC", "quote": "USD"}
        )


def test_an_unlisted_symbol_is_an_error_naming_it() -> None:
    with pytest.raises(KeyError, match="symbol: 'DOGE/USDT' is not listed by exchange 'binance'"):
        InstrumentRegistry().add_markets("binance", {"BTC/USDT": market("BTC/USDT")}, ["DOGE/USDT"])
    with pytest.raises(KeyError, match="instrument: \\('okx', 'BTC/USDT'\\) is not registered"):
        InstrumentRegistry().get("okx", "BTC/USDT")
    with pytest.raises(KeyError, match="instrument_id: 7 is not registered"):
        InstrumentRegistry().by_id(7)


def test_ids_are_stable_across_save_load_and_new_instruments(tmp_path: Path) -> None:
    path = registry_path(tmp_path)
    first = InstrumentRegistry()
    for symbol in ("BTC/USDT", "BTC/USDT:USDT", "ETH/USDT:USDT"):
        first.add_market("bybit", market(symbol))
    first.save(path)
    # A later run registers in another order, plus a new instrument: old ids kept, the new one gets the next.
    second = InstrumentRegistry.load(path)
    for symbol in ("ETH/USDT:USDT", "SOL/USDT:USDT", "BTC/USDT"):
        second.add_market("bybit", market(symbol))
    second.add_market("okx", market("BTC/USDT"))
    assert second.id_of("bybit", "BTC/USDT") == 0
    assert second.id_of("bybit", "BTC/USDT:USDT") == 1
    assert second.id_of("bybit", "ETH/USDT:USDT") == 2
    assert second.id_of("bybit", "SOL/USDT:USDT") == 3
    assert second.id_of("okx", "BTC/USDT") == 4
    second.save(path)
    third = InstrumentRegistry.load(path)
    assert third.names() == second.names()
    assert third.get("bybit", "SOL/USDT:USDT") == second.get("bybit", "SOL/USDT:USDT")
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic save left no temporary
    # Re-adding a market is idempotent and keeps the id even after a load with ids only.
    ids_only = InstrumentRegistry.from_dict({"ids": [["bybit", "ETH/USDT:USDT", 2]]})
    assert ids_only.add_market("bybit", market("ETH/USDT:USDT")).id == 2
    assert ids_only.add_market("bybit", market("XRP/USDT:USDT")).id == 3


def test_loading_a_missing_registry_gives_an_empty_one(tmp_path: Path) -> None:
    assert len(InstrumentRegistry.load(tmp_path / "nope.json")) == 0


def test_interval_history_records_changes_only() -> None:
    registry = InstrumentRegistry()
    assert registry.interval_at("binance", "PEPE", 0) is None  # nothing observed: no venue default
    assert registry.observe_interval("binance", "PEPE", 0, 8.0) is True
    assert registry.observe_interval("binance", "PEPE", 8 * H, 8.0) is False
    assert registry.observe_interval("binance", "PEPE", 16 * H, 4.0) is True
    assert registry.observe_interval("binance", "PEPE", 20 * H, 4.0) is False
    assert registry.interval_history("binance", "PEPE") == [
        IntervalSpan(0, 16 * H, 8.0),
        IntervalSpan(16 * H, None, 4.0),
    ]
    assert registry.interval_at("binance", "PEPE", 16 * H - 1) == 8.0
    assert registry.interval_at("binance", "PEPE", 16 * H) == 4.0
    assert registry.interval_at("binance", "PEPE", -5 * H) == 8.0  # before the first observation: the first known


def test_out_of_order_observations_land_at_their_time() -> None:
    registry = InstrumentRegistry()
    registry.observe_interval("bybit", "X", 100 * H, 4.0)  # live data first
    registry.observe_interval("bybit", "X", 10 * H, 8.0)  # then a history backfill from long before
    registry.observe_interval("bybit", "X", 50 * H, 8.0)  # more history: same as the span it falls in
    assert registry.observe_interval("bybit", "X", 90 * H, 4.0) is False  # extends the 4h span back
    assert [(s.valid_from_ms, s.valid_to_ms, s.interval_h) for s in registry.interval_history("bybit", "X")] == [
        (10 * H, 90 * H, 8.0),
        (90 * H, None, 4.0),
    ]
    assert registry.interval_at("bybit", "X", 89 * H) == 8.0


def test_interval_history_survives_save_and_load(tmp_path: Path) -> None:
    registry = InstrumentRegistry()
    registry.add_market("hyperliquid", market("BTC/USDC:USDC"))
    for ts, interval in ((0, 8.0), (24 * H, 1.0), (48 * H, 8.0)):
        registry.observe_interval("hyperliquid", "BTC/USDC:USDC", ts, interval)
    registry.save(registry_path(tmp_path))
    loaded = InstrumentRegistry.load(registry_path(tmp_path))
    assert loaded.interval_history("hyperliquid", "BTC/USDC:USDC") == registry.interval_history(
        "hyperliquid", "BTC/USDC:USDC"
    )


@pytest.mark.parametrize("bad", [0.0, -8.0, float("nan")])
def test_a_non_positive_interval_is_refused_by_name(bad: float) -> None:
    with pytest.raises(ValueError, match="interval_h: .* for okx BTC/USDT:USDT must be > 0"):
        InstrumentRegistry().observe_interval("okx", "BTC/USDT:USDT", 0, bad)


def test_inverse_contracts_and_dated_futures_carry_ccxts_facts_and_base_amounts() -> None:
    """okx UNI-USD-SWAP (10 USD a contract), BTC-USD-220527 (100 USD, expiring 2022-05-27 08:00 UTC), as ccxt's
    okx class parses the venue's instrument rows."""
    rows = [
        {"instId": "UNI-USD-SWAP", "instType": "SWAP", "uly": "UNI-USD", "settleCcy": "UNI", "ctVal": "10",
         "ctValCcy": "USD", "ctType": "inverse", "state": "live", "lotSz": "1", "tickSz": "0.001", "minSz": "1"},
        {"instId": "BTC-USD-220527", "instType": "FUTURES", "uly": "BTC-USD", "settleCcy": "BTC", "ctVal": "100",
         "ctValCcy": "USD", "ctType": "inverse", "expTime": "1653638400000", "state": "live", "lotSz": "1",
         "tickSz": "0.1", "minSz": "1"},
    ]  # fmt: skip
    import ccxt

    okx = ccxt.okx()
    markets = {m["symbol"]: m for m in (okx.parse_market(r) for r in rows)}
    registry = InstrumentRegistry()
    uni = registry.add_market("okx", markets["UNI/USD:UNI"])
    future = registry.add_market("okx", markets["BTC/USD:BTC-220527"])
    assert (uni.type, uni.inverse, uni.contract_size, uni.settle, uni.expiry_ms) == ("swap", True, 10.0, "UNI", None)
    assert (future.type, future.inverse, future.contract_size) == ("future", True, 100.0)
    assert future.expiry_ms == 1653638400000 and future.is_contract and not future.is_perp
    assert uni.base_amounts(100.0, 5.123) == 100.0 * 10.0 / 5.123  # 195.2 UNI, not 1000
    linear = registry.add_market("okx", market("BTC/USDT:USDT", contractSize=0.01))
    assert linear.base_amounts(3.0, 60_000.0) == 0.03 and not linear.inverse
    spot = registry.add_market("okx", market("BTC/USDT"))
    assert spot.base_amounts(0.5, 60_000.0) == 0.5 and not spot.is_contract
    with pytest.raises(ValueError, match="market.expiry: None for the dated future okx 'BTC/USD:BTC-220624'"):
        registry.add_market("okx", {**markets["BTC/USD:BTC-220527"], "symbol": "BTC/USD:BTC-220624", "expiry": None})


def test_registering_again_takes_the_markets_facts_under_the_same_id(tmp_path: Path) -> None:
    registry = InstrumentRegistry()
    first = registry.add_market("binance", market("BTC/USD:BTC"))  # built offline: size unknown (1)
    loaded = registry.add_market("binance", market("BTC/USD:BTC", contractSize=100.0, inverse=True))
    assert loaded.id == first.id and (loaded.contract_size, loaded.inverse) == (100.0, True)
    registry.save(registry_path(tmp_path))
    again = InstrumentRegistry.load(registry_path(tmp_path)).get("binance", "BTC/USD:BTC")
    assert again == loaded


def test_intervals_keep_their_source_and_a_capture_merges_what_it_learned_into_the_saved_registry(
    tmp_path: Path,
) -> None:
    path = registry_path(tmp_path)
    saved = InstrumentRegistry()
    saved.add_market("bybit", market("BTC/USDT:USDT"))
    saved.observe_interval("bybit", "BTC/USDT:USDT", 0, 8.0)
    saved.save(path)
    older = json.loads(path.read_text())  # a file written before intervals kept their source
    older["intervals"] = {key: [span[:2] for span in spans] for key, spans in older["intervals"].items()}
    path.write_text(json.dumps(older))
    run = InstrumentRegistry.load(path)
    assert [s.source for s in run.interval_history("bybit", "BTC/USDT:USDT")] == ["reported"]
    run.add_market("hyperliquid", market("BTC/USDC:USDC"))
    run.observe_interval("hyperliquid", "BTC/USDC:USDC", 10 * H, 1.0, "learned")
    run.observe_interval("bybit", "BTC/USDT:USDT", 20 * H, 4.0, "inferred")
    assert run.persist_intervals(path) == 3
    again = InstrumentRegistry.load(path)
    assert [(s.interval_h, s.source) for s in again.interval_history("hyperliquid", "BTC/USDC:USDC")] == [
        (1.0, "learned")
    ]
    assert [(s.interval_h, s.source) for s in again.interval_history("bybit", "BTC/USDT:USDT")] == [
        (8.0, "reported"),
        (4.0, "inferred"),
    ]
    # a source that states the interval a schedule gave makes the span reported; a weaker one never demotes it
    again.observe_interval("hyperliquid", "BTC/USDC:USDC", 11 * H, 1.0, "reported")
    again.observe_interval("hyperliquid", "BTC/USDC:USDC", 12 * H, 1.0, "schedule")
    assert [s.source for s in again.interval_history("hyperliquid", "BTC/USDC:USDC")] == ["reported"]
    with pytest.raises(ValueError, match="source: 'guessed'"):
        again.observe_interval("hyperliquid", "BTC/USDC:USDC", 0, 1.0, "guessed")
