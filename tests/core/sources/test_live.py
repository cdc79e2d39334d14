"""The live source: real ccxt.pro classes, credentials handled safely, raw frames recorded and replayable.

No internet: the websocket path is exercised against a real local websocket server (aiohttp) that plays
the recorded bybit frames, and the recording hook also runs inside a wire replay. The one test that
needs real exchanges is marked `live` and never runs in CI.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import ccxt
import pytest
from aiohttp import WSMsgType, web

from fundarb_dagster.core.config import LiveConfig, api_credentials
from fundarb_dagster.core.sources.live import (
    MARKET_TYPES,
    RawRecorder,
    create_live_exchange,
    live_exchange_class,
)
from fundarb_dagster.core.sources.rest_replay import build_market
from fundarb_dagster.core.sources.wire import EndOfRecording, create_wire_exchange, load_recording, replay_stats
from tests.core.sources.hyperliquid_session import serve

BYBIT_LOG = "bybit_v5_btc_eth_tickers_trades_klines.jsonl"
SECRET_ENV = {"FUNDARB_BYBIT_API_KEY": "AKIA-test-key-123", "FUNDARB_BYBIT_SECRET": "s3cr3t-value-xyz"}


def test_live_exchange_is_the_real_ccxt_pro_class_rate_limited_with_fundarbs_market_kinds() -> None:
    ex = create_live_exchange("bybit", LiveConfig(), {})
    assert isinstance(ex, ccxt.pro.bybit) and type(ex) is live_exchange_class("bybit")
    assert ex.enableRateLimit and not ex.verbose
    assert ex.options["fetchMarkets"]["types"] == MARKET_TYPES["bybit"]
    assert not ex.apiKey and not ex.secret
    assert ex.clients == {} or ex.clients is None  # a constructor opens no socket
    binance = create_live_exchange("binance", LiveConfig(), {})
    assert isinstance(binance, ccxt.pro.binance) and binance.has["watchMarkPrice"]
    with pytest.raises(ValueError, match="'krakenx'"):
        create_live_exchange("krakenx", LiveConfig(), {})


def test_credentials_come_from_the_environment_dict_and_never_show_in_repr_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    credentials = api_credentials("bybit", environ=SECRET_ENV)
    assert credentials == {"apiKey": SECRET_ENV["FUNDARB_BYBIT_API_KEY"], "secret": SECRET_ENV["FUNDARB_BYBIT_SECRET"]}
    with caplog.at_level(logging.DEBUG):
        ex = create_live_exchange("bybit", LiveConfig(), credentials)
        logging.getLogger("fundarb").info("exchange %s / %r", ex, ex)
    assert ex.apiKey == SECRET_ENV["FUNDARB_BYBIT_API_KEY"] and ex.secret == SECRET_ENV["FUNDARB_BYBIT_SECRET"]
    for text in (repr(ex), str(ex), caplog.text):
        for value in SECRET_ENV.values():
            assert value not in text
    assert "credentials: set" in repr(ex)
    assert "credentials: none" in repr(create_live_exchange("bybit", LiveConfig(), api_credentials("bybit", {})))
    with pytest.raises(ValueError, match="'token'"):
        create_live_exchange("bybit", LiveConfig(), {"token": "x"})


def test_raw_recorder_redacts_credentials_and_writes_the_wire_format(tmp_path: Path) -> None:
    recorder = RawRecorder(tmp_path, "bybit", clock=lambda: 1786310819.5, redact=tuple(SECRET_ENV.values()))
    conn = recorder.new_conn()
    recorder.connect(conn, "wss://stream.bybit.com/v5/public/linear")
    recorder.send(
        conn, "wss://stream.bybit.com/v5/public/linear", json.dumps({"op": "auth", "args": list(SECRET_ENV.values())})
    )
    recorder.recv(conn, '{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT"},"ts":1}')
    recorder.close()
    text = recorder.path.read_text()
    assert all(value not in text for value in SECRET_ENV.values()) and "***" in text
    rows = [json.loads(line) for line in text.splitlines()]
    assert [r["t"] for r in rows] == ["header", "connect", "send", "recv"]
    assert rows[0]["exchange"] == "bybit" and rows[1]["conn"] == conn == "bybit.ws.1"
    rec = load_recording(recorder.path)
    assert rec.conn_urls == {conn: "wss://stream.bybit.com/v5/public/linear"}
    assert [(f.conn, f.ts_s) for f in rec.frames] == [(conn, 1786310819.5)]


async def _collect_bybit(ex: Any, symbols: list[str], stop: asyncio.Event | None = None) -> dict[Any, list[Any]]:
    results: dict[Any, list[Any]] = defaultdict(list)

    async def loop(key: Any, call: Any) -> None:
        while True:
            try:
                results[key].append(copy.deepcopy(await call()))
            except EndOfRecording:
                return

    tasks = []
    for s in symbols:
        tasks += [
            asyncio.create_task(loop(("tickers", s), lambda s=s: ex.watch_ticker(s))),
            asyncio.create_task(loop(("trades", s), lambda s=s: ex.watch_trades(s))),
            asyncio.create_task(loop(("ohlcv", s), lambda s=s: ex.watch_ohlcv(s, "1m"))),
        ]
    if stop is None:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    else:
        await asyncio.wait_for(stop.wait(), timeout=120)
        await asyncio.sleep(0.3)  # let the client parse what the server sent last
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await ex.close()
    return results


def _trades(results: dict[Any, list[Any]], symbol: str) -> list[tuple[Any, ...]]:
    return [
        (t["id"], t["timestamp"], t["side"], t["price"], t["amount"]) for b in results[("trades", symbol)] for t in b
    ]


def _bars(results: dict[Any, list[Any]], symbol: str) -> dict[int, list[float]]:
    return {c[0]: list(c) for batch in results[("ohlcv", symbol)] for c in batch}


def test_recording_while_wire_replaying_then_replaying_the_recording_gives_identical_structures(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    symbols = ["BTC/USDT:USDT", "ETH/USDT:USDT", "BTC/USDT", "ETH/USDT"]
    recorder = RawRecorder(tmp_path, "bybit")
    first = create_wire_exchange("bybit", str(fixtures_dir / "ws_recordings" / BYBIT_LOG), recorder=recorder)
    original = asyncio.run(_collect_bybit(first, symbols))
    assert recorder.path is not None and recorder.path.parent == tmp_path
    rec = load_recording(recorder.path)
    assert len(rec.frames) == replay_stats(first)["delivered"] == 587
    assert sorted(set(rec.conn_urls.values())) == [
        "wss://stream.bybit.com/v5/public/linear",
        "wss://stream.bybit.com/v5/public/spot",
    ]
    assert rec.sends and all('"op":"subscribe"' in raw for _, raw in rec.sends)
    second = create_wire_exchange("bybit", str(recorder.path))
    replayed = asyncio.run(_collect_bybit(second, symbols))
    assert replay_stats(second)["delivered"] == 587
    assert set(replayed) == set(original) and all(original.values())
    for key in original:
        assert json.dumps(replayed[key], sort_keys=True) == json.dumps(original[key], sort_keys=True), key
    # fundarb's own recordings also replay for venues without topic rules: by connection URL, with the
    # markets the recording exchange had loaded
    assert sorted(m["symbol"] for m in rec.markets) == sorted(symbols)
    third = create_wire_exchange("bybit", str(recorder.path), routing="url")
    by_url = asyncio.run(_collect_bybit(third, symbols))
    assert replay_stats(third)["delivered"] == 587
    for key in original:
        assert json.dumps(by_url[key], sort_keys=True) == json.dumps(original[key], sort_keys=True), key


class RecordedBybitServer:
    """A real websocket server on localhost speaking bybit v5's public protocol from recorded frames."""

    def __init__(self, frames: list[dict[str, Any]], topics: set[str]) -> None:
        self.frames = frames
        self.topics = topics
        self.sent = 0
        self.done = asyncio.Event()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        subscribed: set[str] = set()
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            body = json.loads(message.data)
            if body.get("op") == "ping":
                await ws.send_str(json.dumps({"op": "pong", "success": True, "req_id": body.get("req_id", "")}))
                self.sent += 1
            elif body.get("op") == "subscribe":
                subscribed.update(body["args"])
                ack = {"success": True, "ret_msg": "", "op": "subscribe", "req_id": body.get("req_id", "")}
                await ws.send_str(json.dumps(ack))
                self.sent += 1
                if subscribed == self.topics:
                    for frame in self.frames:
                        await ws.send_str(json.dumps(frame))
                        self.sent += 1
                        await asyncio.sleep(0.001)
                    self.done.set()
        return ws


