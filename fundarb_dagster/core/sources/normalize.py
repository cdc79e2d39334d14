"""ccxt unified structures -> records of the `schema` dtypes. Pure functions, no I/O, no state.

Every source kind (live ccxt.pro, the simulator, replays, wire replays) returns ccxt's unified structures,
so these functions are the only place that knows their shape. Conventions:

- Missing or unparsable numbers become NaN (the validator decides whether that is acceptable).
- Amounts are in base units. ccxt gives contract amounts (trades, bid/ask sizes) in contracts: a linear
  contract is `contractSize` base units (1 for most, 0.01 BTC for okx BTC-USDT-SWAP), an inverse one is
  `contractSize` quote units (10 USD for okx UNI-USD-SWAP, 100 USD for binance COIN-M BTCUSD_PERP), so its
  base amount is contracts x contractSize / price (`Instrument.base_amounts`). The contracts and the
  contract size are kept beside (`contracts`, `contract_size`; NaN for spot). Candle volumes are taken as
  ccxt gives them, in base units (it reads okx `volCcy`, binance's and bybit's base volume for inverse).
- Trade ids: a numeric venue id is kept as an integer; any other id (bybit's UUIDs) becomes a stable
  63-bit hash, the same on every machine and run.
- Funding rates are fractions per interval; `interval_h` is whatever the caller resolved (see
  `funding_interval_h` for what a structure itself reveals, and `intervals.py` for the rule that decides
  the interval in force), never a per-venue constant. A streamed funding value is read once into a
  `FundingSnapshot` (one constructor per funding channel) and written with `to_record` once its interval
  is decided.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import schema
from ..instruments import Instrument
from ..units import HOUR_MS

_MAX_I63 = (1 << 63) - 1
_INTERVAL = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[mhd])\s*$")
_UNIT_HOURS = {"m": 1.0 / 60.0, "h": 1.0, "d": 24.0}
# Fields in ccxt's structures and in venues' `info` that state the funding interval, with their unit in hours.
_INTERVAL_INFO_FIELDS = (("fundingIntervalHour", 1.0), ("fundingIntervalHours", 1.0), ("fundingInterval", 1.0 / 60))


def num(value: Any) -> float:
    """A float from a ccxt field: None, '' or an unparsable value -> NaN (never an exception)."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond float64
        return math.nan


def int_ms(value: Any) -> int:
    """Epoch milliseconds from a ccxt field; 0 when missing, unparsable or beyond int64 (the validator rejects
    0; a raw time beyond int64 is quarantined as `ts:out_of_range` before it gets here)."""
    number = num(value)
    return int(number) if math.isfinite(number) and abs(number) < 2.0**63 else 0


def trade_id_to_int(trade_id: Any) -> int:
    """`'2913537567'` -> 2913537567; `'9afd1288-b444-...'` -> a stable 63-bit hash (blake2b, never negative)."""
    if trade_id is None:
        return -1
    text = str(trade_id).strip()
    if text.isdigit():
        value = int(text)
        if value <= _MAX_I63:
            return value
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MAX_I63


def camel_call(name: str) -> str:
    """ccxt's camelCase name of a Python call: `watch_ohlcv` -> `watchOHLCV`, `watch_trades` -> `watchTrades`."""
    head, *rest = name.split("_")
    return head + "".join("OHLCV" if part == "ohlcv" else part.capitalize() for part in rest)


def parse_interval_h(value: Any) -> float:
    """A funding interval as ccxt writes it (`'8h'`, `'1h'`, `'30m'`) or a number of hours -> hours; NaN if unknown."""
    if value is None:
        return math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if value > 0 else math.nan
    match = _INTERVAL.match(str(value))
    if not match:
        return math.nan
    return float(match.group("n")) * _UNIT_HOURS[match.group("unit")]


def funding_interval_h(structure: Mapping[str, Any] | None, market: Mapping[str, Any] | None = None) -> float:
    """The interval a funding structure or ticker states itself, else its market's info states; NaN if neither.

    Looks at ccxt's `interval` (`'8h'`), then `info.fundingIntervalHour` (bybit tickers, hours),
    `info.fundingIntervalHours` (binance fundingInfo), `info.fundingInterval` (bybit markets, minutes), then the
    same fields in `market['info']`.
    """
    if structure:
        interval = parse_interval_h(structure.get("interval"))
        if math.isfinite(interval):
            return interval
        interval = _interval_from_info(structure.get("info"))
        if math.isfinite(interval):
            return interval
    if market:
        return _interval_from_info(market.get("info"))
    return math.nan


