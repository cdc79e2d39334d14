"""The gate every record passes: bad market messages are quarantined with a reason and counted, never crash.

Two layers:

- `Validator.screen(stream, items, ...)` looks at raw ccxt structures before they are normalized, because
  after normalization a missing value and a NaN look the same: it rejects the ones missing a required field
  (`missing:price`, `missing:timestamp`...; a ticker without its `bid`/`ask` keys, which every ccxt ticker
  has, even when None) and the ones with a price or size that is there but NaN, infinite or not positive
  (`bid:nan`, `ask_size:nonpositive`, `mark_price:inf`...; None stays a missing optional value).
- `Validator.check(stream, records, now_ms)` looks at normalized records: NaN/inf/negative/zero prices
  (`price:nan`, `price:inf`, `price:nonpositive`), inconsistent candles, timestamps too far in the future or
  past (`ts:future`, `ts:past`), venue duplicates (`dup:trade_id`, `dup:ts`) and, where order matters
  (tickers, streamed funding, candles), records older than what was already accepted (`ts:out_of_order`);
  a trade older than the newest trade accepted is kept (its identity is its id) but reported (`ts:late`).

Rejections come back as `schema.CAPTURE_EVENTS` rows, one per (reason, batch) with a count and the time
span of the rejected records, kind QUARANTINED, DUPLICATE or OUT_OF_ORDER. `Validator.counts` keeps the
running total per reason. The duplicate/order state is per (stream, instrument) and bounded.
"""

from __future__ import annotations

import math
import operator
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .. import schema
from ..schema import EventKind
from ..units import DAY_MS

# Raw fields without which a structure cannot become a record, per stream (ccxt unified names).
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "trades": ("timestamp", "price", "amount"),
    "funding": ("fundingRate",),
    "liquidations": ("timestamp", "price"),
}
# Price-like fields that must be finite and > 0 when present (NaN = missing optional value is allowed).
_OPTIONAL_PRICES = {
    "tickers": ("bid", "ask", "last", "mark_price", "index_price"),
    "funding": ("mark_price", "index_price"),
}
_REQUIRED_PRICES = {
    "trades": ("price", "amount"),
    "ohlcv": ("open", "high", "low", "close"),
    "liquidations": ("price", "amount"),
}
# Raw ccxt fields that, when present (not None), must be finite and > 0: (ccxt key, label in reasons).
_RAW_POSITIVE: dict[str, tuple[tuple[str, str], ...]] = {
    "tickers": (
        ("bid", "bid"),
        ("ask", "ask"),
        ("last", "last"),
        ("markPrice", "mark_price"),
        ("indexPrice", "index_price"),
        ("bidVolume", "bid_size"),
        ("askVolume", "ask_size"),
    ),
    "trades": (("price", "price"), ("amount", "amount")),
    "funding": (("markPrice", "mark_price"), ("indexPrice", "index_price")),
    "liquidations": (("price", "price"), ("contracts", "contracts")),
}
# Open interest may be zero (a new market), never negative, NaN or infinite: (ccxt key, label in reasons).
_OPEN_INTEREST = (("openInterestAmount", "open_interest"), ("openInterestValue", "open_interest_value"))
_TICKER_KEYS = ("bid", "ask")  # every ccxt ticker structure has them (None when the venue gives none)


def _positive_number(value: Any, label: str) -> str | None:
    """`<label>:nan|inf|nonpositive` for a number that is not a finite positive one; None for anything else
    (None is a missing optional value, a string is for the normalizer to read)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value != value:
        return f"{label}:nan"
    if value in (math.inf, -math.inf):
        return f"{label}:inf"
    if value <= 0:
        return f"{label}:nonpositive"
    return None


def _prices_valid(stream: str, records: np.ndarray) -> bool:
    """Every required price positive and finite, every optional one NaN or positive and finite, no crossed
    ticker: the price part of the validator's quick yes (`_all_valid`, `_trade_calls_valid`)."""
    required, optional = _REQUIRED_PRICES.get(stream), _OPTIONAL_PRICES.get(stream)
    if required:  # all fields at once: a step per field costs numpy's fixed price each time
        values = np.array([records[name] for name in required])
        if not ((values > 0) & (values < math.inf)).all():  # NaN fails both
            return False
    if optional:
        values = np.array([records[name] for name in optional])
        if ((values <= 0) | (values == math.inf)).any():  # NaN (a missing optional price) passes; -inf is <= 0
            return False
    return not (stream == "tickers" and (records["bid"] > records["ask"]).any())


