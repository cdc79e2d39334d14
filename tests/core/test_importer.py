"""`fundarb import` on real fixtures and Binance-archive variants, checked through DuckDB's hive reader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fundarb_dagster.core import landing, schema
from fundarb_dagster.core.config import ConfigError
from fundarb_dagster.core.importer import format_summary, import_files, load_manifest
from fundarb_dagster.core.instruments import InstrumentRegistry, registry_path
from fundarb_dagster.core.schema import EventKind
from fundarb_dagster.core.sources.markets import market_for
from fundarb_dagster.core.sources.replay import parsers
from tests.core.binance_archives import KLINE_HEADER, write_csv

HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def klines_rows(n: int, start: int = T0) -> list[list]:
    rng = np.random.default_rng(11)
    rows, price = [], 42_000.0
    for i in range(n):
        o = price
        c = o * (1 + rng.normal(0, 0.001))
        h, low = max(o, c) * 1.0005, min(o, c) * 0.9995
        t = start + i * 60_000
        rows.append(
            [
                t,
                f"{o:.2f}",
                f"{h:.2f}",
                f"{low:.2f}",
                f"{c:.2f}",
                f"{rng.uniform(1, 50):.3f}",
                t + 59_999,
                1,
                1,
                1,
                1,
                0,
            ]
        )
        price = c
    return rows


def read_landed(data: Path, stream: str) -> pd.DataFrame:
    files = landing.stream_files(data, stream)
    with duckdb.connect() as con:
        return con.execute("SELECT * FROM read_parquet($files) ORDER BY ts_ms", {"files": files}).df()


def landed_files(data: Path) -> list[Path]:
    return sorted(landing.landing_root(data).rglob("*.parquet"))


@pytest.mark.parametrize(
    ("header", "micros", "zipped"),
    [(True, False, False), (False, True, False), (False, False, True), (True, True, True)],
)
def test_klines_variants_land_the_same_rows(tmp_path: Path, header: bool, micros: bool, zipped: bool) -> None:
    rows = klines_rows(150)  # 2.5 hours: three hour partitions
    path = write_csv(
        tmp_path / "in" / "BTCUSDT-1m-2024-01-01.csv",
        rows,
        KLINE_HEADER if header else None,
        [0, 6] if micros else [],
        zipped,
    )
    data = tmp_path / "data"
    summary = import_files([path], data, exchange="binance", symbol="BTC/USDT:USDT", progress=None)
    assert summary.ok and summary.landed == 150 and summary.quarantined == 0
    got = read_landed(data, "ohlcv")
    assert got["ts_ms"].tolist() == [r[0] for r in rows]
    for i, name in enumerate(["open", "high", "low", "close", "volume"], start=1):
        assert got[name].tolist() == [float(r[i]) for r in rows]
    assert set(got["timeframe_s"]) == {60}
    assert set(got["exchange"]) == {"binance"} and set(got["symbol"]) == {"BTC/USDT:USDT"}
    # One day file, sorted by time, in the day's folder: not one file per hour.
    (only,) = landed_files(data)
    assert (
        only.parent.name == "date=2024-01-01"
        and only.name == f"{summary.landing_files and Path(summary.landing_files[0]).name}"
    )
    assert only.name.startswith("import-")


def test_trades_agg_trades_and_funding_archives_land_with_schema_types(tmp_path: Path) -> None:
    trades = [
        [i, f"{42000 + i}.5", "0.01", "420", T0 + i * 1000, "true" if i % 3 else "false", "true"] for i in range(50)
    ]
    agg = [[900 + i, "42010.0", "1.5", 1, 2, T0 + i * 700, "false" if i % 2 else "true"] for i in range(30)]
    funding = [[T0 + i * 8 * HOUR, 8 if i < 3 else 4, f"{0.0001 * (i + 1):.8f}"] for i in range(5)]
    paths = [
        write_csv(tmp_path / "spot" / "BTCUSDT-trades-2024-01-01.csv", trades, None, [4], False),
        write_csv(tmp_path / "um" / "BTCUSDT-aggTrades-2024-01-01.csv", agg, None, [], True),
        write_csv(tmp_path / "um" / "BTCUSDT-fundingRate-2024-01.csv", funding, None, [], False),
    ]
    data = tmp_path / "data"
    spot = import_files(paths[:1], data, exchange="binance", symbol="BTC/USDT", progress=None)
    perp = import_files(paths[1:], data, exchange="binance", symbol="BTC/USDT:USDT", progress=None)
    assert [f.kind for f in spot.files + perp.files] == ["trades", "aggTrades", "fundingRate"]
    landed = read_landed(data, "trades")
    s = landed[landed["symbol"] == "BTC/USDT"]
    assert s["trade_id"].tolist() == [r[0] for r in trades]
    assert s["ts_ms"].tolist() == [r[4] for r in trades]  # µs in the file, ms landed
    assert s["side"].tolist() == [-1 if r[5] == "true" else 1 for r in trades]
    p = landed[landed["symbol"] == "BTC/USDT:USDT"]
    assert p["trade_id"].tolist() == [r[0] for r in agg] and p["amount"].tolist() == [1.5] * 30
    f = read_landed(data, "funding")
    assert f["funding_rate"].tolist() == [float(r[2]) for r in funding]
    assert f["interval_h"].tolist() == [float(r[1]) for r in funding]
    assert set(f["is_settled"]) == {1} and (f["funding_ts_ms"] == f["ts_ms"]).all()
    registry = InstrumentRegistry.load(registry_path(data))
    history = registry.interval_history("binance", "BTC/USDT:USDT")
    assert [(s.valid_from_ms, s.interval_h) for s in history] == [(T0, 8.0), (T0 + 3 * 8 * HOUR, 4.0)]
    assert registry.id_of("binance", "BTC/USDT") != registry.id_of("binance", "BTC/USDT:USDT")


def test_importing_the_same_file_twice_lands_nothing_new(tmp_path: Path, fixtures_dir: Path) -> None:
    source = tmp_path / "XRP_USDT_USDT-5m-futures.csv"
    shutil.copy(fixtures_dir / "binance_xrp" / source.name, source)
    data = tmp_path / "data"
    first = import_files([source], data, exchange="binance", symbol="XRP/USDT:USDT", progress=None)
    before = {p: p.stat().st_mtime_ns for p in landed_files(data)}
    renamed = tmp_path / "copy-with-another-name.csv"
    shutil.copy(source, renamed)  # same bytes, same digest
    second = import_files([source, renamed], data, exchange="binance", symbol="XRP/USDT:USDT", progress=None)
    assert first.landed == 1999 and second.landed == 0 and second.skipped == 2
    assert {p: p.stat().st_mtime_ns for p in landed_files(data)} == before
    assert len(read_landed(data, "ohlcv")) == 1999
    assert "skipped, already imported" in format_summary(second)
    manifest = load_manifest(data)
    assert list(manifest) == [first.files[0].digest]


def test_an_interrupted_import_is_redone_without_duplicates(tmp_path: Path, fixtures_dir: Path, monkeypatch) -> None:
    source = tmp_path / "XRP_ETH-trades.csv"  # 2019-10-11 .. 2019-10-13: three day files
    shutil.copy(fixtures_dir / "binance_xrp" / source.name, source)
    data = tmp_path / "data"
    real_write = landing.write_parquet_atomic
    calls = {"n": 0}

    def crash_on_third(table, path, compression="zstd", **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("power cut")  # the process dies part-way through the days
        return real_write(table, path, compression, **kwargs)

    monkeypatch.setattr(landing, "write_parquet_atomic", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        import_files([source], data, exchange="binance", symbol="XRP/ETH", progress=None)
    partial = landed_files(data)
    assert len(partial) == 2  # whole files only, no temporaries visible
    assert not list(landing.landing_root(data).rglob(".tmp-*"))
    assert load_manifest(data) == {}
    assert len(list((data / ".fundarb" / "imports").glob("import-*.json"))) == 1  # its journal lists them
    monkeypatch.setattr(landing, "write_parquet_atomic", real_write)
    summary = import_files([source], data, exchange="binance", symbol="XRP/ETH", progress=None)
    expected = pd.read_csv(source)
    got = read_landed(data, "trades")
    assert summary.landed == len(expected) == len(got)
    assert sorted(got["trade_id"].tolist()) == sorted(expected["trade_id"].tolist())
    assert len(landed_files(data)) == 3 and not list((data / ".fundarb" / "imports").glob("*.json"))


def test_bad_rows_are_quarantined_counted_and_kept(tmp_path: Path) -> None:
    rows = klines_rows(10)
    rows[2][2] = "-1"  # high negative
    rows[5][4] = "n/a"
    rows[7][0] = "yesterday"
    path = write_csv(tmp_path / "BTCUSDT-1m-2024-01-01.csv", rows, KLINE_HEADER, [], False)
    with open(path, "a") as handle:
        handle.write(",".join(str(v) for v in klines_rows(11)[10]) + ",surplus\n")  # one field too many
    data = tmp_path / "data"
    summary = import_files([path], data, exchange="binance", symbol="BTC/USDT:USDT", progress=None)
    result = summary.files[0]
    assert result.landed == 7 and result.quarantined == 4 and summary.ok
    assert result.reasons == {
        "high: <= 0": 1,
        "close: not a number": 1,
        "ts_ms: not an integer": 1,
        "columns: field count": 1,
    }
    assert "line 4: high: '-1.0' must be > 0" in result.samples
    assert "line 7: close: 'n/a' is not a number" in result.samples
    assert "line 9: ts_ms: 'yesterday' is not an epoch timestamp" in result.samples
    text = format_summary(summary)
    assert "4 quarantined" in text and "quarantined 1 x close: not a number" in text
    kept = (data / "quarantine").glob("*.jsonl")
    lines = [json.loads(line) for f in kept for line in f.read_text().splitlines()]
    assert {r["value"] for r in lines[1:]} >= {"-1.0", "n/a", "yesterday"}
    events = read_landed(data, "capture_events")
    assert set(events["kind"]) == {int(EventKind.QUARANTINED)} and events["count"].sum() == 4
    assert set(events["reason"]) == set(result.reasons)


def test_fixture_funding_gets_inferred_intervals_and_the_table_is_filtered(tmp_path: Path, fixtures_dir: Path) -> None:
    xrp = tmp_path / "XRP_USDT_USDT-8h-funding_rate.csv"
    shutil.copy(fixtures_dir / "binance_xrp" / xrp.name, xrp)
    full = pd.read_csv(fixtures_dir / "funding_2025_2026" / "funding_btc_eth_binance_bybit_hyperliquid_utc.csv")
    table = tmp_path / "funding.csv"
    full[full["settlement_time_ms_utc"] < full["settlement_time_ms_utc"].min() + 10 * 24 * HOUR].to_csv(
        table, index=False
    )
    data = tmp_path / "data"
    import_files([xrp], data, exchange="binance", symbol="XRP/USDT:USDT", progress=None)
    summary = import_files([table], data, exchange="bybit", symbol="ETH/USDT:USDT", progress=None)
    expected = pd.read_csv(table)
    expected = expected[(expected["venue"] == "bybit") & (expected["canonical_symbol"] == "ETH-USDT-PERP")]
    assert summary.landed == len(expected) >= 29
    assert summary.files[0].other_instruments == len(pd.read_csv(table)) - len(expected)
    got = read_landed(data, "funding")
    bybit = got[got["exchange"] == "bybit"].sort_values("funding_ts_ms")
    assert bybit["funding_rate"].tolist() == expected.sort_values("settlement_time_ms_utc")["funding_rate"].tolist()
    xrp_rows = got[got["symbol"] == "XRP/USDT:USDT"]
    assert len(xrp_rows) == 91 and set(xrp_rows["interval_h"]) == {8.0}
    registry = InstrumentRegistry.load(registry_path(data))
    assert registry.interval_at("binance", "XRP/USDT:USDT", int(xrp_rows["ts_ms"].max())) == 8.0
    assert registry.interval_at("bybit", "ETH/USDT:USDT", int(bybit["ts_ms"].max())) == 8.0
    # the same table for another instrument is a separate import, not a skip
    again = import_files([table], data, exchange="hyperliquid", symbol="BTC/USDC:USDC", progress=None)
    hyperliquid = pd.read_csv(table).query("venue == 'hyperliquid' and canonical_symbol == 'BTC-USDC-PERP'")
    assert again.landed == len(hyperliquid) >= 239 and again.skipped == 0
    registry = InstrumentRegistry.load(registry_path(data))
    assert registry.interval_at("hyperliquid", "BTC/USDC:USDC", int(hyperliquid["settlement_time_ms_utc"].max())) == 1.0


def test_ids_stay_stable_across_imports_and_kind_override_is_honoured(tmp_path: Path, fixtures_dir: Path) -> None:
    data = tmp_path / "data"
    trades = tmp_path / "XRP_ETH-trades.csv"
    shutil.copy(fixtures_dir / "binance_xrp" / trades.name, trades)
    first = import_files([trades], data, exchange="binance", symbol="XRP/ETH", kind="fixture_trades", progress=None)
    rows = klines_rows(5)
    klines = write_csv(tmp_path / "x.csv", rows, None, [], False)
    second = import_files([klines], data, exchange="binance", symbol="BTC/USDT", kind="klines", progress=None)
    third = import_files([klines], data, exchange="okx", symbol="XRP/ETH", kind="klines", progress=None)
    assert (first.instrument_id, second.instrument_id, third.instrument_id) == (0, 1, 2)
    assert import_files([trades], data, exchange="binance", symbol="XRP/ETH", progress=None).instrument_id == 0
    with pytest.raises(ValueError, match="kind: unknown kind 'candles'"):
        import_files([klines], data, exchange="binance", symbol="BTC/USDT", kind="candles", progress=None)
    with pytest.raises(ValueError, match="symbol: 'BTCUSDT' is not a ccxt unified symbol"):
        import_files([klines], data, exchange="binance", symbol="BTCUSDT", progress=None)


def test_unreadable_files_fail_alone_with_a_reason(tmp_path: Path, fixtures_dir: Path) -> None:
    odd = tmp_path / "notes.csv"
    odd.write_text("hello,world\n1,2\n")
    mark = tmp_path / "XRP_USDT_USDT-8h-mark.csv"
    shutil.copy(fixtures_dir / "binance_xrp" / mark.name, mark)
    good = write_csv(tmp_path / "BTCUSDT-1m-2024-01-01.csv", klines_rows(3), None, [], False)
    summary = import_files(
        [odd, mark, good], tmp_path / "data", exchange="binance", symbol="BTC/USDT:USDT", progress=None
    )
    assert [f.status for f in summary.files] == ["failed", "failed", "imported"]
    assert "kind: cannot tell the kind" in summary.files[0].error
    assert "mark-price candles" in summary.files[1].error
    assert summary.landed == 3 and not summary.ok
    assert "FAILED" in format_summary(summary)
    assert load_manifest(tmp_path / "data").keys() == {summary.files[2].digest}
    # A path that does not exist is a bad argument: refused before any file is touched.
    with pytest.raises(ConfigError, match="paths: '.*missing.csv' does not exist"):
        import_files([good, tmp_path / "missing.csv"], tmp_path / "other", exchange="binance", symbol="BTC/USDT")
    assert not (tmp_path / "other").exists()


def test_a_wrong_kind_that_lands_nothing_is_not_recorded_and_the_right_kind_then_imports(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    data = tmp_path / "data"
    trades = tmp_path / "XRP_ETH-trades.csv"
    shutil.copy(fixtures_dir / "binance_xrp" / trades.name, trades)
    args = {"exchange": "binance", "symbol": "XRP/ETH", "progress": None}
    unreadable = import_files([trades], data, kind="fixture_ohlcv", **args)  # lacks the candle columns
    assert unreadable.files[0].status == "failed" and "cannot be read as 'fixture_ohlcv'" in unreadable.files[0].error
    wrong = import_files([trades], data, kind="klines", **args)  # reads, but every row is quarantined
    [result] = wrong.files
    assert result.status == "failed" and result.landed == 0 and not wrong.ok
    assert "read as 'klines', no row of 12,477 landed" in result.error
    assert load_manifest(data) == {} and not (data / "landing").exists()  # no quarantine events either
    right = import_files([trades], data, **args)  # detected: fixture_trades
    assert right.files[0].status == "imported" and right.landed == 12_477
    assert import_files([trades], data, **args).files[0].status == "skipped"
    assert import_files([trades], data, kind="fixture_trades", **args).files[0].status == "skipped"
    # Recorded as the kind it was read as: another kind is not "already imported", and reading the file
    # that way again does not touch what the first kind landed.
    again = import_files([trades], data, kind="klines", **args)
    assert again.files[0].status == "failed"
    landed = pq.read_table(data / "landing" / "trades").to_pandas()
    assert len(landed) == 12_477 and landed["trade_id"].is_unique
    ohlcv = data / "landing" / "ohlcv"
    assert not ohlcv.exists() or not list(ohlcv.rglob("*.parquet"))


def test_big_files_report_progress(tmp_path: Path, fixtures_dir: Path, monkeypatch) -> None:
    monkeypatch.setattr(parsers, "CHUNK_ROWS", 2000)
    source = tmp_path / "XRP_ETH-trades.csv"
    shutil.copy(fixtures_dir / "binance_xrp" / source.name, source)
    messages: list[str] = []
    summary = import_files([source], tmp_path / "data", exchange="binance", symbol="XRP/ETH", progress=messages.append)
    assert summary.landed == 12477
    read = [m for m in messages if "rows read" in m]
    assert len(read) == 7 and read[-1] == "XRP_ETH-trades.csv: 12,477 rows read"
    assert messages[-2:] == [
        "XRP_ETH-trades.csv: 12,477 rows landed, 0 quarantined",
        f"12,477 rows landed in 3 day files ({Path(summary.landing_files[0]).stem})",
    ]


def test_book_ticker_archives_land_as_tickers(tmp_path: Path) -> None:
    book = [
        [7000 + i, f"{42000 + i}.1", "1.5", f"{42000 + i}.3", "0.5", T0 + i * 250, T0 + i * 250 + 2] for i in range(40)
    ]
    path = write_csv(tmp_path / "BTCUSDT-bookTicker-2024-01-01.csv", book, None, [], True)
    summary = import_files([path], tmp_path / "data", exchange="binance", symbol="BTC/USDT:USDT", progress=None)
    assert summary.files[0].kind == "bookTicker" and summary.landed == 40
    got = read_landed(tmp_path / "data", "tickers")
    assert got["ts_ms"].tolist() == [r[5] for r in book]
    assert got["bid"].tolist() == [float(r[1]) for r in book] and got["ask_size"].tolist() == [0.5] * 40
    assert got["last"].isna().all() and got["mark_price"].isna().all()


def test_a_folder_imports_its_files_and_a_mismatched_name_is_flagged(tmp_path: Path) -> None:
    days = tmp_path / "download"
    for day in range(3):
        write_csv(days / f"BTCUSDT-1m-2024-01-0{day + 1}.csv", klines_rows(60, T0 + day * 24 * HOUR), None, [], True)
    (days / "README.txt").write_text("not data")
    summary = import_files([days], tmp_path / "data", exchange="binance", symbol="BTC/USDT:USDT", progress=None)
    assert [Path(f.path).name for f in summary.files] == [f"BTCUSDT-1m-2024-01-0{d}.zip" for d in (1, 2, 3)]
    assert summary.landed == 180 and all(not f.warnings for f in summary.files)
    odd = import_files(
        [days / "BTCUSDT-1m-2024-01-01.zip"], tmp_path / "other", exchange="binance", symbol="ETH/USDT", progress=None
    )
    assert odd.files[0].warnings == ["file name suggests 'BTCUSDT', imported as 'ETH/USDT' as asked"]
    assert "warning: file name suggests 'BTCUSDT'" in format_summary(odd)


# Binance's dapi exchangeInfo entry for BTCUSD_PERP, in the shape Binance documents: ccxt's own parser
# turns it into the market an import takes its contract facts from (offline here; `live.load_market` live).
COIN_M_PERP = {
    "symbol": "BTCUSD_PERP", "pair": "BTCUSD", "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
    "onboardDate": 1597042800000, "contractStatus": "TRADING", "contractSize": 100, "marginAsset": "BTC",
    "baseAsset": "BTC", "quoteAsset": "USD", "pricePrecision": 1, "quantityPrecision": 0,
    "filters": [{"filterType": "PRICE_FILTER", "minPrice": "1000", "maxPrice": "4529764", "tickSize": "0.1"},
                {"filterType": "LOT_SIZE", "minQty": "1", "maxQty": "1000000", "stepSize": "1"}],
}  # fmt: skip


def coin_m_market() -> dict:
    import ccxt

    return ccxt.binance().parse_market(COIN_M_PERP)


def test_coin_m_imports_take_contract_size_and_inverse_from_ccxt_and_land_base_units(tmp_path: Path) -> None:
    """COIN-M BTCUSD_PERP counts 100-USD contracts: a 7-contract trade at 42,000 is 7 x 100 / 42,000 BTC, the
    archive's own `base_qty` column; klines count contracts in `volume` and base in the 8th column."""
    rng = np.random.default_rng(5)
    trades, klines = [], []
    for i in range(40):
        price, qty = round(42_000 + rng.normal(0, 50), 1), int(rng.integers(1, 500))
        trades.append(
            [100 + i, f"{price}", qty, f"{qty * 100 / price:.8f}", T0 + i * 1000, "true" if i % 2 else "false"]
        )
    for i in range(3):
        o = c = 42_000.0 + i
        klines.append(
            [T0 + i * 60_000, o, o + 5, c - 5, c, 1200 + i, T0 + i * 60_000 + 59_999, f"{2.5 + i:.8f}", 9, 7, 1, 0]
        )
    header = ["id", "price", "qty", "base_qty", "time", "is_buyer_maker"]
    paths = [
        write_csv(tmp_path / "cm" / "BTCUSD_PERP-trades-2024-01-01.csv", trades, header, [], False),
        write_csv(tmp_path / "cm" / "BTCUSD_PERP-1m-2024-01-01.csv", klines, KLINE_HEADER, [], True),
    ]
    data = tmp_path / "data"
    with pytest.raises(ConfigError, match="--symbol: 'BTC/USD:BTC' on binance is an inverse contract"):
        import_files(paths, data, exchange="binance", symbol="BTC/USD:BTC", progress=None)
    summary = import_files(paths, data, exchange="binance", symbol="BTC/USD:BTC", progress=None, market=coin_m_market())
    assert summary.ok and summary.landed == 43
    instrument = InstrumentRegistry.load(registry_path(data)).get("binance", "BTC/USD:BTC")
    assert (instrument.contract_size, instrument.inverse, instrument.settle) == (100.0, True, "BTC")
    assert instrument.venue_symbol == "BTCUSD_PERP" and not summary.files[0].warnings
    got = read_landed(data, "trades")
    assert got["contracts"].tolist() == [float(t[2]) for t in trades]
    assert set(got["contract_size"]) == {100.0}
    assert got["amount"].tolist() == pytest.approx([float(t[3]) for t in trades], abs=5e-9)  # base_qty, 8 decimals
    assert got["amount"].tolist() == [t[2] * 100.0 / float(t[1]) for t in trades]
    bars = read_landed(data, "ohlcv")
    assert bars["volume"].tolist() == [float(k[7]) for k in klines]  # base, not the contract count
    # the contracts' USD value, the trade count, the taker buys in base units (the 11th column)
    assert bars["quote_volume"].tolist() == [k[5] * 100.0 for k in klines]
    assert bars["trade_count"].tolist() == [9.0] * 3 and bars["taker_buy_volume"].tolist() == [1.0] * 3


