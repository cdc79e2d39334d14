"""The open_interest and liquidations streams through the Feed: real ccxt classes parsing recorded (bybit's
`fetchOpenInterest` responses from ccxt's own tests) and recorded-shaped (binance `forceOrder`, bybit
`allLiquidation`, as the venues document them) payloads; the simulator's values landing as served; bad
messages quarantined and counted; venues without a liquidation channel refused by name."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import ccxt
import ccxt.pro
import numpy as np
import pyarrow as pa
import pytest

from fundarb_dagster.core.instruments import InstrumentRegistry
from fundarb_dagster.core.schema import EventKind
from fundarb_dagster.core.sources.feed import Feed
from fundarb_dagster.core.sources.rest_replay import build_market, create_rest_replay_exchange
from fundarb_dagster.core.sources.sim import SimExchange
from fundarb_dagster.core.sources.validation import Validator
from fundarb_dagster.core.sources.wire import create_wire_exchange

from .sim.common import sim, sim_perp
from .test_feed import T0, ScriptedExchange, _collect, _events, _records, _registry, _run


def _recorded() -> Validator:
    return Validator(max_past_ms=None)  # recorded responses are old by the wall clock a REST replay runs on


class PositioningExchange(ScriptedExchange):
    async def fetch_open_interest(self, symbol: str, params: Any = None) -> Any:
        return await self._next("fetch_open_interest")

    async def watch_liquidations(self, symbol: str, since: Any = None, limit: Any = None, params: Any = None) -> Any:
        return await self._next("watch_liquidations")


def _oi(ts: int | None, amount: Any = 100.0, value: Any = 5_000_000.0) -> dict[str, Any]:
    return {"symbol": "BTC/USDT:USDT", "openInterestAmount": amount, "openInterestValue": value, "timestamp": ts}


def _liq(ts: int, side: str = "sell", price: Any = 50_000.0, contracts: Any = 0.5) -> dict[str, Any]:
    return {"symbol": "BTC/USDT:USDT", "price": price, "contracts": contracts, "contractSize": 1.0, "side": side,
            "baseValue": None, "quoteValue": None, "timestamp": ts}  # fmt: skip


def _watch(ex: ScriptedExchange, stream: str, **kwargs: Any) -> tuple[np.ndarray, np.ndarray, Feed]:
    feed = Feed(ex, _registry(ex), stale_timeout_s={}, **kwargs)
    batches = _run(_collect(feed, stream, "BTC/USDT:USDT"))
    return _records(batches), _events(batches), feed


def _reasons(events: np.ndarray, kind: EventKind) -> dict[str, int]:
    rows = events[events["kind"] == int(kind)]
    return {r.decode(): int(c) for r, c in zip(rows["reason"], rows["count"], strict=True)}


# -- open interest ------------------------------------------------------------------------------------------
def test_open_interest_is_polled_once_per_interval_and_a_repeated_value_is_not_kept_again() -> None:
    ex = PositioningExchange(has={"fetchOpenInterest": True})
    ex.scripts["fetch_open_interest"] = [_oi(T0), _oi(T0), _oi(T0 + 90_000, 101.5, 5_100_000.0), _oi(T0 + 90_000)]
    records, events, feed = _watch(ex, "open_interest", open_interest_interval_s=60.0)
    assert records["ts_ms"].tolist() == [T0, T0 + 90_000]
    assert records["contracts"].tolist() == [100.0, 101.5] and records["amount"].tolist() == [100.0, 101.5]
    assert records["value"].tolist() == [5_000_000.0, 5_100_000.0]
    assert feed.counts["open_interest:unchanged"] == 1
    # the last repeats the time of the value before with other figures: older than the newest kept, a duplicate
    assert _reasons(events, EventKind.DUPLICATE) == {"dup:ts": 1}
    # five calls (the fifth found the script ended), each a minute of the exchange clock after the one before
    times = ex.call_times["fetch_open_interest"]
    assert len(times) == 5 and times[-1] - T0 >= 4 * 60_000


def test_bad_open_interest_is_quarantined_with_its_reason_and_the_stream_goes_on() -> None:
    ex = PositioningExchange(has={"fetchOpenInterest": True})
    ex.scripts["fetch_open_interest"] = [
        _oi(T0, amount=-5.0),
        _oi(T0 + 1, amount=float("nan"), value=None),
        _oi(T0 + 2, amount=None, value=None),
        _oi(T0 + 3, amount=10.0, value=float("inf")),
        _oi(T0 + 4, amount=0.0, value=0.0),  # a market nobody holds yet: zero is a value
        "not a structure",
    ]
    records, events, _ = _watch(ex, "open_interest", open_interest_interval_s=0.001)
    assert records["ts_ms"].tolist() == [T0 + 4] and records["amount"].tolist() == [0.0]
    assert _reasons(events, EventKind.QUARANTINED) == {
        "open_interest:negative": 1,
        "open_interest:nan": 1,
        "missing:open_interest": 1,
        "open_interest_value:inf": 1,
        "missing:structure": 1,
    }


def test_bybit_recorded_open_interest_responses_parse_through_ccxt_into_records(fixtures_dir: Path) -> None:
    """ccxt's own recorded bybit responses (linear: an amount in BTC; inverse: a USD value only) through the
    real ccxt.pro.bybit class and the Feed's poll."""
    entries = json.loads((fixtures_dir / "ccxt_rest_responses" / "bybit.json").read_text())["entries"]
    entries = [e for e in entries if e["method"] == "fetchOpenInterest"]
    assert {e["input"][0] for e in entries} == {"BTC/USDT:USDT", "BTC/USD:BTC"}
    got = {}
    for symbol in ("BTC/USDT:USDT", "BTC/USD:BTC"):
        ex = create_rest_replay_exchange("bybit", [{**e, "input": [e["input"][0]]} for e in entries])
        registry = InstrumentRegistry()
        registry.add_markets("bybit", ex.markets, list(ex.markets))
        feed = Feed(ex, registry, validator=_recorded())

        async def first(feed: Feed = feed, symbol: str = symbol) -> np.ndarray:
            async for batch in feed.watch("open_interest", symbol):
                if len(batch.records):
                    return batch.records
            raise AssertionError("no record")

        got[symbol] = _run(first())
    linear, inverse = got["BTC/USDT:USDT"][0], got["BTC/USD:BTC"][0]
    assert int(linear["ts_ms"]) == 1739725200000 and linear["contracts"] == 62129.455 == linear["amount"]
    assert math.isnan(linear["value"])  # bybit's linear figure is the amount only
    assert int(inverse["ts_ms"]) == 1739725200000 and inverse["value"] == 1536179414.0
    assert math.isnan(inverse["amount"]) and math.isnan(inverse["contracts"])


