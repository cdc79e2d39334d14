"""Wire replay: recorded websocket sessions through the real ccxt.pro classes, checked against the raw JSON.

Every expected value here is parsed independently from the recording with plain `json`, never taken from
ccxt, so a routing, merging or parsing mistake in the replay shows up as a mismatch.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ccxt
import pyarrow as pa
import pytest

from fundarb_dagster.core.sources import EndOfData
from fundarb_dagster.core.sources.wire import (
    EndOfRecording,
    create_wire_exchange,
    load_recording,
    replay_stats,
    wire_exchange_class,
)

BYBIT_LOG = "bybit_v5_btc_eth_tickers_trades_klines.jsonl"
BYBIT_KIND = {"BYBIT.ws.2": "linear", "BYBIT.ws.3": "spot"}  # the session's connect records say so
BYBIT_SYMBOL = {
    ("linear", "BTCUSDT"): "BTC/USDT:USDT",
    ("linear", "ETHUSDT"): "ETH/USDT:USDT",
    ("spot", "BTCUSDT"): "BTC/USDT",
    ("spot", "ETHUSDT"): "ETH/USDT",
}


def recordings(fixtures_dir: Path) -> Path:
    return fixtures_dir / "ws_recordings"


def read_zst_records(path: Path) -> list[dict[str, Any]]:
    with pa.input_stream(str(path), compression="zstd") as stream:
        return [json.loads(line) for line in stream.read().decode().splitlines()]


def bybit_frames(fixtures_dir: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(market kind, topic, payload) for every line of the bybit frame log, independently parsed."""
    out = []
    with (recordings(fixtures_dir) / BYBIT_LOG).open() as f:
        for line in f:
            row = json.loads(line)
            out.append((BYBIT_KIND[row["conn"]], row["msg"]["topic"], row["msg"]))
    return out


async def collect(exchange: Any, plan: dict[Any, Callable[[], Any]]) -> dict[Any, list[Any]]:
    """Run one watch loop per plan entry until the recording ends; deep copies of every result."""
    results: dict[Any, list[Any]] = {key: [] for key in plan}

    async def loop(key: Any, call: Callable[[], Any]) -> None:
        while True:
            try:
                results[key].append(copy.deepcopy(await call()))
            except EndOfRecording:
                return

    try:
        await asyncio.wait_for(asyncio.gather(*(loop(k, c) for k, c in plan.items())), timeout=120)
    finally:
        await exchange.close()
    return results


def bybit_plan(ex: Any) -> dict[Any, Callable[[], Any]]:
    plan: dict[Any, Callable[[], Any]] = {}
    for symbol in BYBIT_SYMBOL.values():
        plan[("tickers", symbol)] = lambda s=symbol: ex.watch_ticker(s)
        plan[("trades", symbol)] = lambda s=symbol: ex.watch_trades(s)
        plan[("ohlcv", symbol)] = lambda s=symbol: ex.watch_ohlcv(s, "1m")
    return plan


@pytest.fixture(scope="module")
def bybit_replay(fixtures_dir: Path) -> tuple[Any, dict[Any, list[Any]], dict[str, Any]]:
    ex = create_wire_exchange("bybit", str(recordings(fixtures_dir) / BYBIT_LOG))
    results = asyncio.run(collect(ex, bybit_plan(ex)))
    return ex, results, replay_stats(ex)


def test_wire_exchange_is_a_subclass_of_the_real_ccxt_pro_class(fixtures_dir: Path) -> None:
    ex = create_wire_exchange("bybit", str(recordings(fixtures_dir) / BYBIT_LOG))
    assert isinstance(ex, ccxt.pro.bybit)
    assert type(ex) is wire_exchange_class("bybit")
    assert ex.has["watchTicker"] and not ex.has["fetchOHLCV"]  # no REST history in a wire recording
    # markets built offline from the recording, spot and linear told apart by the connection
    assert sorted(ex.markets) == ["BTC/USDT", "BTC/USDT:USDT", "ETH/USDT", "ETH/USDT:USDT"]
    assert ex.markets["BTC/USDT:USDT"]["linear"] and ex.markets["BTC/USDT"]["spot"]
    assert ex.markets["ETH/USDT:USDT"]["id"] == "ETHUSDT"


