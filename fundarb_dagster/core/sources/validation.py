"""The gate every record passes: bad market messages are quarantined with a reason and counted, never crash.

Two layers:

- `Validator.screen(stream, items, ...)` looks at raw ccxt structures before they are normalized and
  rejects the ones missing a required field (`missing:price`, `missing:timestamp`...), because after
  normalization a missing value and a NaN look the same.
- `Validator.check(stream, records, now_ms)` looks at normalized records: NaN/inf/negative/zero prices
  (`price:nan`, `price:inf`, `price:nonpositive`), inconsistent candles, timestamps too far in the future or
  past (`ts:future`, `ts:past`), venue duplicates (`dup:trade_id`, `dup:ts`) and, where order matters
  (tickers, streamed funding, candles), records older than what was already accepted (`ts:out_of_order`).

Rejections come back as `schema.CAPTURE_EVENTS` rows, one per (reason, batch) with a count and the time
span of the rejected records, kind QUARANTINED, DUPLICATE or OUT_OF_ORDER. `Validator.counts` keeps the
running total per reason. The duplicate/order state is per (stream, instrument) and bounded.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .. import schema
from ..schema import EventKind

DAY_MS = 86_400_000

# Raw fields without which a structure cannot become a record, per stream (ccxt unified names).
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "trades": ("timestamp", "price", "amount"),
    "funding": ("fundingRate",),
}
# Price-like fields that must be finite and > 0 when present (NaN = missing optional value is allowed).
_OPTIONAL_PRICES = {
    "tickers": ("bid", "ask", "last", "mark_price", "index_price"),
    "funding": ("mark_price", "index_price"),
}
_REQUIRED_PRICES = {"trades": ("price", "amount"), "ohlcv": ("open", "high", "low", "close")}
_FIELD_REASON = {"amount": "amount", "open": "price", "high": "price", "low": "price", "close": "price"}


def event_rows(
    kind: EventKind,
    stream: str,
    instrument_id: int,
    ts_ms: int,
    recv_ts_ms: int,
    *,
    count: int = 1,
    start_ms: int = 0,
    end_ms: int = 0,
    reason: str = "",
) -> np.ndarray:
    """One CAPTURE_EVENTS row (as an array of length 1, ready to concatenate)."""
    row = schema.empty("capture_events", 1)
    row["ts_ms"] = ts_ms
    row["recv_ts_ms"] = recv_ts_ms
    row["instrument_id"] = instrument_id
    row["stream"] = int(schema.STREAM_CODES[stream])
    row["kind"] = int(kind)
    row["count"] = count
    row["start_ms"] = start_ms
    row["end_ms"] = end_ms
    row["reason"] = reason.encode("ascii", "replace")[:48]
    return row


def concat_events(parts: Iterable[np.ndarray]) -> np.ndarray:
    parts = [p for p in parts if len(p)]
    return np.concatenate(parts) if parts else schema.empty("capture_events")


class _Seen:
    """A bounded set remembering the most recent keys (old keys fall out first)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._order: deque[int] = deque()
        self._keys: set[int] = set()

    def __contains__(self, key: int) -> bool:
        return key in self._keys

    def add(self, key: int) -> None:
        if key in self._keys:
            return
        self._keys.add(key)
        self._order.append(key)
        if len(self._order) > self.capacity:
            self._keys.discard(self._order.popleft())