def test_binance_open_interest_payload_parses_through_ccxt() -> None:
    """binanceusdm `GET /fapi/v1/openInterest` as binance documents it, parsed by the real ccxt class."""
    body = {"openInterest": "10659.509", "symbol": "BTCUSDT", "time": 1589437530011}
    entry = {"method": "fetchOpenInterest", "input": ["BTC/USDT:USDT"], "httpResponse": body}
    ex = create_rest_replay_exchange("binanceusdm", [entry])
    registry = InstrumentRegistry()
    registry.add_markets("binanceusdm", ex.markets, list(ex.markets))
    feed = Feed(ex, registry, validator=_recorded())

    async def first() -> np.ndarray:
        async for batch in feed.watch("open_interest", "BTC/USDT:USDT"):
            if len(batch.records):
                return batch.records
        raise AssertionError("no record")

    record = _run(first())[0]
    assert (int(record["ts_ms"]), record["contracts"], record["amount"]) == (1589437530011, 10659.509, 10659.509)
    assert ex.replay_requests[0][1].startswith("https://fapi.binance.com/fapi/v1/openInterest?symbol=BTCUSDT")


# -- liquidations -------------------------------------------------------------------------------------------
def test_liquidations_land_with_the_liquidated_side_by_the_venues_convention() -> None:
    for venue, long_side in (("binanceusdm", "sell"), ("bybit", "buy"), ("okx", "sell")):
        ex = PositioningExchange(venue, has={"watchLiquidations": True})
        short_side = "buy" if long_side == "sell" else "sell"
        ex.scripts["watch_liquidations"] = [[_liq(T0, long_side), _liq(T0 + 5, short_side, 50_010.0, 2.0)]]
        records, _, _ = _watch(ex, "liquidations")
        assert records["position_side"].tolist() == [1, -1], venue
        assert records["value"].tolist() == [25_000.0, 100_020.0]


