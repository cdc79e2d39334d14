"""normalize.py on real ccxt structures (the `parsedResponse` entries ccxt recorded for each venue)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fundarb_dagster.core import schema
from fundarb_dagster.core.instruments import InstrumentRegistry
from fundarb_dagster.core.sources import normalize

RECV = 1_800_000_000_000


def _entries(fixtures_dir: Path, venue: str, method: str) -> list[dict[str, Any]]:
    data = json.loads((fixtures_dir / "ccxt_rest_responses" / f"{venue}.json").read_text())
    return [e for e in data["entries"] if e["method"] == method]


def _market(symbol: str, contract_size: float | None = None) -> dict[str, Any]:
    base, rest = symbol.split("/")
    quote, _, settle = rest.partition(":")
    swap = bool(settle)
    return {
        "symbol": symbol,
        "id": symbol.replace("/", "").split(":")[0],
        "base": base,
        "quote": quote,
        "settle": settle or None,
        "type": "swap" if swap else "spot",
        "spot": not swap,
        "swap": swap,
        "contractSize": contract_size if swap else None,
        "info": {},
    }


def _instrument(exchange: str, symbol: str, contract_size: float | None = None) -> Any:
    registry = InstrumentRegistry()
    return registry.add_market(exchange, _market(symbol, contract_size))


@pytest.mark.parametrize("venue", ["binance", "bybit", "okx"])
def test_trades_from_recorded_ccxt_structures_keep_price_amount_side_and_time(fixtures_dir: Path, venue: str) -> None:
    for entry in _entries(fixtures_dir, venue, "fetchTrades"):
        trades = entry["parsedResponse"]
        instrument = _instrument(venue, trades[0]["symbol"], 1.0)
        records = normalize.trades_to_records(trades, instrument, RECV)
        assert records.dtype == schema.TRADES
        assert records["ts_ms"].tolist() == [t["timestamp"] for t in trades]
        assert records["price"].tolist() == [t["price"] for t in trades]
        assert records["amount"].tolist() == [t["amount"] for t in trades]
        assert records["side"].tolist() == [{"buy": 1, "sell": -1}[t["side"]] for t in trades]
        assert (records["recv_ts_ms"] == RECV).all()
        assert (records["instrument_id"] == instrument.id).all()


def test_numeric_trade_ids_stay_integers_and_uuid_ids_hash_stably(fixtures_dir: Path) -> None:
    binance = _entries(fixtures_dir, "binance", "fetchTrades")[0]["parsedResponse"]
    bybit = _entries(fixtures_dir, "bybit", "fetchTrades")[0]["parsedResponse"]
    assert normalize.trade_id_to_int(binance[0]["id"]) == int(binance[0]["id"]) == 2913537567
    uuid = bybit[0]["id"]
    hashed = normalize.trade_id_to_int(uuid)
    expected = int.from_bytes(hashlib.blake2b(uuid.encode(), digest_size=8).digest(), "little") & ((1 << 63) - 1)
    assert hashed == expected
    assert 0 <= hashed < 2**63
    assert normalize.trade_id_to_int(uuid) == hashed  # stable across calls
    assert normalize.trade_id_to_int(str(2**64)) != 2**64  # too big for int64: hashed, not overflowed
    assert normalize.trade_id_to_int(str(2**64)) < 2**63


def test_swap_trade_amounts_become_base_units_with_contract_size(fixtures_dir: Path) -> None:
    trades = _entries(fixtures_dir, "bybit", "fetchTrades")[0]["parsedResponse"]
    instrument = _instrument("okx", "BTC/USDT:USDT", contract_size=0.01)  # okx's BTC-USDT-SWAP: 0.01 BTC a contract
    records = normalize.trades_to_records(trades, instrument, RECV)
    assert records["amount"][0] == pytest.approx(trades[0]["amount"] * 0.01)


def test_trade_without_id_gets_the_same_hash_for_the_same_print() -> None:
    instrument = _instrument("binance", "BTC/USDT")
    trade = {"timestamp": 1, "price": 10.0, "amount": 2.0, "side": "sell", "id": None}
    a = normalize.trades_to_records([trade], instrument, RECV)
    b = normalize.trades_to_records([dict(trade)], instrument, RECV)
    c = normalize.trades_to_records([{**trade, "price": 10.5}], instrument, RECV)
    assert a["trade_id"][0] == b["trade_id"][0] != c["trade_id"][0]


def test_spot_ticker_from_binance_and_okx(fixtures_dir: Path) -> None:
    for venue in ("binance", "okx"):
        ticker = _entries(fixtures_dir, venue, "fetchTicker")[0]["parsedResponse"]
        record = normalize.ticker_to_record(ticker, _instrument(venue, ticker["symbol"]), RECV)
        assert record.dtype == schema.TICKERS
        assert record["ts_ms"][0] == ticker["timestamp"]
        assert record["bid"][0] == ticker["bid"] and record["ask"][0] == ticker["ask"]
        assert record["bid_size"][0] == ticker["bidVolume"] and record["ask_size"][0] == ticker["askVolume"]
        assert record["last"][0] == ticker["last"]
        assert math.isnan(record["mark_price"][0]) and math.isnan(record["index_price"][0])  # spot: missing = NaN


def test_bybit_swap_ticker_without_timestamp_is_stamped_with_receive_time(fixtures_dir: Path) -> None:
    ticker = _entries(fixtures_dir, "bybit", "fetchTicker")[0]["parsedResponse"]
    assert ticker["timestamp"] is None
    record = normalize.ticker_to_record(ticker, _instrument("bybit", "BTC/USDT:USDT", 1.0), RECV)
    assert record["ts_ms"][0] == RECV
    assert record["mark_price"][0] == 51444.4 and record["index_price"][0] == 51469.95


def test_bybit_ticker_info_carries_funding_rate_and_next_settlement(fixtures_dir: Path) -> None:
    ticker = _entries(fixtures_dir, "bybit", "fetchTicker")[0]["parsedResponse"]
    record = normalize.ticker_to_funding_record(ticker, _instrument("bybit", "BTC/USDT:USDT", 1.0), RECV, 8.0)
    assert record.dtype == schema.FUNDING
    assert record["funding_rate"][0] == float(ticker["info"]["fundingRate"]) == -0.00046295
    assert record["funding_ts_ms"][0] == int(ticker["info"]["nextFundingTime"])
    assert record["is_settled"][0] == 0
    assert record["interval_h"][0] == 8.0


def test_bybit_funding_rate_structure_states_its_interval(fixtures_dir: Path) -> None:
    rate = _entries(fixtures_dir, "bybit", "fetchFundingRate")[0]["parsedResponse"]
    assert normalize.funding_interval_h(rate) == 8.0
    record = normalize.funding_rate_to_record(rate, _instrument("bybit", "BTC/USDT:USDT", 1.0), RECV, 8.0)
    assert record["ts_ms"][0] == rate["timestamp"]
    assert record["funding_ts_ms"][0] == rate["fundingTimestamp"]
    assert record["funding_rate"][0] == rate["fundingRate"]
    assert record["mark_price"][0] == rate["markPrice"] and record["index_price"][0] == rate["indexPrice"]
    assert math.isnan(record["next_funding_rate"][0])


def test_interval_from_ticker_info_and_market_info_units() -> None:
    assert normalize.funding_interval_h({"info": {"fundingIntervalHour": "4"}}) == 4.0
    assert normalize.funding_interval_h(None, {"info": {"fundingInterval": 480}}) == 8.0  # bybit market: minutes
    assert normalize.parse_interval_h("30m") == 0.5
    assert math.isnan(normalize.funding_interval_h({"info": {}}, {"info": {}}))


def test_binance_mark_price_update_becomes_a_funding_row() -> None:
    ticker = {
        "symbol": "BTC/USDT:USDT",
        "timestamp": 1562305380000,
        "markPrice": 11794.15,
        "indexPrice": 11784.62659091,
        "info": {"e": "markPriceUpdate", "E": 1562305380000, "s": "BTCUSDT", "p": "11794.15000000",
                 "i": "11784.62659091", "P": "11784.25641265", "r": "0.00038167", "T": 1562306400000},
    }  # fmt: skip
    record = normalize.mark_price_to_record(ticker, _instrument("binanceusdm", "BTC/USDT:USDT", 1.0), RECV, 8.0)
    assert record["funding_rate"][0] == 0.00038167
    assert record["funding_ts_ms"][0] == 1562306400000
    assert record["ts_ms"][0] == 1562305380000


def test_hyperliquid_context_settles_at_the_next_interval_boundary() -> None:
    ticker = {"symbol": "BTC/USDC:USDC", "timestamp": None,
              "info": {"funding": "0.0000125", "markPx": "14.3161", "oraclePx": "14.32"}}  # fmt: skip
    ts = 1_700_000_123_456
    record = normalize.ticker_to_funding_record(ticker, _instrument("hyperliquid", "BTC/USDC:USDC", 1.0), ts, 1.0)
    assert record["funding_ts_ms"][0] == (ts // 3_600_000 + 1) * 3_600_000
    assert record["mark_price"][0] == 14.3161 and record["index_price"][0] == 14.32
    assert record["funding_rate"][0] == 0.0000125


@pytest.mark.parametrize("venue", ["binance", "bybit", "okx"])
def test_ohlcv_from_recorded_candles(fixtures_dir: Path, venue: str) -> None:
    for entry in _entries(fixtures_dir, venue, "fetchOHLCV"):
        candles = entry["parsedResponse"]
        symbol = entry["input"][0]
        timeframe_s = {"1m": 60, "1h": 3600, "1d": 86400}[entry["input"][1]]
        records = normalize.ohlcv_to_records(candles, _instrument(venue, symbol, 1.0), RECV, timeframe_s)
        assert records.dtype == schema.OHLCV
        expected = np.array(candles, dtype=float)
        np.testing.assert_array_equal(records["ts_ms"], expected[:, 0].astype(np.int64))
        for j, name in enumerate(("open", "high", "low", "close", "volume"), start=1):
            np.testing.assert_array_equal(records[name], expected[:, j])
        assert (records["timeframe_s"] == timeframe_s).all()


def test_malformed_values_become_nan_not_exceptions() -> None:
    instrument = _instrument("binance", "BTC/USDT")
    records = normalize.ohlcv_to_records([[1, "x", None, 2], "garbage"], instrument, RECV, 60)
    assert records["ts_ms"].tolist() == [1, 0]
    assert np.isnan(records["open"]).all()
    trades = normalize.trades_to_records([{"timestamp": "abc", "price": "nan?", "amount": 1}], instrument, RECV)
    assert trades["ts_ms"][0] == 0 and math.isnan(trades["price"][0])


def test_settled_funding_history_rows() -> None:
    rows = [
        {"symbol": "BTC/USDT:USDT", "fundingRate": 0.0001, "timestamp": 1706601600000, "info": {"markPrice": "43000"}},
        {"symbol": "BTC/USDT:USDT", "fundingRate": -0.0002, "timestamp": 1706630400000, "info": {}},
    ]
    records = normalize.funding_history_to_records(rows, _instrument("okx", "BTC/USDT:USDT", 0.01), RECV, [8.0, 8.0])
    assert records["is_settled"].tolist() == [1, 1]
    assert records["funding_ts_ms"].tolist() == records["ts_ms"].tolist() == [1706601600000, 1706630400000]
    assert records["funding_rate"].tolist() == [0.0001, -0.0002]
    assert records["mark_price"][0] == 43000.0 and math.isnan(records["mark_price"][1])


@pytest.mark.parametrize(
    ("mode", "structure"),
    [
        ("mark_price", {"markPrice": 42000.0, "info": {"T": 1704096000000}}),
        ("mark_price", {"info": {"r": "", "T": 1704096000000}}),
        ("ticker", {"info": {"fundingRate": None, "funding": "0.0001"}}),  # bybit's field, empty: not hyperliquid's
        ("ticker", {"markPrice": 1.0, "info": {}}),
        ("funding_rate", {"fundingRate": None, "fundingTimestamp": 1704096000000}),
        ("poll", {"fundingRate": ""}),
    ],
)
def test_a_funding_structure_that_names_no_rate_gives_no_snapshot(mode: str, structure: dict[str, Any]) -> None:
    assert normalize.funding_snapshot(structure, mode) is None


def test_each_funding_channel_reads_its_own_rate_field() -> None:
    mark = normalize.funding_snapshot({"info": {"r": "0.00038167", "T": 1562306400000}}, "mark_price")
    bybit = normalize.funding_snapshot({"info": {"fundingRate": "-0.00046295", "nextFundingTime": "7"}}, "ticker")
    hyperliquid = normalize.funding_snapshot({"info": {"funding": "0.0000125"}}, "ticker")
    polled = normalize.funding_snapshot({"fundingRate": 0.0001, "fundingTimestamp": 9}, "poll")
    assert (mark.funding_rate, mark.settlement_ms) == (0.00038167, 1562306400000)
    assert (bybit.funding_rate, bybit.settlement_ms, bybit.settles_on_grid) == (-0.00046295, 7, False)
    assert (hyperliquid.funding_rate, hyperliquid.settlement_ms, hyperliquid.settles_on_grid) == (0.0000125, 0, True)
    assert (polled.funding_rate, polled.settlement_ms) == (0.0001, 9)


def test_inverse_contracts_land_base_units_with_contracts_and_size_beside() -> None:
    """okx UNI-USD-SWAP (10 USD a contract), as recorded: a 100-contract sell at 5.123 is 195.2 UNI, the
    ticker's 96 bid contracts at 5.134 are 186.99 UNI; ccxt's candle volume (volCcy) is base already."""
    registry = InstrumentRegistry()
    uni = registry.add_market(
        "okx", {**_market("UNI/USD:UNI", 10.0), "id": "UNI-USD-SWAP", "inverse": True, "linear": False}
    )
    trade = {"id": "12883020", "timestamp": 1652459215150, "side": "sell", "price": 5.123, "amount": 100.0}
    record = normalize.trades_to_records([trade], uni, RECV)[0]
    assert record["amount"] == 100.0 * 10.0 / 5.123 and round(float(record["amount"]), 1) == 195.2
    assert (record["contracts"], record["contract_size"]) == (100.0, 10.0)
    ticker = {"timestamp": 1652459223143, "bid": 5.134, "bidVolume": 96.0, "ask": 5.142, "askVolume": 25.0}
    row = normalize.ticker_to_record(ticker, uni, RECV)[0]
    assert (row["bid_size"], row["ask_size"]) == (96.0 * 10.0 / 5.134, 25.0 * 10.0 / 5.142)
    assert (row["bid_contracts"], row["ask_contracts"], row["contract_size"]) == (96.0, 25.0, 10.0)
    candle = normalize.ohlcv_to_records([[1652459160000, 5.1, 5.2, 5.0, 5.12, 1953.2]], uni, RECV, 60)[0]
    assert candle["volume"] == 1953.2
    # a source whose candles count contracts (binance COIN-M websocket klines): converted at the close
    counted = normalize.ohlcv_to_records([[1652459160000, 5.1, 5.2, 5.0, 5.12, 1000.0]], uni, RECV, 60,
                                         volume_in_contracts=True)[0]  # fmt: skip
    assert counted["volume"] == 1000.0 * 10.0 / 5.12
    spot = _instrument("okx", "BTC/USDT")
    spot_row = normalize.trades_to_records([{**trade, "price": 30_000.0, "amount": 0.5}], spot, RECV)[0]
    assert spot_row["amount"] == 0.5 and np.isnan(spot_row["contracts"]) and np.isnan(spot_row["contract_size"])


def _trades_one_by_one(trades: list[dict[str, Any]], instrument: Any, recv_ts_ms: int) -> np.ndarray:
    """The obvious per-trade loop `trades_to_records` must agree with, byte for byte."""
    out = schema.empty("trades", len(trades))
    for i, trade in enumerate(trades):
        ts = normalize.int_ms(trade.get("timestamp"))
        price, amount = normalize.num(trade.get("price")), normalize.num(trade.get("amount"))
        trade_id = trade.get("id")
        if trade_id is None or trade_id == "":
            trade_id = f"{ts}:{trade.get('price')}:{trade.get('amount')}:{trade.get('side')}"
        side = trade.get("side")
        row = out[i]
        row["ts_ms"], row["recv_ts_ms"], row["instrument_id"] = ts, recv_ts_ms, instrument.id
        row["side"] = 1 if side == "buy" else -1 if side == "sell" else 0
        row["trade_id"] = normalize.trade_id_to_int(trade_id)
        row["price"] = price
        row["amount"] = instrument.base_amounts(amount, price)
        row["cost"] = amount * instrument.contract_size if instrument.inverse else normalize.num(trade.get("cost"))
        if instrument.is_contract:
            row["contracts"], row["contract_size"] = amount, instrument.contract_size
    return out


def _odd_trades(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    """Trades as ccxt gives them, with, in some batches, every kind of odd value a venue or a bug may send."""
    trades = [
        {"id": str(5_000_000 + i), "timestamp": 1_800_000_000_000 + i, "side": "buy" if i % 3 else "sell",
         "price": float(np.round(100 + rng.random(), 2)), "amount": float(rng.random() + 0.01), "cost": 1.5}
        for i in range(n)
    ]  # fmt: skip
    odd: dict[str, list[Any]] = {
        "id": [None, "", "9afd1288-b444-53f8-8e40-c2f99368ad22", " 12", str(2**64), 77, "00042"],
        "timestamp": [None, "", "1800000000123", 1.8e12 + 0.7, math.nan, math.inf, 2**60, True],
        "price": [None, "", "101.5", math.nan, -1.0, 0, 7, True, math.inf],
        "amount": [None, "0.5", math.nan, -0.1, 3, False],
        "cost": [None, "", "12.5", math.nan],
        "side": [None, "BUY", "", ["buy"], 1],
    }
    for _ in range(int(rng.integers(0, 4))):
        key = str(rng.choice(list(odd)))
        choices = odd[key]
        trades[int(rng.integers(0, n))][key] = choices[int(rng.integers(0, len(choices)))]
    if rng.random() < 0.2:
        del trades[int(rng.integers(0, n))]["cost"]
    return trades


@pytest.mark.parametrize("contract_size", [None, 0.01])
def test_trades_to_records_column_at_a_time_equals_the_per_trade_loop(contract_size: float | None) -> None:
    symbol = "BTC/USDT:USDT" if contract_size else "BTC/USDT"
    instrument = _instrument("okx", symbol, contract_size)
    rng = np.random.default_rng(11)
    odd_batches = 0
    for _ in range(300):
        trades = _odd_trades(rng, int(rng.integers(1, 40)))
        got = normalize.trades_to_records(trades, instrument, RECV)
        expected = _trades_one_by_one(trades, instrument, RECV)
        assert got.tobytes() == expected.tobytes(), trades  # NaNs compare equal as bytes
        odd_batches += any(type(t.get("price")) is not float or type(t.get("id")) is not str for t in trades)
    assert odd_batches > 50  # the odd values were exercised, not only clean batches


def test_one_candle_in_one_step_is_the_vectorized_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """A single candle (a closed candle comes one a minute) is made in one step: the same bytes as the
    vectorized path, over plain and odd candles (ints, a float time, a huge or negative time, NaN, a bool, None,
    a string, a short row, a tuple) on a linear and an inverse contract, volume in base units or contracts."""
    registry = InstrumentRegistry()
    uni = registry.add_market(
        "okx", {**_market("UNI/USD:UNI", 10.0), "id": "UNI-USD-SWAP", "inverse": True, "linear": False}
    )
    btc = _instrument("bybit", "BTC/USDT:USDT", 0.001)
    t = 1_652_459_160_000
    candles: list[Any] = [
        [t, 5.1, 5.2, 5.0, 5.12, 1953.2],
        [t, 5, 6, 4, 5, 0],
        [t + 0.9, 5.1, 5.2, 5.0, 5.12, 1.0, 99.0],
        [-t, 5.1, 5.2, 5.0, 5.12, 1.0],
        [2**63 + 10, 5.1, 5.2, 5.0, 5.12, 1.0],
        [2**62 + 1, 5.1, 5.2, 5.0, 5.12, 1.0],
        [t, math.nan, 5.2, 5.0, 5.12, math.inf],
        [t, True, 5.2, 5.0, 5.12, 1.0],
        [t, None, 5.2, 5.0, 5.12, 1.0],
        [t, "5.1", 5.2, 5.0, 5.12, 1.0],
        [t, 5.1, 5.2],
        (t, 5.1, 5.2, 5.0, 5.12, 1.0),
    ]
    taken = []
    one = normalize._one_candle

    def counted(*args: Any) -> Any:
        taken.append(one(*args) is not None)
        return one(*args)

    for instrument in (uni, btc):
        for contracts in (False, True):
            for candle in candles:
                monkeypatch.setattr(normalize, "_one_candle", counted)
                fast = normalize.ohlcv_to_records([candle], instrument, RECV, 60, volume_in_contracts=contracts)
                monkeypatch.setattr(normalize, "_one_candle", lambda *args: None)
                slow = normalize.ohlcv_to_records([candle], instrument, RECV, 60, volume_in_contracts=contracts)
                assert fast.tobytes() == slow.tobytes(), (instrument.symbol, contracts, candle)
    assert taken.count(True) == 4 * 6 and taken.count(False) == 4 * 6  # plain numbers in one step, not the rest