def _interval_from_info(info: Any) -> float:
    if not isinstance(info, Mapping):
        return math.nan
    for name, hours_per_unit in _INTERVAL_INFO_FIELDS:
        value = num(info.get(name))
        if math.isfinite(value) and value > 0:
            return value * hours_per_unit
    return math.nan


def _side(value: Any) -> int:
    if value == "buy":
        return 1
    if value == "sell":
        return -1
    return 0


def trades_to_records(
    trades: Sequence[Mapping[str, Any]], instrument: Instrument, recv_ts_ms: int | np.ndarray
) -> np.ndarray:
    """ccxt trade structures -> TRADES records; `recv_ts_ms` one receive time for all, or one per trade (an int64
    array: staged calls processed together).

    Parses e.g. (bybit, `fetch_trades` / `watch_trades`)::

        {"id": "9afd1288-b444-53f8-8e40-c2f99368ad22", "timestamp": 1707905515968,
         "symbol": "BTC/USDT:USDT", "side": "buy", "price": 51444.4, "amount": 0.972, "info": {...}}

    A trade without an id gets the hash of (timestamp, price, amount, side) so duplicates still match.
    Column at a time (the capture's hot path: one list per field, one numpy conversion per column when the
    values are plain numbers); a column holding anything else is read value by value with `num`/`int_ms`.
    """
    n = len(trades)
    out = schema.empty("trades", n)
    if not n:
        return out
    ts = times_ms([t.get("timestamp") for t in trades])
    prices = floats([t.get("price") for t in trades])
    amounts = floats([t.get("amount") for t in trades])
    costs = floats([t.get("cost") for t in trades])
    out["ts_ms"] = ts
    out["recv_ts_ms"] = recv_ts_ms
    out["instrument_id"] = instrument.id
    out["side"] = _sides([t.get("side") for t in trades])
    out["trade_id"] = _trade_ids(trades, ts)
    out["price"] = prices
    out["amount"] = instrument.base_amounts(amounts, prices)
    # ccxt's cost is quote units except for inverse contracts (base units there): those are USD per contract
    out["cost"] = amounts * instrument.contract_size if instrument.inverse else costs
    if instrument.is_contract:
        out["contracts"] = amounts
        out["contract_size"] = instrument.contract_size
    return out


_PLAIN_NUMBERS = frozenset((int, float))  # bool is a type of its own, so it is not among them
_SIDE_CODES = {"buy": 1, "sell": -1}


def _cost(value: Any) -> float:
    """`floats` of one cost: a plain number as float64 takes it (an integer beyond float64 raises, as there)."""
    return float(value) if type(value) in _PLAIN_NUMBERS else num(value)


def trade_rows(
    trades: Sequence[Mapping[str, Any]],
    values: Sequence[tuple[Any, Any, Any]],
    instrument: Instrument,
    recv_ts_ms: Sequence[int],
) -> list[tuple[Any, ...]]:
    """`trades_to_records` of trades as TRADES rows (tuples, `np.array(rows, schema.TRADES)` makes the records),
    from each trade's (timestamp, price, amount) as `validation.plain_trade_values` vouched for them (plain
    numbers, the time within int64 as a float) and its receive time. Plain Python: staged trades are a few a
    call, and numpy's fixed cost per column was more than their own work."""
    iid, contract, size, inverse = instrument.id, instrument.is_contract, instrument.contract_size, instrument.inverse
    nan = math.nan
    rows = []
    for trade, (stamp, price, amount), recv in zip(trades, values, recv_ts_ms, strict=True):
        ts = int(float(stamp))  # `times_ms`: through float64, truncated toward zero
        price, amount = float(price), float(amount)
        side = trade.get("side")
        try:
            side_code = _SIDE_CODES.get(side, 0)
        except TypeError:  # an unhashable side
            side_code = _side(side)
        trade_id = trade.get("id")
        if trade_id is None or trade_id == "":  # `_trade_ids`: an id made up of the trade's fields
            trade_id = f"{ts}:{trade.get('price')}:{trade.get('amount')}:{side}"
        if not contract:  # `Instrument.base_amounts`
            base = amount
        elif inverse:
            base = amount * size / price
        else:
            base = amount * size
        rows.append(
            (
                ts,
                recv,
                iid,
                side_code,
                b"",
                trade_id_to_int(trade_id),
                price,
                base,
                amount if contract else nan,
                size if contract else nan,
                amount * size if inverse else _cost(trade.get("cost")),
            )
        )
    return rows


