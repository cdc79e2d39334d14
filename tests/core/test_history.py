"""pull_history: the simulator's REST history through the Feed into the landing zone, checked against
the simulator's own answers and read back from the landed Parquet."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from fundarb_dagster.core import landing
from fundarb_dagster.core.config import ConfigError, ExchangeConfig, default_config
from fundarb_dagster.core.history import fetch_settled_funding, fetch_settlements, load_perp_markets, pull_history
from fundarb_dagster.core.instruments import InstrumentRegistry, registry_path
from fundarb_dagster.core.sources.sim import SimExchange

DAY = 86_400_000
SYMBOLS = {"bybit": ("BTC/USDT", "BTC/USDT:USDT"), "hyperliquid": ("BTC/USDC", "BTC/USDC:USDC")}


def _config(tmp_path: Path):  # noqa: ANN202 - a FundarbConfig
    exchanges = tuple(ExchangeConfig(id=venue, symbols=symbols) for venue, symbols in SYMBOLS.items())
    return default_config(data_dir=str(tmp_path / "data"), exchanges=exchanges)


def _landed(data_dir: str, stream: str):  # noqa: ANN202 - an Arrow table
    return ds.dataset(landing.landing_root(data_dir) / stream, format="parquet", partitioning="hive").to_table()


async def _expected_candles(config, venue: str, symbol: str, since: int, until: int) -> list[int]:  # noqa: ANN001
    """Candle open times straight from the simulator (independent of the Feed): closed, in [since, until)."""
    ex = SimExchange(venue, config.sim, symbols=SYMBOLS[venue])
    await ex.load_markets()
    out: list[int] = []
    cursor = since
    while cursor < until:
        rows = await ex.fetch_ohlcv(symbol, "1m", cursor, 1000)
        rows = [r for r in rows if cursor <= r[0] < until and r[0] + 60_000 <= ex.milliseconds()]
        if not rows:
            break
        out += [int(r[0]) for r in rows]
        cursor = int(rows[-1][0]) + 60_000
    await ex.close()
    return out


def test_one_day_of_sim_history_lands_every_closed_candle_and_settlement(tmp_path: Path) -> None:
    config = _config(tmp_path)
    until = config.sim.start_ms
    since = until - DAY
    messages: list[str] = []
    counts = pull_history(config, since, until, progress=messages.append)

    ohlcv = _landed(config.data_dir, "ohlcv").to_pandas()
    funding = _landed(config.data_dir, "funding").to_pandas()
    assert counts["ohlcv"] == len(ohlcv) and counts["funding"] == len(funding)
    for venue, symbols in SYMBOLS.items():
        for symbol in symbols:
            got = ohlcv[(ohlcv.exchange == venue) & (ohlcv.symbol == symbol)].ts_ms.sort_values().tolist()
            assert got == asyncio.run(_expected_candles(config, venue, symbol, since, until))
            assert len(got) == 1440
    assert not ohlcv.duplicated(["exchange", "symbol", "ts_ms"]).any()
    assert (ohlcv[["open", "high", "low", "close"]] > 0).all().all()

    # funding: perps only, settled, with the interval the venue used (bybit 8h, hyperliquid hourly)
    assert set(funding.symbol) == {"BTC/USDT:USDT", "BTC/USDC:USDC"}
    assert (funding.is_settled == 1).all()
    for venue, interval in (("bybit", 8.0), ("hyperliquid", 1.0)):
        rows = funding[funding.exchange == venue].sort_values("funding_ts_ms")
        assert len(rows) == 24 / interval
        assert (rows.interval_h == interval).all()
        spacing = np.diff(rows.funding_ts_ms.to_numpy()) / 3_600_000
        assert np.allclose(spacing, interval, atol=0.1)
        assert rows.funding_ts_ms.between(since, until - 1).all()

    # every file is this writer's, partitioned by the hour of its rows
    files = sorted(landing.landing_root(config.data_dir).rglob("*.parquet"))
    assert files and all(f.name.startswith(("history-bybit-", "history-hyperliquid-")) for f in files)
    registry = InstrumentRegistry.load(registry_path(config.data_dir))
    assert {(i.exchange, i.symbol) for i in registry} == {(v, s) for v, ss in SYMBOLS.items() for s in ss}
    assert registry.interval_at("hyperliquid", "BTC/USDC:USDC", since + DAY // 2) == 1.0
    assert registry.interval_at("bybit", "BTC/USDT:USDT", since + DAY // 2) == 8.0
    assert messages[-1].startswith("history done")


def test_a_second_pull_keeps_instrument_ids_and_never_overwrites_files(tmp_path: Path) -> None:
    config = _config(tmp_path)
    until = config.sim.start_ms
    pull_history(config, until - 3 * 3_600_000, until, streams=("ohlcv",), progress=None)
    ids = {(i.exchange, i.symbol): i.id for i in InstrumentRegistry.load(registry_path(config.data_dir))}
    files = set(landing.landing_root(config.data_dir).rglob("*.parquet"))
    counts = pull_history(config, until - 3 * 3_600_000, until, streams=("ohlcv",), progress=None)
    again = {(i.exchange, i.symbol): i.id for i in InstrumentRegistry.load(registry_path(config.data_dir))}
    assert again == ids
    new_files = set(landing.landing_root(config.data_dir).rglob("*.parquet")) - files
    assert new_files and counts["ohlcv"] == 4 * 180
    table = _landed(config.data_dir, "ohlcv").to_pandas()
    # the same rows twice (the warehouse deduplicates on the natural key), never a partial file
    assert len(table) == 2 * counts["ohlcv"]
    assert table.duplicated(["exchange", "symbol", "ts_ms"]).sum() == counts["ohlcv"]


def test_bad_arguments_fail_with_the_field_named(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with pytest.raises(ValueError, match="until_ms"):
        pull_history(config, 2, 1, progress=None)
    with pytest.raises(ValueError, match="tickers"):
        pull_history(config, 1, 2, streams=("tickers",), progress=None)
    unlisted = default_config(
        data_dir=str(tmp_path / "d2"), exchanges=(ExchangeConfig(id="bybit", symbols=("DOGE/EUR",)),)
    )
    with pytest.raises(ConfigError, match="DOGE/EUR"):
        pull_history(unlisted, 1, 2, progress=None)


async def _sim_settlements(config, venue: str, symbol: str, since: int, until: int) -> list[tuple[int, float]]:  # noqa: ANN001
    """(settlement ms, rate) straight from the simulator's fetch_funding_rate_history (no Feed, no validator)."""
    ex = SimExchange(venue, config.sim, symbols=SYMBOLS[venue])
    await ex.load_markets()
    out: list[tuple[int, float]] = []
    cursor = since
    while cursor < until:
        entries = await ex.fetch_funding_rate_history(symbol, cursor, 1000)
        page = [e for e in entries if cursor <= e["timestamp"] < until]
        if not page:
            break
        out += [(int(e["timestamp"]), float(e["fundingRate"])) for e in page]
        cursor = int(page[-1]["timestamp"]) + 1
    await ex.close()
    return out


