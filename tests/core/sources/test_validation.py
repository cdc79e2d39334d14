"""Validator: quarantine reasons, running counts, duplicates and order, never an exception."""

from __future__ import annotations

import numpy as np
import pytest

from fundarb_dagster.core import schema
from fundarb_dagster.core.schema import EventKind
from fundarb_dagster.core.sources.validation import Validator, event_rows

NOW = 1_800_000_000_000


def _trades(rows: list[tuple[int, int, float, float]], instrument_id: int = 3) -> np.ndarray:
    out = schema.empty("trades", len(rows))
    for i, (ts, trade_id, price, amount) in enumerate(rows):
        out[i]["ts_ms"], out[i]["trade_id"], out[i]["price"], out[i]["amount"] = ts, trade_id, price, amount
    out["instrument_id"] = instrument_id
    out["recv_ts_ms"] = NOW
    return out


def _reasons(events: np.ndarray) -> dict[str, int]:
    return {r.decode(): int(c) for r, c in zip(events["reason"], events["count"], strict=True)}


def test_bad_prices_are_quarantined_with_reasons_and_counted() -> None:
    validator = Validator()
    records = _trades(
        [
            (NOW - 5, 1, 100.0, 1.0),
            (NOW - 4, 2, np.nan, 1.0),
            (NOW - 3, 3, np.inf, 1.0),
            (NOW - 2, 4, -1.0, 1.0),
            (NOW - 1, 5, 0.0, 1.0),
            (NOW - 1, 6, 100.0, np.nan),
            (NOW - 1, 7, np.nan, 1.0),
        ]
    )
    accepted, events = validator.check("trades", records, NOW)
    assert accepted["trade_id"].tolist() == [1]
    assert _reasons(events) == {"price:nan": 2, "price:inf": 1, "price:nonpositive": 2, "amount:nan": 1}
    assert (events["kind"] == int(EventKind.QUARANTINED)).all()
    assert (events["stream"] == int(schema.StreamCode.TRADES)).all()
    assert (events["instrument_id"] == 3).all()
    nan_event = events[events["reason"] == b"price:nan"][0]
    assert (nan_event["start_ms"], nan_event["end_ms"]) == (NOW - 4, NOW - 1)
    assert validator.counts == {"price:nan": 2, "price:inf": 1, "price:nonpositive": 2, "amount:nan": 1}
    # counts keep running across batches
    validator.check("trades", _trades([(NOW, 9, np.nan, 1.0)]), NOW)
    assert validator.counts["price:nan"] == 3


def test_timestamps_too_far_in_future_or_past_and_the_past_check_can_be_disabled() -> None:
    records = _trades([(NOW + 3_600_000, 1, 1.0, 1.0), (NOW - 10 * 86_400_000, 2, 1.0, 1.0), (0, 3, 1.0, 1.0)])
    live = Validator(max_future_ms=1000, max_past_ms=86_400_000)
    accepted, events = live.check("trades", records, NOW)
    assert len(accepted) == 0
    assert _reasons(events) == {"ts:future": 1, "ts:past": 1, "missing:timestamp": 1}
    history = Validator(max_past_ms=None)
    accepted, events = history.check("trades", records, NOW)
    assert accepted["trade_id"].tolist() == [2]


def test_duplicate_trade_ids_dropped_within_and_across_batches() -> None:
    validator = Validator()
    first, _ = validator.check("trades", _trades([(NOW, 1, 1.0, 1.0), (NOW, 2, 1.0, 1.0), (NOW, 2, 1.0, 1.0)]), NOW)
    second, events = validator.check("trades", _trades([(NOW, 2, 1.0, 1.0), (NOW + 1, 3, 1.0, 1.0)]), NOW)
    assert first["trade_id"].tolist() == [1, 2]
    assert second["trade_id"].tolist() == [3]
    assert events["kind"].tolist() == [int(EventKind.DUPLICATE)]
    assert validator.counts["dup:trade_id"] == 2
    assert validator.seen_trade(3, 2) and not validator.seen_trade(3, 99)
    # the same id on another instrument is not a duplicate
    other, _ = validator.check("trades", _trades([(NOW, 2, 1.0, 1.0)], instrument_id=4), NOW)
    assert len(other) == 1