def test_an_off_grid_settlement_keeps_the_interval_in_force_which_is_recorded_as_inferred(tmp_path: Path) -> None:
    """A file that states no interval: the 8h venue's extra 03:00 settlement lands at its time with 8h, and
    the registry holds one 8h span marked inferred, not reported."""
    times = [T0 + i * 8 * HOUR + 17 for i in range(12)] + [T0 + 2 * 24 * HOUR + 3 * HOUR + 4]
    times.sort()
    path = tmp_path / "XRP_USDT_USDT-8h-funding_rate.csv"
    rows = [f"{t},x,{0.0001 * (i + 1):.6f},0,0,0,0" for i, t in enumerate(times)]
    path.write_text(
        "time_ms_utc,time_utc,funding_rate,unused_high,unused_low,unused_close,unused_volume\n" + "\n".join(rows) + "\n"
    )
    data = tmp_path / "data"
    summary = import_files([path], data, exchange="binance", symbol="XRP/USDT:USDT", progress=None)
    assert summary.landed == len(times)
    got = read_landed(data, "funding").sort_values("funding_ts_ms")
    assert got["funding_ts_ms"].tolist() == times and set(got["interval_h"]) == {8.0}
    history = InstrumentRegistry.load(registry_path(data)).interval_history("binance", "XRP/USDT:USDT")
    assert [(s.interval_h, s.source) for s in history] == [(8.0, "inferred")]