def floats(values: list[Any]) -> np.ndarray:
    """`num` of each value as float64: one numpy conversion when all are plain numbers (the usual case)."""
    if set(map(type, values)) <= _PLAIN_NUMBERS:
        return np.array(values, dtype=np.float64)
    return np.array([num(v) for v in values], dtype=np.float64)


def times_ms(values: list[Any]) -> np.ndarray:
    """`int_ms` of each value as int64 (whole-column when all are plain finite numbers within int64)."""
    if set(map(type, values)) <= _PLAIN_NUMBERS:
        as_float = np.array(values, dtype=np.float64)
        if np.isfinite(as_float).all() and (np.abs(as_float) < 2.0**63).all():
            return as_float.astype(np.int64)  # truncates toward zero, like int(float(value))
    return np.array([int_ms(v) for v in values], dtype=np.int64)


def _sides(values: list[Any]) -> np.ndarray:
    try:
        return np.array([_SIDE_CODES.get(v, 0) for v in values], dtype=np.int8)
    except TypeError:  # an unhashable side: compared value by value
        return np.array([_side(v) for v in values], dtype=np.int8)


def _trade_ids(trades: Sequence[Mapping[str, Any]], ts: np.ndarray) -> np.ndarray:
    """`trade_id_to_int` of each trade's id (an id made up of its fields when it has none). Ids that are all
    decimal strings within int64 (binance, the simulator) convert in one pass."""
    ids = [t.get("id") for t in trades]
    try:
        if all(map(str.isdigit, ids)):  # TypeError on a non-string id
            return np.array(list(map(int, ids)), dtype=np.int64)  # OverflowError beyond int64
    except (TypeError, ValueError, OverflowError):
        pass
    out = np.empty(len(ids), dtype=np.int64)
    for i, trade_id in enumerate(ids):
        if trade_id is None or trade_id == "":
            trade = trades[i]
            trade_id = f"{ts[i]}:{trade.get('price')}:{trade.get('amount')}:{trade.get('side')}"
        out[i] = trade_id_to_int(trade_id)
    return out


def ticker_to_record(ticker: Mapping[str, Any], instrument: Instrument, recv_ts_ms: int) -> np.ndarray:
    """A ccxt ticker structure -> one TICKERS record (bid/ask sizes in base units).

    Parses e.g. (binance spot, `fetch_ticker` / `watch_ticker`)::

        {"symbol": "BTC/USDT", "timestamp": 1710328245391, "bid": 73369.83, "bidVolume": 6.27086,
         "ask": 73369.84, "askVolume": 0.03321, "last": 73369.84, "markPrice": None, "indexPrice": None}

    A ticker without a timestamp (bybit's REST ticker, hyperliquid's asset contexts) is stamped with the
    receive time: the venue did not say when, and the receive time is the best bound there is. A contract's
    sizes are contracts in ccxt: each side is converted at its own price (`Instrument.base_amounts`).
    """
    ts = int_ms(ticker.get("timestamp"))
    info = ticker.get("info") if isinstance(ticker.get("info"), Mapping) else {}
    mark = num(ticker.get("markPrice"))
    index = num(ticker.get("indexPrice"))
    if not math.isfinite(mark):
        mark = num(info.get("markPx"))  # hyperliquid asset context
    if not math.isfinite(index):
        index = num(info.get("oraclePx"))  # hyperliquid's oracle price is its index
    bid, ask = num(ticker.get("bid")), num(ticker.get("ask"))
    bid_volume, ask_volume = num(ticker.get("bidVolume")), num(ticker.get("askVolume"))
    contract = instrument.is_contract
    row = (
        ts if ts > 0 else recv_ts_ms,
        recv_ts_ms,
        instrument.id,
        b"",
        bid,
        ask,
        instrument.base_amounts(bid_volume, bid),
        instrument.base_amounts(ask_volume, ask),
        num(ticker.get("last")),
        mark,
        index,
        bid_volume if contract else math.nan,
        ask_volume if contract else math.nan,
        instrument.contract_size if contract else math.nan,
    )
    return np.array([row], dtype=schema.TICKERS)  # one step: tickers arrive one at a time, often