def test_a_trade_older_than_the_newest_is_kept_and_reported_late_unless_order_is_off() -> None:
    validator = Validator()
    accepted, events = validator.check("trades", _trades([(NOW - 50, 1, 1.0, 1.0), (NOW - 60, 2, 1.0, 1.0)]), NOW)
    assert accepted["trade_id"].tolist() == [1, 2]  # a trade's identity is its id: it lands
    assert _reasons(events) == {"ts:late": 1} and events["kind"].tolist() == [int(EventKind.OUT_OF_ORDER)]
    backfill = _trades([(NOW - 70, 3, 1.0, 1.0), (NOW - 80, 4, 1.0, 1.0)])
    accepted, events = validator.check("trades", backfill, NOW, order=False)  # older by definition
    assert len(accepted) == 2 and len(events) == 0


def test_tickers_repeated_or_older_timestamps_are_dropped_as_duplicate_or_out_of_order() -> None:
    validator = Validator()
    tickers = schema.empty("tickers", 4)
    tickers["ts_ms"] = [NOW - 10, NOW - 10, NOW - 20, NOW - 5]
    tickers["bid"], tickers["ask"] = 99.0, 100.0
    accepted, events = validator.check("tickers", tickers, NOW)
    assert accepted["ts_ms"].tolist() == [NOW - 10, NOW - 5]
    kinds = dict(zip([r.decode() for r in events["reason"]], events["kind"].tolist(), strict=True))
    assert kinds == {"dup:ts": int(EventKind.DUPLICATE), "ts:out_of_order": int(EventKind.OUT_OF_ORDER)}


def test_ticker_optional_prices_may_be_missing_but_not_negative_or_crossed() -> None:
    tickers = schema.empty("tickers", 3)
    tickers["ts_ms"] = [NOW - 3, NOW - 2, NOW - 1]
    tickers["last"] = [100.0, -1.0, 100.0]
    tickers["bid"][2], tickers["ask"][2] = 101.0, 100.0
    accepted, events = Validator().check("tickers", tickers, NOW)
    assert accepted["ts_ms"].tolist() == [NOW - 3]  # NaN bid/ask/mark: a missing optional value is fine
    assert _reasons(events) == {"last:nonpositive": 1, "book:crossed": 1}


def test_inconsistent_candles_are_quarantined() -> None:
    candles = schema.empty("ohlcv", 2)
    candles["ts_ms"] = [NOW - 120_000, NOW - 60_000]
    candles["open"], candles["close"], candles["volume"] = 10.0, 11.0, 1.0
    candles["high"] = [12.0, 10.5]  # the second: high below close
    candles["low"] = [9.0, 9.0]
    accepted, events = Validator().check("ohlcv", candles, NOW)
    assert accepted["ts_ms"].tolist() == [NOW - 120_000]
    assert _reasons(events) == {"ohlc:inconsistent": 1}


def test_the_candles_quick_yes_gives_what_the_detailed_pass_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    """`check` takes a clean candle batch at once (`_all_valid`): over random candles (inconsistent, a bad price
    or volume, a repeated or older time, times too far ahead or behind) it accepts, names and remembers
    exactly what the detailed pass does."""
    rng = np.random.default_rng(8)
    fast, slow = Validator(), Validator()
    monkeypatch.setattr(slow, "_all_valid", lambda *args: False)
    taken = 0
    ts = NOW - 500 * 60_000
    for _ in range(300):
        n = int(rng.integers(1, 4))
        candles = schema.empty("ohlcv", n)
        candles["ts_ms"] = ts + 60_000 * np.arange(n)
        ts += 60_000 * int(rng.choice([0, 1, 1, 2, -1]) + n - 1)  # repeats and steps back among the usual
        candles["open"], candles["close"] = 10.0, rng.uniform(9.5, 10.5, n)
        candles["high"], candles["low"] = 10.6, 9.4
        candles["volume"] = rng.uniform(0, 5, n)
        roll, i = rng.random(), int(rng.integers(0, n))
        if roll < 0.1:
            candles["high"][i] = 9.0  # below the open
        elif roll < 0.15:
            candles["low"][i] = 10.55  # above the close
        elif roll < 0.25:
            field = str(rng.choice(["open", "high", "low", "close", "volume"]))
            candles[field][i] = rng.choice([np.nan, -1.0, np.inf, 0.0])
        elif roll < 0.3:
            candles["ts_ms"][i] = NOW + int(rng.choice([120_000, -3 * 86_400_000]))
        taken += fast._all_valid("ohlcv", candles, NOW, fast._past_reference("ohlcv", candles, NOW))
        a_records, a_events = fast.check("ohlcv", candles.copy(), NOW)
        b_records, b_events = slow.check("ohlcv", candles.copy(), NOW)
        assert a_records.tobytes() == b_records.tobytes() and a_events.tobytes() == b_events.tobytes()
    assert fast.counts == slow.counts and fast._last_ts == slow._last_ts and fast._latest == slow._latest
    assert 100 < taken < 300 and len(fast.counts) >= 6


