"""ccxt's own recorded REST responses through real ccxt exchange classes, compared with what ccxt recorded.

Each entry of fixtures/ccxt_rest_responses/<venue>.json is replayed at ccxt's HTTP layer (`fetch`), so the
venue's request builder, error mapping and `parse_*` run unchanged; the result must equal the entry's
`parsedResponse`. Then the feed's normalizer turns the parsed structures into schema records whose values
must equal the recorded `parsedResponse` values.

Nothing is skipped: the two `fetchFundingHistory` entries are private endpoints (the account's own funding
payments), replayed with dummy credentials so ccxt signs the request offline. Compared: every field of
the recorded structure, `info` included, exactly; except ccxt's derived `average`/`vwap`, which the
recording (made by ccxt's JavaScript build, rounding with string maths) and Python's float arithmetic
round differently in the last digits, so those are compared to 1e-6 relative.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from fundarb_dagster.core.instruments import instrument_from_market
from fundarb_dagster.core.sources import normalize
from fundarb_dagster.core.sources.rest_replay import (
    REPLAYABLE_METHODS,
    create_rest_replay_exchange,
    load_rest_entries,
    symbols_in,
)

VENUES = ("binance", "bybit", "okx", "hyperliquid")
DERIVED = {"average", "vwap"}
DUMMY_CREDENTIALS = {"apiKey": "replay-key", "secret": "replay-secret"}


def rest_dir(fixtures_dir: Path) -> Path:
    return fixtures_dir / "ccxt_rest_responses"


# parametrization runs at collection, before fixtures: the same folder the `fixtures_dir` fixture names
FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures"
STORED_METHODS = ("fetchOHLCV", "fetchTicker", "fetchTrades", "fetchFundingRate", "fetchFundingRates")


def all_entries(methods: tuple[str, ...] | None = None) -> list[tuple[str, int]]:
    out = []
    for venue in VENUES:
        for i, entry in enumerate(load_rest_entries(str(FIXTURES / "ccxt_rest_responses" / f"{venue}.json"))):
            if methods is None or entry["method"] in methods:
                out.append((venue, i))
    return out


@functools.cache
def bybit_instrument_info(fixtures_dir: Path) -> dict[str, dict[str, Any]]:
    """bybit's recorded instruments-info entries (linear), by unified symbol: the markets' `info`."""
    with pa.input_stream(str(fixtures_dir / "ws_recordings" / "BYBIT.jsonl.zst"), compression="zstd") as stream:
        rows = [json.loads(line) for line in stream.read().decode().splitlines()]
    out = {}
    for row in rows:
        if row["t"] == "http" and "category=linear" in row["url"]:
            for item in json.loads(row["data"])["result"]["list"]:
                if item["contractType"] == "LinearPerpetual":  # not the dated futures of the same coins
                    out[f"{item['baseCoin']}/{item['quoteCoin']}:{item['settleCoin']}"] = item
    return out


def assert_same(got: Any, expected: Any, where: str = "") -> None:
    """`got` has every field of `expected` with the same value (floats exact, derived ones to 1e-6)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict), where
        for key, value in expected.items():
            assert key in got, f"{where}.{key} missing"
            if key in DERIVED and isinstance(value, int | float) and got[key] is not None:
                assert got[key] == pytest.approx(value, rel=1e-6), f"{where}.{key}"
            else:
                assert_same(got[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), f"{where}: {got!r} != {expected!r}"
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_same(g, e, f"{where}[{i}]")
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"


@pytest.fixture(scope="module")
def replayed(fixtures_dir: Path) -> dict[tuple[str, int], tuple[Any, Any, int]]:
    """(venue, index) -> (exchange, result as plain JSON or the exception, HTTP requests ccxt built).

    One exchange per venue answers all its public entries (and one with dummy credentials the private
    ones): ccxt instances are slow to build, and each call is matched to its own entry anyway.
    """
    out: dict[tuple[str, int], tuple[Any, Any, int]] = {}

    async def run() -> None:
        for venue in VENUES:
            entries = load_rest_entries(str(rest_dir(fixtures_dir) / f"{venue}.json"))
            market_info = bybit_instrument_info(fixtures_dir) if venue == "bybit" else None
            public = create_rest_replay_exchange(venue, entries, market_info=market_info)
            private = create_rest_replay_exchange(venue, entries, config=DUMMY_CREDENTIALS, market_info=market_info)
            try:
                for index, entry in enumerate(entries):
                    ex = private if entry["method"] == "fetchFundingHistory" else public
                    before = len(ex.replay_requests)
                    try:
                        got: Any = await getattr(ex, REPLAYABLE_METHODS[entry["method"]])(*entry["input"])
                        got = json.loads(json.dumps(got))  # as the recording holds it: plain JSON types
                    except Exception as exc:  # noqa: BLE001 - reported by the entry's own test
                        got = exc
                    out[(venue, index)] = (ex, got, len(ex.replay_requests) - before)
            finally:
                await public.close()
                await private.close()

    asyncio.run(run())
    return out


def replay(replayed: dict[tuple[str, int], tuple[Any, Any, int]], venue: str, index: int) -> tuple[Any, Any, int]:
    ex, got, requests = replayed[(venue, index)]
    if isinstance(got, Exception):
        raise got
    return ex, got, requests


@pytest.mark.parametrize(("venue", "index"), all_entries(), ids=lambda v: str(v))
def test_recorded_http_response_parses_to_cccxts_recorded_structure(
    fixtures_dir: Path, replayed: dict[tuple[str, int], tuple[Any, Any, int]], venue: str, index: int
) -> None:
    entry = load_rest_entries(str(rest_dir(fixtures_dir) / f"{venue}.json"))[index]
    _, got, requests = replay(replayed, venue, index)
    assert_same(got, entry["parsedResponse"], f"{venue}.{entry['method']}{entry['input']}")
    assert requests >= 1, "ccxt built a request and the replay answered it"


def test_every_fixture_method_fundarb_uses_is_covered(fixtures_dir: Path) -> None:
    assert fixtures_dir.resolve() == FIXTURES.resolve()
    methods = {e["method"] for v in VENUES for e in load_rest_entries(str(rest_dir(fixtures_dir) / f"{v}.json"))}
    assert set(STORED_METHODS) <= methods
    assert methods <= set(REPLAYABLE_METHODS)


def test_a_call_no_entry_answers_raises_not_supported_without_dialling(fixtures_dir: Path) -> None:
    import ccxt

    entries = load_rest_entries(str(rest_dir(fixtures_dir) / "okx.json"))
    ex = create_rest_replay_exchange("okx", entries)
    assert sorted(ex.markets) == sorted(symbols_in(entries))

    async def run() -> None:
        try:
            with pytest.raises(ccxt.NotSupported, match="fetch_funding_rate|fetchFundingRate"):
                await ex.fetch_funding_rate("BTC/USDT:USDT")
        finally:
            await ex.close()

    asyncio.run(run())
    assert ex.replay_requests == []


def _nan_or(value: Any) -> float:
    return math.nan if value is None else float(value)


def _same_float(a: float, b: Any) -> bool:
    b = _nan_or(b)
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize(("venue", "index"), all_entries(STORED_METHODS), ids=lambda v: str(v))
def test_normalizer_records_equal_the_recorded_parsed_values(
    fixtures_dir: Path, replayed: dict[tuple[str, int], tuple[Any, Any, int]], venue: str, index: int
) -> None:
    entry = load_rest_entries(str(rest_dir(fixtures_dir) / f"{venue}.json"))[index]
    method, expected = entry["method"], entry["parsedResponse"]
    ex, got, _ = replay(replayed, venue, index)
    symbol = entry["input"][0][0] if method == "fetchFundingRates" else entry["input"][0]
    instrument = instrument_from_market(7, venue, ex.markets[symbol])
    cs = instrument.contract_size
    recv = 1_900_000_000_000
    if method == "fetchOHLCV":
        timeframe_s = int(ex.parse_timeframe(entry["input"][1]))
        rec = normalize.ohlcv_to_records(got, instrument, recv, timeframe_s)
        assert len(rec) == len(expected)
        for r, bar in zip(rec, expected, strict=True):
            assert r["ts_ms"] == bar[0] and r["timeframe_s"] == timeframe_s
            assert [r["open"], r["high"], r["low"], r["close"]] == [float(x) for x in bar[1:5]]
            assert r["volume"] == float(bar[5]) * cs
    elif method == "fetchTicker":
        r = normalize.ticker_to_record(got, instrument, recv)[0]
        assert r["ts_ms"] == (expected["timestamp"] or recv)
        for field, key in (("bid", "bid"), ("ask", "ask"), ("last", "last"), ("mark_price", "markPrice")):
            assert _same_float(float(r[field]), expected.get(key)), field
        assert _same_float(float(r["bid_size"]), None if expected["bidVolume"] is None else expected["bidVolume"] * cs)
    elif method == "fetchTrades":
        rec = normalize.trades_to_records(got, instrument, recv)
        assert [(int(r["ts_ms"]), float(r["price"]), float(r["amount"])) for r in rec] == [
            (t["timestamp"], float(t["price"]), float(t["amount"]) * cs) for t in expected
        ]
        assert [int(r["side"]) for r in rec] == [{"buy": 1, "sell": -1}.get(t["side"], 0) for t in expected]
    else:
        rates = [expected] if method == "fetchFundingRate" else list(expected.values())
        structures = [got] if method == "fetchFundingRate" else list(got.values())
        for structure, rate in zip(structures, rates, strict=True):
            interval_h = normalize.funding_interval_h(structure, ex.markets[symbol])
            r = normalize.funding_rate_to_record(structure, instrument, recv, interval_h)[0]
            assert r["funding_rate"] == rate["fundingRate"] and r["funding_ts_ms"] == rate["fundingTimestamp"]
            assert r["ts_ms"] == rate["timestamp"]
            assert r["mark_price"] == rate["markPrice"] and r["index_price"] == rate["indexPrice"]
            assert r["interval_h"] == float(rate["interval"].rstrip("h"))  # bybit: 8h from the market's info


def test_feed_history_over_the_rest_replay_yields_the_recorded_bars(fixtures_dir: Path) -> None:
    """The Feed's REST history path (pagination, normalizing) on a real ccxt class fed bybit's recorded page;
    a timeframe nothing recorded fails clearly instead of dialling."""
    import ccxt

    from fundarb_dagster.core.instruments import InstrumentRegistry
    from fundarb_dagster.core.sources.feed import Feed

    entries = load_rest_entries(str(rest_dir(fixtures_dir) / "bybit.json"))
    entry = next(e for e in entries if e["method"] == "fetchOHLCV")
    symbol, _, since, _ = entry["input"]
    ex = create_rest_replay_exchange("bybit", entries)
    registry = InstrumentRegistry()
    registry.add_markets("bybit", ex.markets, [symbol])

    async def run() -> list[Any]:
        records: list[Any] = []
        try:
            feed = Feed(ex, registry, ohlcv_timeframe="1h")
            until = entry["parsedResponse"][-1][0] + 3_600_000
            async for batch in feed.history("ohlcv", symbol, since - since % 3_600_000, until):
                records.extend(batch.records)
            with pytest.raises(ccxt.NotSupported, match="'1m'"):
                async for _ in Feed(ex, registry, ohlcv_timeframe="1m").history("ohlcv", symbol, since, until):
                    pass
        finally:
            await ex.close()
        return records

    records = asyncio.run(run())
    assert [(int(r["ts_ms"]), r["open"], r["high"], r["low"], r["close"], r["volume"]) for r in records] == [
        tuple(bar) for bar in entry["parsedResponse"]
    ]
    method, url = ex.replay_requests[0]
    assert method == "GET" and "/v5/market/kline" in url and "category=linear" in url and "interval=60" in url