def _candles_valid(records: np.ndarray) -> bool:
    """Every candle consistent (low <= open, close <= high) and its volume finite and not negative (NaN: not
    given, passes): the candle part of the validator's quick yes, the prices checked before."""
    o, h, low, c, volume = (records[k] for k in ("open", "high", "low", "close", "volume"))
    if ((h < np.maximum(o, c)) | (low > np.minimum(o, c)) | (h < low)).any():
        return False
    return not ((volume < 0) | (volume == math.inf)).any()


def plain_trades(items: Sequence[Any]) -> bool:
    """Every item a dict whose timestamp, price and amount are plain numbers, prices and amounts finite and
    positive: what `screen` would keep whole, found with a few whole-column operations instead of per item."""
    if not items or set(map(type, items)) != {dict}:
        return False
    columns = []
    for key in ("timestamp", "price", "amount"):
        values = [item.get(key) for item in items]
        if not set(map(type, values)) <= _PLAIN_NUMBERS:
            return False  # None, "", a string or a bool: the per-item pass names it
        columns.append(values)
    values = np.array(columns[1:], dtype=np.float64)
    try:
        stamps = np.array(columns[0], dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        return False
    if not (np.abs(stamps) < 2.0**63).all():  # beyond int64 (or NaN): the per-item pass names it
        return False
    return bool(((values > 0) & (values < math.inf)).all())  # NaN fails both


_PLAIN_NUMBERS = frozenset((int, float))  # bool is a type of its own, so it is not among them
_TRADE_VALUES = operator.itemgetter("timestamp", "price", "amount")


def plain_trade_values(items: Sequence[Any]) -> list[tuple[Any, Any, Any]] | None:
    """`plain_trades` a trade at a time in plain Python: each trade's (timestamp, price, amount) when every
    item is a dict whose three are plain numbers, price and amount finite and positive, the time within int64
    as a float; None otherwise (the per-item pass names it). Staged trades are a few a call, and numpy's fixed
    cost per step was more than their own work."""
    out = []
    for item in items:
        if type(item) is not dict:
            return None
        try:
            values = _TRADE_VALUES(item)
        except KeyError:
            return None  # `missing:<field>`
        stamp, price, amount = values
        kinds = (type(stamp), type(price), type(amount))
        if not (kinds[0] in _PLAIN_NUMBERS and kinds[1] in _PLAIN_NUMBERS and kinds[2] in _PLAIN_NUMBERS):
            return None  # None, "", a string or a bool
        try:
            if not (abs(float(stamp)) < 2.0**63 and 0 < float(price) < math.inf and 0 < float(amount) < math.inf):
                return None  # a time beyond int64 or NaN, a bad price or amount (NaN fails)
        except OverflowError:  # an integer beyond float64
            return None
        out.append(values)
    return out


_PLAIN_OR_NONE = _PLAIN_NUMBERS | {type(None)}
# A ticker's raw fields read a column at a time: its time, then the prices and sizes `screen` judges.
TICKER_COLUMNS = ("timestamp", "bid", "ask", "last", "markPrice", "indexPrice", "bidVolume", "askVolume")
_INT64_MIN = int(np.iinfo(np.int64).min)  # "no time yet" in the column-at-a-time state


_TICKER_ROW = operator.itemgetter(*TICKER_COLUMNS)


def plain_tickers(items: Sequence[Any]) -> list[tuple[Any, ...]] | None:
    """What `screen` keeps whole: every item a dict with its `bid` and `ask` keys, each of `TICKER_COLUMNS` a
    plain number or None, the given prices and sizes finite and positive, one of bid/ask/last/mark given, a
    given time finite and within int64. Then each ticker's `TICKER_COLUMNS` values; None when anything else
    is there (the per-item pass names it).

    Plain Python, a ticker at a time: a staged batch is a few tickers live and tens in a replay, where numpy's
    fixed cost per step was more than the tickers' own work (51 against 2 us for one ticker, 84 against 51 for
    54 tickers)."""
    rows = []
    inf, plain, int_, float_ = math.inf, _PLAIN_NUMBERS, int, float  # locals: this runs once per ticker
    for item in items:
        if type(item) is not dict:
            return None
        try:
            row = _TICKER_ROW(item)  # a ccxt ticker has every key (None where the venue gives none)
        except KeyError:
            if "bid" not in item or "ask" not in item:
                return None  # `missing:bid`, `missing:ask`
            row = tuple(item.get(key) for key in TICKER_COLUMNS)
        stamp = row[0]
        if stamp is not None and not (type(stamp) in plain and abs(stamp) < 2.0**63):
            return None  # NaN, inf, beyond int64, not a number: the per-item pass decides
        for value in row[1:]:
            if value is None:
                continue
            kind = type(value)
            if kind is float_:
                if not 0 < value < inf:
                    return None  # a bad price or size, a NaN sent as a value (NaN fails)
            elif kind is not int_ or not 0 < value < 2**63:
                return None  # a bool, a string, a bad or huge integer
        if row[1] is None and row[2] is None and row[3] is None and row[4] is None:
            return None  # `missing:price`: none of bid, ask, last, mark
        rows.append(row)
    return rows


def _bad_open_interest(item: Mapping[str, Any]) -> str | None:
    for key, label in _OPEN_INTEREST:
        value = item.get(key)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if value != value:
            return f"{label}:nan"
        if value in (math.inf, -math.inf):
            return f"{label}:inf"
        if value < 0:
            return f"{label}:negative"
    return None


# The field that identifies a record of a stream, and the reason a repeat of it is dropped with.
_IDENTITY = {
    "trades": ("trade_id", "dup:trade_id"),
    "liquidations": ("liquidation_id", "dup:liquidation"),
    "funding": ("funding_ts_ms", "dup:funding_ts"),
}
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


_EMPTY_EVENTS = schema.empty("capture_events")
_EMPTY_EVENTS.flags.writeable = False  # shared: callers concatenate, never write into it


def concat_events(parts: Iterable[np.ndarray]) -> np.ndarray:
    parts = [p for p in parts if len(p)]
    if not parts:
        return _EMPTY_EVENTS
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


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

    def isdisjoint(self, keys: Iterable[int]) -> bool:
        return self._keys.isdisjoint(keys)

    def update(self, keys: list[int]) -> None:
        """`add` each of `keys`, which are distinct and none of them here yet (the caller checked)."""
        self._keys.update(keys)
        self._order.extend(keys)
        excess = len(self._order) - self.capacity
        if excess > 0:
            popleft = self._order.popleft
            self._keys.difference_update([popleft() for _ in range(excess)])


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
        if stream == "open_interest":
            return None if any(item.get(k) not in (None, "") for k, _ in _OPEN_INTEREST) else "open_interest"
        if stream == "tickers":
            for key in _TICKER_KEYS:
                if key not in item:
                    return key
            keys = ("bid", "ask", "last", "markPrice")
            return None if any(item.get(k) not in (None, "") for k in keys) else "price"
        for name in REQUIRED_FIELDS.get(stream, ()):
            if item.get(name) in (None, ""):
                return name
        return None

    def bad_value(self, stream: str, item: Any, now_ms: int | None = None) -> str | None:
        """The reason a raw structure carries a price or size that is NaN, infinite or not positive, or None.

        Candles are judged raw too (with `now_ms`, also their time): the Feed keeps the newest update of the
        forming candle, so a bad copy must not get the chance to replace a good one.
        """
        if stream == "ohlcv":
            return self._bad_candle(item, now_ms)
        if not isinstance(item, Mapping):
            return None
        if stream == "open_interest":
            return _bad_open_interest(item)
        stamp = item.get("timestamp")
        if isinstance(stamp, int | float) and not isinstance(stamp, bool) and abs(stamp) >= 2.0**63:
            return "ts:out_of_range"  # no int64 time holds it, nor does inf (NaN reads as missing: the receive time)
        for key, label in _RAW_POSITIVE.get(stream, ()):
            reason = _positive_number(item.get(key), label)
            if reason is not None:
                return reason
        return None

    def _bad_candle(self, row: Any, now_ms: int | None) -> str | None:
        if not isinstance(row, Sequence) or len(row) < 6:
            return None
        for value in row[1:5]:
            reason = _positive_number(value, "price")
            if reason is not None:
                return reason
        volume = row[5]
        if isinstance(volume, int | float) and not isinstance(volume, bool) and not (0 <= volume < math.inf):
            return "volume:invalid"
        # A time far ahead would close the forming candle early: caught here, with a day's allowance (any
        # candle length, any clock a test scripts); the emitted candle gets the strict check later.
        ts = row[0]
        if now_ms is not None and isinstance(ts, int | float) and ts > now_ms + max(self.max_future_ms, DAY_MS):
            return "ts:future"
        return None

    def funding_problem(self, raw: Any, mode: str) -> str | None:
        """Why a streamed funding structure is malformed before it is read, or None: not a structure, a
        mark-price message without its `markPrice` (every ccxt ticker has the key), a bad price."""
        if not isinstance(raw, Mapping):
            return "structure"
        if mode == "mark_price" and "markPrice" not in raw:
            return "missing:mark_price"
        return self.bad_value("funding", raw)

    def screen(
        self, stream: str, items: Sequence[Any], instrument_id: int, now_ms: int
    ) -> tuple[list[Any], np.ndarray]:
        """Drop raw structures missing a required field (`missing:<field>`) or carrying a bad price or size
        (`<field>:nan|inf|nonpositive`); one quarantine row per reason."""
        if stream == "trades" and plain_trades(items):
            return list(items), _EMPTY_EVENTS  # the usual batch, judged a column at a time: nothing to drop
        if stream == "ohlcv" and self.plain_candles(items, now_ms):
            return list(items), _EMPTY_EVENTS  # the usual update of the forming candle
        kept: list[Any] = []
        rejected: Counter[str] = Counter()
        for item in items:
            missing = self.missing_field(stream, item)
            if missing is not None:
                rejected[f"missing:{missing}"] += 1
                continue
            bad = self.bad_value(stream, item, now_ms)
            if bad is None:
                kept.append(item)
            else:
                rejected[bad] += 1
        events = [
            self._count(EventKind.QUARANTINED, stream, instrument_id, now_ms, reason, n, now_ms, now_ms)
            for reason, n in rejected.items()
        ]
        return kept, concat_events(events)

    def plain_candles(self, items: Sequence[Any], now_ms: int) -> bool:
        """Every candle a list of plain numbers, prices finite and positive, volume finite and not negative,
        its time not ahead: what the per-item pass (`missing_field`, `_bad_candle`) keeps, in plain Python."""
        limit = now_ms + max(self.max_future_ms, DAY_MS)
        for row in items:
            if type(row) is not list or len(row) < 6 or not set(map(type, row[:6])) <= _PLAIN_NUMBERS:
                return False
            ts, o, h, low, c, v = row[:6]
            if not (0 < o < math.inf and 0 < h < math.inf and 0 < low < math.inf and 0 < c < math.inf):
                return False
            if not 0 <= v < math.inf or ts > limit:
                return False
        return True

    def quarantine(
        self, stream: str, instrument_id: int, now_ms: int, reason: str, count: int = 1, ts_ms: int | None = None
    ) -> np.ndarray:
        """Count and report a rejection found outside `check` (e.g. a funding row whose settlement is unknown)."""
        ts = now_ms if ts_ms is None else ts_ms
        return self._count(EventKind.QUARANTINED, stream, instrument_id, now_ms, reason, count, ts, ts)

    def report(
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
        """Count and report what a caller found itself (a candle sent twice in one batch, a late candle)."""
        return self._count(kind, stream, instrument_id, now_ms, reason, count, start_ms, end_ms)

    # -- normalized records -------------------------------------------------------------------------
    def check(
        self, stream: str, records: np.ndarray, now_ms: int, *, sequence: bool = True, order: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Accepted records (input order kept) and CAPTURE_EVENTS rows for everything rejected.

        `sequence=False` skips the duplicate/order state (a backfill that dedupes by itself and lands rows
        older than the ones already accepted). `order=False` keeps the duplicate state but does not report
        trades older than the newest one as late (a trades backfill is older by definition).
        """
        n = len(records)
        if n == 0:
            return records, _EMPTY_EVENTS
        reference = self._past_reference(stream, records, now_ms)
        reasons: np.ndarray | None = None
        kinds: np.ndarray | None = None
        if not self._all_valid(stream, records, now_ms, reference):
            reasons = np.full(n, "", dtype=object)
            kinds = np.full(n, int(EventKind.QUARANTINED), dtype=np.int8)
            self._flag_values(stream, records, now_ms, reference, reasons, kinds)
        late: list[int] = []
        sequence_rejects = self._check_sequence(stream, records, reasons, late if order else None) if sequence else {}
        if sequence_rejects:
            if reasons is None or kinds is None:
                reasons = np.full(n, "", dtype=object)
                kinds = np.full(n, int(EventKind.QUARANTINED), dtype=np.int8)
            for i, reason in sequence_rejects.items():
                reasons[i] = reason
                kinds[i] = int(EventKind.OUT_OF_ORDER if reason == "ts:out_of_order" else EventKind.DUPLICATE)
        rejected = reasons != "" if reasons is not None else None
        if rejected is None or not rejected.any():  # the usual case: everything passed
            self._note_latest(stream, records)
            return records, self._late_events(stream, records, late, now_ms)
        accepted = records[~rejected]
        self._note_latest(stream, accepted)
        events = [self._late_events(stream, records, late, now_ms)]
        ts = records["ts_ms"]
        ids = records["instrument_id"]
        keys = sorted({(int(ids[i]), reasons[i], int(kinds[i])) for i in np.flatnonzero(rejected)})  # type: ignore[index]
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

    def check_calls(
        self, stream: str, records: np.ndarray, now_ms: np.ndarray, calls: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """`check` of several watch calls' records at once, with the outcome, state and events of one `check`
        per call in order; None (nothing changed) when that cannot be told a column at a time, and then the
        caller checks call by call. Tickers (one record per call) and trades of one instrument (the capture's
        staging calls it for large batches of trades; staged tickers go through `check_ticker_rows`); `now_ms`
        and `calls` give each record's receive time and call number (non-decreasing).

        Taken whole: every record passes the value checks, each measured against the time "too old" is measured
        from as it stood at its call; trades all new, distinct and in time order (`_new_in_order`); tickers
        repeating or going back in time dropped as `dup:ts` / `ts:out_of_order`, one event per call."""
        n = len(records)
        if not n or stream not in ("tickers", "trades"):
            return None
        ids = records["instrument_id"]
        if not (ids == ids[0]).all():
            return None
        if stream == "tickers":
            if n > 1 and not (calls[1:] != calls[:-1]).all():
                return None  # one ticker per call
            checked = self.check_ticker_rows(records.tolist(), now_ms.tolist())
            if checked is None:
                return None
            accepted, events = checked
            return (records if len(accepted) == n else records[np.array(accepted, dtype=np.intp)]), events
        key, ts = ("trades", int(ids[0])), records["ts_ms"]
        newest = self._last_ts.get(key)
        if (newest is not None and int(ts[0]) < newest) or (n > 1 and (np.diff(ts) < 0).any()):
            return None
        values = records["trade_id"].tolist()
        seen = self._seen.get(key)
        if (seen is not None and not seen.isdisjoint(values)) or len(set(values)) != n:
            return None
        first = np.ones(n, dtype=bool)
        first[1:] = calls[1:] != calls[:-1]
        if not self._trade_calls_valid(records, now_ms, first):
            return None
        self._seen_for(key).update(values)
        self._last_ts[key] = int(ts[-1])
        self._note_latest(stream, records)
        return records, _EMPTY_EVENTS

    def _trade_calls_valid(self, records: np.ndarray, now_ms: np.ndarray, first: np.ndarray) -> bool:
        """`_all_valid` of each call's trades (all new and in time order), each call's time "too old" is measured
        from (`_past_reference`) following the trades of the calls before it: whole-array steps, for a large
        batch (a few trades go through `check_trade_rows`)."""
        ts = records["ts_ms"]
        if not _prices_valid("trades", records):
            return False
        if (ts <= 0).any() or (ts > now_ms + self.max_future_ms).any():
            return False
        if self.max_past_ms is None:
            return True
        latest = self._latest.get(("trades", int(records["instrument_id"][0])))
        call = np.cumsum(first) - 1  # 0, 1, ... per call
        newest = np.maximum.reduceat(ts, np.flatnonzero(first))
        before = np.empty(len(newest), dtype=np.int64)  # the newest time before each call
        before[0] = _INT64_MIN if latest is None else latest
        np.maximum.accumulate(np.maximum(newest[:-1], before[0]), out=before[1:])
        before = before[call]
        reference = np.where((before > _INT64_MIN) & (before < now_ms), before, now_ms)
        return not (ts < reference - self.max_past_ms).any()

    def check_trade_rows(self, rows: list[tuple[Any, ...]], now_ms: list[int], calls: list[int]) -> bool:
        """`check` of several calls' trades, on their records as tuples (`records.tolist()`, or rows about to
        become records), taken whole: True, with the state and counts of one `check` per call, when every trade
        is of one instrument, new, distinct and in time order (`_new_in_order`) and passes the value checks,
        each call's time "too old" measured from following the trades of the calls before it; else False and
        nothing changed (the caller checks call by call). Plain Python, a trade at a time (see
        `check_ticker_rows`)."""
        if not rows:
            return False
        iid = rows[0][2]
        key = ("trades", iid)
        previous = self._last_ts.get(key)  # in time order from the newest accepted
        before = self._latest.get(key)  # the newest time before a call: "too old" is measured from it
        future, past = self.max_future_ms, self.max_past_ms
        ids = []
        last_call = None
        for (t, _recv, row_iid, _side, _pad, trade_id, price, amount, *_rest), now, call in zip(
            rows, now_ms, calls, strict=True
        ):
            if row_iid != iid or (previous is not None and t < previous):
                return False
            if not (0 < price < math.inf and 0 < amount < math.inf) or t <= 0 or t > now + future:
                return False
            if call != last_call:  # a new call: the calls before it are in time order, their newest is `previous`
                if previous is not None and last_call is not None:
                    before = previous if before is None or previous > before else before
                last_call = call
            if past is not None and t < (before if before is not None and before < now else now) - past:
                return False
            previous = t
            ids.append(trade_id)
        seen = self._seen.get(key)
        if (seen is not None and not seen.isdisjoint(ids)) or len(set(ids)) != len(ids):
            return False
        self._seen_for(key).update(ids)
        self._last_ts[key] = previous  # type: ignore[assignment]
        latest = self._latest.get(key)
        self._latest[key] = previous if latest is None or previous > latest else latest  # type: ignore[assignment]
        return True

    def check_ticker_rows(self, rows: list[tuple[Any, ...]], now_ms: list[int]) -> tuple[list[int], np.ndarray] | None:
        """`check` of tickers, one per call, on their records as tuples (`records.tolist()`, or rows about to
        become records): which rows are accepted (their indexes) and the events, with the state and counts of
        one `check` per call; None (nothing changed) when a value check fails, and then the caller checks call
        by call. Plain Python, a ticker at a time (a batch is a few tickers live, tens in a replay): each
        judged against the newest time accepted before it, a repeated time dropped as `dup:ts`, an older one
        as `ts:out_of_order`, one event each."""
        if not rows:
            return [], _EMPTY_EVENTS
        iid = rows[0][2]
        key = ("tickers", iid)
        last, latest = self._last_ts.get(key), self._latest.get(key)  # sequence state; "too old" reference
        accepted: list[int] = []
        rejected: list[tuple[int, bool]] = []  # (row, a repeat of the last time)
        judge, dated = self._ticker_row_valid, self.max_past_ms is not None
        for i, (row, now) in enumerate(zip(rows, now_ms, strict=True)):
            reference = (latest if latest is not None and latest < now else now) if dated else None
            if row[2] != iid or not judge(row, now, reference):
                return None
            t = row[0]
            if last is not None and t <= last:
                rejected.append((i, t == last))
                continue
            accepted.append(i)
            last = t
            latest = t if latest is None or t > latest else latest
        events = []
        for i, dup in rejected:
            kind, reason = (EventKind.DUPLICATE, "dup:ts") if dup else (EventKind.OUT_OF_ORDER, "ts:out_of_order")
            t = rows[i][0]
            events.append(self._count(kind, "tickers", iid, now_ms[i], reason, 1, t, t))
        if accepted:
            self._last_ts[key] = last  # type: ignore[assignment]
            self._latest[key] = latest  # type: ignore[assignment]
        return accepted, concat_events(events)

    def _late_events(self, stream: str, records: np.ndarray, late: list[int], now_ms: int) -> np.ndarray:
        """OUT_OF_ORDER rows (`ts:late`) for accepted trades that arrived after a newer one: kept, reported."""
        if not late:
            return _EMPTY_EVENTS
        rows = records[late]
        events = []
        for instrument_id in np.unique(rows["instrument_id"]).tolist():
            span = rows["ts_ms"][rows["instrument_id"] == instrument_id]
            events.append(
                self._count(
                    EventKind.OUT_OF_ORDER, stream, instrument_id, now_ms, "ts:late",
                    len(span), int(span.min()), int(span.max()),
                )
            )  # fmt: skip
        return concat_events(events)

    def _past_reference(self, stream: str, records: np.ndarray, now_ms: int) -> np.ndarray | int | None:
        """The time "too old" is measured from: the clock, or the stream's own newest time when earlier.

        A replay's clock jumps with other streams' data; the stream's own data does not.
        """
        if self.max_past_ms is None:
            return None
        ids = records["instrument_id"]
        first = int(ids[0])
        if len(ids) == 1 or (ids == first).all():
            latest = self._latest.get((stream, first))
            return latest if latest is not None and latest < now_ms else now_ms
        reference = np.full(len(ids), now_ms, dtype=np.int64)
        for instrument_id in np.unique(ids).tolist():
            latest = self._latest.get((stream, int(instrument_id)))
            if latest is not None and latest < now_ms:
                reference[ids == instrument_id] = latest
        return reference

    def _note_latest(self, stream: str, accepted: np.ndarray) -> None:
        if not len(accepted):
            return
        ids = accepted["instrument_id"]
        first = int(ids[0])
        groups = [first] if len(ids) == 1 or (ids == first).all() else np.unique(ids).tolist()
        for instrument_id in groups:
            times = accepted["ts_ms"] if len(groups) == 1 else accepted["ts_ms"][ids == instrument_id]
            newest = int(times.max())
            key = (stream, int(instrument_id))
            self._latest[key] = max(self._latest.get(key, newest), newest)

    def _all_valid(self, stream: str, records: np.ndarray, now_ms: int, reference: Any) -> bool:
        """A quick yes for the usual all-good batch (few array operations); the detailed pass runs otherwise."""
        if len(records) == 1 and stream == "tickers":
            return self._ticker_valid(records, now_ms, reference)
        if len(records) == 1 and stream == "ohlcv":
            return self._candle_valid(records, now_ms, reference)
        if not _prices_valid(stream, records):
            return False
        if stream == "funding" or (stream == "ohlcv" and not _candles_valid(records)):
            return False  # funding: rare and small batches, the detailed pass is cheap enough
        ts = records["ts_ms"]
        if (ts <= 0).any() or (ts > now_ms + self.max_future_ms).any():
            return False
        return reference is None or not (ts < reference - self.max_past_ms).any()  # type: ignore[operator]

    def _ticker_valid(self, records: np.ndarray, now_ms: int, reference: Any) -> bool:
        # one ticker: plain Python on one tuple beats a dozen numpy calls on 1-element arrays
        return self._ticker_row_valid(records[0].item(), now_ms, reference)

    def _ticker_row_valid(self, row: tuple[Any, ...], now_ms: int, reference: Any) -> bool:
        """The value checks of one TICKERS record as a tuple, `reference` the time "too old" is measured from.
        Written out (no loop, no unpacking): it runs once per ticker."""
        inf, bid, ask, last, mark, index = math.inf, row[4], row[5], row[8], row[9], row[10]
        # NaN (a missing optional price) passes each test; -inf is <= 0
        if bid <= 0 or bid == inf or ask <= 0 or ask == inf or last <= 0 or last == inf:
            return False
        if mark <= 0 or mark == inf or index <= 0 or index == inf or bid > ask:
            return False
        ts = row[0]
        if ts <= 0 or ts > now_ms + self.max_future_ms:
            return False
        return reference is None or ts >= reference - self.max_past_ms  # type: ignore[operator]

    def _candle_valid(self, records: np.ndarray, now_ms: int, reference: Any) -> bool:
        # one closed candle (the usual: one a minute): plain Python on one tuple, as `_ticker_valid`
        ts, _recv, _iid, _tf, o, h, low, c, volume, *_rest = records[0].item()
        for price in (o, h, low, c):
            if not 0 < price < math.inf:  # NaN fails
                return False
        if h < max(o, c) or low > min(o, c) or h < low or volume < 0 or volume == math.inf:  # NaN volume passes
            return False
        if ts <= 0 or ts > now_ms + self.max_future_ms:
            return False
        return reference is None or ts >= reference - self.max_past_ms  # type: ignore[operator]

    def _flag_values(
        self,
        stream: str,
        records: np.ndarray,
        now_ms: int,
        reference: Any,
        reasons: np.ndarray,
        kinds: np.ndarray,
    ) -> None:

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
        if reference is not None:
            flag(ts < reference - self.max_past_ms, "ts:past")  # type: ignore[operator]

    def _check_sequence(
        self, stream: str, records: np.ndarray, reasons: np.ndarray | None, late: list[int] | None = None
    ) -> dict[int, str]:
        """Duplicates and order: {row: reason} for rows to drop; trades that arrived after a newer trade of
        their instrument are kept and appended to `late` (when given). Only rows that passed the value checks
        (all when `reasons` is None) move the state. Plain Python over `tolist()`: batches are small and numpy
        scalar access per row is slower."""
        if stream == "trades" and reasons is None and self._new_in_order(stream, records):
            return {}
        ids = records["instrument_id"].tolist()
        rows = range(len(ids)) if reasons is None else np.flatnonzero(reasons == "").tolist()
        out: dict[int, str] = {}
        ts = records["ts_ms"].tolist()
        if stream in _IDENTITY:
            values = records[_IDENTITY[stream][0]].tolist()
        if stream in ("trades", "liquidations"):  # identified by id: kept when late, dropped when repeated
            for i in rows:
                key = (stream, ids[i])
                seen = self._seen_for(key)
                if values[i] in seen:
                    out[i] = _IDENTITY[stream][1]
                    continue
                seen.add(values[i])
                newest = self._last_ts.get(key)
                if newest is None or ts[i] >= newest:
                    self._last_ts[key] = ts[i]
                elif late is not None:
                    late.append(i)
            return out
        settled = records["is_settled"].tolist() if stream == "funding" else None
        for i in rows:
            key = (stream, ids[i])
            if settled is not None and settled[i]:
                seen = self._seen_for((*key, 1))
                if values[i] in seen:
                    out[i] = "dup:funding_ts"
                else:
                    seen.add(values[i])
                continue
            last = self._last_ts.get(key)
            if last is not None and ts[i] == last:
                out[i] = "dup:ts"
            elif last is not None and ts[i] < last:
                out[i] = "ts:out_of_order"
            else:
                self._last_ts[key] = ts[i]
        return out

    def _new_in_order(self, stream: str, records: np.ndarray) -> bool:
        """The usual trades batch, taken whole: one instrument, ids all new and distinct, times non-decreasing
        from the newest accepted. Then the state moves as the per-row pass would move it, and True; else
        nothing changes (False) and the per-row pass decides."""
        ids = records["instrument_id"]
        first = int(ids[0])
        if not (ids == first).all():
            return False
        ts = records["ts_ms"]
        key = (stream, first)
        newest = self._last_ts.get(key)
        if (newest is not None and int(ts[0]) < newest) or (len(ts) > 1 and (np.diff(ts) < 0).any()):
            return False
        values = records[_IDENTITY[stream][0]].tolist()
        seen = self._seen_for(key)
        if not seen.isdisjoint(values) or len(set(values)) != len(values):
            return False
        seen.update(values)
        self._last_ts[key] = int(ts[-1])
        return True

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