def test_funding_rates_out_of_range_or_without_settlement_time() -> None:
    rows = schema.empty("funding", 3)
    rows["ts_ms"] = [NOW - 3, NOW - 2, NOW - 1]
    rows["funding_ts_ms"] = [NOW, 0, NOW]
    rows["funding_rate"] = [0.0001, 0.0001, 0.5]
    rows["interval_h"] = 8.0
    accepted, events = Validator(max_abs_funding_rate=0.1).check("funding", rows, NOW)
    assert accepted["ts_ms"].tolist() == [NOW - 3]
    assert _reasons(events) == {"missing:funding_ts": 1, "funding_rate:range": 1}


def test_settled_funding_deduplicates_by_settlement_time() -> None:
    validator = Validator(max_past_ms=None)
    rows = schema.empty("funding", 3)
    rows["is_settled"] = 1
    rows["ts_ms"] = rows["funding_ts_ms"] = [1000, 2000, 1000]
    rows["funding_rate"] = 0.0001
    accepted, events = validator.check("funding", rows, NOW)
    assert accepted["funding_ts_ms"].tolist() == [1000, 2000]
    assert _reasons(events) == {"dup:funding_ts": 1}


def test_screen_rejects_raw_structures_missing_required_fields() -> None:
    validator = Validator()
    trades = [
        {"timestamp": NOW, "price": 1.0, "amount": 1.0},
        {"timestamp": NOW, "price": None, "amount": 1.0},
        {"timestamp": None, "price": 1.0, "amount": 1.0},
        "not a structure",
    ]
    kept, events = validator.screen("trades", trades, 7, NOW)
    assert kept == trades[:1]
    assert _reasons(events) == {"missing:price": 1, "missing:timestamp": 1, "missing:structure": 1}
    kept, events = validator.screen("tickers", [{"bid": None, "ask": None, "last": None}], 7, NOW)
    assert kept == [] and _reasons(events) == {"missing:price": 1}
    kept, events = validator.screen("ohlcv", [[1, 2, 3, 4, 5, 6], [1, None, 3, 4, 5, 6], [1, 2]], 7, NOW)
    assert kept == [[1, 2, 3, 4, 5, 6]] and _reasons(events) == {"missing:ohlcv": 2}
    assert validator.counts["missing:ohlcv"] == 2


def _ticker(**fields: object) -> dict[str, object]:
    base = {"symbol": "BTC/USDT", "timestamp": NOW, "bid": 100.0, "ask": 100.5, "bidVolume": 2.0, "askVolume": 3.0}
    return {**base, "last": 100.2, "markPrice": None, "indexPrice": None, **fields}


