"""ReplayExchange on real recorded data: fixture CSVs, Binance archive variants and the landing zone.

Every expectation is computed independently from the files with the csv module or pandas.
"""

from __future__ import annotations

import asyncio
import csv
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core import landing, schema
from fundarb_dagster.core.config import ConfigError, ReplayConfig, check_symbols, config_from_dict
from fundarb_dagster.core.instruments import InstrumentRegistry, registry_path
from fundarb_dagster.core.sources import EndOfData, open_exchange
from fundarb_dagster.core.sources.feed import Feed
from fundarb_dagster.core.sources.replay import (
    ReplayExchange,
    detect_kind,
    fill_intervals,
    market_for,
    parse_file,
    to_epoch_ms,
)
from tests.core.binance_archives import KLINE_HEADER, write_csv

FUNDING_TABLE = "funding_btc_eth_binance_bybit_hyperliquid_utc.csv"


def run(coro):
    return asyncio.run(coro)


async def drain(call) -> list:
    """Call a watch method until EndOfData; every item it returned, in order."""
    out = []
    while True:
        try:
            got = await call()
        except EndOfData:
            return out
        out.extend(got if isinstance(got, list) else [got])


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture()
def xrp_dir(tmp_path: Path, fixtures_dir: Path) -> Path:
    target = tmp_path / "xrp"
    target.mkdir()
    for name in (
        "XRP_ETH-trades.csv",
        "XRP_ETH-1m.csv",
        "XRP_ETH-5m.csv",
        "XRP_USDT_USDT-8h-funding_rate.csv",
        "XRP_USDT_USDT-8h-mark.csv",
        "XRP_USDT_USDT-1h-mark.csv",
        "XRP_USDT_USDT-5m-futures.csv",
    ):
        shutil.copy(fixtures_dir / "binance_xrp" / name, target / name)
    return target


# -- fixture CSVs ---------------------------------------------------------------------------------------
def test_watch_trades_replays_every_fixture_trade_in_order(xrp_dir: Path) -> None:
    expected = read_csv_rows(xrp_dir / "XRP_ETH-trades.csv")
    ex = ReplayExchange("binance", xrp_dir, format="fixture_csv", symbols=["XRP/ETH"])
    trades = run(drain(lambda: ex.watch_trades("XRP/ETH")))
    assert len(trades) == len(expected) == 12477
    assert [t["id"] for t in trades] == [r["trade_id"] for r in expected]
    assert [t["timestamp"] for t in trades] == [int(r["time_ms_utc"]) for r in expected]
    assert [t["price"] for t in trades] == [float(r["price"]) for r in expected]
    assert [t["amount"] for t in trades] == [float(r["amount_base"]) for r in expected]
    assert [t["side"] for t in trades] == [r["side_taker"] for r in expected]
    assert trades[0]["datetime"] == expected[0]["time_utc"]
    assert trades[0]["symbol"] == "XRP/ETH"


def test_watch_ohlcv_delivers_each_fixture_candle_once_after_it_closes(xrp_dir: Path) -> None:
    expected = read_csv_rows(xrp_dir / "XRP_ETH-1m.csv")
    ex = ReplayExchange("binance", xrp_dir, format="fixture_csv", symbols=["XRP/ETH"])

    async def collect() -> list[tuple[list, int]]:
        seen = []
        while True:
            try:
                batch = await ex.watch_ohlcv("XRP/ETH", "1m")
            except EndOfData:
                return seen
            seen += [(c, ex.milliseconds()) for c in batch]

    seen = run(collect())
    assert [c[0] for c, _ in seen] == [int(r["time_ms_utc"]) for r in expected]
    assert [c[1:5] for c, _ in seen] == [[float(r[k]) for k in ("open", "high", "low", "close")] for r in expected]
    # never before its close: the replay clock at delivery is at least the bar's end
    assert all(clock >= c[0] + 60_000 for c, clock in seen)


def test_unrecorded_timeframe_is_built_from_trades_and_matches_the_recorded_candles(xrp_dir: Path) -> None:
    # The fixture README: a plain one-minute OHLC of the trades reproduces the 1m file exactly.
    only_trades = xrp_dir / "only_trades"
    only_trades.mkdir()
    shutil.copy(xrp_dir / "XRP_ETH-trades.csv", only_trades / "XRP_ETH-trades.csv")
    ex = ReplayExchange("binance", only_trades, format="fixture_csv")
    candles = run(drain(lambda: ex.watch_ohlcv("XRP/ETH", "1m")))
    expected = pd.read_csv(xrp_dir / "XRP_ETH-1m.csv")
    got = pd.DataFrame(candles, columns=["time_ms_utc", "open", "high", "low", "close", "volume"])
    pd.testing.assert_frame_equal(got, expected.drop(columns="time_utc"), check_dtype=False)