def ticker_rows(
    tickers: Sequence[Mapping[str, Any]],
    values: Sequence[tuple[Any, ...]],
    instrument: Instrument,
    recv_ts_ms: Sequence[int],
) -> list[tuple[Any, ...]]:
    """`ticker_to_record` of many tickers, as TICKERS rows (tuples, `np.array(rows, schema.TICKERS)` makes the
    records), from each ticker's `validation.TICKER_COLUMNS` values as `validation.plain_tickers` vouched for
    them (plain numbers or None, the time within int64) and its receive time. Plain Python: see
    `plain_tickers`."""
    iid, contract, size, inverse = instrument.id, instrument.is_contract, instrument.contract_size, instrument.inverse
    nan = math.nan
    rows = []
    for ticker, (stamp, bid, ask, last, mark, index, bid_volume, ask_volume), recv in zip(
        tickers, values, recv_ts_ms, strict=True
    ):
        number = math.nan if stamp is None else float(stamp)
        ts = int(number) if abs(number) < 2.0**63 else 0  # `int_ms` (NaN fails the test)
        bid = nan if bid is None else float(bid)
        ask = nan if ask is None else float(ask)
        bid_volume = nan if bid_volume is None else float(bid_volume)
        ask_volume = nan if ask_volume is None else float(ask_volume)
        if mark is None or index is None:  # hyperliquid's asset context: `ticker_to_record`'s reading
            info = ticker.get("info") if isinstance(ticker.get("info"), Mapping) else {}
            mark = num(info.get("markPx")) if mark is None else float(mark)
            index = num(info.get("oraclePx")) if index is None else float(index)
        if not contract:  # `Instrument.base_amounts`
            bid_size, ask_size = bid_volume, ask_volume
        elif inverse:
            bid_size, ask_size = bid_volume * size / bid, ask_volume * size / ask
        else:
            bid_size, ask_size = bid_volume * size, ask_volume * size
        rows.append(
            (
                ts if ts > 0 else recv,
                recv,
                iid,
                b"",
                bid,
                ask,
                bid_size,
                ask_size,
                nan if last is None else float(last),
                float(mark),
                float(index),
                bid_volume if contract else nan,
                ask_volume if contract else nan,
                size if contract else nan,
            )
        )
    return rows


def order_book_to_record(
    book: Mapping[str, Any], instrument: Instrument, recv_ts_ms: int, levels: int, updates: int = 1, rest: bool = False
) -> np.ndarray:
    """A ccxt order-book structure -> one ORDER_BOOK record: the top `levels` per side, sizes in base units.

    Parses e.g. (bybit linear `watch_order_book`, `orderbook.200.BTCUSDT`)::

        {"symbol": "BTC/USDT:USDT", "bids": [[65114.2, 5.974], [65114.1, 0.002], ...],
         "asks": [[65114.3, 9.06], ...], "timestamp": 1786310818129, "nonce": None}

    ccxt keeps a live book's sides sorted, best first; a contract's amounts are contracts (each level is
    converted at its own price, `Instrument.base_amounts`). A book without a timestamp is stamped with the
    receive time; `nonce` (the venue's update id where ccxt keeps one) is -1 when missing. Levels past the
    book's depth stay NaN. `rest`: the book is a `fetch_order_book` snapshot (`from_rest` = 1).
    """
    row = schema.empty("order_book", 1)
    ts = int_ms(book.get("timestamp"))
    row["ts_ms"] = ts if ts > 0 else recv_ts_ms
    row["recv_ts_ms"] = recv_ts_ms
    row["instrument_id"] = instrument.id
    row["updates"] = updates
    row["from_rest"] = int(rest)
    nonce = num(book.get("nonce"))
    row["nonce"] = int(nonce) if math.isfinite(nonce) else -1
    for side in ("bid", "ask"):
        rows = list(book.get(f"{side}s") or [])[:levels]
        if not rows:
            continue
        values = np.array([(num(r[0]), num(r[1])) for r in rows], dtype=np.float64)
        row[f"{side}_price"][0, : len(rows)] = values[:, 0]
        row[f"{side}_size"][0, : len(rows)] = instrument.base_amounts(values[:, 1], values[:, 0])
    return row