def test_live_exchange_records_every_frame_from_a_real_socket_and_the_recording_replays_it(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    symbol = "BTC/USDT:USDT"
    topics = {"tickers.BTCUSDT", "publicTrade.BTCUSDT", "kline.1.BTCUSDT"}
    frames = []
    with (fixtures_dir / "ws_recordings" / BYBIT_LOG).open() as f:
        for line in f:
            row = json.loads(line)
            if row["conn"] == "BYBIT.ws.2" and row["msg"]["topic"] in topics:
                frames.append(row["msg"])
    credentials = api_credentials("bybit", environ=SECRET_ENV)

    async def run() -> tuple[dict[Any, list[Any]], RecordedBybitServer, Any]:
        server = RecordedBybitServer(frames, topics)
        app = web.Application()
        app.router.add_get("/v5/public/linear", server.handle)
        runner, port = await serve(app)
        try:
            ex = create_live_exchange("bybit", LiveConfig(record_raw=str(tmp_path / "raw")), credentials)
            ex.urls["api"]["ws"]["public"]["linear"] = f"ws://127.0.0.1:{port}/v5/public/linear"
            ex.set_markets([build_market(ex, symbol)])  # offline: no REST market load
            results = await _collect_bybit(ex, [symbol], stop=server.done)
            return results, server, ex
        finally:
            await runner.cleanup()

    live, server, ex = asyncio.run(run())
    files = list((tmp_path / "raw").glob("bybit-*.jsonl"))
    assert len(files) == 1
    text = files[0].read_text()
    assert all(value not in text for value in SECRET_ENV.values())
    rec = load_recording(files[0])
    # every text frame the socket delivered is on disk, in order, on the connection it arrived on
    assert len(rec.frames) == server.sent
    payloads = [json.loads(f.data) for f in rec.frames]
    assert [p for p in payloads if "topic" in p] == frames
    assert set(rec.conn_urls.values()) == {ex.urls["api"]["ws"]["public"]["linear"]}
    # the live path parsed what the wire says
    raw_trades = [
        (t["i"], t["T"], t["S"].lower(), float(t["p"]), float(t["v"]))
        for f in frames
        if f["topic"] == "publicTrade.BTCUSDT"
        for t in f["data"]
    ]
    assert _trades(live, symbol) == raw_trades
    # and replaying the recording gives the same structures (tickers: every live one, in order)
    replayed = asyncio.run(_collect_bybit(create_wire_exchange("bybit", str(files[0])), [symbol]))
    assert _trades(replayed, symbol) == raw_trades
    assert _bars(replayed, symbol) == _bars(live, symbol) and _bars(live, symbol)
    live_tickers = [json.dumps(t, sort_keys=True) for t in live[("tickers", symbol)]]
    replay_tickers = [json.dumps(t, sort_keys=True) for t in replayed[("tickers", symbol)]]
    assert live_tickers and set(live_tickers) <= set(replay_tickers)
    assert len(replay_tickers) == sum(1 for f in frames if f["topic"] == "tickers.BTCUSDT")
    assert live_tickers[-1] == replay_tickers[-1]


@pytest.mark.live
def test_live_bybit_ticker_with_funding_over_the_network() -> None:
    """Real network (never in CI): a public ticker with bybit's funding fields, REST and websocket."""

    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        ex = create_live_exchange("bybit", LiveConfig(), {})
        try:
            await ex.load_markets()
            rest = await ex.fetch_ticker("BTC/USDT:USDT")
            ws = await asyncio.wait_for(ex.watch_ticker("BTC/USDT:USDT"), timeout=30)
            return rest, ws
        finally:
            await ex.close()

    rest, ws = asyncio.run(run())
    assert rest["symbol"] == ws["symbol"] == "BTC/USDT:USDT"
    rate = float(ws["info"]["fundingRate"])
    assert abs(rate) < 0.05  # a fraction per interval, inside any venue's cap
    assert int(ws["info"]["nextFundingTime"]) > ws["timestamp"]
    assert float(ws["info"]["fundingIntervalHour"]) in (1, 2, 4, 8)
    assert ws["bid"] <= ws["ask"] and rest["bid"] <= rest["ask"]


def test_a_dropped_connection_is_redialled_and_recorded_as_a_second_connection(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    """The server closes the socket halfway: the next watch dials again (ccxt.pro's reconnect), the recording
    shows both connections, and replaying it yields every trade once."""
    symbol = "BTC/USDT:USDT"
    frames = []
    with (fixtures_dir / "ws_recordings" / BYBIT_LOG).open() as f:
        for line in f:
            row = json.loads(line)
            if row["conn"] == "BYBIT.ws.2" and row["msg"]["topic"] == "publicTrade.BTCUSDT":
                frames.append(row["msg"])
    half = len(frames) // 2
    raw_trades = [(t["i"], t["T"], t["S"].lower(), float(t["p"]), float(t["v"])) for f in frames for t in f["data"]]
    connections = []

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        connections.append(ws)
        batch = frames[:half] if len(connections) == 1 else frames[half:]
        async for message in ws:
            if message.type == WSMsgType.TEXT and json.loads(message.data).get("op") == "subscribe":
                for frame in batch:
                    await ws.send_str(json.dumps(frame))
                    await asyncio.sleep(0.001)
                if len(connections) == 1:
                    await ws.close()  # the venue drops us mid-stream
        return ws

    async def run() -> tuple[list[Any], int]:
        app = web.Application()
        app.router.add_get("/v5/public/linear", handle)
        runner, port = await serve(app)
        ex = create_live_exchange("bybit", LiveConfig(record_raw=str(tmp_path)), {})
        ex.urls["api"]["ws"]["public"]["linear"] = f"ws://127.0.0.1:{port}/v5/public/linear"
        ex.set_markets([build_market(ex, symbol)])
        trades: list[Any] = []
        errors = 0
        try:
            while len(trades) < len(raw_trades):
                try:
                    trades.extend(await asyncio.wait_for(ex.watch_trades(symbol), timeout=30))
                except ccxt.NetworkError:
                    errors += 1  # what the Feed turns into a RECONNECT event and a back-off
        finally:
            await ex.close()
            await runner.cleanup()
        return trades, errors

    trades, errors = asyncio.run(run())
    assert errors >= 1 and len(connections) == 2
    assert [(t["id"], t["timestamp"], t["side"], t["price"], t["amount"]) for t in trades] == raw_trades
    rec = load_recording(next(tmp_path.glob("bybit-*.jsonl")))
    assert sorted(rec.conn_urls) == ["bybit.ws.1", "bybit.ws.2"]
    assert [f.conn for f in rec.frames] == ["bybit.ws.1"] * half + ["bybit.ws.2"] * (len(frames) - half)

    async def replay() -> list[Any]:
        ex = create_wire_exchange("bybit", str(rec.path))
        out: list[Any] = []
        try:
            while True:
                out.extend(await ex.watch_trades(symbol))
        except EndOfRecording:
            return out
        finally:
            await ex.close()

    replayed = asyncio.run(replay())
    assert [(t["id"], t["timestamp"], t["side"], t["price"], t["amount"]) for t in replayed] == raw_trades


def test_hyperliquid_funding_lands_live_and_through_the_wire_with_its_hourly_interval(tmp_path: Path) -> None:
    """hyperliquid's contexts name no interval and no settlement: live, the Feed asks `/info` once (recorded);
    replayed, the recorded answer is served again; without it, the venue's documented hourly schedule. The
    rate lands each time with interval 1 h and the settlement at the next hour, the interval marked by source."""
    from fundarb_dagster.core.instruments import InstrumentRegistry
    from fundarb_dagster.core.sources.feed import Feed
    from tests.core.sources.hyperliquid_session import CONTEXTS, SYMBOL, record_session

    path, live, learned = asyncio.run(record_session(tmp_path / "raw"))
    rec = load_recording(path)
    assert [(url, method) for (url, _), (method, _) in zip(rec.http, rec.http_requests, strict=True)] == [
        (rec.http[0][0], "POST")
    ] and rec.http[0][0].endswith("/info")
    assert json.loads(rec.http_requests[0][1]) == {"type": "metaAndAssetCtxs"}
    assert [s.source for s in learned.interval_history("hyperliquid", SYMBOL)] == ["learned"]

    def check(records: list[Any], clock_ms: list[int]) -> None:
        assert [float(r["funding_rate"]) for r in records] == [float(c[0]) for c in CONTEXTS]
        assert [float(r["mark_price"]) for r in records] == [float(c[1]) for c in CONTEXTS]
        assert [float(r["index_price"]) for r in records] == [float(c[2]) for c in CONTEXTS]  # the oracle
        assert all(r["interval_h"] == 1.0 for r in records)
        assert [int(r["funding_ts_ms"]) for r in records] == [(t // 3_600_000 + 1) * 3_600_000 for t in clock_ms]

    check(live, [int(r["ts_ms"]) for r in live])

    async def replay(file: Path) -> tuple[list[Any], InstrumentRegistry, Feed]:
        ex = create_wire_exchange("hyperliquid", str(file))
        registry = InstrumentRegistry()
        registry.add_markets("hyperliquid", ex.markets, [SYMBOL])
        feed = Feed(ex, registry)
        out: list[Any] = []
        try:
            async for batch in feed.watch("funding", SYMBOL):
                out.extend(batch.records)
        finally:
            await ex.close()
        return out, registry, feed

    frames = [json.loads(f.data) for f in rec.frames]
    clock = [
        int(f.ts_s * 1000) for f, m in zip(rec.frames, frames, strict=True) if m.get("channel") == "activeAssetCtx"
    ]
    replayed, registry, feed = asyncio.run(replay(path))
    check(replayed, clock)
    assert feed.counts["funding:interval_learned"] == 1 and not feed.validator.counts
    assert [s.source for s in registry.interval_history("hyperliquid", SYMBOL)] == ["learned"]
    without_rest = tmp_path / "no_rest.jsonl"
    without_rest.write_text("".join(line + "\n" for line in path.read_text().splitlines() if '"t":"http"' not in line))
    scheduled, registry, feed = asyncio.run(replay(without_rest))
    check(scheduled, clock)
    assert feed.counts["funding:interval_lookup_failed"] == 0 and not feed.validator.counts
    assert [s.source for s in registry.interval_history("hyperliquid", SYMBOL)] == ["schedule"]


@pytest.mark.live
@pytest.mark.parametrize(
    ("venue", "symbol"), [("binance", "BTC/USDT"), ("binance", "BTC/USDT:USDT"), ("bybit", "BTC/USDT")]
)
def test_live_quotes_come_from_each_venues_quote_channel(venue: str, symbol: str) -> None:
    """Real network (never in CI): binance (bookTicker) and bybit spot (orderbook.1) quotes through the Feed,
    the channel read from `core/venues.py` as in every other source."""
    from fundarb_dagster.core.instruments import InstrumentRegistry
    from fundarb_dagster.core.sources.feed import Feed

    async def run() -> tuple[Any, str]:
        ex = create_live_exchange(venue, LiveConfig(), {})
        try:
            registry = InstrumentRegistry()
            registry.add_markets(venue, await ex.load_markets(), [symbol])
            feed = Feed(ex, registry)
            rows: list[Any] = []
            async for batch in feed.watch("tickers", symbol):
                rows.extend(batch.records)
                if len(rows) >= 3:
                    break
            return rows, feed.channel_name(feed._subscription("tickers", symbol))
        finally:
            await ex.close()

    rows, channel = asyncio.run(asyncio.wait_for(run(), timeout=60))
    assert channel == "tickers:watch_bids_asks"
    assert all(0 < r["bid"] <= r["ask"] and r["bid_size"] > 0 for r in rows)