def test_fetch_ohlcv_resamples_a_finer_recorded_timeframe(xrp_dir: Path) -> None:
    ex = ReplayExchange("binance", xrp_dir, format="fixture_csv", symbols=["XRP/USDT:USDT"])
    got = run(ex.fetch_ohlcv("XRP/USDT:USDT", "1h"))
    five = pd.read_csv(xrp_dir / "XRP_USDT_USDT-5m-futures.csv")
    five["hour"] = five["time_ms_utc"] // 3_600_000 * 3_600_000
    expected = five.groupby("hour").agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
    )
    assert [c[0] for c in got] == expected.index.tolist()
    np.testing.assert_allclose([c[1:] for c in got], expected.to_numpy(), rtol=1e-12)


def test_watch_funding_rate_replays_settlements_with_interval_and_mark_price(xrp_dir: Path) -> None:
    ex = ReplayExchange("binance", xrp_dir, format="fixture_csv", symbols=["XRP/USDT:USDT"])
    rates = run(drain(lambda: ex.watch_funding_rate("XRP/USDT:USDT")))
    funding = pd.read_csv(xrp_dir / "XRP_USDT_USDT-8h-funding_rate.csv")
    assert len(rates) == len(funding) == 91
    assert [r["fundingTimestamp"] for r in rates] == funding["time_ms_utc"].tolist()
    assert [r["fundingRate"] for r in rates] == funding["funding_rate"].tolist()
    assert {r["interval"] for r in rates} == {"8h"}  # inferred from the settlement spacing
    assert all(r["info"]["is_settled"] for r in rates)
    # mark price: the open of the mark bar in force at the settlement, finest recorded timeframe first
    marks = pd.concat(
        [
            pd.read_csv(xrp_dir / "XRP_USDT_USDT-1h-mark.csv").assign(tf=3_600_000),
            pd.read_csv(xrp_dir / "XRP_USDT_USDT-8h-mark.csv").assign(tf=28_800_000),
        ]
    )
    expected = []
    for ts in funding["time_ms_utc"]:
        inside = marks[(marks["time_ms_utc"] <= ts) & (ts < marks["time_ms_utc"] + marks["tf"])]
        expected.append(float(inside.sort_values("tf")["open"].iloc[0]) if len(inside) else None)
    assert [r["markPrice"] for r in rates] == expected
    assert sum(m is not None for m in expected) >= 80


def test_funding_table_history_matches_the_csv_and_paginates(tmp_path: Path, fixtures_dir: Path) -> None:
    shutil.copy(fixtures_dir / "funding_2025_2026" / FUNDING_TABLE, tmp_path / FUNDING_TABLE)
    ex = ReplayExchange("hyperliquid", tmp_path, format="fixture_csv", symbols=["BTC/USDC:USDC", "ETH/USDC:USDC"])
    markets = run(ex.load_markets())
    assert sorted(markets) == ["BTC/USDC:USDC", "ETH/USDC:USDC"]
    table = pd.read_csv(tmp_path / FUNDING_TABLE)
    expected = table[(table["venue"] == "hyperliquid") & (table["canonical_symbol"] == "BTC-USDC-PERP")]
    expected = expected.sort_values("settlement_time_ms_utc")
    whole = run(ex.fetch_funding_rate_history("BTC/USDC:USDC"))
    assert [h["timestamp"] for h in whole] == expected["settlement_time_ms_utc"].tolist()
    assert [h["fundingRate"] for h in whole] == expected["funding_rate"].tolist()
    assert {h["info"]["interval_h"] for h in whole} == {1.0}

    async def paginate() -> list[dict]:
        pages, since = [], 0
        while True:
            page = await ex.fetch_funding_rate_history("BTC/USDC:USDC", since, 500)
            if not page:
                return pages
            pages += page
            since = page[-1]["timestamp"] + 1

    assert [h["timestamp"] for h in run(paginate())] == [h["timestamp"] for h in whole]
    until = int(expected["settlement_time_ms_utc"].iloc[99])
    assert len(run(ex.fetch_funding_rate_history("BTC/USDC:USDC", None, None, {"until": until}))) == 100


def test_inferred_funding_intervals_agree_with_the_stated_ones(fixtures_dir: Path) -> None:
    table = pd.read_csv(fixtures_dir / "funding_2025_2026" / FUNDING_TABLE)
    for (_, _), rows in table.groupby(["venue", "canonical_symbol"]):
        rows = rows.sort_values("settlement_time_ms_utc")
        records = schema.empty("funding", len(rows))
        records["funding_ts_ms"] = rows["settlement_time_ms_utc"].to_numpy()
        fill_intervals(records)
        agree = records["interval_h"] == rows["interval_hours"].to_numpy()
        assert agree.mean() > 0.99, rows["venue"].iloc[0]