def open_interest_to_record(structure: Mapping[str, Any], instrument: Instrument, recv_ts_ms: int) -> np.ndarray:
    """A ccxt open-interest structure -> one OPEN_INTEREST record.

    Parses e.g. (bybit linear `fetch_open_interest`, the recorded response in ccxt's own tests)::

        {"symbol": "BTC/USDT:USDT", "openInterestAmount": 62129.455, "openInterestValue": None,
         "timestamp": 1739725200000, "info": {...}}

    `openInterestAmount` counts contracts (okx BTC-USDT-SWAP: 0.01 BTC each); `amount` is base units for a
    linear contract (contracts x contract size) and NaN for an inverse one (its value in USD is the figure:
    bybit inverse gives `openInterestValue` only). Values the venue does not give stay NaN; a structure
    without a timestamp (hyperliquid) is stamped with the receive time.
    """
    row = schema.empty("open_interest", 1)
    ts = int_ms(structure.get("timestamp"))
    row["ts_ms"] = ts if ts > 0 else recv_ts_ms
    row["recv_ts_ms"] = recv_ts_ms
    row["instrument_id"] = instrument.id
    contracts = num(structure.get("openInterestAmount"))
    row["contracts"] = contracts
    row["amount"] = math.nan if instrument.inverse else instrument.base_amounts(contracts, math.nan)
    row["value"] = num(structure.get("openInterestValue"))
    row["contract_size"] = instrument.contract_size
    return row


def liquidation_id(ts_ms: int, position_side: int, price: Any, contracts: Any) -> int:
    """The identity of a liquidation print (venues give none): a stable hash of what it says, the liquidated
    side as +1/-1 (not the venue's word for it), so a replay of landed prints finds the same ids."""
    return trade_id_to_int(f"liq:{ts_ms}:{position_side}:{num(price)!r}:{num(contracts)!r}")


def liquidations_to_records(
    items: Sequence[Mapping[str, Any]], instrument: Instrument, recv_ts_ms: int, side_means: str | None
) -> np.ndarray:
    """ccxt liquidation structures -> LIQUIDATIONS records.

    Parses e.g. (binance USD-M `watch_liquidations`, `<id>@forceOrder`; bybit `allLiquidation.<id>` alike)::

        {"symbol": "BTC/USDT:USDT", "contracts": 1.437, "contractSize": 1.0, "price": 34959.7,
         "side": "buy", "baseValue": 1.437, "quoteValue": 50237.09, "timestamp": 1698871323059, "info": {...}}

    `side_means` is the venue's `VenueFacts.liquidation_side`: "order" (a sell order liquidates a long) or
    "position" (bybit: `buy` is a liquidated long); `position_side` is +1 for a liquidated long, -1 for a
    short, 0 unknown (no side, or a venue whose meaning is not known). Sizes come from `contracts` (inverse
    contracts converted at the print's price: ccxt's baseValue would count their USD as base units); ccxt's
    baseValue/quoteValue are used only without it.
    """
    out = schema.empty("liquidations", len(items))
    for i, item in enumerate(items):
        ts = int_ms(item.get("timestamp"))
        price = num(item.get("price"))
        contracts = num(item.get("contracts"))
        side = item.get("side")
        order_side = _side(side.lower() if isinstance(side, str) else side)
        out["ts_ms"][i] = ts
        position_side = {"order": -order_side, "position": order_side}.get(side_means or "", 0)
        out["position_side"][i] = position_side
        out["liquidation_id"][i] = liquidation_id(ts, position_side, price, contracts)
        out["price"][i] = price
        out["contracts"][i] = contracts
        if math.isfinite(contracts):
            amount = float(instrument.base_amounts(contracts, price))
        else:
            amount = num(item.get("baseValue"))
        value = amount * price if math.isfinite(amount) else num(item.get("quoteValue"))
        out["amount"][i] = amount
        out["value"][i] = value
    out["recv_ts_ms"] = recv_ts_ms
    out["instrument_id"] = instrument.id
    out["contract_size"] = instrument.contract_size
    return out