def test_a_file_of_which_most_rows_are_quarantined_fails_and_keeps_nothing(tmp_path: Path) -> None:
    rows = klines_rows(10)
    for row in rows[:6]:
        row[4] = "n/a"  # six of ten closes unreadable: not this kind of file, or a broken one
    path = write_csv(tmp_path / "BTCUSDT-1m-2024-01-01.csv", rows, KLINE_HEADER, [], False)
    data = tmp_path / "data"
    summary = import_files([path], data, exchange="binance", symbol="BTC/USDT:USDT", progress=None)
    result = summary.files[0]
    assert not summary.ok and result.status == "failed" and summary.landing_files == []
    assert result.error.startswith("min_landed_share: read as 'klines', 4 of 10 rows landed (40.0% < 50%")
    assert landed_files(data) == [] and load_manifest(data) == {}
    kept = import_files([path], data, exchange="binance", symbol="BTC/USDT:USDT", progress=None, min_landed_share=0.4)
    assert kept.ok and kept.landed == 4 and len(read_landed(data, "ohlcv")) == 4


def test_a_venue_market_id_resolves_through_the_registry_or_ccxts_markets(tmp_path: Path) -> None:
    import ccxt

    from fundarb_dagster.core.importer import resolve_symbol
    from fundarb_dagster.core.sources.live import market_of

    data = tmp_path / "data"
    nowhere = {}.get  # ccxt's markets could not be loaded
    with pytest.raises(ConfigError, match="--symbol: 'BTCUSD_PERP' is neither a ccxt unified symbol"):
        resolve_symbol("binance", "BTCUSD_PERP", data, nowhere)
    # ccxt's own id index, on the real binance class with the COIN-M market and a spot/perp pair sharing an id
    exchange = ccxt.binance()
    spot, perp = market_for("BTC/USDT", "BTCUSDT"), market_for("BTC/USDT:USDT", "BTCUSDT")
    exchange.set_markets([coin_m_market(), spot, perp])
    assert resolve_symbol("binance", "BTCUSD_PERP", data, lambda i, kind: market_of(exchange, i, kind)) == "BTC/USD:BTC"
    with pytest.raises(KeyError, match=r"'BTCUSDT' is the id of \['BTC/USDT', 'BTC/USDT:USDT'\]"):
        market_of(exchange, "BTCUSDT")
    # once registered (an import or a capture), the id resolves offline
    path = write_csv(tmp_path / "BTCUSD_PERP-1m-2024-01-01.csv", klines_rows(3), KLINE_HEADER, [], False)
    import_files([path], data, exchange="binance", symbol="BTC/USD:BTC", progress=None, market=coin_m_market())
    assert resolve_symbol("binance", "BTCUSD_PERP", data, nowhere) == "BTC/USD:BTC"
    assert resolve_symbol("binance", "ETH/USDT", data, nowhere) == "ETH/USDT"  # unified: as is