def test_nan_inf_and_nonpositive_prices_and_sizes_are_quarantined_while_missing_ones_pass() -> None:
    """A ticker with bid = NaN used to pass as "a missing optional price": after normalization the two look
    the same, so the raw structure is judged. None is missing (kept); NaN, inf, <= 0 are bad (quarantined)."""
    from fundarb_dagster.core.instruments import InstrumentRegistry
    from fundarb_dagster.core.sources.markets import market_for
    from fundarb_dagster.core.sources.normalize import ticker_to_record

    validator = Validator()
    tickers = [
        _ticker(),
        _ticker(bid=None, bidVolume=None, last=None),  # a venue that gives no bid: missing, fine
        _ticker(bid=float("nan")),
        _ticker(ask=float("inf")),
        _ticker(bidVolume=0.0),
        _ticker(askVolume=float("nan")),
        _ticker(markPrice=-1.0),
        _ticker(indexPrice=float("-inf")),
        {key: value for key, value in _ticker().items() if key != "bid"},  # not a ccxt ticker: no bid key
    ]
    instrument = InstrumentRegistry().add_market("bybit", market_for("BTC/USDT"))
    accepted = []
    reasons: dict[str, int] = {}
    for raw in tickers:  # one at a time, as the Feed sees them
        kept, screened = validator.screen("tickers", [raw], instrument.id, NOW)
        reasons |= _reasons(screened)
        for item in kept:
            records, checked = validator.check("tickers", ticker_to_record(item, instrument, NOW), NOW, sequence=False)
            reasons |= _reasons(checked)
            accepted += records.tolist()
    assert len(accepted) == 2
    assert reasons == {
        "bid:nan": 1,
        "ask:inf": 1,
        "bid_size:nonpositive": 1,
        "ask_size:nan": 1,
        "mark_price:nonpositive": 1,
        "index_price:inf": 1,
        "missing:bid": 1,
    }
    kept, events = validator.screen("funding", [{"fundingRate": 1e-4, "markPrice": float("nan")}], 7, NOW)
    assert kept == [] and _reasons(events) == {"mark_price:nan": 1}
    kept, events = validator.screen("trades", [{"timestamp": NOW, "price": 1.0, "amount": -2.0}], 7, NOW)
    assert kept == [] and _reasons(events) == {"amount:nonpositive": 1}
    kept, events = validator.screen("ohlcv", [[NOW, 1.0, 1.0, 1.0, 1.0, float("nan")]], 7, NOW)
    assert kept == [] and _reasons(events) == {"volume:invalid": 1}
    assert (events["kind"] == int(EventKind.QUARANTINED)).all()


def test_event_rows_carry_stream_kind_and_a_truncated_ascii_reason() -> None:
    row = event_rows(EventKind.GAP, "ohlcv", 5, NOW, NOW, count=2, start_ms=1, end_ms=2, reason="x" * 80)
    assert row.dtype == schema.CAPTURE_EVENTS
    assert row["stream"][0] == int(schema.StreamCode.OHLCV) and row["kind"][0] == int(EventKind.GAP)
    assert len(row["reason"][0]) == 48


def test_bad_settings_fail_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="max_future_ms"):
        Validator(max_future_ms=-1)
    with pytest.raises(ValueError, match="max_past_ms"):
        Validator(max_past_ms=0)