def ohlcv_to_records(
    candles: Sequence[Sequence[Any]],
    instrument: Instrument,
    recv_ts_ms: int,
    timeframe_s: int,
    *,
    volume_in_contracts: bool = False,
) -> np.ndarray:
    """ccxt OHLCV arrays -> OHLCV records (volume in base units, as ccxt gives it).

    Parses e.g. (binance spot 1h, `fetch_ohlcv` / `watch_ohlcv`)::

        [[1706630400000, 43519.34, 43936, 43171, 43488.71, 20.55495], ...]

    A short or malformed candle becomes a row of NaN prices (timestamp 0 if unusable) for the validator.
    `volume_in_contracts`: the source counts contracts (binance COIN-M websocket klines): converted with the
    close, the one price a candle has for all of its trades (exact base volume comes from REST candles).
    """
    if len(candles) == 1 and (one := _one_candle(candles[0], instrument, recv_ts_ms, timeframe_s)) is not None:
        return one if not volume_in_contracts else _volume_from_contracts(one, instrument)
    out = schema.empty("ohlcv", len(candles))
    if not len(candles):
        return out
    try:  # the usual case, well-formed rows: one vectorized conversion (None becomes NaN)
        values = np.asarray(candles, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] < 6:
            raise ValueError("ragged")
        values = values[:, :6]
    except (TypeError, ValueError):
        values = np.full((len(candles), 6), np.nan)
        for i, candle in enumerate(candles):
            for j in range(min(6, len(candle) if isinstance(candle, Sequence) else 0)):
                values[i, j] = num(candle[j])
    ts = values[:, 0]
    out["ts_ms"] = np.where(np.isfinite(ts), ts, 0).astype(np.int64)
    out["recv_ts_ms"] = recv_ts_ms
    out["instrument_id"] = instrument.id
    out["timeframe_s"] = timeframe_s
    out["open"] = values[:, 1]
    out["high"] = values[:, 2]
    out["low"] = values[:, 3]
    out["close"] = values[:, 4]
    out["volume"] = instrument.base_amounts(values[:, 5], values[:, 4]) if volume_in_contracts else values[:, 5]
    return out


def _one_candle(candle: Any, instrument: Instrument, recv_ts_ms: int, timeframe_s: int) -> np.ndarray | None:
    """The record of one well-formed candle of plain numbers, as the vectorized path makes it, in one step (a
    closed candle comes one a minute, and a dozen whole-array steps for one row cost more than its parse);
    None for anything else."""
    if type(candle) is not list or len(candle) < 6 or not set(map(type, candle[:6])) <= _PLAIN_NUMBERS:
        return None
    try:
        ts, o, h, low, c, volume = (float(v) for v in candle[:6])
    except OverflowError:  # an integer beyond float64: the vectorized path says so
        return None
    if not abs(ts) < 2.0**63:  # NaN, inf, beyond int64: the vectorized path decides
        return None
    row = (int(ts), recv_ts_ms, instrument.id, timeframe_s, o, h, low, c, volume, math.nan, math.nan, math.nan)
    return np.array([row], dtype=schema.OHLCV)


def _volume_from_contracts(records: np.ndarray, instrument: Instrument) -> np.ndarray:
    records["volume"] = instrument.base_amounts(records["volume"], records["close"])
    return records


def funding_record(
    instrument: Instrument,
    *,
    ts_ms: int,
    recv_ts_ms: int,
    funding_ts_ms: int,
    funding_rate: float,
    interval_h: float,
    next_funding_rate: float = math.nan,
    mark_price: float = math.nan,
    index_price: float = math.nan,
    is_settled: bool = False,
) -> np.ndarray:
    """One FUNDING record from already-extracted values (the shared tail of the funding normalizers)."""
    row = (
        ts_ms if ts_ms > 0 else recv_ts_ms,
        recv_ts_ms,
        instrument.id,
        1 if is_settled else 0,
        b"",
        funding_ts_ms,
        funding_rate,
        next_funding_rate,
        interval_h,
        mark_price,
        index_price,
    )
    return np.array([row], dtype=schema.FUNDING)


