"""Records of a recording -> ccxt's unified structures (trade, ticker, OHLCV row, funding rate, history)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ...units import HOUR_MS


def iso8601(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ms) % 1000:03d}Z"


def _num(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _as_counted(r: np.void, counted: str, base: str) -> float:
    """What ccxt's structure carries: the venue's count (contracts) where it was landed, else base units
    (spot, and parsed files that hold base units only)."""
    contracts = float(r[counted])
    return contracts if math.isfinite(contracts) else float(r[base])


def trade(symbol: str, r: np.void) -> dict[str, Any]:
    ts, price, side = int(r["ts_ms"]), float(r["price"]), int(r["side"])
    amount = _as_counted(r, "contracts", "amount")
    return {
        "info": {"trade_id": int(r["trade_id"]), "side": side},
        "id": str(int(r["trade_id"])),
        "timestamp": ts,
        "datetime": iso8601(ts),
        "symbol": symbol,
        "order": None,
        "type": None,
        "side": "buy" if side > 0 else "sell" if side < 0 else None,
        "takerOrMaker": "taker",
        "price": price,
        "amount": amount,
        "cost": price * float(r["amount"]),
        "fee": None,
        "fees": [],
    }


def ticker(symbol: str, r: np.void) -> dict[str, Any]:
    ts = int(r["ts_ms"])
    bid, ask = _num(r["bid"]), _num(r["ask"])
    return {
        "symbol": symbol,
        "timestamp": ts,
        "datetime": iso8601(ts),
        "high": None,
        "low": None,
        "bid": bid,
        "bidVolume": _num(_as_counted(r, "bid_contracts", "bid_size")),
        "ask": ask,
        "askVolume": _num(_as_counted(r, "ask_contracts", "ask_size")),
        "vwap": None,
        "open": None,
        "close": _num(r["last"]),
        "last": _num(r["last"]),
        "previousClose": None,
        "change": None,
        "percentage": None,
        "average": (bid + ask) / 2 if bid is not None and ask is not None else None,
        "baseVolume": None,
        "quoteVolume": None,
        "markPrice": _num(r["mark_price"]),
        "indexPrice": _num(r["index_price"]),
        "info": {"recv_ts_ms": int(r["recv_ts_ms"])},
    }


def candle(r: np.void) -> list[float]:
    volume = float(r["volume"])
    return [
        int(r["ts_ms"]),
        float(r["open"]),
        float(r["high"]),
        float(r["low"]),
        float(r["close"]),
        None if math.isnan(volume) else volume,
    ]


def funding_rate(symbol: str, r: np.void) -> dict[str, Any]:
    ts, funding_ts = int(r["ts_ms"]), int(r["funding_ts_ms"])
    interval_h = _num(r["interval_h"])
    settled = bool(r["is_settled"])
    next_ts = funding_ts + int(interval_h * HOUR_MS) if interval_h and settled else None
    return {
        # `is_settled` tells consumers whether this is a final settled rate (fixtures, archives) or a
        # predicted one as a venue streams it (landing replays of live captures).
        "info": {"is_settled": settled, "interval_h": interval_h},
        "symbol": symbol,
        "markPrice": _num(r["mark_price"]),
        "indexPrice": _num(r["index_price"]),
        "interestRate": None,
        "estimatedSettlePrice": None,
        "timestamp": ts,
        "datetime": iso8601(ts),
        "fundingRate": float(r["funding_rate"]),
        "fundingTimestamp": funding_ts,
        "fundingDatetime": iso8601(funding_ts),
        "nextFundingRate": _num(r["next_funding_rate"]),
        "nextFundingTimestamp": next_ts,
        "nextFundingDatetime": iso8601(next_ts),
        "previousFundingRate": float(r["funding_rate"]) if settled else None,
        "previousFundingTimestamp": funding_ts if settled else None,
        "previousFundingDatetime": iso8601(funding_ts) if settled else None,
        "interval": f"{interval_h:g}h" if interval_h else None,
    }


def funding_history_entry(symbol: str, r: np.void) -> dict[str, Any]:
    funding_ts = int(r["funding_ts_ms"])
    return {
        "info": {"interval_h": _num(r["interval_h"]), "mark_price": _num(r["mark_price"])},
        "symbol": symbol,
        "fundingRate": float(r["funding_rate"]),
        "timestamp": funding_ts,
        "datetime": iso8601(funding_ts),
    }


def open_interest(symbol: str, r: np.void) -> dict[str, Any]:
    """A landed open-interest record -> ccxt's open-interest structure (contracts, value as the venue gave)."""
    ts = int(r["ts_ms"])
    return {"symbol": symbol, "openInterestAmount": _num(r["contracts"]), "openInterestValue": _num(r["value"]),
            "baseVolume": None, "quoteVolume": None, "timestamp": ts, "datetime": iso8601(ts), "info": {}}  # fmt: skip


def liquidation(symbol: str, r: np.void) -> dict[str, Any]:
    """A landed liquidation print -> ccxt's liquidation structure, its `side` the liquidated position's (the
    replay states `liquidation_side = "position"`: buy for a long)."""
    ts, side = int(r["ts_ms"]), int(r["position_side"])
    return {
        "info": {"liquidation_id": int(r["liquidation_id"])},
        "symbol": symbol,
        "contracts": _num(r["contracts"]),
        "contractSize": _num(r["contract_size"]),
        "price": float(r["price"]),
        "side": "buy" if side > 0 else "sell" if side < 0 else None,
        "baseValue": _num(r["amount"]),
        "quoteValue": _num(r["value"]),
        "timestamp": ts,
        "datetime": iso8601(ts),
    }