def test_inverse_liquidations_count_base_units_at_the_print_price() -> None:
    ex = PositioningExchange("binancecoinm", has={"watchLiquidations": True})
    ex.markets["BTC/USD:BTC"] = {**ex.markets["BTC/USDT:USDT"], "symbol": "BTC/USD:BTC", "id": "BTCUSD_PERP",
                                 "quote": "USD", "settle": "BTC", "inverse": True, "contractSize": 100.0}  # fmt: skip
    ex.scripts["watch_liquidations"] = [[{**_liq(T0, "sell", 40_000.0, 8.0), "symbol": "BTC/USD:BTC"}]]
    feed = Feed(ex, _registry(ex), stale_timeout_s={})
    record = _records(_run(_collect(feed, "liquidations", "BTC/USD:BTC")))[0]
    # 8 contracts of 100 USD: 800 USD, 0.02 BTC at 40 000 (ccxt's baseValue would say 800 "BTC")
    assert (record["contracts"], record["amount"], record["value"]) == (8.0, 0.02, 800.0)


def test_bad_and_repeated_liquidation_prints_are_quarantined_or_dropped_and_counted() -> None:
    ex = PositioningExchange(has={"watchLiquidations": True})
    ex.scripts["watch_liquidations"] = [
        [_liq(T0 + 10), _liq(T0 + 20, price=None), _liq(T0 + 30, price=-1.0), _liq(T0 + 40, contracts=float("nan"))],
        [_liq(T0 + 10), _liq(T0 + 5, "buy")],  # a repeat, and a late print (kept, reported)
        [{"symbol": "BTC/USDT:USDT", "price": 1.0}],  # no time
    ]
    records, events, feed = _watch(ex, "liquidations")
    assert records["ts_ms"].tolist() == [T0 + 10, T0 + 5]
    assert _reasons(events, EventKind.QUARANTINED) == {
        "missing:price": 1,
        "price:nonpositive": 1,
        "contracts:nan": 1,
        "missing:timestamp": 1,
    }
    assert _reasons(events, EventKind.DUPLICATE) == {"dup:liquidation": 1}
    assert _reasons(events, EventKind.OUT_OF_ORDER) == {"ts:late": 1}
    assert feed.validator.counts["dup:liquidation"] == 1


def _real_liquidation(exchange_id: str, symbol: str, frame: dict[str, Any]) -> list[dict[str, Any]]:
    """A venue's liquidation frame through the real ccxt.pro class's own handler, as the live socket gives it."""
    ex = getattr(ccxt.pro, exchange_id)()
    ex.set_markets([build_market(ex, symbol)])
    got: list[Any] = []

    class Client:
        def resolve(self, result: Any, message_hash: str) -> None:
            if message_hash == f"liquidations::{symbol}":
                got.extend(result)

    ex.handle_liquidation(Client(), frame)
    return got


def test_binance_and_bybit_liquidation_frames_parse_through_ccxt_pro_into_records() -> None:
    binance = {"e": "forceOrder", "E": 1698871323061, "o": {"s": "BTCUSDT", "S": "SELL", "o": "LIMIT", "f": "IOC",
               "q": "1.437", "p": "35100.81", "ap": "34959.70", "X": "FILLED", "l": "1.437", "z": "1.437",
               "T": 1698871323059}}  # fmt: skip
    bybit = {"topic": "allLiquidation.BTCUSDT", "type": "snapshot", "ts": 1739502303204,
             "data": [{"T": 1739502302929, "s": "BTCUSDT", "S": "Buy", "v": "0.25", "p": "96000.5"}]}  # fmt: skip
    for exchange_id, frame, side in (("binanceusdm", binance, 1), ("bybit", bybit, 1)):
        structures = _real_liquidation(exchange_id, "BTC/USDT:USDT", frame)
        assert len(structures) == 1
        ex = PositioningExchange(exchange_id, has={"watchLiquidations": True})
        ex.scripts["watch_liquidations"] = [structures]
        record = _watch(ex, "liquidations", validator=_recorded())[0][0]
        assert int(record["position_side"]) == side, exchange_id  # binance SELL order / bybit Buy position: a long
    assert record["price"] == 96000.5 and record["amount"] == 0.25 and record["value"] == pytest.approx(24000.125)


