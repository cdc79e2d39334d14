"""Injected faults: when they happen (deterministic per seed, in market time), what they send, and their count.

`sim.faults`: a disconnect every `disconnect_every_s` per (stream, symbol) (a per-subscription offset) raises
`ccxt.NetworkError` once after all earlier events were delivered; the next call re-subscribes at the
then-current time and events in between are lost. A broken book sequence every `sequence_every_s` per
order_book subscription does the same with `ccxt.InvalidNonce` (ccxt's error when a venue's update id
skips), on a whole second: the lost update is a change of the book, so the book after it is newer. Stale
periods: `stale_every_s` live, then `stale_duration_s` silent, repeating (per-subscription offset): events
inside a silent stretch are never sent.
`malformed_rate`, `duplicate_rate`, `out_of_order_rate` are probabilities per message: a malformed copy (extra
message: price:nan, price:negative, missing:<field>, timestamp:future; always one a consumer can tell is bad,
so a funding rate is never just made negative, its mark price is), a duplicate (the same trade re-sent, or
the same ticker/funding/candle), out-of-order (two adjacent trades sent swapped, the same pairs whatever the
batching; for the other streams the previous message re-sent after a newer one, for candles one closed by an
earlier call). Each is counted once, when sent, and the Feed reports each as one event of its kind.
Malformed trade copies carry ids `hour * TRADE_ID_HOUR + MALFORMED_ID_OFFSET + k`, never a real id.

Private API faults (`order_<kind>_rate`, per create_order, at most one each, keyed by the order's sequence
number): `reject` (the venue refuses it: nothing is placed), `timeout` (placed, the answer never arrives:
`ccxt.RequestTimeout`), `never_fills` (placed, rests unfilled until canceled, even a market order), and
`disconnect` (placed, then `ccxt.NetworkError`; the private streams break and lose what happens until they
are watched again). Counted in `injected[(kind, "orders", symbol)]`.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

import numpy as np

from ...config import FaultConfig
from ...units import DAY_MS, SECOND_MS
from .draws import iso, keyed_rng, keyed_unit
from .markets import TRADE_ID_HOUR, Chunk, Market

MALFORMED_ID_OFFSET = 5_000_000
FUTURE_SKEW_MS = 365 * DAY_MS
ORDERS_CODE = 8  # the random-stream kind of private API faults
STREAM_CODE = {"trades": 1, "tickers": 2, "funding": 3, "ohlcv": 4, "order_book": 5, "open_interest": 6,
               "liquidations": 7}  # fmt: skip
BAD_REASONS = ("price:nan", "price:negative", "missing", "timestamp:future")
MISSING_FIELD = {"trades": "amount", "tickers": "bid", "funding": "fundingRate", "ohlcv": "close", "order_book": "bids"}

Stale = tuple[int, int, int]  # (period, offset, duration) of a subscription's stale windows, ms


class FaultPlan:
    """The fault schedule and message corruption of one exchange object, and the count of what it sent.

    `injected[(kind, stream, symbol)]`, kind in disconnect, sequence, stale, malformed, duplicate, out_of_order;
    `malformed_kinds[(reason, stream, symbol)]` splits malformed by reason.
    """

    def __init__(self, faults: FaultConfig, seed: int) -> None:
        self.faults = faults
        self.seed = seed
        self.on = bool(faults.malformed_rate or faults.duplicate_rate or faults.out_of_order_rate)
        self.injected: Counter = Counter()
        self.malformed_kinds: Counter = Counter()

    # -- schedule -------------------------------------------------------------------------------------
    def key(self, stream: str, m: Market) -> tuple[int, int, int]:
        return (self.seed, STREAM_CODE[stream], m.key)

    def _period(self, every_s: float, salt: int, stream: str, m: Market) -> tuple[int, int] | None:
        if every_s <= 0:
            return None
        every = max(1, int(every_s * 1000))
        offset = int(keyed_unit(*self.key(stream, m), salt) * every)
        return every, offset

    def next_disconnect(self, stream: str, m: Market, after: int) -> int | None:
        period = self._period(self.faults.disconnect_every_s, 101, stream, m)
        if period is None:
            return None
        every, offset = period
        return ((after - offset) // every + 1) * every + offset

    def next_break(self, stream: str, m: Market, after: int) -> tuple[int | None, str]:
        """The next time after `after` a subscription breaks, and how: `disconnect`, or `sequence` (books only)."""
        disconnect = self.next_disconnect(stream, m, after)
        period = self._period(self.faults.sequence_every_s, 303, stream, m) if stream == "order_book" else None
        if period is not None:
            every, offset = period
            # A broken sequence is a lost book update, so it falls on a second, when the simulated book changes:
            # the book served after it is newer than the last one streamed (a greater nonce and timestamp), as on
            # a venue, where the update that broke the sequence is newer than the last good one. The first
            # whole second at or after a scheduled time, of the first scheduled time past `after`'s second.
            start = after // SECOND_MS * SECOND_MS
            scheduled = ((start - offset) // every + 1) * every + offset
            sequence = -(-scheduled // SECOND_MS) * SECOND_MS
            if disconnect is None or sequence < disconnect:
                return sequence, "sequence"
        return disconnect, "disconnect"

    def stale(self, stream: str, m: Market) -> Stale | None:
        """(period, offset, duration) of a subscription's stale windows: live `stale_every_s`, then silent
        `stale_duration_s`, repeating (so any pair of values is meaningful; the stream is never silent forever)."""
        f = self.faults
        if f.stale_duration_s <= 0 or f.stale_every_s <= 0:
            return None
        duration = max(1, int(f.stale_duration_s * 1000))
        period = self._period(f.stale_every_s + f.stale_duration_s, 202, stream, m)
        if period is None:
            return None
        every, offset = period
        return every, offset, duration

    @staticmethod
    def stale_end(stale: Stale | None, t: int) -> int | None:
        """If t lies in a stale window, the window's end (exclusive)."""
        if stale is None:
            return None
        every, offset, duration = stale
        k = (t - offset) // every
        start = offset + k * every
        return start + duration if t < start + duration else None

    @staticmethod
    def stale_mask(stale: Stale | None, times: np.ndarray) -> np.ndarray:
        if stale is None:
            return np.zeros(times.shape, dtype=bool)
        every, offset, duration = stale
        return (times - offset) % every < duration

    @staticmethod
    def count_stale_windows(stale: Stale | None, lo: int, hi: int) -> int:
        """Stale windows starting in (lo, hi]."""
        if stale is None or hi <= lo:
            return 0
        every, offset, _ = stale
        return (hi - offset) // every - (lo - offset) // every

    # -- private API faults ----------------------------------------------------------------------------
    def order_fault(self, m: Market, seq: int) -> str | None:
        """The fault of the `seq`-th create_order of this exchange object (at most one), counted here:
        `reject`, `timeout`, `never_fills`, `disconnect` (rates `order_<kind>_rate`), or None."""
        f = self.faults
        u = keyed_unit(self.seed, ORDERS_CODE, m.key, seq)
        edge = 0.0
        for kind, rate in (
            ("reject", f.order_reject_rate),
            ("timeout", f.order_timeout_rate),
            ("never_fills", f.order_never_fill_rate),
            ("disconnect", f.order_disconnect_rate),
        ):
            edge += rate
            if u < edge:
                self.injected[(kind, "orders", m.symbol)] += 1
                return kind
        return None

    # -- per-message draws ----------------------------------------------------------------------------
    def trade_draws(self, m: Market, h: int, n: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-trade uniforms (malformed, duplicate, out-of-order) and malformed kinds of an hour's n trades.

        A separate generator, so the market data is the same whether faults are on or off."""
        if not self.on:
            return None
        fault_rng = keyed_rng(self.seed, 6, m.key, h)
        return fault_rng.random((n, 3)), fault_rng.integers(0, len(BAD_REASONS), n)

    def swaps_with_next(self, chunk: Chunk, k: int) -> bool:
        """The out-of-order rule, local so it is the same whatever the batches: trade k and k + 1 (same hour)
        are sent swapped when k is drawn and k - 1 is not (so pairs never overlap)."""
        rate = self.faults.out_of_order_rate
        if not rate or chunk.draws is None or k + 1 >= chunk.ts.size:
            return False
        return bool(chunk.draws[k, 2] < rate and (k == 0 or chunk.draws[k - 1, 2] >= rate))

    def holds_back(self, m: Market, stale: Stale | None, lo: int, chunk: Chunk, k: int) -> bool:
        """Whether the batch's last trade waits for its swap partner (which must be deliverable at all)."""
        if not self.swaps_with_next(chunk, k):
            return False
        partner = int(chunk.ts[k + 1])
        if self.stale_end(stale, partner) is not None:
            return False
        disconnect = self.next_disconnect("trades", m, lo)
        return disconnect is None or partner < disconnect

    # -- corrupted messages ---------------------------------------------------------------------------
    def malformed(self, stream: str, m: Market, message: Any, kind: int) -> tuple[Any, str]:
        """A bad copy of a message and its reason label."""
        reason = BAD_REASONS[kind]
        missing = MISSING_FIELD[stream]
        if stream == "ohlcv":
            row = list(message)
            if reason == "price:nan":
                row[4] = float("nan")
            elif reason == "price:negative":
                row[4] = -abs(row[4])
            elif reason == "missing":
                row = row[:5]
            else:
                row[0] = row[0] + FUTURE_SKEW_MS
            bad = row
        elif stream == "order_book":
            bad = {**message, "bids": [list(level) for level in message["bids"]]}
            if reason == "price:nan":
                bad["bids"][0][0] = float("nan")
            elif reason == "price:negative":
                bad["bids"][0][0] = -abs(bad["bids"][0][0])
            elif reason == "missing":
                del bad["bids"]
            else:
                bad["timestamp"] = bad["timestamp"] + FUTURE_SKEW_MS
                bad["datetime"] = iso(bad["timestamp"])
        else:
            bad = dict(message)
            bad["info"] = dict(message["info"])
            price_key = {"trades": "price", "tickers": "bid", "funding": "fundingRate"}[stream]
            missing = MISSING_FIELD[stream]
            if stream == "funding" and "fundingRate" not in message:
                price_key, missing = "markPrice", "markPrice"  # a watch_mark_price ticker
            elif stream == "funding" and reason == "price:negative":
                price_key = "markPrice"  # a negative funding rate is a real one: corrupt a price instead
            if reason == "price:nan":
                bad[price_key] = float("nan")
            elif reason == "price:negative":
                bad[price_key] = -abs(bad[price_key])
            elif reason == "missing":
                del bad[missing]
            else:
                bad["timestamp"] = bad["timestamp"] + FUTURE_SKEW_MS
                bad["datetime"] = iso(bad["timestamp"])
        label = f"missing:{missing}" if reason == "missing" else reason
        return bad, label

    def record(self, kind: str, stream: str, symbol: str, label: str | None = None) -> None:
        """Count an injected message when it is sent (extras queued but never sent are not counted)."""
        self.injected[(kind, stream, symbol)] += 1
        if label is not None:
            self.malformed_kinds[(label, stream, symbol)] += 1

    def apply_to_trades(self, m: Market, good: list[dict[str, Any]], flags: list[tuple]) -> list[dict[str, Any]]:
        """A trade batch with its faults: adjacent pairs swapped, duplicates and malformed copies added."""
        f = self.faults
        if not (f.malformed_rate or f.duplicate_rate or f.out_of_order_rate):
            return good
        order = list(range(len(good)))
        if f.out_of_order_rate:
            for i in range(len(order) - 1):
                if flags[i][2] and flags[i + 1][4] == flags[i][4] + 1:
                    order[i], order[i + 1] = order[i + 1], order[i]
                    self.record("out_of_order", "trades", m.symbol)
        out = []
        for i in order:
            out.append(good[i])
            d0, d1, _, kind, trade_key = flags[i]
            if d1 < f.duplicate_rate:
                out.append(dict(good[i]))
                self.record("duplicate", "trades", m.symbol)
            if d0 < f.malformed_rate:
                bad, label = self.malformed("trades", m, good[i], kind)
                self.record("malformed", "trades", m.symbol, label)
                hour, k = divmod(trade_key, TRADE_ID_HOUR)
                bad["id"] = str(hour * TRADE_ID_HOUR + MALFORMED_ID_OFFSET + k)
                out.append(bad)
        return out

    def queue_state_faults(self, stream: str, m: Market, pending: deque, last_msg: Any, message: Any, t: int) -> None:
        """Queue the injected messages that follow a latest-state message (ticker, funding); counted when sent."""
        f = self.faults
        if not (f.malformed_rate or f.duplicate_rate or f.out_of_order_rate):
            return
        base = (*self.key(stream, m), t)
        if keyed_unit(*base, 1) < f.malformed_rate:
            bad, label = self.malformed(stream, m, message, int(keyed_unit(*base, 4) * len(BAD_REASONS)))
            pending.append(("malformed", label, bad))
        if keyed_unit(*base, 2) < f.duplicate_rate:
            pending.append(("duplicate", None, dict(message)))
        if last_msg is not None and keyed_unit(*base, 3) < f.out_of_order_rate:
            pending.append(("out_of_order", None, last_msg))

    def apply_to_candles(self, m: Market, last_closed: list[float] | None, rows: list[list[float]], t: int) -> None:
        """Append a candle batch's injected rows (malformed, duplicate of the current, an older closed one)."""
        f = self.faults
        if not (f.malformed_rate or f.duplicate_rate or f.out_of_order_rate):
            return
        base = (*self.key("ohlcv", m), t)
        current = rows[-1]
        if keyed_unit(*base, 1) < f.malformed_rate:
            bad, label = self.malformed("ohlcv", m, current, int(keyed_unit(*base, 4) * len(BAD_REASONS)))
            rows.append(bad)
            self.record("malformed", "ohlcv", m.symbol, label)
        if keyed_unit(*base, 2) < f.duplicate_rate:
            rows.append(list(current))
            self.record("duplicate", "ohlcv", m.symbol)
        if last_closed is not None and keyed_unit(*base, 3) < f.out_of_order_rate:
            rows.append(list(last_closed))
            self.record("out_of_order", "ohlcv", m.symbol)