class Validator:
    """Quarantines bad records and drops venue duplicates, counting every reason.

    `max_future_ms`: how far ahead of the receive clock an event time may be (clock skew allowance).
    `max_past_ms`: how far behind; None disables the check (history loads of old data).
    `max_abs_funding_rate`: a funding rate beyond this fraction per interval is a bad message.
    `dedupe_capacity`: trade ids / settlement times remembered per instrument.
    """

    def __init__(
        self,
        *,
        max_future_ms: int = 60_000,
        max_past_ms: int | None = DAY_MS,
        max_abs_funding_rate: float = 0.1,
        dedupe_capacity: int = 100_000,
    ) -> None:
        if max_future_ms < 0:
            raise ValueError(f"max_future_ms: {max_future_ms!r} must be >= 0")
        if max_past_ms is not None and max_past_ms <= 0:
            raise ValueError(f"max_past_ms: {max_past_ms!r} must be > 0 or None")
        self.max_future_ms = max_future_ms
        self.max_past_ms = max_past_ms
        self.max_abs_funding_rate = max_abs_funding_rate
        self.dedupe_capacity = dedupe_capacity
        self.counts: Counter[str] = Counter()
        self._seen: dict[tuple[Any, ...], _Seen] = {}
        self._last_ts: dict[tuple[str, int], int] = {}
        self._latest: dict[tuple[str, int], int] = {}  # newest accepted event time per (stream, instrument)

    # -- raw structures -----------------------------------------------------------------------------
    def missing_field(self, stream: str, item: Any) -> str | None:
        """The first required field a raw ccxt structure lacks, or None when it has them all."""
        if stream == "ohlcv":
            if not isinstance(item, Sequence) or len(item) < 6 or any(v is None for v in item[:5]):
                return "ohlcv"
            return None
        if not isinstance(item, Mapping):
            return "structure"
        if stream == "tickers":
            keys = ("bid", "ask", "last", "markPrice")
            return None if any(item.get(k) not in (None, "") for k in keys) else "price"
        for name in REQUIRED_FIELDS.get(stream, ()):
            if item.get(name) in (None, ""):
                return name
        return None

    def screen(
        self, stream: str, items: Sequence[Any], instrument_id: int, now_ms: int
    ) -> tuple[list[Any], np.ndarray]:
        """Drop raw structures missing a required field; quarantine rows `missing:<field>` for them."""
        kept: list[Any] = []
        rejected: Counter[str] = Counter()
        for item in items:
            missing = self.missing_field(stream, item)
            if missing is None:
                kept.append(item)
            else:
                rejected[f"missing:{missing}"] += 1
        events = [
            self._count(EventKind.QUARANTINED, stream, instrument_id, now_ms, reason, n, now_ms, now_ms)
            for reason, n in rejected.items()
        ]
        return kept, concat_events(events)

    def quarantine(
        self, stream: str, instrument_id: int, now_ms: int, reason: str, count: int = 1, ts_ms: int | None = None
    ) -> np.ndarray:
        """Count and report a rejection found outside `check` (e.g. a funding row whose settlement is unknown)."""
        ts = now_ms if ts_ms is None else ts_ms
        return self._count(EventKind.QUARANTINED, stream, instrument_id, now_ms, reason, count, ts, ts)

    # -- normalized records -------------------------------------------------------------------------
    def check(
        self, stream: str, records: np.ndarray, now_ms: int, *, sequence: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Accepted records (input order kept) and CAPTURE_EVENTS rows for everything rejected.

        `sequence=False` skips the duplicate/order state (a backfill that dedupes by itself and lands rows
        older than the ones already accepted).
        """
        n = len(records)
        if n == 0:
            return records, schema.empty("capture_events")
        reasons = np.full(n, "", dtype=object)
        kinds = np.full(n, int(EventKind.QUARANTINED), dtype=np.int8)

        def flag(mask: np.ndarray, reason: str, kind: EventKind = EventKind.QUARANTINED) -> None:
            fresh = mask & (reasons == "")
            reasons[fresh] = reason
            kinds[fresh] = int(kind)

        for name in _REQUIRED_PRICES.get(stream, ()):
            label = _FIELD_REASON.get(name, name)
            values = records[name]
            flag(np.isnan(values), f"{label}:nan")
            flag(np.isinf(values), f"{label}:inf")
            flag(values <= 0, f"{label}:nonpositive")
        for name in _OPTIONAL_PRICES.get(stream, ()):
            values = records[name]
            flag(np.isinf(values), f"{name}:inf")
            flag(values <= 0, f"{name}:nonpositive")
        if stream == "tickers":
            bid, ask = records["bid"], records["ask"]
            flag(bid > ask, "book:crossed")
        if stream == "ohlcv":
            o, h, low, c = (records[k] for k in ("open", "high", "low", "close"))
            flag((h < np.maximum(o, c)) | (low > np.minimum(o, c)) | (h < low), "ohlc:inconsistent")
            volume = records["volume"]
            flag(np.isinf(volume) | (volume < 0), "volume:invalid")
        if stream == "funding":
            rate = records["funding_rate"]
            flag(np.isnan(rate), "funding_rate:nan")
            flag(np.isinf(rate) | (np.abs(rate) > self.max_abs_funding_rate), "funding_rate:range")
            flag(records["funding_ts_ms"] <= 0, "missing:funding_ts")
            interval = records["interval_h"]
            flag(np.isinf(interval) | (interval <= 0), "interval:invalid")
        ts = records["ts_ms"]
        flag(ts <= 0, "missing:timestamp")
        flag(ts > now_ms + self.max_future_ms, "ts:future")
        if self.max_past_ms is not None:
            # "past" against the newest time this instrument's stream already gave when that is earlier than
            # the clock: a replay's clock jumps with other streams' data, the stream's own data does not.
            reference = np.full(n, now_ms, dtype=np.int64)
            for instrument_id in np.unique(records["instrument_id"]).tolist():
                latest = self._latest.get((stream, int(instrument_id)))
                if latest is not None and latest < now_ms:
                    reference[records["instrument_id"] == instrument_id] = latest
            flag(ts < reference - self.max_past_ms, "ts:past")
        if sequence:
            self._check_sequence(stream, records, reasons, kinds)

        accepted = records[reasons == ""]
        if len(accepted):
            for instrument_id in np.unique(accepted["instrument_id"]).tolist():
                newest = int(accepted["ts_ms"][accepted["instrument_id"] == instrument_id].max())
                key = (stream, int(instrument_id))
                self._latest[key] = max(self._latest.get(key, newest), newest)
        events = []
        rejected = reasons != ""
        if rejected.any():
            ids = records["instrument_id"]
            keys = sorted({(int(ids[i]), reasons[i], int(kinds[i])) for i in np.flatnonzero(rejected)})
            for instrument_id, reason, kind in keys:
                mask = rejected & (ids == instrument_id) & (reasons == reason)
                span = ts[mask]
                events.append(
                    self._count(
                        EventKind(kind), stream, instrument_id, now_ms, reason,
                        int(mask.sum()), int(span.min()), int(span.max()),
                    )
                )  # fmt: skip
        return accepted, concat_events(events)

    def _check_sequence(self, stream: str, records: np.ndarray, reasons: np.ndarray, kinds: np.ndarray) -> None:
        # Only records that passed the value checks move the duplicate/order state.
        ids = records["instrument_id"]
        ts = records["ts_ms"]
        for i in np.flatnonzero(reasons == ""):
            key = (stream, int(ids[i]))
            if stream == "trades":
                seen = self._seen_for(key)
                trade_id = int(records["trade_id"][i])
                if trade_id in seen:
                    reasons[i], kinds[i] = "dup:trade_id", int(EventKind.DUPLICATE)
                else:
                    seen.add(trade_id)
                continue
            if stream == "funding" and records["is_settled"][i]:
                seen = self._seen_for(key + (1,))
                settlement = int(records["funding_ts_ms"][i])
                if settlement in seen:
                    reasons[i], kinds[i] = "dup:funding_ts", int(EventKind.DUPLICATE)
                else:
                    seen.add(settlement)
                continue
            last = self._last_ts.get(key)
            t = int(ts[i])
            if last is not None and t == last:
                reasons[i], kinds[i] = "dup:ts", int(EventKind.DUPLICATE)
            elif last is not None and t < last:
                reasons[i], kinds[i] = "ts:out_of_order", int(EventKind.OUT_OF_ORDER)
            else:
                self._last_ts[key] = t

    def _seen_for(self, key: tuple[Any, ...]) -> _Seen:
        seen = self._seen.get(key)
        if seen is None:
            seen = self._seen[key] = _Seen(self.dedupe_capacity)
        return seen

    def seen_trade(self, instrument_id: int, trade_id: int) -> bool:
        """Whether a trade id was already accepted (gap backfills use it to skip what was emitted)."""
        seen = self._seen.get(("trades", int(instrument_id)))
        return seen is not None and int(trade_id) in seen

    def _count(
        self,
        kind: EventKind,
        stream: str,
        instrument_id: int,
        now_ms: int,
        reason: str,
        count: int,
        start_ms: int,
        end_ms: int,
    ) -> np.ndarray:
        self.counts[reason] += count
        return event_rows(
            kind, stream, instrument_id, now_ms, now_ms, count=count, start_ms=start_ms, end_ms=end_ms, reason=reason
        )