def test_bybit_every_frame_is_delivered_to_the_client_of_its_subscription(
    fixtures_dir: Path, bybit_replay: tuple[Any, dict[Any, list[Any]], dict[str, Any]]
) -> None:
    _, results, stats = bybit_replay
    frames = bybit_frames(fixtures_dir)
    expected = Counter(f"wss://stream.bybit.com/v5/public/{kind} {topic}" for kind, topic, _ in frames)
    assert stats["frames"] == len(frames) == 587
    assert stats["delivered"] == len(frames) and stats["unsubscribed"] == 0
    assert stats["by_topic"] == dict(expected)
    assert stats["finished"]
    # one watch_ticker result per ticker frame: the driver let every watcher keep up
    for (kind, venue_id), symbol in BYBIT_SYMBOL.items():
        assert (
            len(results[("tickers", symbol)]) == expected[f"wss://stream.bybit.com/v5/public/{kind} tickers.{venue_id}"]
        )


def test_bybit_linear_tickers_equal_the_merged_snapshot_and_deltas_with_funding(
    fixtures_dir: Path, bybit_replay: tuple[Any, dict[Any, list[Any]], dict[str, Any]]
) -> None:
    _, results, _ = bybit_replay
    for venue_id in ("BTCUSDT", "ETHUSDT"):
        state: dict[str, str] = {}
        expected = []
        for kind, topic, msg in bybit_frames(fixtures_dir):
            if kind != "linear" or topic != f"tickers.{venue_id}":
                continue
            state = dict(msg["data"]) if msg["type"] == "snapshot" else {**state, **msg["data"]}
            expected.append((msg["ts"], dict(state)))
        got = results[("tickers", BYBIT_SYMBOL[("linear", venue_id)])]
        assert len(got) == len(expected) > 100
        for ticker, (ts, raw) in zip(got, expected, strict=True):
            assert ticker["timestamp"] == ts
            assert ticker["bid"] == float(raw["bid1Price"]) and ticker["ask"] == float(raw["ask1Price"])
            assert ticker["bidVolume"] == float(raw["bid1Size"]) and ticker["askVolume"] == float(raw["ask1Size"])
            assert ticker["last"] == float(raw["lastPrice"])
            assert ticker["markPrice"] == float(raw["markPrice"])
            assert ticker["indexPrice"] == float(raw["indexPrice"])
            for name in ("fundingRate", "nextFundingTime", "fundingIntervalHour"):
                assert ticker["info"][name] == raw[name], name


def test_bybit_trades_equal_the_raw_public_trades(
    fixtures_dir: Path, bybit_replay: tuple[Any, dict[Any, list[Any]], dict[str, Any]]
) -> None:
    _, results, _ = bybit_replay
    expected: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for kind, topic, msg in bybit_frames(fixtures_dir):
        if topic.startswith("publicTrade."):
            for t in msg["data"]:
                symbol = BYBIT_SYMBOL[(kind, t["s"])]
                expected[symbol].append((t["i"], t["T"], t["S"].lower(), float(t["p"]), float(t["v"])))
    for symbol in BYBIT_SYMBOL.values():
        got = [
            (t["id"], t["timestamp"], t["side"], t["price"], t["amount"])
            for batch in results[("trades", symbol)]
            for t in batch
        ]
        assert got == expected[symbol] and got, symbol


def test_bybit_ohlcv_bars_equal_the_last_raw_kline_of_each_minute(
    fixtures_dir: Path, bybit_replay: tuple[Any, dict[Any, list[Any]], dict[str, Any]]
) -> None:
    _, results, _ = bybit_replay
    expected: dict[str, dict[int, list[float]]] = defaultdict(dict)
    for kind, topic, msg in bybit_frames(fixtures_dir):
        if topic.startswith("kline."):
            symbol = BYBIT_SYMBOL[(kind, topic.rsplit(".", 1)[1])]
            for k in msg["data"]:
                expected[symbol][k["start"]] = [k["start"]] + [
                    float(k[f]) for f in ("open", "high", "low", "close", "volume")
                ]
    for symbol in BYBIT_SYMBOL.values():
        got: dict[int, list[float]] = {}
        for batch in results[("ohlcv", symbol)]:
            for candle in batch:
                got[candle[0]] = list(candle)
        assert got == expected[symbol] and got, symbol


