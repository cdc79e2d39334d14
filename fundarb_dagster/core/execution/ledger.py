"""What the trader did and what the venue booked, as records of the execution streams, landed atomically.

Streams (dtypes in `core/schema.py`): `orders` (every state of every order, the intent first), `fills`,
`positions` (pair legs), `balances`, `funding_payments`. The `Ledger` buffers records per stream and lands
them with `core.landing.write_stream` (temporary file, fsync, rename): one file per stream and hour touched
per flush, named `<writer>-<seq>` with `seq` continuing after the writer's files already landed, so names
never repeat across restarts.

Crash safety: an order's intent is landed before it is sent (`flush("orders")` is the write-ahead), so after
a SIGKILL the trader knows every client id it may have sent and asks the venue about each. Everything else the
venue confirmed (fills, final statuses, funding) is fetched again on restart; what was already landed is read
back (`landed_keys`) and not landed twice.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from .. import landing, schema
from ..schema import OrderStatus
from .machine import LegOrder
from .sizing import LegMarket

STATUS_CODES: dict[str, int] = {s.name.lower(): int(s) for s in OrderStatus}
STATUS_NAMES: dict[int, str] = {v: k for k, v in STATUS_CODES.items()}


def text(value: Any, width: int) -> bytes:
    """A fixed-width ASCII field: non-ASCII replaced, cut to the width."""
    return ("" if value is None else str(value)).encode("ascii", "replace")[:width]


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _width(stream: str, field: str) -> int:
    return schema.dtype_of(stream)[field].itemsize


def _put(rec: np.void, stream: str, values: Mapping[str, Any]) -> None:
    for name, value in values.items():
        kind = rec.dtype[name].kind
        rec[name] = text(value, _width(stream, name)) if kind == "S" else value


def order_record(
    order: LegOrder,
    *,
    pair: str,
    leg: LegMarket,
    ts_ms: int,
    recv_ts_ms: int,
    order_id: str = "",
    average: float = math.nan,
    fee_usd: float = math.nan,
    ref_mid: float = math.nan,
    reason: str = "",
    status: str | None = None,
) -> np.ndarray:
    rec = schema.empty("orders", 1)
    _put(
        rec[0],
        "orders",
        {
            "ts_ms": ts_ms,
            "recv_ts_ms": recv_ts_ms,
            "amount": order.amount,
            "filled": order.filled,
            "average": average,
            "fee_usd": fee_usd,
            "ref_mid": ref_mid,
            "leg": order.leg,
            "side": order.side,
            "purpose": int(order.purpose),
            "status": STATUS_CODES[status or order.status],
            "reduce_only": int(order.reduce_only),
            "order_type": 1,
            "attempt": order.attempt,
            "exchange": leg.exchange,
            "symbol": leg.symbol,
            "client_order_id": order.client_id,
            "order_id": order_id,
            "decision": order.decision,
            "pair": pair,
            "reason": reason,
        },
    )
    return rec


def fill_record(
    trade: Mapping[str, Any],
    *,
    pair: str,
    leg_index: int,
    leg: LegMarket,
    client_order_id: str,
    ref_mid: float,
    recv_ts_ms: int,
) -> np.ndarray:
    """One ccxt trade structure of ours (amount in the venue's unit) as a `fills` record (base units)."""
    fee = trade.get("fee") or {}
    fee_cost = _num(fee.get("cost"))
    currency = fee.get("currency") or ""
    price = _num(trade.get("price"))
    amount = leg.to_base(_num(trade.get("amount")))
    # a fee charged in the base (some spot venues) is worth its amount at the fill price
    fee_usd = fee_cost * price if currency == leg.base else fee_cost
    rec = schema.empty("fills", 1)
    _put(
        rec[0],
        "fills",
        {
            "ts_ms": int(trade["timestamp"]),
            "recv_ts_ms": recv_ts_ms,
            "amount": amount,
            "price": price,
            "fee": fee_cost,
            "fee_usd": fee_usd,
            "ref_mid": ref_mid,
            "leg": leg_index,
            "side": 1 if trade.get("side") == "buy" else -1,
            "taker": 0 if trade.get("takerOrMaker") == "maker" else 1,
            "exchange": leg.exchange,
            "symbol": leg.symbol,
            "trade_id": trade.get("id") or "",
            "order_id": trade.get("order") or "",
            "client_order_id": client_order_id,
            "pair": pair,
            "fee_currency": currency,
        },
    )
    return rec


def position_record(values: Mapping[str, Any]) -> np.ndarray:
    rec = schema.empty("positions", 1)
    _put(rec[0], "positions", values)
    return rec


def balance_records(
    exchange: str, balance: Mapping[str, Any], ts_ms: int, recv_ts_ms: int, equity_usd: float = math.nan
) -> np.ndarray:
    """ccxt's balance structure (`total`, `free`, `used` per currency) -> one record per currency held."""
    totals = balance.get("total") or {}
    codes = sorted(c for c, v in totals.items() if v)
    out = schema.empty("balances", len(codes))
    for k, code in enumerate(codes):
        _put(
            out[k],
            "balances",
            {
                "ts_ms": ts_ms,
                "recv_ts_ms": recv_ts_ms,
                "total": _num(totals.get(code)),
                "free": _num((balance.get("free") or {}).get(code)),
                "used": _num((balance.get("used") or {}).get(code)),
                "equity_usd": equity_usd,
                "exchange": exchange,
                "currency": code,
            },
        )
    return out


def funding_record(exchange: str, item: Mapping[str, Any], recv_ts_ms: int) -> np.ndarray:
    """ccxt's funding-history structure (symbol, code, timestamp, id, amount) -> a `funding_payments` record."""
    rec = schema.empty("funding_payments", 1)
    _put(
        rec[0],
        "funding_payments",
        {
            "ts_ms": int(item["timestamp"]),
            "recv_ts_ms": recv_ts_ms,
            "amount": _num(item.get("amount")),
            "exchange": exchange,
            "symbol": item.get("symbol") or "",
            "currency": item.get("code") or "",
            "funding_id": item.get("id") or "",
        },
    )
    return rec


class Ledger:
    """Buffered records per stream, landed with `write_stream` under one writer name (see the module doc)."""

    def __init__(self, data_dir: str | os.PathLike[str], writer: str) -> None:
        self.data_dir = Path(data_dir)
        self.writer = writer
        landing.remove_stale_temporaries(self.data_dir, writer)
        self.seq = landing.next_seq(self.data_dir, writer)
        self.pending: dict[str, list[np.ndarray]] = {s: [] for s in schema.EXECUTION_STREAMS}
        self.landed: dict[str, int] = dict.fromkeys(schema.EXECUTION_STREAMS, 0)
        self.files = 0

    def add(self, stream: str, records: np.ndarray) -> None:
        if len(records):
            self.pending[stream].append(records)

    def waiting(self) -> int:
        return sum(len(r) for parts in self.pending.values() for r in parts)

    def flush(self, *streams: str) -> int:
        """Land the buffered records of `streams` (all when none named); returns the records landed."""
        total = 0
        for stream in streams or schema.EXECUTION_STREAMS:
            parts = self.pending[stream]
            if not parts:
                continue
            records = np.concatenate(parts)
            table = schema.to_arrow(stream, records)
            paths = landing.write_stream(self.data_dir, stream, table, self.writer, self.seq)
            self.seq += 1
            self.files += len(paths)
            self.pending[stream] = []
            self.landed[stream] += len(records)
            total += len(records)
        return total


def landed_files(data_dir: str | os.PathLike[str], stream: str, writer: str) -> list[Path]:
    root = landing.landing_root(data_dir) / stream
    return sorted(root.glob(f"date=*/hour=*/{writer}-*.parquet")) if root.exists() else []


def read_landed(data_dir: str | os.PathLike[str], stream: str, writer: str) -> np.ndarray:
    """Every record `writer` landed in `stream`, in landing order (file sequence, then row)."""
    files = landed_files(data_dir, stream, writer)
    files.sort(key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    parts = [schema.from_arrow(stream, pq.read_table(f)) for f in files]
    return np.concatenate(parts) if parts else schema.empty(stream)


def decoded(records: np.ndarray, field: str) -> list[str]:
    return [v.decode("ascii") for v in records[field].tolist()]


def landed_keys(records: np.ndarray, fields: Iterable[str]) -> set[tuple[Any, ...]]:
    """The keys already landed (e.g. fills by exchange, symbol, trade_id), to land each one once."""
    columns = [decoded(records, f) if records.dtype[f].kind == "S" else records[f].tolist() for f in fields]
    return set(zip(*columns, strict=True)) if columns else set()