def test_a_venue_without_a_liquidation_channel_is_refused_by_name() -> None:
    ex = PositioningExchange("hyperliquid", has={})
    feed = Feed(ex, _registry(ex), stale_timeout_s={})
    with pytest.raises(ccxt.NotSupported, match="hyperliquid has no watch_liquidations"):
        _run(_collect(feed, "liquidations", "BTC/USDT:USDT"))
    with pytest.raises(ValueError, match="not a perpetual; it has no open_interest"):
        _run(_collect(feed, "open_interest", "BTC/USDT"))


def test_the_live_classes_subscribe_the_venues_liquidation_channels() -> None:
    """binanceusdm and bybit (ccxt.pro): liquidations streamed, open interest polled (no watch in ccxt 4.5)."""
    for exchange_id in ("binanceusdm", "bybit"):
        ex = getattr(ccxt.pro, exchange_id)()
        assert ex.has["watchLiquidations"] and ex.has["fetchOpenInterest"] and not ex.has.get("watchOpenInterest")
        ex.set_markets([build_market(ex, "BTC/USDT:USDT")])
        registry = InstrumentRegistry()
        registry.add_markets(exchange_id, ex.markets, list(ex.markets))
        feed = Feed(ex, registry)
        subs = {s: feed._subscription(s, "BTC/USDT:USDT") for s in ("liquidations", "open_interest")}  # noqa: SLF001
        names = {s: feed.channel_name(sub) for s, sub in subs.items()}
        assert names["open_interest"] == "open_interest:fetch_open_interest"
        want = "liquidations:watch_liquidations" + (":allLiquidation" if exchange_id == "bybit" else "")
        if exchange_id == "bybit":
            ex.options["watchLiquidations"] = {"method": "allLiquidation"}
            names["liquidations"] = feed.channel_name(subs["liquidations"])
        assert names["liquidations"] == want


# -- the simulator ------------------------------------------------------------------------------------------
def _sim_positioning(venue: str, symbol: str, n: int) -> tuple[list[np.ndarray], list[np.ndarray], SimExchange]:
    async def go() -> tuple[list[np.ndarray], list[np.ndarray], SimExchange]:
        ex = SimExchange(venue, sim(speed=3_600.0), symbols=[symbol])
        await ex.load_markets()
        registry = InstrumentRegistry()
        registry.add_markets(venue, ex.markets, list(ex.markets))
        feed = Feed(ex, registry, open_interest_interval_s=60.0)
        out: dict[str, list[np.ndarray]] = {"open_interest": [], "liquidations": []}

        async def drain(stream: str) -> None:
            async for batch in feed.watch(stream, symbol):
                out[stream].extend(batch.records)
                if len(out[stream]) >= n:
                    return

        await asyncio.gather(drain("open_interest"), drain("liquidations"))
        return out["open_interest"], out["liquidations"], ex

    return asyncio.run(asyncio.wait_for(go(), timeout=120))


def test_the_simulator_open_interest_and_liquidations_land_as_served() -> None:
    interest, prints, ex = _sim_positioning("okx", "BTC/USDT:USDT", 5)
    m = ex._m["BTC/USDT:USDT"]  # noqa: SLF001 - the served values, asked independently
    for r in interest:
        served = ex.positioning.open_interest(m, int(r["ts_ms"]))
        assert r["contracts"] == served["openInterestAmount"] and r["value"] == served["openInterestValue"]
        assert r["amount"] == pytest.approx(served["openInterestAmount"] * 0.01)  # okx: 0.01 BTC a contract
    first, last = int(prints[0]["ts_ms"]), int(prints[-1]["ts_ms"])
    served = ex.positioning.between(m, first - 1, last)
    assert [int(r["ts_ms"]) for r in prints] == [s["timestamp"] for s in served]  # every print, once, in order
    assert [float(r["price"]) for r in prints] == [s["price"] for s in served]
    # okx's side is the order's: a sell liquidates a long
    assert [int(r["position_side"]) for r in prints] == [1 if s["side"] == "sell" else -1 for s in served]