# -- ordering, clock, end of data ---------------------------------------------------------------------------
def test_concurrent_watchers_at_speed_zero_are_served_in_event_time_order(xrp_dir: Path) -> None:
    ex = ReplayExchange("binance", xrp_dir, format="fixture_csv", batch_size=50)
    delivered: list[tuple[int, int, str]] = []  # (first event time, clock, stream)

    async def consume(name: str, call, when) -> None:
        while True:
            try:
                got = await call()
            except EndOfData:
                return
            items = got if isinstance(got, list) else [got]
            delivered.append((when(items[0]), ex.milliseconds(), name))

    async def main() -> None:
        await ex.load_markets()
        await asyncio.gather(
            consume("trades", lambda: ex.watch_trades("XRP/ETH"), lambda t: t["timestamp"]),
            consume("ohlcv", lambda: ex.watch_ohlcv("XRP/ETH", "5m"), lambda c: c[0] + 300_000),
            consume("funding", lambda: ex.watch_funding_rate("XRP/USDT:USDT"), lambda f: f["timestamp"]),
        )

    run(main())
    firsts = [d[0] for d in delivered]
    assert firsts == sorted(firsts)
    clocks = [d[1] for d in delivered]
    assert clocks == sorted(clocks)
    assert {d[2] for d in delivered} == {"trades", "ohlcv", "funding"}


def test_positive_speed_never_delivers_before_the_replay_clock_reaches_the_event(xrp_dir: Path) -> None:
    # 8h settlements at 2 million x real time: about 14 ms of wall time apart.
    only = xrp_dir / "funding_only"
    only.mkdir()
    shutil.copy(xrp_dir / "XRP_USDT_USDT-8h-funding_rate.csv", only / "XRP_USDT_USDT-8h-funding_rate.csv")
    ex = ReplayExchange("binance", only, format="fixture_csv", speed=2_000_000)

    async def first_few() -> list[tuple[int, int]]:
        out = []
        for _ in range(4):
            rate = await ex.watch_funding_rate("XRP/USDT:USDT")
            out.append((rate["timestamp"], ex.milliseconds()))
        return out

    for ts, clock in run(first_few()):
        assert clock >= ts


def test_exhausted_and_unrecorded_streams_raise_end_of_data(xrp_dir: Path) -> None:
    ex = ReplayExchange("binance", xrp_dir, format="fixture_csv", symbols=["XRP/ETH", "XRP/USDT:USDT"])
    with pytest.raises(EndOfData, match="no tickers recorded for XRP/ETH"):
        run(ex.watch_ticker("XRP/ETH"))
    run(drain(lambda: ex.watch_funding_rate("XRP/USDT:USDT")))

    async def again() -> None:
        await ex.watch_funding_rate("XRP/USDT:USDT")

    with pytest.raises(EndOfData, match="no more funding rates for XRP/USDT:USDT"):
        run(again())
    with pytest.raises(ValueError, match="symbol: 'BTC/USDT' is not in the binance recording"):
        run(ex.watch_trades("BTC/USDT"))


def test_markets_are_ccxt_shaped_and_check_symbols_names_what_is_not_recorded(xrp_dir: Path) -> None:
    ex = ReplayExchange("binance", xrp_dir, format="fixture_csv", symbols=["XRP/ETH", "XRP/USDT:USDT", "BTC/USDT"])
    markets = run(ex.load_markets())
    assert markets["XRP/ETH"]["spot"] and markets["XRP/ETH"]["type"] == "spot"
    perp = markets["XRP/USDT:USDT"]
    assert perp["swap"] and perp["linear"] and perp["settle"] == "USDT" and perp["id"] == "XRPUSDT"
    registry = InstrumentRegistry()
    registry.add_markets("binance", markets, ["XRP/ETH", "XRP/USDT:USDT"])
    assert registry.get("binance", "XRP/USDT:USDT").is_perp
    config = config_from_dict(
        {
            "source": "replay",
            "replay": {"path": str(xrp_dir), "format": "fixture_csv"},
            "exchanges": [{"id": "binance", "symbols": ["XRP/ETH", "BTC/USDT"]}],
        }
    )
    with pytest.raises(ConfigError, match="'BTC/USDT' is not listed by exchange 'binance'"):
        check_symbols(config, "binance", markets)