def test_milliseconds_is_the_recorded_receive_clock(fixtures_dir: Path) -> None:
    path = recordings(fixtures_dir) / BYBIT_LOG
    recv_ms = {}
    with path.open() as f:
        for line in f:
            row = json.loads(line)
            if row["conn"] == "BYBIT.ws.2" and row["msg"]["topic"] == "tickers.BTCUSDT":
                recv_ms[row["msg"]["ts"]] = int(row["recv_ts_s"] * 1000)
    ex = create_wire_exchange("bybit", str(path))
    seen: list[tuple[int, int]] = []

    async def run() -> None:
        assert ex.milliseconds() == int(json.loads(path.open().readline())["recv_ts_s"] * 1000)
        try:
            while True:
                ticker = await ex.watch_ticker("BTC/USDT:USDT")
                seen.append((ticker["timestamp"], ex.milliseconds()))
        except EndOfData:
            pass
        finally:
            await ex.close()

    asyncio.run(run())
    assert len(seen) == len(recv_ms)
    assert all(clock == recv_ms[ts] for ts, clock in seen)


def test_end_of_recording_ends_pending_and_later_watches_with_end_of_data(fixtures_dir: Path) -> None:
    ex = create_wire_exchange("bybit", str(recordings(fixtures_dir) / BYBIT_LOG))

    async def run() -> tuple[int, BaseException | None, BaseException | None]:
        count, pending, later = 0, None, None
        try:
            while True:
                await ex.watch_trades("ETH/USDT")
                count += 1
        except BaseException as exc:  # noqa: BLE001 - the exception type is what is under test
            pending = exc
        try:
            await ex.watch_ticker("BTC/USDT:USDT")
        except BaseException as exc:  # noqa: BLE001
            later = exc
        await ex.close()
        return count, pending, later

    count, pending, later = asyncio.run(run())
    assert count == 7  # the seven spot ETH trade frames
    for exc in (pending, later):
        assert isinstance(exc, EndOfRecording) and isinstance(exc, EndOfData) and isinstance(exc, EOFError)
        assert not isinstance(exc, ccxt.NetworkError)  # a reconnect loop must not retry it


def test_okx_tickers_and_trades_equal_the_raw_payloads(fixtures_dir: Path) -> None:
    path = recordings(fixtures_dir) / "OKX.jsonl.zst"
    records = read_zst_records(path)
    tickers: dict[str, list[dict[str, Any]]] = defaultdict(list)
    trades: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ct_val = {}
    for r in records:
        if r["t"] == "http" and "/public/instruments" in r["url"]:
            ct_val.update({i["instId"]: i["ctVal"] for i in json.loads(r["data"])["data"]})
        if r["t"] == "recv":
            msg = json.loads(r["data"])
            if "data" in msg and msg["arg"]["channel"] in ("tickers", "trades"):
                target = tickers if msg["arg"]["channel"] == "tickers" else trades
                target[msg["arg"]["instId"]].extend(msg["data"])
    symbols = {"BTC-USDT": "BTC/USDT", "UNI-USD-SWAP": "UNI/USD:UNI", "BTC-USD-220527": "BTC/USD:BTC-220527"}
    ex = create_wire_exchange("okx", str(path))
    assert sorted(ex.markets) == sorted(symbols.values())
    assert ex.markets["UNI/USD:UNI"]["contractSize"] == float(ct_val["UNI-USD-SWAP"])
    assert ex.markets["UNI/USD:UNI"]["inverse"] and ex.markets["BTC/USD:BTC-220527"]["future"]
    plan: dict[Any, Callable[[], Any]] = {}
    for symbol in symbols.values():
        plan[("tickers", symbol)] = lambda s=symbol: ex.watch_ticker(s)
        plan[("trades", symbol)] = lambda s=symbol: ex.watch_trades(s)
    results = asyncio.run(collect(ex, plan))
    stats = replay_stats(ex)
    assert stats["delivered"] == sum(map(len, tickers.values())) + sum(
        1 for r in records if r["t"] == "recv" and '"channel":"trades"' in r["data"] and '"data"' in r["data"]
    )
    for inst, symbol in symbols.items():
        got_t = results[("tickers", symbol)]
        assert [(t["timestamp"], t["bid"], t["ask"], t["last"], t["bidVolume"]) for t in got_t] == [
            (int(d["ts"]), float(d["bidPx"]), float(d["askPx"]), float(d["last"]), float(d["bidSz"]))
            for d in tickers[inst]
        ]
        got_tr = [
            (t["id"], t["timestamp"], t["side"], t["price"], t["amount"])
            for b in results[("trades", symbol)]
            for t in b
        ]
        assert got_tr == [(d["tradeId"], int(d["ts"]), d["side"], float(d["px"]), float(d["sz"])) for d in trades[inst]]
        assert got_t and got_tr