def test_settled_funding_of_a_day_is_every_sim_settlement_of_the_perps_and_nothing_else(tmp_path: Path) -> None:
    config = _config(tmp_path)
    until = config.sim.start_ms
    since = until - DAY
    got = fetch_settled_funding(config, since, until, page_limit=5)  # small pages: pagination is exercised
    assert got.errors == {} and got.skipped == [] and got.quarantined == 0
    assert set(got.rows.symbol) == {"BTC/USDT:USDT", "BTC/USDC:USDC"}  # perps only
    for venue, symbols in SYMBOLS.items():
        perp = symbols[1]
        rows = got.rows[got.rows.exchange == venue].sort_values("funding_ts_ms")
        expected = asyncio.run(_sim_settlements(config, venue, perp, since, until))
        assert list(zip(rows.funding_ts_ms, rows.funding_rate, strict=True)) == expected
        assert got.per_exchange[venue] == (len(expected), 0)
    assert got.rows.funding_ts_ms.dtype == np.int64


def test_a_symbol_the_exchange_does_not_list_is_an_error_and_the_others_still_arrive(tmp_path: Path) -> None:
    config = _config(tmp_path)
    until = config.sim.start_ms
    exchange = SimExchange("bybit", config.sim, symbols=SYMBOLS["bybit"])
    rows, quarantined, errors = asyncio.run(
        fetch_settlements(exchange, ["BTC/USDT:USDT", "NOPE/USDT:USDT"], until - DAY, until, 1000)
    )
    assert errors == {"NOPE/USDT:USDT": "not listed by the exchange"}
    assert len(rows) == 3 and set(rows.symbol) == {"BTC/USDT:USDT"} and quarantined == 0


def test_perp_markets_carry_the_published_funding_interval(tmp_path: Path) -> None:
    markets, errors = load_perp_markets(_config(tmp_path))
    assert errors == {}
    assert {venue: sorted(by_symbol) for venue, by_symbol in markets.items()} == {
        "bybit": ["BTC/USDT:USDT"],
        "hyperliquid": ["BTC/USDC:USDC"],
    }
    assert markets["bybit"]["BTC/USDT:USDT"]["swap"] and markets["hyperliquid"]["BTC/USDC:USDC"]["settle"] == "USDC"