@dataclass(frozen=True)
class FundingSnapshot:
    """One streamed funding value as its structure states it, before the interval in force is decided.

    Built by `from_funding_rate`, `from_mark_price` or `from_ticker` (one per funding channel, each showing
    the payload it reads); `intervals.streamed_interval` decides the interval, then `to_record` writes the row.
    """

    funding_rate: float
    ts_ms: int  # the structure's `timestamp`; 0 when it has none (the receive time stands in)
    settlement_ms: int  # the settlement it is for, as stated; 0 when not stated
    stated_interval_h: float  # the interval the structure states itself (`funding_interval_h`); NaN if none
    next_funding_rate: float = math.nan
    mark_price: float = math.nan
    index_price: float = math.nan
    is_settled: bool = False
    names_rate: bool = True  # False when the rate field is missing or blank (then the value is quarantined)
    event_ms: int = 0  # binance's event time `E`: the row's time when `timestamp` is missing
    settles_on_grid: bool = False  # names no settlement (hyperliquid): the next interval boundary after ts is it

    @classmethod
    def from_funding_rate(cls, rate: Mapping[str, Any]) -> FundingSnapshot:
        """A ccxt funding-rate structure (`fetch_funding_rate`, `watch_funding_rate`).

        Parses e.g. (bybit `fetch_funding_rate`)::

            {"symbol": "BTC/USDT:USDT", "timestamp": 1730730080834, "fundingRate": 0.0001,
             "fundingTimestamp": 1730736000000, "nextFundingRate": None, "markPrice": 68591.46,
             "indexPrice": 68599.9, "interval": "8h", "info": {...}}

        `info["is_settled"] is True` (fundarb's replays of settled history) makes it a settled row.
        """
        info = rate.get("info") if isinstance(rate.get("info"), Mapping) else {}
        value = rate.get("fundingRate")
        return cls(
            funding_rate=num(value),
            names_rate=value not in (None, ""),
            ts_ms=int_ms(rate.get("timestamp")),
            settlement_ms=int_ms(rate.get("fundingTimestamp")),
            stated_interval_h=funding_interval_h(rate),
            next_funding_rate=num(rate.get("nextFundingRate")),
            mark_price=num(rate.get("markPrice")),
            index_price=num(rate.get("indexPrice")),
            is_settled=info.get("is_settled") is True,  # a replay of settled history says so
        )

    @classmethod
    def from_mark_price(cls, ticker: Mapping[str, Any]) -> FundingSnapshot:
        """A binance `watch_mark_price` ticker (markPriceUpdate in `info`).

        Parses e.g.::

            {"symbol": "BTC/USDT:USDT", "timestamp": 1562305380000, "markPrice": 11794.15, "indexPrice": 11784.62,
             "info": {"e": "markPriceUpdate", "E": 1562305380000, "s": "BTCUSDT", "p": "11794.15000000",
                      "i": "11784.62659091", "P": "11784.25641265", "r": "0.00038167", "T": 1562306400000}}
        """
        info = ticker.get("info") if isinstance(ticker.get("info"), Mapping) else {}
        mark = num(ticker.get("markPrice"))
        index = num(ticker.get("indexPrice"))
        value = info.get("r")
        return cls(
            funding_rate=num(value),
            names_rate=value not in (None, ""),
            ts_ms=int_ms(ticker.get("timestamp")),
            event_ms=int_ms(info.get("E")),
            settlement_ms=int_ms(info.get("T")),
            stated_interval_h=funding_interval_h(ticker),
            mark_price=mark if math.isfinite(mark) else num(info.get("p")),
            index_price=index if math.isfinite(index) else num(info.get("i")),
        )

    @classmethod
    def from_ticker(cls, ticker: Mapping[str, Any]) -> FundingSnapshot:
        """A ticker that carries funding in `info` (bybit, hyperliquid `watch_ticker`).

        Parses e.g. (bybit linear ticker)::

            {"symbol": "BTC/USDT:USDT", "timestamp": 1707905515968, "markPrice": 51444.4, "indexPrice": 51469.95,
             "info": {"fundingRate": "-0.00046295", "nextFundingTime": "1707926400000", "fundingIntervalHour": "8"}}

        or (hyperliquid asset context; it names no settlement time, so the next multiple of the interval is it)::

            {"symbol": "BTC/USDC:USDC", "timestamp": None,
             "info": {"funding": "0.0000125", "markPx": "14.3161", "oraclePx": "14.32", "premium": "0.0003"}}
        """
        info = ticker.get("info") if isinstance(ticker.get("info"), Mapping) else {}
        bybit = "fundingRate" in info
        mark = num(ticker.get("markPrice"))
        index = num(ticker.get("indexPrice"))
        value = info.get("fundingRate") if bybit else info.get("funding")
        return cls(
            funding_rate=num(value),
            names_rate=value not in (None, ""),
            ts_ms=int_ms(ticker.get("timestamp")),
            settlement_ms=int_ms(info.get("nextFundingTime")) if bybit else 0,
            settles_on_grid=not bybit,
            stated_interval_h=funding_interval_h(ticker),
            mark_price=mark if math.isfinite(mark) else num(info.get("markPx") or info.get("markPrice")),
            index_price=index if math.isfinite(index) else num(info.get("oraclePx") or info.get("indexPrice")),
        )

    def to_record(self, instrument: Instrument, recv_ts_ms: int, interval_h: float) -> np.ndarray:
        """One FUNDING record carrying `interval_h`, the interval decided for it."""
        settlement = self.settlement_ms
        if self.settles_on_grid:
            settlement = next_settlement_ms(self.ts_ms or recv_ts_ms, interval_h)
        return funding_record(
            instrument,
            is_settled=self.is_settled,
            ts_ms=self.ts_ms or self.event_ms,
            recv_ts_ms=recv_ts_ms,
            funding_ts_ms=settlement,
            funding_rate=self.funding_rate,
            next_funding_rate=self.next_funding_rate,
            interval_h=interval_h,
            mark_price=self.mark_price,
            index_price=self.index_price,
        )