def test_open_exchange_builds_a_replay_from_config(xrp_dir: Path) -> None:
    config = config_from_dict(
        {
            "source": "replay",
            "replay": {"path": str(xrp_dir), "format": "fixture_csv", "speed": 0},
            "exchanges": [{"id": "binance", "symbols": ["XRP/ETH"]}],
        }
    )
    ex = open_exchange(config, "binance")
    assert isinstance(ex, ReplayExchange) and ex.requested_symbols == ("XRP/ETH",)
    assert list(run(ex.load_markets())) == ["XRP/ETH"]
    with pytest.raises(ConfigError, match="replay.format: unknown format 'parquet'"):
        ReplayExchange.from_config("binance", ReplayConfig(path=str(xrp_dir), format="parquet"))
    with pytest.raises(ConfigError, match="replay.path: '/nope' does not exist"):
        ReplayExchange.from_config("binance", ReplayConfig(path="/nope"))
    nothing = ReplayExchange.from_config("okx", ReplayConfig(path=str(xrp_dir), format="fixture_csv"), ["BTC/USDT"])
    with pytest.raises(
        ConfigError, match="holds no okx data for \\['BTC/USDT'\\]; it holds \\['XRP/ETH', 'XRP/USDT:USDT'\\]"
    ):
        run(nothing.load_markets())


def test_the_feed_consumes_a_replay_unchanged(xrp_dir: Path) -> None:
    ex = ReplayExchange("binance", xrp_dir, format="fixture_csv", symbols=["XRP/ETH", "XRP/USDT:USDT"])
    registry = InstrumentRegistry()

    async def main() -> tuple[np.ndarray, np.ndarray]:
        markets = await ex.load_markets()
        registry.add_markets("binance", markets, list(markets))
        feed = Feed(ex, registry, stale_timeout_s={})
        trades = [b.records async for b in feed.watch("trades", "XRP/ETH")]
        funding = [b.records async for b in feed.watch("funding", "XRP/USDT:USDT")]
        return np.concatenate(trades), np.concatenate(funding)

    trades, funding = run(main())
    expected = pd.read_csv(xrp_dir / "XRP_ETH-trades.csv")
    assert trades["trade_id"].tolist() == expected["trade_id"].tolist()
    np.testing.assert_array_equal(trades["price"], expected["price"].to_numpy())
    assert (
        funding["funding_rate"].tolist()
        == pd.read_csv(xrp_dir / "XRP_USDT_USDT-8h-funding_rate.csv")["funding_rate"].tolist()
    )
    assert set(funding["interval_h"].tolist()) == {8.0}


# -- Binance archives ---------------------------------------------------------------------------------------
KLINES = [
    [
        1704067200000,
        "42283.58",
        "42554.57",
        "42261.02",
        "42475.23",
        "1271.68",
        1704067259999,
        "5.39e7",
        1200,
        "600.1",
        "2.5e7",
        0,
    ],
    [
        1704067260000,
        "42475.23",
        "42500.00",
        "42400.00",
        "42450.00",
        "100.5",
        1704067319999,
        "4245000",
        100,
        "50",
        "2122500",
        0,
    ],
    [
        1704067320000,
        "42450.00",
        "42460.00",
        "42300.00",
        "42310.10",
        "80.25",
        1704067379999,
        "3384808",
        90,
        "40",
        "1692404",
        0,
    ],
]
TRADES = [  # id, price, qty, quote_qty, time (ms), is_buyer_maker, is_best_match
    [101, "42000.5", "0.010", "420.005", 1704067200100, "true", "true"],
    [102, "42001.5", "0.020", "840.03", 1704067200500, "false", "true"],
    [103, "42002.0", "0.500", "21001", 1704067201000, "true", "true"],
]
AGG = [  # agg id, price, qty, first id, last id, time (ms), is_buyer_maker
    [9001, "42010.0", "1.5", 501, 503, 1704067200200, "false"],
    [9002, "42011.0", "0.25", 504, 504, 1704067200900, "true"],
]
FUNDING = [[1704067200000, 8, "0.00010000"], [1704096000000, 8, "0.00012500"], [1704124800000, 4, "-0.00003"]]


def write_archive(
    path: Path, rows: list[list], header: list[str] | None, micros: bool, time_cols: list[int], zipped: bool
) -> Path:
    """A Binance-shaped CSV whose `time_cols` are in microseconds when `micros`."""
    return write_csv(path, rows, header, time_cols if micros else [], zipped)