def test_bybit_liquidations_through_a_wire_replay_of_ccxt_pro_subscribing_all_liquidation(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    """The live path offline: the real ccxt.pro.bybit subscribes `allLiquidation.BTCUSDT` on its linear socket
    and parses what arrives there. The recorded bybit sessions hold no liquidation frame (none happened while
    they ran), so two frames shaped as bybit documents them are spliced into the recorded BTCUSDT session."""
    source = fixtures_dir / "ws_recordings" / "bybit_v5_btc_eth_tickers_trades_klines.jsonl"
    lines = [json.loads(line) for line in source.read_text().splitlines()[:40]]
    t0, conn = lines[0]["recv_ts_s"], lines[0]["conn"]
    spliced = []
    for i, (side, size, price) in enumerate((("Buy", "0.25", "96000.5"), ("Sell", "1.5", "96010.0"))):
        ts = int((t0 + 2 + i) * 1000)
        msg = {"topic": "allLiquidation.BTCUSDT", "type": "snapshot", "ts": ts,
               "data": [{"T": ts - 5, "s": "BTCUSDT", "S": side, "v": size, "p": price}]}  # fmt: skip
        spliced.append({"recv_ts_s": t0 + 2 + i, "conn": conn, "addr": None, "msg": msg})
    path = tmp_path / "bybit_liquidations.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [*lines[:5], *spliced, *lines[5:]]))
    ex = create_wire_exchange("bybit", str(path))
    registry = InstrumentRegistry()
    registry.add_markets("bybit", ex.markets, list(ex.markets))
    feed = Feed(ex, registry, validator=_recorded())

    async def drain() -> list[np.ndarray]:
        out: list[np.ndarray] = []
        try:
            async for batch in feed.watch("liquidations", "BTC/USDT:USDT"):
                out.extend(batch.records)
        finally:
            await ex.close()
        return out

    records = _run(drain())
    subscribers = ex.wire.topics.get("allLiquidation.BTCUSDT") or []
    assert [client.url for client in subscribers] == ["wss://stream.bybit.com/v5/public/linear"]
    assert [int(r["position_side"]) for r in records] == [1, -1]  # bybit's Buy: a long was liquidated
    assert [(float(r["price"]), float(r["amount"])) for r in records] == [(96000.5, 0.25), (96010.0, 1.5)]
    assert [int(r["ts_ms"]) for r in records] == [int((t0 + 2 + i) * 1000) - 5 for i in range(2)]


def test_bybit_open_interest_rides_the_recorded_tickers_through_ccxt_pro_into_records(fixtures_dir: Path) -> None:
    """ccxt 4.5 streams open interest for no venue (no ccxt.pro class has `watch_open_interest`) and a wire
    recording holds no REST poll, but bybit's linear `tickers` frames carry `openInterest` (base units) and
    `openInterestValue`. Replayed, the real ccxt.pro.bybit merges each snapshot and its deltas into the ticker's
    `info`, the exchange's own `parse_open_interest` reads the figure there, and the Feed keeps each new one:
    equal, value for value, to the frames merged here with plain json."""
    path = fixtures_dir / "ws_recordings" / "BYBIT.jsonl.zst"
    with pa.input_stream(str(path), compression="zstd") as stream:
        rows = [json.loads(line) for line in stream.read().decode().splitlines()]
    expected: dict[str, list[tuple[int, float, float]]] = {}
    state: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.get("t") != "recv" or row["conn"] != "BYBIT.ws.2" or '"topic":"tickers.' not in row["data"]:
            continue
        msg = json.loads(row["data"])
        venue_id = msg["topic"].split(".")[1]
        merged = state[venue_id] = {**(state.get(venue_id, {}) if msg["type"] == "delta" else {}), **msg["data"]}
        kept = expected.setdefault(venue_id, [])
        if "openInterest" in msg["data"] and (not kept or kept[-1][1] != float(merged["openInterest"])):
            kept.append((msg["ts"], float(merged["openInterest"]), float(merged["openInterestValue"])))
    ex = create_wire_exchange("bybit", str(path))
    symbols = {f"{venue_id[:-4]}/USDT:USDT": venue_id for venue_id in expected}
    assert {s: ex.open_interest_via(s) for s in symbols} == dict.fromkeys(symbols, "ticker")
    assert ex.open_interest_via("BTC/USDT") is None  # spot tickers carry none
    registry = InstrumentRegistry()
    registry.add_markets("bybit", ex.markets, list(ex.markets))
    feed = Feed(ex, registry, validator=_recorded())
    got: dict[str, list[np.ndarray]] = {s: [] for s in symbols}
    channels: list[str] = []

    async def drain(symbol: str) -> None:
        async for batch in feed.watch("open_interest", symbol):
            got[symbol].extend(batch.records)
            channels.extend(r.decode() for r in batch.events["reason"][batch.events["kind"] == int(EventKind.CHANNEL)])

    async def run() -> None:
        try:
            await asyncio.wait_for(asyncio.gather(*(drain(s) for s in symbols)), timeout=60)
        finally:
            await ex.close()

    _run(run())
    assert len(symbols) == 4 and set(channels) == {"open_interest:watch_ticker:tickers"}
    for symbol, venue_id in symbols.items():
        want = expected[venue_id]
        assert len(want) >= 4, symbol  # bybit moved each figure every ~10 s of the 44 s session
        rows_got = [(int(r["ts_ms"]), float(r["contracts"]), float(r["value"])) for r in got[symbol]]
        assert rows_got == want, symbol
        assert [float(r["amount"]) for r in got[symbol]] == [w[1] for w in want]  # linear: contracts are base
    assert feed.counts["open_interest:unchanged"] > 0  # the tickers between two figures: counted, not kept


def test_landed_open_interest_and_liquidations_replay_through_the_feed_as_they_landed(tmp_path: Path) -> None:
    """A landing replay serves both streams again (`watch_open_interest`, `watch_liquidations`, each value at
    its time): the Feed lands them as they were, liquidated sides included."""
    from fundarb_dagster.core import landing, schema
    from fundarb_dagster.core.sources import normalize
    from fundarb_dagster.core.sources.replay import ReplayExchange

    ex, instrument, m = sim_perp("bybit", "BTC/USDT:USDT", sim())
    start = ex.start_ms
    interest = np.concatenate(
        [normalize.open_interest_to_record(ex.positioning.open_interest(m, start + k * 60_000), instrument, start)
         for k in range(120)]
    )  # fmt: skip
    prints = normalize.liquidations_to_records(
        ex.positioning.between(m, start, start + 2 * 3_600_000), instrument, start, "position"
    )
    names = {instrument.id: ("bybit", "BTC/USDT:USDT")}
    for stream, records in (("open_interest", interest), ("liquidations", prints)):
        landing.write_stream(tmp_path, stream, schema.to_arrow(stream, records, names), "test", 0)

    replay = ReplayExchange("bybit", tmp_path, format="landing", symbols=["BTC/USDT:USDT"])
    asyncio.run(replay.load_markets())
    replayed = InstrumentRegistry()
    replayed.add_markets("bybit", replay.markets, list(replay.markets))
    feed = Feed(replay, replayed)

    async def drain(stream: str) -> np.ndarray:
        out = [b.records async for b in feed.watch(stream, "BTC/USDT:USDT") if len(b.records)]
        return np.concatenate(out)

    async def both() -> tuple[np.ndarray, np.ndarray]:
        return await asyncio.gather(drain("open_interest"), drain("liquidations"))

    got_interest, got_prints = _run(both())
    assert feed.counts["channel:open_interest:watch_open_interest"] == 1
    for name in ("ts_ms", "contracts", "amount", "value"):
        np.testing.assert_array_equal(got_interest[name], interest[name], err_msg=name)
    assert len(prints) >= 4
    for name in ("ts_ms", "position_side", "liquidation_id", "price", "contracts", "amount", "value"):
        np.testing.assert_array_equal(got_prints[name], prints[name], err_msg=name)