# funding channel (`Feed.funding_mode`) -> how its structure is read; funding_rate and poll: ccxt's own structure
_SNAPSHOT_BY_MODE = {"mark_price": FundingSnapshot.from_mark_price, "ticker": FundingSnapshot.from_ticker}


def funding_snapshot(structure: Mapping[str, Any], mode: str) -> FundingSnapshot | None:
    """What a funding channel's structure states (mode: mark_price | ticker | funding_rate | poll); None when
    it names no rate at all (the caller quarantines it)."""
    snapshot = _SNAPSHOT_BY_MODE.get(mode, FundingSnapshot.from_funding_rate)(structure)
    return snapshot if snapshot.names_rate else None


def funding_rate_to_record(
    rate: Mapping[str, Any], instrument: Instrument, recv_ts_ms: int, interval_h: float
) -> np.ndarray:
    """A ccxt funding-rate structure (`fetch_funding_rate`, `watch_funding_rate`) -> one FUNDING record."""
    return FundingSnapshot.from_funding_rate(rate).to_record(instrument, recv_ts_ms, interval_h)


def mark_price_to_record(
    ticker: Mapping[str, Any], instrument: Instrument, recv_ts_ms: int, interval_h: float
) -> np.ndarray:
    """A binance `watch_mark_price` ticker (markPriceUpdate in `info`) -> one FUNDING record."""
    return FundingSnapshot.from_mark_price(ticker).to_record(instrument, recv_ts_ms, interval_h)


def ticker_to_funding_record(
    ticker: Mapping[str, Any], instrument: Instrument, recv_ts_ms: int, interval_h: float
) -> np.ndarray:
    """A ticker that carries funding in `info` (bybit, hyperliquid `watch_ticker`) -> one FUNDING record."""
    return FundingSnapshot.from_ticker(ticker).to_record(instrument, recv_ts_ms, interval_h)


def next_settlement_ms(ts_ms: int, interval_h: float) -> int:
    """The first settlement strictly after `ts_ms` on a UTC grid of `interval_h` hours; 0 when unknown."""
    if not (math.isfinite(interval_h) and interval_h > 0):
        return 0
    step = int(round(interval_h * HOUR_MS))
    return (int(ts_ms) // step + 1) * step


def funding_history_to_records(
    rows: Sequence[Mapping[str, Any]], instrument: Instrument, recv_ts_ms: int, intervals_h: Sequence[float]
) -> np.ndarray:
    """ccxt funding-rate-history structures (`fetch_funding_rate_history`) -> settled FUNDING records.

    Parses e.g. (okx)::

        [{"symbol": "BTC/USDT:USDT", "fundingRate": 0.0001, "timestamp": 1706601600000,
          "datetime": "2024-01-30T08:00:00.000Z", "info": {"fundingTime": "1706601600000", ...}}, ...]

    `intervals_h[i]` is the interval in force for row i (the caller resolves it). ts_ms = funding_ts_ms =
    the settlement time: a settled rate is known when it settles.
    """
    out = schema.empty("funding", len(rows))
    if not len(rows):
        return out
    ts = np.array([int_ms(row.get("timestamp")) for row in rows], dtype=np.int64)
    out["ts_ms"] = ts
    out["recv_ts_ms"] = recv_ts_ms
    out["instrument_id"] = instrument.id
    out["is_settled"] = 1
    out["funding_ts_ms"] = ts
    out["funding_rate"] = [num(row.get("fundingRate")) for row in rows]
    out["interval_h"] = np.asarray(intervals_h, dtype=np.float64)
    out["mark_price"] = [num((row.get("info") or {}).get("markPrice")) for row in rows]
    return out