@pytest.mark.parametrize(
    ("header", "micros", "zipped"),
    [(True, False, False), (False, True, True), (False, False, True), (True, True, False)],
)
def test_binance_archive_variants_replay_identically(tmp_path: Path, header: bool, micros: bool, zipped: bool) -> None:
    root = tmp_path / "archive"
    write_archive(
        root / "spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.csv",
        KLINES,
        KLINE_HEADER if header else None,
        micros,
        [0, 6],
        zipped,
    )
    write_archive(
        root / "spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-01-01.csv",
        TRADES,
        ["id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match"] if header else None,
        micros,
        [4],
        zipped,
    )
    write_archive(
        root / "futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-01-01.csv",
        AGG,
        ["agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time", "is_buyer_maker"]
        if header
        else None,
        micros,
        [5],
        zipped,
    )
    write_archive(
        root / "futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-01.csv",
        FUNDING,
        ["calc_time", "funding_interval_hours", "last_funding_rate"] if header else None,
        False,
        [0],
        zipped,
    )
    ex = ReplayExchange("binance", root, format="binance_archive", symbols=["BTC/USDT", "BTC/USDT:USDT"])
    assert sorted(run(ex.load_markets())) == ["BTC/USDT", "BTC/USDT:USDT"]
    assert ex.unrecognized == [] and ex.rejected == {}

    candles = run(ex.fetch_ohlcv("BTC/USDT", "1m"))
    assert candles == [[r[0], *(float(v) for v in r[1:6])] for r in KLINES]
    spot = run(drain(lambda: ex.watch_trades("BTC/USDT")))
    assert [(t["id"], t["timestamp"], t["price"], t["amount"], t["side"]) for t in spot] == [
        (str(r[0]), r[4], float(r[1]), float(r[2]), "sell" if r[5] == "true" else "buy") for r in TRADES
    ]
    perp = run(drain(lambda: ex.watch_trades("BTC/USDT:USDT")))
    assert [(t["id"], t["timestamp"], t["amount"]) for t in perp] == [(str(r[0]), r[5], float(r[2])) for r in AGG]
    history = run(ex.fetch_funding_rate_history("BTC/USDT:USDT"))
    assert [(h["timestamp"], h["fundingRate"], h["info"]["interval_h"]) for h in history] == [
        (r[0], float(r[2]), float(r[1])) for r in FUNDING
    ]


def test_detect_kind_tells_headerless_trades_from_agg_trades_by_columns(tmp_path: Path) -> None:
    trades = write_archive(tmp_path / "a.csv", TRADES, None, False, [], False)
    agg = write_archive(tmp_path / "b.csv", AGG, None, False, [], False)
    klines = write_archive(tmp_path / "c.csv", KLINES, None, False, [], False)
    funding = write_archive(tmp_path / "d.csv", FUNDING, None, False, [], False)
    assert [detect_kind(p) for p in (trades, agg, klines, funding)] == ["trades", "aggTrades", "klines", "fundingRate"]