def test_trades_fast_paths_screen_and_check_exactly_like_the_per_item_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """`screen` takes a clean trades batch whole and `check` takes a batch of new, ordered ids whole: over
    random batches (repeats, late and bad trades, several instruments) both give what the per-item passes give,
    and leave the same state behind."""
    from fundarb_dagster.core.sources import validation

    rng = np.random.default_rng(5)
    fast, slow = Validator(dedupe_capacity=50), Validator(dedupe_capacity=50)
    monkeypatch.setattr(slow, "_new_in_order", lambda stream, records: False)
    whole: list[bool] = []
    take_whole = fast._new_in_order
    monkeypatch.setattr(
        fast, "_new_in_order", lambda stream, records: whole.append(take_whole(stream, records)) or whole[-1]
    )
    next_id, ts = 0, NOW - 10_000
    for _ in range(400):
        n = int(rng.integers(1, 30))
        ids = next_id + np.arange(n)
        next_id += n
        if rng.random() < 0.3:  # repeats, within the batch or of earlier ones
            ids[int(rng.integers(0, n))] = int(rng.integers(max(0, next_id - 120), next_id))
        times = ts + np.sort(rng.integers(0, 50, n))
        ts = int(times[-1])
        if rng.random() < 0.2:  # a late trade
            times[int(rng.integers(0, n))] -= 500
        rows = [(int(t), int(i), 100.0, 1.0) for t, i in zip(times, ids, strict=True)]
        records = _trades(rows, instrument_id=3 if rng.random() < 0.9 else int(rng.integers(3, 5)))
        if rng.random() < 0.1:
            records["instrument_id"][0] = 4
        if rng.random() < 0.1:
            records["price"][int(rng.integers(0, n))] = -1.0
        a_records, a_events = fast.check("trades", records.copy(), NOW)
        b_records, b_events = slow.check("trades", records.copy(), NOW)
        assert a_records.tobytes() == b_records.tobytes()
        assert a_events.tobytes() == b_events.tobytes()
    assert fast.counts == slow.counts and fast._last_ts == slow._last_ts and fast._latest == slow._latest
    assert {k: list(s._order) for k, s in fast._seen.items()} == {k: list(s._order) for k, s in slow._seen.items()}
    assert sum(fast.counts.values()) > 50 and 100 < sum(whole) < len(whole)  # both paths taken

    def raw(n: int) -> list[dict[str, object]]:
        return [{"timestamp": NOW + i, "price": 100.0 + i, "amount": 0.5, "id": str(i)} for i in range(n)]

    batches = [raw(5)]
    for bad in ({"price": None}, {"price": "101"}, {"amount": -1.0}, {"amount": float("nan")}, {"price": True},
                {"timestamp": ""}, {"price": float("inf")}, {"amount": 0}):  # fmt: skip
        batch = raw(5)
        batch[2].update(bad)
        batches.append(batch)
    batches.append([*raw(2), ["not", "a", "dict"]])
    for batch in batches:
        fast_kept, fast_events = Validator().screen("trades", batch, 3, NOW)
        with monkeypatch.context() as m:
            m.setattr(validation, "plain_trades", lambda items: False)
            slow_kept, slow_events = Validator().screen("trades", batch, 3, NOW)
        assert fast_kept == slow_kept and fast_events.tobytes() == slow_events.tobytes()
    assert validation.plain_trades(raw(5)) and not validation.plain_trades(batches[1])


def test_the_candles_fast_screen_keeps_what_the_per_item_pass_keeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """`screen` takes a clean candle update whole (`plain_candles`): over clean and bad candles (a bad price,
    volume or time, a field of another type, a short row) it keeps and names exactly what the per-item pass
    does."""
    minute = 60_000

    def raw(n: int) -> list[list[object]]:
        return [[NOW - (n - i) * minute, 100.0, 101.0 + i, 99.0, 100.5, 3.0 + i] for i in range(n)]

    batches = [raw(1), raw(4)]
    for position, bad in ((1, 0.0), (2, float("inf")), (3, -1.0), (4, float("nan")), (5, -0.5), (5, float("inf")),
                          (1, "100"), (2, None), (5, True), (0, NOW + 3 * 86_400_000)):  # fmt: skip
        batch = raw(4)
        batch[2][position] = bad
        batches.append(batch)
    batches += [[*raw(2), [NOW, 1.0, 1.0]], [*raw(2), (NOW, 1.0, 1.0, 1.0, 1.0, 1.0)]]
    taken: list[bool] = []
    for batch in batches:
        fast = Validator()
        plain = fast.plain_candles

        def counted(items: list, now: int, plain: object = plain) -> bool:
            taken.append(plain(items, now))  # type: ignore[operator]
            return taken[-1]

        monkeypatch.setattr(fast, "plain_candles", counted)
        fast_kept, fast_events = fast.screen("ohlcv", batch, 3, NOW)
        slow = Validator()
        monkeypatch.setattr(slow, "plain_candles", lambda items, now: False)
        slow_kept, slow_events = slow.screen("ohlcv", batch, 3, NOW)
        assert fast_kept == slow_kept and fast_events.tobytes() == slow_events.tobytes(), batch
    assert taken[:2] == [True, True] and not any(taken[2:])  # the clean updates whole, every bad one item by item