def test_binance_futures_trades_book_tickers_and_klines_equal_the_raw_payloads(fixtures_dir: Path) -> None:
    path = recordings(fixtures_dir) / "BINANCE_FUTURES.jsonl.zst"
    by_stream: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in read_zst_records(path):
        if r["t"] == "recv":
            msg = json.loads(r["data"])
            by_stream[msg["stream"]].append(msg["data"])
    bases = ("SUSHI", "AKRO", "KEEP", "CTK")
    ex = create_wire_exchange("binance", str(path))
    assert sorted(ex.markets) == sorted(f"{b}/USDT:USDT" for b in bases)
    plan: dict[Any, Callable[[], Any]] = {}
    for base in bases:
        symbol = f"{base}/USDT:USDT"
        # the session streamed aggTrade and bookTicker: ccxt's names for them
        plan[("trades", base)] = lambda s=symbol: ex.watch_trades(s, params={"name": "aggTrade"})
        plan[("book", base)] = lambda s=symbol: ex.watch_bids_asks([s])
        plan[("ohlcv", base)] = lambda s=symbol: ex.watch_ohlcv(s, "1m")
    results = asyncio.run(collect(ex, plan))
    stats = replay_stats(ex)
    routed = [s for s in by_stream if not s.endswith("@depth@100ms")]  # order books were not watched
    assert stats["delivered"] == sum(len(by_stream[s]) for s in routed)
    assert stats["unsubscribed"] == sum(len(v) for s, v in by_stream.items() if s.endswith("@depth@100ms"))
    for base in bases:
        s = base.lower() + "usdt"
        symbol = f"{base}/USDT:USDT"
        got = [
            (t["id"], t["timestamp"], t["side"], t["price"], t["amount"]) for b in results[("trades", base)] for t in b
        ]
        assert got == [
            (str(d["a"]), d["T"], "sell" if d["m"] else "buy", float(d["p"]), float(d["q"]))
            for d in by_stream[f"{s}@aggTrade"]
        ]
        books = [b[symbol] for b in results[("book", base)]]
        assert [(t["bid"], t["bidVolume"], t["ask"], t["askVolume"]) for t in books] == [
            (float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"])) for d in by_stream[f"{s}@bookTicker"]
        ]
        last_bar = {}
        for d in by_stream[f"{s}@kline_1m"]:
            k = d["k"]
            last_bar[k["t"]] = [k["t"], float(k["o"]), float(k["h"]), float(k["l"]), float(k["c"]), float(k["v"])]
        got_bars = {c[0]: list(c) for batch in results[("ohlcv", base)] for c in batch}
        assert got_bars == last_bar and got


def test_speed_is_validated_and_bad_paths_and_lines_are_named(tmp_path: Path, fixtures_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        create_wire_exchange("bybit", str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="replay.speed"):
        create_wire_exchange("bybit", str(recordings(fixtures_dir) / BYBIT_LOG), speed=-1)
    with pytest.raises(ValueError, match="kraken"):
        create_wire_exchange("kraken", str(recordings(fixtures_dir) / BYBIT_LOG))
    bad = tmp_path / "bad.jsonl"
    bad.write_text((recordings(fixtures_dir) / BYBIT_LOG).open().readline() + '{"t": "recv"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        load_recording(bad)


def test_rest_calls_on_a_wire_exchange_fail_clearly_instead_of_dialling(fixtures_dir: Path) -> None:
    ex = create_wire_exchange("bybit", str(recordings(fixtures_dir) / BYBIT_LOG))

    async def run() -> None:
        try:
            with pytest.raises(ccxt.NotSupported, match="no recorded HTTP response"):
                await ex.fetch_ohlcv("BTC/USDT:USDT", "1m", None, 3)
        finally:
            await ex.close()

    asyncio.run(run())


def test_paced_replay_delivers_the_same_frames(fixtures_dir: Path, tmp_path: Path) -> None:
    """speed > 0 paces by the recorded clock: half a second of recording at 5x keeps the test quick."""
    source = recordings(fixtures_dir) / BYBIT_LOG
    lines = source.read_text().splitlines()
    t0 = json.loads(lines[0])["recv_ts_s"]
    head = [line for line in lines if json.loads(line)["recv_ts_s"] - t0 <= 0.5]
    sliced = tmp_path / "slice.jsonl"
    sliced.write_text("\n".join(head) + "\n")
    ex = create_wire_exchange("bybit", str(sliced), speed=5.0)
    results = asyncio.run(collect(ex, bybit_plan(ex)))
    assert replay_stats(ex)["delivered"] == len(head)
    expected = sum(
        1 for line in head if '"topic":"tickers.BTCUSDT"' in line and json.loads(line)["conn"] == "BYBIT.ws.2"
    )
    assert len(results[("tickers", "BTC/USDT:USDT")]) == expected > 0


def test_the_feed_consumes_a_wire_replay_unchanged_and_keeps_every_ticker_and_funding_value(fixtures_dir: Path) -> None:
    """The real Feed over the wire exchange: every linear ticker frame becomes a record, funding comes
    from bybit's ticker info, and the streams end by themselves when the recording does."""
    from fundarb_dagster.core.instruments import InstrumentRegistry
    from fundarb_dagster.core.sources.feed import Feed

    merged: dict[int, dict[str, str]] = {}
    state: dict[str, str] = {}
    for kind, topic, msg in bybit_frames(fixtures_dir):
        if kind == "linear" and topic == "tickers.BTCUSDT":
            state = dict(msg["data"]) if msg["type"] == "snapshot" else {**state, **msg["data"]}
            merged[msg["ts"]] = dict(state)
    ex = create_wire_exchange("bybit", str(recordings(fixtures_dir) / BYBIT_LOG))
    registry = InstrumentRegistry()
    registry.add_markets("bybit", ex.markets, list(ex.markets))
    feed = Feed(ex, registry)

    async def run() -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"tickers": [], "funding": []}

        async def drain(stream: str) -> None:
            async for batch in feed.watch(stream, "BTC/USDT:USDT"):
                out[stream].extend(batch.records)

        try:
            await asyncio.wait_for(asyncio.gather(drain("tickers"), drain("funding")), timeout=120)
        finally:
            await ex.close()
        return out

    out = asyncio.run(run())
    assert [int(r["ts_ms"]) for r in out["tickers"]] == list(merged)
    for r in out["tickers"]:
        raw = merged[int(r["ts_ms"])]
        assert (r["bid"], r["ask"], r["last"], r["mark_price"]) == (
            float(raw["bid1Price"]),
            float(raw["ask1Price"]),
            float(raw["lastPrice"]),
            float(raw["markPrice"]),
        )
    assert out["funding"]
    for r in out["funding"]:
        raw = merged[int(r["ts_ms"])]
        assert r["funding_rate"] == float(raw["fundingRate"])
        assert r["funding_ts_ms"] == int(raw["nextFundingTime"])
        assert r["interval_h"] == float(raw["fundingIntervalHour"])


def test_open_exchange_builds_a_wire_replay_from_the_config_and_its_symbols_check(fixtures_dir: Path) -> None:
    from fundarb_dagster.core.config import ConfigError, check_symbols, config_from_dict
    from fundarb_dagster.core.sources import open_exchange

    raw = {
        "source": "wire",
        "replay": {"path": str(recordings(fixtures_dir) / BYBIT_LOG), "speed": 0},
        "exchanges": [{"id": "bybit", "symbols": ["BTC/USDT:USDT", "ETH/USDT"]}],
    }
    config = config_from_dict(raw)
    ex = open_exchange(config, "bybit")
    assert type(ex) is wire_exchange_class("bybit") and ex.speed == 0
    check_symbols(config, "bybit", ex.markets)  # both symbols are in the recording
    other = config_from_dict({**raw, "exchanges": [{"id": "bybit", "symbols": ["SOL/USDT:USDT"]}]})
    with pytest.raises(ConfigError, match="SOL/USDT:USDT"):
        check_symbols(other, "bybit", open_exchange(other, "bybit").markets)


def _funding_rows(fixtures_dir: Path, venue: str, n: int) -> list[dict[str, str]]:
    import csv

    with (fixtures_dir / "funding_2025_2026" / "funding_btc_eth_binance_bybit_hyperliquid_utc.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["venue"] == venue and r["venue_symbol"] == "BTCUSDT"]
    return rows[: n + 1]


def _session(path: Path, conn_url: str, frames: list[tuple[float, dict[str, Any]]]) -> None:
    lines = [
        {"t": "header", "format": 2, "exchange": "test"},
        {"t": "connect", "conn": "c1", "ts": 0, "addr": conn_url},
    ]
    lines += [{"t": "recv", "conn": "c1", "ts": ts, "data": json.dumps(msg)} for ts, msg in frames]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")


def test_binance_mark_price_and_okx_funding_rate_channels_route_through_wire(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    """The funding channels the Feed watches on binance and okx, as venue-format frames carrying the real
    settled BTC rates of the funding fixture (no fixture session recorded those channels)."""
    rows = _funding_rows(fixtures_dir, "binance", 12)
    binance_frames, okx_frames, expected = [], [], []
    for row, nxt in zip(rows, rows[1:], strict=False):
        t = int(row["settlement_time_ms_utc"]) + 1000
        rate, next_ts, mark = nxt["funding_rate"], int(nxt["settlement_time_ms_utc"]), row["mark_price"]
        expected.append((t, float(rate), next_ts, float(mark)))
        data = {
            "e": "markPriceUpdate",
            "E": t,
            "s": "BTCUSDT",
            "p": mark,
            "i": mark,
            "P": mark,
            "r": rate,
            "T": next_ts,
        }
        binance_frames.append((t / 1000, {"stream": "btcusdt@markPrice@1s", "data": data}))
        okx = {"instId": "BTC-USDT-SWAP", "instType": "SWAP", "fundingRate": rate, "fundingTime": str(next_ts)}
        okx |= {"nextFundingRate": "", "nextFundingTime": str(next_ts + 8 * 3_600_000), "ts": str(t)}
        okx_frames.append((t / 1000, {"arg": {"channel": "funding-rate", "instId": "BTC-USDT-SWAP"}, "data": [okx]}))
    _session(tmp_path / "binance.jsonl", "wss://fstream.binance.com/stream", binance_frames)
    _session(tmp_path / "okx.jsonl", "wss://ws.okx.com:8443/ws/v5/public", okx_frames)

    async def watch_all(ex: Any, call: Callable[[], Any]) -> list[Any]:
        out = []
        try:
            while True:
                out.append(copy.deepcopy(await call()))
        except EndOfRecording:
            return out
        finally:
            await ex.close()

    binance = create_wire_exchange("binance", str(tmp_path / "binance.jsonl"))
    marks = asyncio.run(watch_all(binance, lambda: binance.watch_mark_price("BTC/USDT:USDT")))
    assert [(m["timestamp"], float(m["info"]["r"]), m["info"]["T"], m["markPrice"]) for m in marks] == expected
    okx = create_wire_exchange("okx", str(tmp_path / "okx.jsonl"))
    rates = asyncio.run(watch_all(okx, lambda: okx.watch_funding_rate("BTC/USDT:USDT")))
    assert [(r["fundingRate"], r["fundingTimestamp"]) for r in rates] == [(e[1], e[2]) for e in expected]
    assert all(r["symbol"] == "BTC/USDT:USDT" for r in rates) and len(rates) == 12


def test_a_malformed_frame_is_counted_and_skipped_not_the_end_of_the_replay(fixtures_dir: Path, tmp_path: Path) -> None:
    source = recordings(fixtures_dir) / BYBIT_LOG
    lines = source.read_text().splitlines()
    first = json.loads(lines[0])
    # a price ccxt cannot parse: its handler raises (a well-formed but odd frame would just parse oddly)
    bad = {**first, "msg": {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "data": [{"p": "x"}], "ts": 1}}
    garbage = {**first, "msg": "garbage{"}
    corrupted = tmp_path / "corrupted.jsonl"
    corrupted.write_text("\n".join([lines[0], json.dumps(bad), json.dumps(garbage), *lines[1:]]) + "\n")
    clean = create_wire_exchange("bybit", str(source))
    expected = asyncio.run(collect(clean, bybit_plan(clean)))
    ex = create_wire_exchange("bybit", str(corrupted))
    got = asyncio.run(collect(ex, bybit_plan(ex)))
    stats = replay_stats(ex)
    assert stats["handler_errors"] == 1 and stats["control"] == 1 and stats["delivered"] == 587
    assert "BYBIT.ws.2" in stats["errors"][0]
    for key in expected:
        assert json.dumps(got[key], sort_keys=True) == json.dumps(expected[key], sort_keys=True), key


COIN_M_INFO = {
    "symbol": "BTCUSD_PERP", "pair": "BTCUSD", "contractType": "PERPETUAL", "contractSize": 100,
    "marginAsset": "BTC", "baseAsset": "BTC", "quoteAsset": "USD", "contractStatus": "TRADING",
}  # fmt: skip


def _coin_m_session(path: Path) -> list[dict[str, Any]]:
    """A COIN-M session in Binance's documented dstream shapes (no fixture recorded one): 100-USD contracts."""
    frames: list[dict[str, Any]] = []
    t = 1_700_000_000_000
    for i in range(6):
        price, qty = 36_500.0 + 10 * i, 3 + i
        frames.append(
            {
                "stream": "btcusd_perp@aggTrade",
                "data": {
                    "e": "aggTrade",
                    "E": t + 1,
                    "a": 500 + i,
                    "s": "BTCUSD_PERP",
                    "p": f"{price}",
                    "q": f"{qty}",
                    "f": 1,
                    "l": 1,
                    "T": t,
                    "m": i % 2 == 0,
                },
            }
        )
        frames.append(
            {
                "stream": "btcusd_perp@bookTicker",
                "data": {
                    "e": "bookTicker",
                    "u": 9 + i,
                    "s": "BTCUSD_PERP",
                    "ps": "BTCUSD",
                    "b": f"{price - 0.1}",
                    "B": f"{40 + i}",
                    "a": f"{price + 0.1}",
                    "A": "7",
                    "T": t + 2,
                    "E": t + 3,
                },
            }
        )
        frames.append(
            {
                "stream": "btcusd_perp@kline_1m",
                "data": {
                    "e": "kline",
                    "E": t + 4,
                    "s": "BTCUSD_PERP",
                    "k": {
                        "t": (t // 60_000) * 60_000 + (i // 3) * 60_000,
                        "T": 0,
                        "s": "BTCUSD_PERP",
                        "i": "1m",
                        "o": "36500",
                        "c": f"{price}",
                        "h": f"{price}",
                        "l": "36500",
                        "v": f"{100 * (i + 1)}",
                        "n": 3,
                        "x": False,
                        "q": "0.5",
                        "V": "1",
                        "Q": "0.1",
                        "B": "0",
                    },
                },
            }
        )
        t += 40_000
    lines = [
        {"t": "header", "format": 2, "exchange": "BINANCE_DELIVERY"},
        {"t": "http", "conn": "h", "ts": 0, "url": "https://dapi.binance.com/dapi/v1/exchangeInfo",
         "data": json.dumps({"symbols": [COIN_M_INFO]})},
        {"t": "connect", "conn": "c1", "ts": 0, "addr": "wss://dstream.binance.com/stream?streams=btcusd_perp@aggTrade"},
    ]  # fmt: skip
    for frame in frames:  # received 50 ms after the event
        lines.append({"t": "recv", "conn": "c1", "ts": frame["data"]["E"] / 1000 + 0.05, "data": json.dumps(frame)})
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return frames


def test_coin_m_sizes_land_in_base_units_from_contracts_of_100_usd(tmp_path: Path) -> None:
    """Trades (aggTrade q), quotes (bookTicker B/A) and websocket candles (kline v) of COIN-M count 100-USD
    contracts: base = contracts x 100 / price, the contracts and the size kept beside."""
    from fundarb_dagster.core.instruments import InstrumentRegistry
    from fundarb_dagster.core.sources.feed import Feed

    frames = _coin_m_session(tmp_path / "coinm.jsonl")
    ex = create_wire_exchange("binance", str(tmp_path / "coinm.jsonl"))
    market = ex.markets["BTC/USD:BTC"]
    assert (market["inverse"], market["contractSize"], market["id"]) == (True, 100.0, "BTCUSD_PERP")
    registry = InstrumentRegistry()
    registry.add_markets("binance", ex.markets, ["BTC/USD:BTC"])
    feed = Feed(ex, registry)

    async def run() -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"trades": [], "tickers": [], "ohlcv": []}

        async def drain(stream: str) -> None:
            async for batch in feed.watch(stream, "BTC/USD:BTC"):
                out[stream].extend(batch.records)

        try:
            await asyncio.wait_for(asyncio.gather(*(drain(s) for s in out)), timeout=60)
        finally:
            await ex.close()
        return out

    out = asyncio.run(run())
    trades = [f["data"] for f in frames if f["stream"].endswith("aggTrade")]
    assert [(r["trade_id"], r["contracts"], r["contract_size"]) for r in out["trades"]] == [
        (d["a"], float(d["q"]), 100.0) for d in trades
    ]
    assert [r["amount"] for r in out["trades"]] == [float(d["q"]) * 100.0 / float(d["p"]) for d in trades]
    books = [f["data"] for f in frames if f["stream"].endswith("bookTicker")]
    assert [(r["bid_size"], r["ask_size"], r["bid_contracts"]) for r in out["tickers"]] == [
        (float(d["B"]) * 100.0 / float(d["b"]), float(d["A"]) * 100.0 / float(d["a"]), float(d["B"])) for d in books
    ]
    klines = [f["data"]["k"] for f in frames if f["stream"].endswith("kline_1m")]
    first_minute = [k for k in klines if k["t"] == klines[0]["t"]][-1]  # closed when the next minute began
    assert [(r["ts_ms"], r["volume"]) for r in out["ohlcv"]][0] == (
        first_minute["t"],
        float(first_minute["v"]) * 100.0 / float(first_minute["c"]),
    )


def test_binance_trades_follow_the_recorded_channel_and_the_config_option(fixtures_dir: Path) -> None:
    """The session streamed `@aggTrade`: replayed with no option (or against one), ccxt subscribes aggTrade;
    live, the channel is the exchange's ccxt option from the config."""
    from fundarb_dagster.core.config import LiveConfig
    from fundarb_dagster.core.instruments import InstrumentRegistry
    from fundarb_dagster.core.sources.feed import Feed
    from fundarb_dagster.core.sources.live import create_live_exchange

    path = recordings(fixtures_dir) / "BINANCE_FUTURES.jsonl.zst"
    ex = create_wire_exchange("binance", str(path), options={"watchTrades": {"name": "trade"}})
    assert ex.options["watchTrades"]["name"] == "aggTrade"
    assert {s: ex.quotes_via(s) for s in ex.markets} == dict.fromkeys(ex.markets, "bids_asks")
    live = create_live_exchange("binance", LiveConfig(), {}, options={"watchTrades": {"name": "aggTrade"}})
    assert live.options["watchTrades"]["name"] == "aggTrade"
    registry = InstrumentRegistry()
    registry.add_market("binance", {"symbol": "BTC/USDT:USDT", "base": "BTC", "quote": "USDT", "settle": "USDT",
                                    "swap": True, "contractSize": 1.0})  # fmt: skip
    feed = Feed(live, registry)
    assert feed.channel_name(feed._subscription("trades", "BTC/USDT:USDT")) == "trades:watch_trades:aggTrade"
    assert feed.channel_name(feed._subscription("tickers", "BTC/USDT:USDT")) == "tickers:watch_bids_asks"
    default = Feed(create_live_exchange("binance", LiveConfig(), {}), registry)
    assert default.channel_name(default._subscription("trades", "BTC/USDT:USDT")) == "trades:watch_trades:trade"


def test_bybit_spot_quotes_follow_the_book_the_session_subscribed(fixtures_dir: Path) -> None:
    ex = create_wire_exchange("bybit", str(recordings(fixtures_dir) / "BYBIT.jsonl.zst"))
    plan = {s: ex.quotes_via(s) for s in ex.markets}
    assert plan["BTC/USDT"] == plan["ETH/USDT"] == "order_book:200"  # no orderbook.1 was recorded
    assert plan["BTC/USDT:USDT"] == "ticker"  # linear tickers carry bid1/ask1
    log = create_wire_exchange("bybit", str(recordings(fixtures_dir) / BYBIT_LOG))
    assert log.quotes_via("BTC/USDT") == "ticker"  # that log recorded no spot book: its tickers are all there is