def test_timestamps_in_seconds_ms_us_and_ns_are_detected_by_magnitude() -> None:
    ms = 1704067200123
    got = to_epoch_ms(np.array([ms // 1000, ms, ms * 1000 + 456, ms * 1_000_000 + 789]))
    assert got.tolist() == [ms // 1000 * 1000, ms, ms, ms]


def test_bad_archive_rows_are_quarantined_with_field_and_value(tmp_path: Path) -> None:
    rows = [list(r) for r in KLINES]
    rows[1][2] = "42000.00"  # high below open
    rows[2][4] = "oops"
    path = write_archive(tmp_path / "BTCUSDT-1m-2024-01-01.csv", rows, None, False, [], False)
    with open(path, "a") as handle:
        handle.write("1704067380000,1,2,3\n")  # too few fields: values missing
    parsed = parse_file(path)
    assert parsed.good == 1
    reasons = {r.line: r.reason for r in parsed.rejects}
    assert reasons[2] == "high: '42000.0' is below open/close/low"
    assert reasons[3] == "close: 'oops' is not a number"
    assert 4 in reasons and parsed.quarantined == 3
    ex = ReplayExchange("binance", tmp_path, format="binance_archive", symbols=["BTC/USDT"])
    assert run(ex.fetch_ohlcv("BTC/USDT", "1m"))[0][0] == KLINES[0][0]
    assert ex.rejected[path].quarantined == 3


# -- landing -----------------------------------------------------------------------------------------------
def test_landing_replay_returns_what_was_landed_without_duplicates(tmp_path: Path) -> None:
    data = tmp_path / "data"
    registry = InstrumentRegistry()
    spot = registry.add_market("bybit", market_for("BTC/USDT"))
    perp = registry.add_market("bybit", market_for("BTC/USDT:USDT", "BTCUSDT", 1.0))
    other = registry.add_market("okx", market_for("BTC/USDT"))
    registry.save(registry_path(data))
    names = registry.names()
    base = 1_767_225_600_000  # 2026-01-01
    rng = np.random.default_rng(3)

    trades = schema.empty("trades", 500)
    trades["ts_ms"] = base + np.sort(rng.integers(0, 3 * 3_600_000, 500))
    trades["recv_ts_ms"] = trades["ts_ms"] + 5
    trades["instrument_id"] = np.where(np.arange(500) % 5 == 0, other.id, spot.id)
    trades["trade_id"] = np.arange(500)
    trades["side"] = rng.choice([-1, 1], 500)
    trades["price"] = 90_000 + rng.normal(0, 50, 500)
    trades["amount"] = rng.uniform(0.001, 1, 500)
    tickers = schema.empty("tickers", 40)
    tickers["ts_ms"] = base + np.arange(40) * 60_000
    tickers["instrument_id"] = perp.id
    tickers["bid"], tickers["ask"] = 90_000.0, 90_001.0
    tickers["mark_price"] = 90_000.5
    funding = schema.empty("funding", 3)
    funding["ts_ms"] = base + np.array([0, 3_600_000, 7_200_000])
    funding["instrument_id"] = perp.id
    funding["funding_ts_ms"] = base + 8 * 3_600_000
    funding["funding_rate"] = [0.0001, 0.00012, 0.00011]
    funding["interval_h"] = 8.0
    landing.write_stream(data, "trades", schema.to_arrow("trades", trades, names), "node0-rank1", 0)
    # a re-capture of the first 100 trades: duplicates the replay must not repeat
    landing.write_stream(data, "trades", schema.to_arrow("trades", trades[:100], names), "node0-rank1", 1)
    landing.write_stream(data, "tickers", schema.to_arrow("tickers", tickers, names), "node0-rank1", 0)
    landing.write_stream(data, "funding", schema.to_arrow("funding", funding, names), "node0-rank1", 0)

    ex = ReplayExchange("bybit", data, format="landing")
    assert sorted(run(ex.load_markets())) == ["BTC/USDT", "BTC/USDT:USDT"]
    got = run(drain(lambda: ex.watch_trades("BTC/USDT")))
    mine = trades[trades["instrument_id"] == spot.id]
    assert [int(t["id"]) for t in got] == mine["trade_id"].tolist()
    assert [t["price"] for t in got] == mine["price"].tolist()
    ticks = run(drain(lambda: ex.watch_ticker("BTC/USDT:USDT")))
    assert [t["timestamp"] for t in ticks] == tickers["ts_ms"].tolist()
    assert ticks[0]["markPrice"] == 90_000.5 and ticks[0]["indexPrice"] is None
    rates = run(drain(lambda: ex.watch_funding_rate("BTC/USDT:USDT")))
    assert [r["fundingRate"] for r in rates] == [0.0001, 0.00012, 0.00011]
    assert all(r["info"]["is_settled"] is False and r["interval"] == "8h" for r in rates)
    assert run(ex.fetch_funding_rate_history("BTC/USDT:USDT")) == []  # nothing settled was recorded


def test_a_stream_nobody_reads_any_more_does_not_block_the_others(xrp_dir: Path) -> None:
    ex = ReplayExchange("binance", xrp_dir, format="fixture_csv", batch_size=100)

    async def main() -> list[dict]:
        await ex.load_markets()
        await ex.watch_trades("XRP/ETH")  # subscribed once, then abandoned with 12,377 trades (2019) unread
        return await drain(lambda: ex.watch_funding_rate("XRP/USDT:USDT"))  # 2021: after all of them

    rates = run(main())
    assert len(rates) == 91  # served after a short pause, not a deadlock


def test_a_cancelled_watch_call_loses_nothing(xrp_dir: Path) -> None:
    ex = ReplayExchange("binance", xrp_dir, format="fixture_csv", batch_size=100)

    async def main() -> tuple[list[dict], list[dict]]:
        await ex.load_markets()
        first = await ex.watch_trades("XRP/ETH")
        # funding (2021) must wait for the trades (2019): cancel it while it waits, as a watchdog would
        waiting = asyncio.ensure_future(ex.watch_funding_rate("XRP/USDT:USDT"))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        rest = first + await drain(lambda: ex.watch_trades("XRP/ETH"))
        return rest, await drain(lambda: ex.watch_funding_rate("XRP/USDT:USDT"))

    trades, rates = run(main())
    assert len(trades) == 12477 and len(rates) == 91
    assert rates[0]["fundingTimestamp"] == int(
        pd.read_csv(xrp_dir / "XRP_USDT_USDT-8h-funding_rate.csv")["time_ms_utc"][0]
    )


BOOK = [  # update_id, best bid, bid qty, best ask, ask qty, transaction time, event time
    [4001, "42000.1", "1.5", "42000.2", "0.7", 1704067200010, 1704067200012],
    [4002, "42000.0", "2.0", "42000.3", "0.1", 1704067200510, 1704067200513],
    [4003, "42001.0", "2.0", "42000.5", "0.1", 1704067201010, 1704067201013],  # crossed: quarantined
]


@pytest.mark.parametrize("header", [True, False])
def test_book_ticker_archives_replay_as_tickers(tmp_path: Path, header: bool) -> None:
    names = [
        "update_id",
        "best_bid_price",
        "best_bid_qty",
        "best_ask_price",
        "best_ask_qty",
        "transaction_time",
        "event_time",
    ]
    path = write_archive(
        tmp_path / "futures/um/daily/bookTicker/BTCUSDT/BTCUSDT-bookTicker-2024-01-01.csv",
        BOOK,
        names if header else None,
        False,
        [5, 6],
        True,
    )
    assert detect_kind(path) == "bookTicker"
    ex = ReplayExchange("binance", tmp_path, format="binance_archive", symbols=["BTC/USDT:USDT"])
    ticks = run(drain(lambda: ex.watch_ticker("BTC/USDT:USDT")))
    assert [(t["timestamp"], t["bid"], t["bidVolume"], t["ask"], t["askVolume"]) for t in ticks] == [
        (r[5], float(r[1]), float(r[2]), float(r[3]), float(r[4])) for r in BOOK[:2]
    ]
    assert [r.reason for r in ex.rejected[path].rejects] == ["ask: '42000.5' is below the bid (crossed book)"]


def test_imported_files_replay_from_the_landing_zone_like_the_originals(xrp_dir: Path, tmp_path: Path) -> None:
    from fundarb_dagster.core.importer import import_files

    data = tmp_path / "data"
    import_files([xrp_dir / "XRP_ETH-trades.csv"], data, exchange="binance", symbol="XRP/ETH", progress=None)
    import_files(
        [xrp_dir / "XRP_USDT_USDT-8h-funding_rate.csv"],
        data,
        exchange="binance",
        symbol="XRP/USDT:USDT",
        progress=None,
    )
    landed = ReplayExchange("binance", data, format="landing")
    original = ReplayExchange("binance", xrp_dir, format="fixture_csv")
    assert sorted(run(landed.load_markets())) == ["XRP/ETH", "XRP/USDT:USDT"]
    assert run(drain(lambda: landed.watch_trades("XRP/ETH"))) == run(drain(lambda: original.watch_trades("XRP/ETH")))
    # only trades were imported for XRP/ETH: its 1m bars are built from them and equal the recorded 1m file
    assert run(landed.fetch_ohlcv("XRP/ETH", "1m")) == run(original.fetch_ohlcv("XRP/ETH", "1m"))
    history = run(landed.fetch_funding_rate_history("XRP/USDT:USDT"))
    assert [(h["timestamp"], h["fundingRate"], h["info"]["interval_h"]) for h in history] == [
        (h["timestamp"], h["fundingRate"], h["info"]["interval_h"])
        for h in run(original.fetch_funding_rate_history("XRP/USDT:USDT"))
    ]


def test_concurrent_first_calls_load_once_and_the_clock_never_goes_back(xrp_dir: Path) -> None:
    # As the capture job does it: no load_markets, the clock read first, every stream's first call at once.
    ex = ReplayExchange("binance", xrp_dir, format="fixture_csv", batch_size=200)
    first_trade = int(pd.read_csv(xrp_dir / "XRP_ETH-trades.csv")["time_ms_utc"].min())
    assert ex.milliseconds() == first_trade
    behind: list[tuple[int, int]] = []

    async def consume(call, when) -> int:
        n = 0
        while True:
            try:
                got = await call()
            except EndOfData:
                return n
            items = got if isinstance(got, list) else [got]
            n += len(items)
            now = ex.milliseconds()
            behind.extend((when(i), now) for i in items if when(i) > now)

    async def main() -> list[int]:
        return await asyncio.gather(
            consume(lambda: ex.watch_trades("XRP/ETH"), lambda t: t["timestamp"]),
            consume(lambda: ex.watch_ohlcv("XRP/ETH", "1m"), lambda c: c[0] + 60_000),
            consume(lambda: ex.watch_funding_rate("XRP/USDT:USDT"), lambda f: f["timestamp"]),
        )

    assert run(main()) == [12477, 2469, 91]
    assert behind == []  # nothing was ever delivered ahead of the replay clock


def test_fetch_trades_pages_like_ccxt(xrp_dir: Path) -> None:
    ex = ReplayExchange("binance", xrp_dir, format="fixture_csv", symbols=["XRP/ETH"])
    frame = pd.read_csv(xrp_dir / "XRP_ETH-trades.csv")
    since = int(frame["time_ms_utc"].iloc[5000])
    page = run(ex.fetch_trades("XRP/ETH", since, 300))
    expected = frame[frame["time_ms_utc"] >= since].head(300)
    assert [int(t["id"]) for t in page] == expected["trade_id"].tolist()
    latest = run(ex.fetch_trades("XRP/ETH", None, 10))  # no since: the most recent, as venues answer
    assert [int(t["id"]) for t in latest] == frame["trade_id"].tail(10).tolist()
    until = int(frame["time_ms_utc"].iloc[100])
    window = run(ex.fetch_trades("XRP/ETH", 0, None, {"until": until}))
    assert len(window) == int((frame["time_ms_utc"] <= until).sum())
    assert run(ex.fetch_trades("XRP/ETH", int(frame["time_ms_utc"].max()) + 1, 10)) == []


def test_a_replay_can_start_later_than_its_recording(xrp_dir: Path) -> None:
    """`replay.start`: records before it are skipped and the clock starts there (a window of a recording)."""
    whole = ReplayExchange("binance", xrp_dir, format="fixture_csv")
    everything = run(drain(lambda: whole.watch_trades("XRP/ETH")))
    start = int(everything[len(everything) // 2]["timestamp"])
    later = ReplayExchange("binance", xrp_dir, format="fixture_csv", start_ms=start)
    run(later.load_markets())
    assert later.milliseconds() == start
    got = run(drain(lambda: later.watch_trades("XRP/ETH")))
    assert [t["id"] for t in got] == [t["id"] for t in everything if t["timestamp"] >= start]


@pytest.mark.parametrize(
    "body",
    [
        b"calc_time,funding_interval_hours,last_funding_rate\n1,8,0.0001\n",  # a header
        b"\xef\xbb\xbfopen_time,open,high\r\n1,2,3\r\n",  # a BOM, CRLF
        b"1704067200000,8,0.0001",  # one line, no newline
        b"",  # empty
        b"1,2\r3,4\n",  # a lone carriage return ends the line
        b"a," * 5000 + b"\n1\n",  # a first line longer than the text reader's first block
        "prix,\u00e9t\u00e9\n1,2\n".encode(),  # UTF-8 beyond ASCII
    ],
)
def test_a_first_line_kept_from_the_bytes_read_is_the_one_read_from_the_file(tmp_path: Path, body: bytes) -> None:
    """An import keeps each CSV's first line from the bytes it read (`remember_first_line`): exactly the line
    the text reader gives when the file is opened for it (`_read_first_line`), or nothing kept."""
    import os

    from fundarb_dagster.core.sources.replay import formats

    path = tmp_path / "BTCUSDT-fundingRate-2024-01.csv"
    path.write_bytes(body)
    stat = os.stat(path)
    formats._FIRST_LINES.clear()
    formats.remember_first_line(path, stat, body)
    kept = formats._FIRST_LINES.get((path, stat.st_mtime_ns, stat.st_size))
    assert kept == formats._read_first_line(path) or (kept is None and len(body) > 8192)
    formats._FIRST_LINES.clear()


def test_archive_names_say_their_market_type_and_period() -> None:
    """A folder named `spot`, `futures`, `um` or `cm` says the market type (a folder only named like one does
    not), funding and mark-price kinds are contracts, and a name's trailing month or day is its period's start
    (epoch ms, UTC); a name without a valid one has none."""
    from fundarb_dagster.core.sources.replay.formats import period_start_ms, symbol_hint

    spot = Path("/d/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01.zip")
    assert symbol_hint(spot, "klines") == ("BTCUSDT", "spot")
    assert symbol_hint(Path("d/futures/cm/daily/klines/X/1m/BTCUSDPERP-1m-2024-01-01.zip"), "klines") == (
        "BTCUSDPERP",
        "swap",
    )
    assert symbol_hint(Path("/x/um/BTCUSDT-aggTrades-2024-01-01.csv"), "aggTrades") == ("BTCUSDT", "swap")
    assert symbol_hint(Path("/x/spotty/umbrella/BTCUSDT-trades-2024-01-01.csv"), "trades") == ("BTCUSDT", None)
    assert symbol_hint(Path("/x/BTCUSDT-fundingRate-2024-01.csv"), "fundingRate") == ("BTCUSDT", "swap")
    assert period_start_ms(Path("BTCUSDT-fundingRate-2024-02.zip")) == 1_706_745_600_000
    assert period_start_ms(Path("/a/BTCUSDT-1m-2024-02-29.csv")) == 1_709_164_800_000
    assert period_start_ms(Path("XRP_ETH-trades.csv")) is None
    assert period_start_ms(Path("BTCUSDT-1m-2024-13.csv")) is None
    assert period_start_ms(Path("BTCUSDT-1m-2023-02-29.csv")) is None