def test_an_unknown_header_lists_the_shapes_it_knows(tmp_path: Path) -> None:
    path = tmp_path / "mystery.csv"
    path.write_text("when,what,how_much\n1,2,3\n")
    summary = import_files([path], tmp_path / "data", exchange="binance", symbol="BTC/USDT", progress=None)
    error = summary.files[0].error
    assert "cannot tell the kind" in error and "funding_table (venue, settlement_time_ms_utc" in error
    assert "klines / markPriceKlines (open_time" in error and "or pass --kind" in error


def test_a_venues_archive_of_many_symbols_lands_one_sorted_file_per_stream_and_day(tmp_path: Path, monkeypatch) -> None:
    """One import of a venue's archive folder (symbols from the file names, spot and USD-M told apart by the
    folders): every stream's rows land in one file per day, sorted by time; the same import again lands nothing,
    says so, and never lists the landing zone (an import costs its own files, not the history's)."""
    import ccxt

    from fundarb_dagster.core.importer import symbol_from_name
    from fundarb_dagster.core.sources.live import market_of

    root = tmp_path / "data.binance.vision" / "data"
    expected: dict[str, list[tuple[int, float]]] = {}
    for name, interval_h in (("BTCUSDT", 8), ("ETHUSDT", 8), ("SOLUSDT", 1)):
        for month, start in (("2024-01", T0), ("2024-02", T0 + 31 * 24 * HOUR)):
            days = 31 if month == "2024-01" else 29
            times = range(start, start + days * 24 * HOUR, interval_h * HOUR)
            rows = [[t + 3, interval_h, f"{(t // HOUR % 17 - 8) * 1e-5:.8f}"] for t in times]  # ms jitter
            folder = root / "futures" / "um" / "monthly" / "fundingRate" / name
            write_csv(folder / f"{name}-fundingRate-{month}.csv", rows, None, [], False)
            expected.setdefault(name, []).extend((r[0], float(r[2])) for r in rows)
    spot_rows = klines_rows(3000)  # 2024-01-01 00:00 .. 2024-01-03 02:00: three days of 1m spot candles
    write_csv(
        root / "spot" / "daily" / "klines" / "BTCUSDT" / "1m" / "BTCUSDT-1m-2024-01.csv", spot_rows, None, [], False
    )
    exchange = ccxt.binance()
    exchange.set_markets(
        [
            market_for(s, s.split(":")[0].replace("/", ""))
            for s in ("BTC/USDT", "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")
        ]
    )
    data = tmp_path / "data"
    lookup = lambda market_id, kind: market_of(exchange, market_id, kind)  # noqa: E731 - ccxt's markets, loaded
    summary = import_files(
        [root],
        data,
        exchange="binance",
        symbol=None,
        progress=None,
        symbol_of=symbol_from_name("binance", data, lookup),
    )
    assert summary.ok and summary.failed == 0 and len(summary.files) == 7
    assert {f.symbol for f in summary.files} == {"BTC/USDT", "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"}
    funding_files = sorted(landing.landing_root(data).glob("funding/date=*/*.parquet"))
    assert len(funding_files) == 31 + 29 and not list(landing.landing_root(data).glob("funding/date=*/hour=*"))
    assert len(list(landing.landing_root(data).glob("ohlcv/date=*/*.parquet"))) == 3
    for path in funding_files:  # each day file sorted by time, holding only its day, LZ4 (DuckDB reads it below)
        ts = pq.read_table(path, columns=["ts_ms"]).column("ts_ms").to_numpy()
        assert (np.diff(ts) >= 0).all() and len(set(ts // (24 * HOUR))) == 1
        assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "LZ4"
    got = read_landed(data, "funding")
    for name, rows in expected.items():
        mine = got[got["symbol"] == f"{name[:-4]}/USDT:USDT"].sort_values("ts_ms")
        assert list(zip(mine["ts_ms"], mine["funding_rate"], strict=True)) == rows
    spot = read_landed(data, "ohlcv")
    assert set(spot["symbol"]) == {"BTC/USDT"} and spot["ts_ms"].tolist() == [r[0] for r in spot_rows]
    before = {p: p.stat().st_mtime_ns for p in landed_files(data)}
    listed: list[str] = []
    real_glob, real_rglob = Path.glob, Path.rglob
    monkeypatch.setattr(Path, "glob", lambda self, pattern: listed.append(str(self)) or real_glob(self, pattern))
    monkeypatch.setattr(Path, "rglob", lambda self, pattern: listed.append(str(self)) or real_rglob(self, pattern))
    again = import_files(
        [root],
        data,
        exchange="binance",
        symbol=None,
        progress=None,
        symbol_of=symbol_from_name("binance", data, lookup),
    )
    monkeypatch.undo()
    assert again.ok and again.skipped == 7 and again.landed == 0
    assert "7 skipped" in format_summary(again)
    assert not [p for p in listed if p.startswith(str(landing.landing_root(data)))]
    assert {p: p.stat().st_mtime_ns for p in landed_files(data)} == before


@pytest.mark.parametrize("join_bytes", [256 << 20, 3000])
def test_many_files_read_together_parse_exactly_as_one_by_one(tmp_path: Path, monkeypatch, join_bytes: int) -> None:
    """parse_files (small archives read together, validated as one frame) gives each file the records, rejects
    and inferred intervals parse_file gives it alone; a file with a bad row is read on its own. The same when
    a group is read in runs of a few files (`_BULK_JOIN_BYTES`, which bounds an import's memory)."""
    from fundarb_dagster.core.sources.replay import parse_file, parse_files

    monkeypatch.setattr(parsers, "_BULK_JOIN_BYTES", join_bytes)

    paths = []
    for m in range(4):
        start = T0 + m * 31 * 24 * HOUR
        rows = [[start + i * 8 * HOUR + 5, 8, f"{(i % 5 - 2) * 1e-5:.8f}"] for i in range(90)]
        header = ["calc_time", "funding_interval_hours", "last_funding_rate"] if m % 2 else None
        paths.append(write_csv(tmp_path / f"BTCUSDT-fundingRate-2024-0{m + 1}.csv", rows, header, [], False))
    no_interval = [[T0 + i * 4 * HOUR, f"{1e-5 * i:.8f}"] for i in range(60)]  # older archives: inferred 4 h
    paths.append(write_csv(tmp_path / "ETHUSDT-fundingRate-2023-01.csv", no_interval, None, [], False))
    bad = [[T0 + i * 8 * HOUR, 8, "0.0001"] for i in range(30)]
    bad[7][2] = "n/a"
    paths.append(write_csv(tmp_path / "SOLUSDT-fundingRate-2023-02.csv", bad, None, [], False))
    for day in range(3):
        paths.append(
            write_csv(
                tmp_path / f"BTCUSDT-1m-2024-01-0{day + 1}.csv",
                klines_rows(1440, T0 + day * 24 * HOUR),
                KLINE_HEADER if day else None,
                [],
                False,
            )
        )
    together = parse_files(paths)
    for path, got in zip(paths, together, strict=True):
        alone = parse_file(path)
        assert got.kind == alone.kind and got.rows == alone.rows and got.timeframe_s == alone.timeframe_s
        assert set(got.parts) == set(alone.parts) and got.inferred_intervals == alone.inferred_intervals
        assert (got.symbol_hint, got.market_type) == (alone.symbol_hint, alone.market_type)
        for key, records in alone.parts.items():
            assert _fields(got.stream, got.parts[key]).equals(_fields(got.stream, records)), path.name
        assert got.reject_counts == alone.reject_counts and got.rejects == alone.rejects
    # read together: Arrow columns; the file with intervals to infer and the one with a bad row: on their own
    read_together = [isinstance(got.parts[(None, None)], pa.Table) for got in together]
    assert read_together[4:] == [False, False, True, True, True]
    assert together[-4].reject_counts == {"funding_rate: not a number": 1}
    assert np.all(together[4].parts[(None, None)]["interval_h"][2:] == 4.0)


def test_a_file_with_a_bad_number_leaves_the_files_read_with_it_read_together(tmp_path: Path, monkeypatch) -> None:
    """A rejected row whose value pyarrow typed (a rate of 2.0) sends its own file through parse_file, which names
    its line; the files read with it keep their Arrow columns, with the rows parse_file gives them alone."""
    from fundarb_dagster.core.sources.replay import parse_files

    one_by_one: list[str] = []
    real_parse_file = parsers.parse_file

    def counted(path: Path, *args, **kwargs):  # noqa: ANN202 - parse_file's
        one_by_one.append(Path(path).name)
        return real_parse_file(path, *args, **kwargs)

    monkeypatch.setattr(parsers, "parse_file", counted)
    paths = []
    for m in range(3):
        rows = [[T0 + (m * 90 + i) * 8 * HOUR + 3, 8, f"{(i % 7 - 3) * 1e-5:.8f}"] for i in range(90)]
        if m == 1:
            rows[40][2] = "2.0"
        paths.append(write_csv(tmp_path / f"BTCUSDT-fundingRate-2024-0{m + 1}.csv", rows, None, [], False))
    together = parse_files(paths)
    assert one_by_one == ["BTCUSDT-fundingRate-2024-02.csv"]
    assert [isinstance(got.parts[(None, None)], pa.Table) for got in together] == [True, False, True]
    assert together[1].reject_counts == {"funding_rate: >= 1": 1} and together[1].rejects[0].line == 41
    for path, got in zip(paths, together, strict=True):
        alone = real_parse_file(path)
        assert _fields("funding", got.parts[(None, None)]).equals(_fields("funding", alone.parts[(None, None)]))


def test_trades_agg_trades_and_book_tickers_read_together_parse_as_one_by_one(tmp_path: Path) -> None:
    """Trades (ids rising, some sharing a millisecond), aggTrades and bookTicker archives, two days each, read
    together as Arrow columns (their unread columns skipped) give each file parse_file's rows; a day of trades
    whose ids are not rising is read alone, where parse_file sorts and drops."""
    from fundarb_dagster.core.sources.replay import parse_file, parse_files

    paths = []
    for day in range(2):
        t0 = T0 + day * 24 * HOUR
        trades = [
            [day * 100 + i, f"{42000 + i}.5", "0.01", "420", t0 + i // 2 * 1000, "true", "true"] for i in range(50)
        ]
        agg = [
            [900 + day * 100 + i, "42010.0", "1.5", 1, 2, t0 + i * 700, "false" if i % 2 else "true"] for i in range(30)
        ]
        book = [
            [7000 + i, f"{42000 + i}.1", "1.5", f"{42000 + i}.3", "0.5", t0 + i * 250, t0 + i * 250 + 2]
            for i in range(40)
        ]
        paths.append(write_csv(tmp_path / f"BTCUSDT-trades-2024-01-0{day + 1}.csv", trades, None, [], False))
        paths.append(write_csv(tmp_path / f"BTCUSDT-aggTrades-2024-01-0{day + 1}.csv", agg, None, [], day == 1))
        paths.append(write_csv(tmp_path / f"BTCUSDT-bookTicker-2024-01-0{day + 1}.csv", book, None, [], False))
    unordered = [[5 - i, "42000.0", "0.5", "21000", T0 + 2 * 24 * HOUR + i, "false", "true"] for i in range(6)]
    paths.append(write_csv(tmp_path / "BTCUSDT-trades-2024-01-03.csv", unordered, None, [], False))
    together = parse_files(paths)
    assert [isinstance(got.parts[(None, None)], pa.Table) for got in together] == [True] * 6 + [False]
    for path, got in zip(paths, together, strict=True):
        alone = parse_file(path)
        assert got.kind == alone.kind and got.rows == alone.rows and not got.reject_counts
        assert _fields(got.stream, got.parts[(None, None)]).equals(_fields(got.stream, alone.parts[(None, None)]))


def _fields(stream: str, rows: np.ndarray | pa.Table) -> pd.DataFrame:
    """Records or an Arrow table of a stream's record fields as one frame, to compare them."""
    if isinstance(rows, pa.Table):
        return rows.to_pandas()
    return pd.DataFrame({name: rows[name] for name in schema.public_fields("ohlcv" if stream == "mark" else stream)})


def test_parquet_files_import_as_their_csv_does(tmp_path: Path, fixtures_dir: Path) -> None:
    """A desk's own files as Parquet (the real archives' originals are Parquet): the real fixture files and a
    Binance kline archive, converted to Parquet here, land exactly the rows their CSVs land."""
    import pyarrow.csv as pacsv

    sources = tmp_path / "csv"
    sources.mkdir()
    for name in ("XRP_ETH-trades.csv", "XRP_USDT_USDT-5m-futures.csv"):
        shutil.copy(fixtures_dir / "binance_xrp" / name, sources / name)
    funding = pd.read_csv(fixtures_dir / "funding_2025_2026" / "funding_btc_eth_binance_bybit_hyperliquid_utc.csv")
    funding.to_csv(sources / "funding.csv", index=False)
    write_csv(sources / "BTCUSDT-1m-2024-01-01.csv", klines_rows(600), None, [], False)  # no header
    imports = [
        ("XRP_ETH-trades", "binance", "XRP/ETH"),
        ("XRP_USDT_USDT-5m-futures", "binance", "XRP/USDT:USDT"),
        ("funding", "bybit", "ETH/USDT:USDT"),
        ("BTCUSDT-1m-2024-01-01", "binance", "BTC/USDT"),
    ]
    parquet = tmp_path / "parquet"
    parquet.mkdir()
    for stem, *_ in imports:
        header = stem != "BTCUSDT-1m-2024-01-01"  # the archive's columns named as Binance documents them
        options = pacsv.ReadOptions(column_names=None if header else KLINE_HEADER)
        pq.write_table(pacsv.read_csv(sources / f"{stem}.csv", read_options=options), parquet / f"{stem}.parquet")
    landed = {}
    for folder, suffix in ((sources, ".csv"), (parquet, ".parquet")):
        data = tmp_path / f"data{suffix}"
        for stem, exchange, symbol in imports:
            summary = import_files([folder / f"{stem}{suffix}"], data, exchange=exchange, symbol=symbol, progress=None)
            assert summary.ok and summary.quarantined == 0, format_summary(summary)
        landed[suffix] = {stream: read_landed(data, stream) for stream in ("trades", "ohlcv", "funding")}
    csv, parquet_rows = landed[".csv"], landed[".parquet"]
    assert len(csv["trades"]) == 12_477 and len(csv["ohlcv"]) == 1999 + 600
    assert len(csv["funding"]) == len(funding.query("venue == 'bybit' and canonical_symbol == 'ETH-USDT-PERP'"))
    for stream, frame in csv.items():
        key = [c for c in ("exchange", "symbol", "ts_ms", "trade_id", "timeframe_s") if c in frame.columns]
        pd.testing.assert_frame_equal(
            parquet_rows[stream].sort_values(key, ignore_index=True), frame.sort_values(key, ignore_index=True)
        )
    for stem, exchange, symbol in imports:  # idempotent as a CSV: the same bytes land nothing new
        again = import_files([parquet / f"{stem}.parquet"], tmp_path / "data.parquet", exchange=exchange, symbol=symbol)
        assert (again.landed, again.skipped) == (0, 1)


def test_the_funding_archives_original_parquet_imports_as_it_is(tmp_path: Path, fixtures_dir: Path) -> None:
    """`funding_2025_2026/original/` as published (Parquet, `settlement_ts` in us, `rate_raw`): the rows of an
    instrument land as the fixture's CSV made from them has them (times in ms, rates, intervals, marks)."""
    original = fixtures_dir / "funding_2025_2026" / "original" / "venue=binance__data.parquet"
    table = pd.read_csv(fixtures_dir / "funding_2025_2026" / "funding_btc_eth_binance_bybit_hyperliquid_utc.csv")
    data = tmp_path / "data"
    summary = import_files([original], data, exchange="binance", symbol="ETH/USDT:USDT", progress=None)
    expected = table.query("venue == 'binance' and canonical_symbol == 'ETH-USDT-PERP' and not is_predicted")
    got = read_landed(data, "funding").sort_values("funding_ts_ms", ignore_index=True)
    assert summary.ok and summary.landed == len(got) == len(expected) > 1000
    assert summary.files[0].other_instruments == pq.read_metadata(original).num_rows - len(expected)
    expected = expected.sort_values("settlement_time_ms_utc", ignore_index=True)
    assert got["funding_ts_ms"].tolist() == expected["settlement_time_ms_utc"].tolist()
    assert got["funding_rate"].tolist() == expected["funding_rate"].tolist()
    assert got["interval_h"].tolist() == expected["interval_hours"].tolist()
    np.testing.assert_allclose(got["mark_price"], expected["mark_price"], rtol=1e-12)


def test_real_archives_read_together_land_what_pandas_reads_file_by_file(
    tmp_path: Path, fixtures_dir: Path, monkeypatch
) -> None:
    """The fast path (every small archive of a venue read as one buffer, validated as one frame, landed as
    day files by one writer) on real data: the 105 symbols' settled funding of funding_2025_2026 (binance
    8h/4h, bybit 8h/4h/1h with one blank interval, hyperliquid 1h with ms jitter) written as monthly Binance
    fundingRate archives (zipped, with and without a header), and XRP/ETH 1m candles as daily kline archives.
    What lands equals an independent pandas reading of the same files, one by one. A bad value in one bybit
    file sends bybit's files through the line-by-line parser: its rows land the same, the bad row quarantined
    by name. binance and hyperliquid never take that path."""
    from fundarb_dagster.core.importer import symbol_from_name
    from fundarb_dagster.core.sources.replay.formats import canonical_to_unified

    root, data = tmp_path / "archives", tmp_path / "data"
    registry = InstrumentRegistry.load(registry_path(data))
    written: list[tuple[str, str, Path, bool]] = []  # (venue, unified symbol, file, header)
    for venue in ("binance", "bybit", "hyperliquid"):
        frame = pd.read_parquet(fixtures_dir / "funding_2025_2026" / "original" / f"venue={venue}__data.parquet")
        frame = frame[~frame["is_predicted"]]
        frame = frame.assign(ms=frame["settlement_ts"].astype("datetime64[ms, UTC]").astype("int64"))
        for (venue_id, canonical), rows in frame.groupby(["venue_symbol", "canonical_symbol"]):
            unified = canonical_to_unified(canonical)
            registry.add_market(venue, market_for(unified, venue_id))
            for n, (month, part) in enumerate(rows.groupby(rows["settlement_ts"].dt.strftime("%Y-%m"))):
                lines = [
                    [t, "" if np.isnan(h) else int(h), repr(r)]
                    for t, h, r in zip(part["ms"], part["interval_hours"], part["rate_raw"], strict=True)
                ]
                if venue == "bybit" and venue_id == "BTCUSDT" and n == 3:
                    lines[5][2] = "n/a"
                header = ["calc_time", "funding_interval_hours", "last_funding_rate"] if n % 3 == 1 else None
                folder = root / venue / "futures" / "um" / "monthly" / "fundingRate" / venue_id
                path = write_csv(folder / f"{venue_id}-fundingRate-{month}.csv", lines, header, [], n % 2 == 0)
                written.append((venue, unified, path, header is not None))
    candles = pd.read_csv(fixtures_dir / "binance_xrp" / "XRP_ETH-1m.csv")
    registry.add_market("binance", market_for("XRP/ETH", "XRPETH"))
    registry.save(registry_path(data))
    for n, (day, part) in enumerate(candles.groupby(candles["time_ms_utc"] // (24 * HOUR))):
        stamp = pd.Timestamp(day * 24 * HOUR, unit="ms").strftime("%Y-%m-%d")
        lines = [
            [t, *(repr(x) for x in (o, h, lo, c, v)), t + 59_999, repr(v * c), 3, repr(v / 2), repr(v * c / 2), 0]
            for t, o, h, lo, c, v in part[["time_ms_utc", "open", "high", "low", "close", "volume"]].itertuples(
                index=False, name=None
            )
        ]
        folder = root / "binance" / "spot" / "daily" / "klines" / "XRPETH" / "1m"
        path = write_csv(folder / f"XRPETH-1m-{stamp}.csv", lines, KLINE_HEADER if n else None, [], n == 1)
        written.append(("binance", "XRP/ETH", path, n > 0))

    one_by_one: list[str] = []
    real_parse_file = parsers.parse_file
    monkeypatch.setattr(
        parsers, "parse_file", lambda path, *a, **k: one_by_one.append(str(path)) or real_parse_file(path, *a, **k)
    )
    summaries = {}
    for venue, folder in (
        ("binance", root / "binance"),
        ("bybit", root / "bybit"),
        ("hyperliquid", root / "hyperliquid"),
    ):
        summaries[venue] = import_files(
            [folder],
            data,
            exchange=venue,
            symbol=None,
            progress=None,
            symbol_of=symbol_from_name(venue, data, lambda market_id, kind: None),
        )
        assert summaries[venue].ok, [f.error for f in summaries[venue].files if f.error][:3]
    assert one_by_one and all("/bybit/" in p for p in one_by_one)  # the fast path read binance and hyperliquid
    bybit = summaries["bybit"]
    assert bybit.quarantined == 1
    samples = [s for f in bybit.files for s in f.samples]
    assert samples == ["line 6: funding_rate: 'n/a' is not a number"]  # no header: the 6th row is line 6

    # independently: pandas, file by file, the bad row dropped
    funding, klines = [], []
    for venue, unified, path, header in written:
        if "fundingRate" in path.name:
            names = ["ts_ms", "interval_h", "funding_rate"]
            frame = pd.read_csv(path, header=0 if header else None, names=names)  # "n/a" reads as NaN
            frame = frame.dropna(subset=["funding_rate"])
            funding.append(frame.assign(exchange=venue, symbol=unified))
        else:
            frame = pd.read_csv(path, header=0 if header else None, names=KLINE_HEADER)
            klines.append(frame.assign(exchange=venue, symbol=unified))
    expected = pd.concat(funding, ignore_index=True).sort_values(["exchange", "symbol", "ts_ms"], ignore_index=True)
    bars = pd.concat(klines, ignore_index=True).sort_values("open_time", ignore_index=True)
    got = read_landed(data, "funding").sort_values(["exchange", "symbol", "ts_ms"], ignore_index=True)
    assert len(got) == len(expected) == sum(s.landed for s in summaries.values()) - len(bars)
    assert len(got.drop_duplicates(["exchange", "symbol"])) == 105
    for column in ("exchange", "symbol", "ts_ms", "funding_rate"):
        assert got[column].tolist() == expected[column].tolist(), column
    assert (got["funding_ts_ms"] == got["ts_ms"]).all() and (got["is_settled"] == 1).all()
    stated = expected["interval_h"].notna()
    assert got["interval_h"][stated].tolist() == expected["interval_h"][stated].tolist()
    assert stated.sum() == len(expected) - 1 and got["interval_h"].notna().all()  # the blank one: in force
    landed = read_landed(data, "ohlcv")
    assert len(landed) == len(bars) == len(candles) and (landed["symbol"] == "XRP/ETH").all()
    assert landed["ts_ms"].tolist() == bars["open_time"].tolist() and (landed["timeframe_s"] == 60).all()
    for mine, theirs in (
        ("open", "open"),
        ("high", "high"),
        ("low", "low"),
        ("close", "close"),
        ("volume", "volume"),
        ("quote_volume", "quote_volume"),
        ("taker_buy_volume", "taker_buy_volume"),
        ("trade_count", "count"),
    ):
        assert landed[mine].tolist() == bars[theirs].astype(float).tolist(), mine
    for day in (landing.landing_root(data) / "funding").iterdir():  # a day file per venue and day, no hours
        assert 1 <= len(landing.day_files(day)) <= 3 and len(list(day.iterdir())) == len(landing.day_files(day))


def test_a_file_with_a_blank_line_is_read_alone_and_the_others_together(tmp_path: Path, monkeypatch) -> None:
    """A blank line is not looked for before the joined read (a pass over every byte): pyarrow skips it, the
    rows then miss the newlines, and only then are the files with one sent through parse_file, which reads them
    as it does alone; the others are read together again, each with parse_file's rows."""
    from fundarb_dagster.core.sources.replay import parse_files

    one_by_one: list[str] = []
    real_parse_file = parsers.parse_file
    monkeypatch.setattr(
        parsers,
        "parse_file",
        lambda path, *a, **k: one_by_one.append(Path(path).name) or real_parse_file(path, *a, **k),
    )
    paths = []
    for m in range(3):
        rows = [[T0 + (m * 90 + i) * 8 * HOUR + 3, 8, f"{(i % 7 - 3) * 1e-5:.8f}"] for i in range(90)]
        paths.append(write_csv(tmp_path / f"BTCUSDT-fundingRate-2024-0{m + 1}.csv", rows, None, [], False))
    body = paths[1].read_bytes().split(b"\n")
    paths[1].write_bytes(b"\n".join([*body[:40], b"", *body[40:]]))  # a blank line after line 40
    together = parse_files(paths)
    assert one_by_one == ["BTCUSDT-fundingRate-2024-02.csv"]
    assert [isinstance(got.parts[(None, None)], pa.Table) for got in together] == [True, False, True]
    for path, got in zip(paths, together, strict=True):
        alone = real_parse_file(path)
        assert got.rows == alone.rows == 90 and got.reject_counts == alone.reject_counts
        assert _fields("funding", got.parts[(None, None)]).equals(_fields("funding", alone.parts[(None, None)]))


def test_each_file_is_opened_once_and_chunks_read_ahead_land_what_one_chunk_lands(tmp_path: Path, monkeypatch) -> None:
    """The import reads each file once (its sha256, its first line and its rows from the same bytes), on reader
    threads a chunk ahead of the parsing: read in chunks of one file each, the same files land the same rows
    and day files as read in one chunk, with the digests of the files' bytes."""
    import builtins
    import hashlib
    import io

    from fundarb_dagster.core import importer

    root = tmp_path / "archives" / "futures" / "um" / "monthly" / "fundingRate"
    for name, interval_h in (("BTCUSDT", 8), ("ETHUSDT", 1)):
        for m, month in enumerate(("2024-01", "2024-02")):
            times = range(T0 + m * 31 * 24 * HOUR, T0 + (m + 1) * 31 * 24 * HOUR, interval_h * HOUR)
            rows = [[t + 7, interval_h, f"{(t // HOUR % 13 - 6) * 1e-5:.8f}"] for t in times]
            header = ["calc_time", "funding_interval_hours", "last_funding_rate"] if m else None
            write_csv(root / name / f"{name}-fundingRate-{month}.csv", rows, header, [], False)
    csvs = sorted(root.rglob("*.csv"))
    opened: list[str] = []
    real_open, real_io_open = builtins.open, io.open

    def counted(file, *args, real=real_open, **kwargs):  # noqa: ANN001, ANN202 - open's
        opened.append(str(file))
        return real(file, *args, **kwargs)

    landed = {}
    for chunk_bytes in (importer.READ_CHUNK_BYTES, 1):
        monkeypatch.setattr(importer, "READ_CHUNK_BYTES", chunk_bytes)
        opened.clear()
        monkeypatch.setattr(builtins, "open", counted)
        monkeypatch.setattr(io, "open", lambda file, *a, **k: counted(file, *a, real=real_io_open, **k))
        data = tmp_path / f"data-{chunk_bytes}"
        summary = import_files(
            [root.parent.parent.parent.parent],
            data,
            exchange="binance",
            symbol=None,
            progress=None,
            symbol_of=lambda path, kind: f"{path.name[:3]}/USDT:USDT",
        )
        monkeypatch.setattr(builtins, "open", real_open)
        monkeypatch.setattr(io, "open", real_io_open)
        assert summary.ok and summary.landed == 62 * 3 + 62 * 24
        assert {str(p): opened.count(str(p)) for p in csvs} == {str(p): 1 for p in csvs}
        assert {f.path: f.digest for f in summary.files} == {
            str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in csvs
        }
        landed[chunk_bytes] = {
            p.parent.name: pq.read_table(p).to_pandas() for p in sorted(landing.landing_root(data).rglob("*.parquet"))
        }
    one, each = landed.values()
    assert one.keys() == each.keys() and len(one) == 62
    for day, table in one.items():
        assert table.equals(each[day]), day
