"""Funding normalisation on the real 2025-2026 funding fixture (8h and 1h venues) and on edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core import funding as f
from fundarb_dagster.core.instruments import InstrumentRegistry
from fundarb_dagster.core.units import HOUR_MS


@pytest.fixture(scope="module")
def fixture_funding(fixtures_dir) -> pd.DataFrame:
    frame = pd.read_csv(fixtures_dir / "funding_2025_2026" / "funding_btc_eth_binance_bybit_hyperliquid_utc.csv")
    return frame.rename(
        columns={"venue": "exchange", "canonical_symbol": "symbol", "settlement_time_ms_utc": "funding_ts_ms"}
    )


def _reported(frame: pd.DataFrame) -> pd.DataFrame:
    obs = frame[["exchange", "symbol", "funding_ts_ms", "interval_hours"]].rename(
        columns={"funding_ts_ms": "ts_ms", "interval_hours": "interval_h"}
    )
    return obs.assign(cap=np.nan, floor=np.nan, source="reported")


def test_funding_apr_matches_the_fixture_rate_apr_for_8h_and_1h_venues(fixture_funding):
    intervals = f.build_intervals(_reported(fixture_funding))
    rates = f.settled_rates(fixture_funding, intervals, None)
    assert len(rates) == len(fixture_funding)  # no settlement lost or merged
    expected = fixture_funding.assign(funding_ts_raw=pd.to_datetime(fixture_funding["funding_ts_ms"], unit="ms"))
    merged = rates.merge(expected, on=["exchange", "symbol", "funding_ts_raw"], how="inner", validate="1:1")
    assert len(merged) == len(fixture_funding)
    np.testing.assert_allclose(merged["funding_apr"], merged["rate_apr_as_given"], rtol=1e-12)
    hourly = merged[merged["exchange"] == "hyperliquid"]
    eight = merged[merged["exchange"] != "hyperliquid"]
    assert set(hourly["interval_h"]) == {1.0} and set(eight["interval_h"]) == {8.0}
    # Independent: per-hour rate is the rate divided by the venue's interval, for both kinds of venue.
    np.testing.assert_allclose(merged["rate_per_hour"], merged["funding_rate_x"] / merged["interval_hours"])


def test_intervals_inferred_from_settlement_spacing_give_the_same_apr(fixture_funding):
    inferred = f.infer_intervals(fixture_funding)
    intervals = f.build_intervals(pd.DataFrame(columns=f.OBSERVATION_COLUMNS), inferred)
    by_key = intervals.set_index(["exchange", "symbol"])["interval_h"]
    assert by_key[("hyperliquid", "BTC-USDC-PERP")] == 1.0
    assert by_key[("binance", "ETH-USDT-PERP")] == 8.0
    rates = f.settled_rates(fixture_funding, intervals, None)
    np.testing.assert_allclose(
        rates.sort_values(["exchange", "symbol", "funding_ts"])["funding_apr"].to_numpy(),
        fixture_funding.sort_values(["exchange", "symbol", "funding_ts_ms"])["rate_apr_as_given"].to_numpy(),
        rtol=1e-12,
    )


def test_settlement_keys_round_ms_jitter_to_the_interval_grid_and_keep_the_raw_time(fixture_funding):
    intervals = f.build_intervals(_reported(fixture_funding))
    rates = f.settled_rates(fixture_funding, intervals, None)
    ms = rates["funding_ts"].astype("int64") // 1000
    step = (rates["interval_h"] * HOUR_MS).astype("int64")
    assert (ms % step == 0).all()
    raw_ms = rates["funding_ts_raw"].astype("int64") // 1000
    assert (raw_ms - ms).abs().max() < 1000  # jitter only, kept in funding_ts_raw
    assert (raw_ms != ms).any()


def test_late_hyperliquid_settlement_at_odd_minutes_keys_to_its_hour():
    ts = np.array([1_755_756_000_000 + 7 * 60_000, 1_755_759_600_000 + 3 * 60_000 + 12], dtype=np.int64)
    keyed = f.round_to_grid(ts, 1.0)
    np.testing.assert_array_equal(keyed, [1_755_756_000_000, 1_755_759_600_000])


def test_interval_change_from_8h_to_4h_normalises_each_settlement_with_its_own_interval():
    start = 1_767_225_600_000  # 2026-01-01 00:00 UTC
    times = [start + i * 8 * HOUR_MS for i in range(4)] + [start + 24 * HOUR_MS + i * 4 * HOUR_MS for i in range(1, 5)]
    settled = pd.DataFrame(
        {"exchange": "binance", "symbol": "X/USDT:USDT", "funding_ts_ms": times, "funding_rate": 1e-4}
    )
    intervals = f.build_intervals(pd.DataFrame(columns=f.OBSERVATION_COLUMNS), f.infer_intervals(settled))
    assert intervals["interval_h"].tolist() == [8.0, 4.0]
    assert intervals["valid_to"].iloc[0] == intervals["valid_from"].iloc[1]
    rates = f.settled_rates(settled, intervals, None)
    expected = [1e-4 * 8760 / 8] * 4 + [1e-4 * 8760 / 4] * 4
    np.testing.assert_allclose(rates["funding_apr"], expected)


def test_one_missed_hourly_settlement_is_not_taken_for_a_2h_interval():
    start = 1_767_225_600_000
    times = [start + i * HOUR_MS for i in range(10) if i != 5]
    settled = pd.DataFrame({"exchange": "hyperliquid", "symbol": "BTC/USDC:USDC", "funding_ts_ms": times})
    intervals = f.build_intervals(pd.DataFrame(columns=f.OBSERVATION_COLUMNS), f.infer_intervals(settled))
    assert intervals["interval_h"].tolist() == [1.0]


def test_reported_intervals_win_over_inferred_after_capture_started():
    reported = pd.DataFrame([f.observation("bybit", "S", 10 * HOUR_MS, 4.0, cap=0.02, floor=-0.02)])
    inferred = pd.DataFrame(
        [
            f.observation("bybit", "S", 0, 8.0, source="inferred"),
            f.observation("bybit", "S", 20 * HOUR_MS, 2.0, source="inferred"),
        ]
    )
    spans = f.build_intervals(reported, inferred)
    assert spans["interval_h"].tolist() == [8.0, 4.0]
    # a cap reported once applies to the whole history of the key
    assert spans["cap"].tolist() == [0.02, 0.02]


def test_market_info_gives_interval_and_caps_for_bybit_and_binance_shapes():
    bybit = {"info": {"fundingInterval": "240", "upperFundingRate": "0.02", "lowerFundingRate": "-0.02"}}
    assert f.market_funding_info(bybit) == (4.0, 0.02, -0.02)
    binance = {
        "info": {"fundingIntervalHours": 8, "adjustedFundingRateCap": "0.03", "adjustedFundingRateFloor": "-0.03"}
    }
    assert f.market_funding_info(binance) == (8.0, 0.03, -0.03)
    assert f.market_funding_info({"info": {}}) == (None, None, None)


def test_last_prediction_before_settlement_and_forecast_error():
    t0 = pd.Timestamp("2026-01-01 08:00")
    settled = pd.DataFrame(
        {"exchange": "bybit", "symbol": "S", "funding_ts_ms": [int(t0.value // 1_000_000) + 3], "funding_rate": [2e-4]}
    )
    t_ms = int(t0.value // 1_000_000)
    predicted = pd.DataFrame(
        {
            "exchange": "bybit",
            "symbol": "S",
            "ts_ms": [t_ms - 3 * HOUR_MS, t_ms - 60_000, t_ms + 60_000],  # the last one comes after settlement
            "funding_ts_ms": [t_ms, t_ms, t_ms],
            "funding_rate": [1e-4, 1.5e-4, 9e-4],
            "interval_h": 8.0,
        }
    )
    intervals = f.build_intervals(pd.DataFrame([f.observation("bybit", "S", t_ms, 8.0)]))
    preds = f.point_in_time_predictions(predicted, intervals)
    assert len(preds) == 3
    np.testing.assert_allclose(preds["predicted_apr"], predicted["funding_rate"] * 8760 / 8)
    rates = f.settled_rates(settled, intervals, preds)
    assert rates["predicted_rate"].iloc[0] == pytest.approx(1.5e-4)
    assert rates["forecast_error"].iloc[0] == pytest.approx(0.5e-4)
    assert rates["predicted_at"].iloc[0] == t0 - pd.Timedelta(minutes=1)


def test_rows_without_any_interval_history_get_no_invented_interval():
    settled = pd.DataFrame({"exchange": "okx", "symbol": "S", "funding_ts_ms": [0], "funding_rate": [1e-4]})
    rates = f.settled_rates(settled, pd.DataFrame(columns=f.INTERVAL_COLUMNS), None)
    assert np.isnan(rates["interval_h"].iloc[0]) and np.isnan(rates["funding_apr"].iloc[0])


def test_coverage_counts_present_vs_expected_settlements(fixture_funding):
    intervals = f.build_intervals(_reported(fixture_funding))
    start = int(pd.Timestamp("2026-01-01").value // 1_000_000)
    end = start + 24 * HOUR_MS
    cov = f.coverage(fixture_funding, intervals, start, end).set_index(["exchange", "symbol"])
    assert cov.loc[("hyperliquid", "BTC-USDC-PERP"), "expected"] == 24
    assert cov.loc[("binance", "BTC-USDT-PERP"), "expected"] == 3
    window = fixture_funding[fixture_funding["funding_ts_ms"].between(start, end - 1)]
    counts = window.groupby(["exchange", "symbol"]).size()
    for key, n in counts.items():
        assert cov.loc[key, "settlements"] == n


def test_history_rows_key_each_settlement_on_its_hour_and_name_the_source():
    settled = pd.DataFrame(
        {
            "exchange": ["bybit", "hyperliquid"],
            "symbol": ["BTC/USDT:USDT", "BTC/USDC:USDC"],
            "funding_ts_ms": [8 * HOUR_MS + 4, 5 * HOUR_MS + 7 * 60_000],  # ms jitter, a late hyperliquid
            "funding_rate": [1e-4, 2e-5],
        },
        index=[7, 3],  # filtered frames keep their index: keys must follow rows, not labels
    )
    rows = f.history_rows(settled, "sim")
    assert rows["funding_ts"].tolist() == [pd.Timestamp("1970-01-01 08:00"), pd.Timestamp("1970-01-01 05:00")]
    assert rows["funding_ts_ms"].tolist() == [8 * HOUR_MS + 4, 5 * HOUR_MS + 7 * 60_000]
    assert (rows["source"] == "sim").all()


def test_market_observations_place_a_published_history_and_the_current_interval_with_its_caps():
    markets = {
        "sim": {
            "X/USDT:USDT": {
                "info": {
                    "fundingIntervalHours": 4,
                    "fundingCap": 0.01,
                    "fundingFloor": -0.01,
                    "fundingIntervalHistory": [[0, 8], [40 * HOUR_MS, 4]],
                }
            }
        },
        "bybit": {"Y/USDT:USDT": {"info": {"upperFundingRate": "0.02", "lowerFundingRate": "-0.02"}}},
        "binance": {"Z/USDT:USDT": {"info": {}}},  # publishes nothing: no observation
    }
    obs = f.market_observations(markets)
    sim = obs[obs["exchange"] == "sim"]
    assert sim["source"].tolist() == ["history", "history", "market"]
    # each change half an hour after its start, so a settlement exactly at the start keeps the old interval
    assert sim["ts_ms"].tolist() == [HOUR_MS // 2, 40 * HOUR_MS + HOUR_MS // 2, 0]
    assert sim["interval_h"].tolist() == [8.0, 4.0, 4.0] and (sim["cap"] == 0.01).all()
    bybit = obs[obs["exchange"] == "bybit"]
    assert len(bybit) == 1 and np.isnan(bybit["interval_h"].iloc[0]) and bybit["cap"].iloc[0] == 0.02
    assert "binance" not in set(obs["exchange"])


def test_interval_spans_apply_the_market_interval_after_the_last_settlement_with_its_caps():
    settlements = pd.DataFrame(
        {"exchange": "bybit", "symbol": "S", "funding_ts_ms": [t * HOUR_MS for t in (8, 16, 24, 32)]}
    )
    reported = pd.DataFrame(columns=["exchange", "symbol", "ts_ms", "interval_h"])
    registry = pd.DataFrame(columns=f.OBSERVATION_COLUMNS)
    market = pd.DataFrame([f.observation("bybit", "S", 0, 4.0, 0.02, -0.02, source="market")])
    spans = f.interval_spans(reported, settlements, registry, market)
    # the spacing shows 8 h; the venue now publishes 4 h, in force from the next settlement on
    assert spans["interval_h"].tolist() == [8.0, 4.0]
    assert spans["valid_from"].tolist() == [pd.Timestamp("1970-01-01 16:00"), pd.Timestamp("1970-01-02 08:30")]
    assert spans["source"].tolist() == ["inferred", "market"]
    assert spans["cap"].tolist() == [0.02, 0.02] and spans["floor"].tolist() == [-0.02, -0.02]


def test_interval_spans_ignore_the_current_interval_of_a_key_with_a_published_history():
    settlements = pd.DataFrame({"exchange": "sim", "symbol": "S", "funding_ts_ms": [8 * HOUR_MS, 16 * HOUR_MS]})
    reported = pd.DataFrame(columns=["exchange", "symbol", "ts_ms", "interval_h"])
    market = f.market_observations(
        {"sim": {"S": {"info": {"fundingIntervalHours": 4, "fundingIntervalHistory": [[0, 8], [20 * HOUR_MS, 4]]}}}}
    )
    spans = f.interval_spans(reported, settlements, pd.DataFrame(columns=f.OBSERVATION_COLUMNS), market)
    assert spans["interval_h"].tolist() == [8.0, 4.0] and spans["source"].tolist() == ["history", "history"]
    assert spans["valid_from"].iloc[1] == pd.Timestamp("1970-01-01 20:30")


def test_registry_observations_are_the_perps_interval_history():
    registry = InstrumentRegistry()
    for market in (
        {"symbol": "BTC/USDT:USDT", "id": "BTCUSDT", "type": "swap", "base": "BTC", "quote": "USDT", "settle": "USDT"},
        {"symbol": "BTC/USDT", "id": "BTCUSDT", "type": "spot", "base": "BTC", "quote": "USDT", "settle": None},
    ):
        registry.add_market("binance", market)
    registry.observe_interval("binance", "BTC/USDT:USDT", 8 * HOUR_MS, 8.0)
    registry.observe_interval("binance", "BTC/USDT:USDT", 40 * HOUR_MS, 4.0)
    obs = f.registry_observations(registry)
    assert obs[["exchange", "symbol", "interval_h", "source"]].values.tolist() == [
        ["binance", "BTC/USDT:USDT", 8.0, "reported"],
        ["binance", "BTC/USDT:USDT", 4.0, "reported"],
    ]


def _settlements(*pieces: tuple[int, int, int, float]) -> tuple[np.ndarray, np.ndarray]:
    """Settlement times and the interval in force, built piece by piece: (start hour, count, step hours,
    interval in force)."""
    times: list[int] = []
    truth: list[float] = []
    for start_h, count, step_h, interval in pieces:
        for i in range(count):
            times.append((start_h + i * step_h) * 3_600_000)
            truth.append(interval)
    order = np.argsort(times, kind="stable")
    return np.asarray(times, dtype=np.int64)[order], np.asarray(truth)[order]


def test_off_grid_settlements_keep_the_interval_in_force_and_only_confirmed_intervals_are_inferred() -> None:
    from fundarb_dagster.core.funding import intervals_in_force

    day = 24
    ts, truth = _settlements(
        (0, 30, 8, 8.0),  # 8h venue, 10 days
        (3 * day + 3, 1, 1, 8.0),  # an extra settlement at 03:00 on a volatile day
        (5 * day + 18, 1, 1, 8.0),  # and one at 18:00
        (10 * day, 48, 1, 1.0),  # switched to hourly for two days
        (12 * day + 4, 15, 8, 8.0),  # back to 8h on an offset 04/12/20 schedule
        (48 * day + 4, 12, 8, 8.0),  # after a month missing
    )
    jitter = np.random.default_rng(3).integers(0, 900, len(ts))  # venues settle a few hundred ms late
    truth[ts == 10 * day * 3_600_000] = 8.0  # the first hourly-era settlement pays for the 8 hours before it
    got = intervals_in_force(ts + jitter)
    np.testing.assert_array_equal(got, truth)
    # nothing confirmed (two gaps of 8h, then off-grid gaps): nothing inferred
    assert np.isnan(intervals_in_force(np.array([0, 8, 16, 19, 24]) * 3_600_000)).all()


def test_the_same_interval_observed_twice_at_one_instant_without_a_cap_is_one_span() -> None:
    """Two sources (a funding row and the registry) reporting the same 8 h with no cap at the same settlement
    made a zero-length span before it (NaN caps never compared equal), which failed the blocking
    funding_intervals_has_no_overlaps on 100 imported symbols."""
    t0 = 1_609_459_200_001
    obs = pd.DataFrame(
        {
            "exchange": "bybit",
            "symbol": "C064/USDT:USDT",
            "ts_ms": [t0, t0, t0 + 8 * 3_600_000, t0 + 16 * 3_600_000],
            "interval_h": [8.0, 8.0, 8.0, 4.0],
            "cap": np.nan,
            "floor": np.nan,
            "source": "reported",
        }
    )
    spans = f.build_intervals(obs)
    assert spans["interval_h"].tolist() == [8.0, 4.0]
    assert spans["valid_to"].iloc[0] == spans["valid_from"].iloc[1] and pd.isna(spans["valid_to"].iloc[1])
    assert spans["cap"].isna().all() and spans["cap"].dtype == float


def test_interval_at_is_the_span_in_force_per_row_as_a_plain_loop_finds_it():
    """The span in force at each row's time for its own (exchange, symbol): the last span starting at or before
    it, the first span before any, NaN for a perp without spans; keys that share an exchange or a symbol with
    another perp never mix (the lookup joins on both as one key)."""
    rng = np.random.default_rng(21)
    t0 = pd.Timestamp("2025-01-01")
    spans = []
    for exchange, symbol in [("a", "BTC/USDT:USDT"), ("a", "ETH/USDT:USDT"), ("b", "BTC/USDT:USDT")]:
        starts = sorted(rng.choice(24 * 60, 5, replace=False))
        for start in starts:
            spans.append((exchange, symbol, t0 + pd.Timedelta(hours=int(start)), float(rng.choice([1, 4, 8]))))
    intervals = pd.DataFrame(spans, columns=["exchange", "symbol", "valid_from", "interval_h"])
    intervals["cap"], intervals["floor"] = intervals["interval_h"] / 100, -intervals["interval_h"] / 100
    keys = pd.DataFrame(
        {
            "exchange": rng.choice(["a", "b", "c"], 400),
            "symbol": rng.choice(["BTC/USDT:USDT", "ETH/USDT:USDT"], 400),
            "funding_ts": t0 + pd.to_timedelta(rng.integers(-24, 24 * 61, 400), unit="h"),
        }
    )
    got = f.interval_at(intervals, keys)
    for row, out in zip(keys.itertuples(index=False), got.itertuples(index=False), strict=True):
        mine = intervals[(intervals.exchange == row.exchange) & (intervals.symbol == row.symbol)]
        mine = mine.sort_values("valid_from")
        if mine.empty:
            assert np.isnan(out.interval_h) and np.isnan(out.cap), row
            continue
        before = mine[mine.valid_from <= row.funding_ts]
        span = before.iloc[-1] if len(before) else mine.iloc[0]
        assert (out.interval_h, out.cap, out.floor) == (span.interval_h, span.cap, span.floor), row
    assert got["interval_h"].notna().sum() > 200 and got["interval_h"].isna().sum() > 50


def _infer_intervals_loop(settlements: pd.DataFrame, min_run: int) -> pd.DataFrame:
    """The obvious computation: each key's gaps walked one by one (what `infer_intervals` did before)."""
    rows = []
    frame = settlements[["exchange", "symbol", "funding_ts_ms"]].drop_duplicates()
    for (exchange, symbol), group in frame.groupby(["exchange", "symbol"], sort=True):
        ts = np.sort(group["funding_ts_ms"].to_numpy(dtype=np.int64))
        if len(ts) < 2:
            continue
        gaps_h = np.round(np.diff(ts) / HOUR_MS * 4) / 4
        plausible = np.isin(gaps_h, f.PLAUSIBLE_INTERVALS_H)
        current, run_value, run_len, run_start = None, None, 0, 0
        for i, (gap, ok) in enumerate(zip(gaps_h, plausible, strict=True)):
            if not ok:
                run_value, run_len = None, 0
                continue
            if gap == run_value:
                run_len += 1
            else:
                run_value, run_len, run_start = gap, 1, i + 1
            if run_len == min_run and run_value != current:
                current = float(run_value)
                rows.append(f.observation(exchange, symbol, int(ts[run_start]), current, source="inferred"))
        if current is None and len(ts) == 2 and plausible[0]:
            rows.append(f.observation(exchange, symbol, int(ts[1]), float(gaps_h[0]), source="inferred"))
    return pd.DataFrame(rows, columns=f.OBSERVATION_COLUMNS)


@pytest.mark.parametrize("min_run", [1, 2, 3])
def test_infer_intervals_finds_what_walking_each_key_s_gaps_finds(min_run):
    """Arrays over all keys at once = the loop over each key's gaps, on schedules built to hit every branch:
    8h -> 1h -> 4h switches, missed and extra (off-grid) settlements, ms jitter, an 8h run cut by holes before it
    confirms, keys of one and of two settlements, duplicates, keys sharing an exchange or a symbol."""
    rng = np.random.default_rng(min_run)
    t0 = 1_735_689_600_000  # 2025-01-01
    frames = []
    for k in range(40):
        ts, t = [], t0 + int(rng.integers(0, 8)) * HOUR_MS
        for _ in range(int(rng.integers(0, 8))):  # segments of one schedule, with anomalies inside
            interval = float(rng.choice([8, 1, 4, 2]))
            for _ in range(int(rng.integers(1, 8))):
                step = float(rng.choice([interval] * 6 + [2 * interval, 3, 0.5]))  # missed, off-grid, odd
                t += int(step * HOUR_MS) + int(rng.integers(-900, 900))  # jitter of up to 0.9 s
                ts.append(t)
        if k % 7 == 0:
            ts = ts[:2]  # two settlements
        elif k % 11 == 0:
            ts = ts[:1]
        ts += ts[: int(rng.integers(0, 3))]  # duplicates
        frames.append(pd.DataFrame({"exchange": f"v{k % 3}", "symbol": f"S{k // 3}/USDT:USDT", "funding_ts_ms": ts}))
    settlements = pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=1)  # any order in
    got = f.infer_intervals(settlements, min_run)
    want = _infer_intervals_loop(settlements, min_run)
    assert len(want) > 25 and want["interval_h"].nunique() == 4
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_dtype=False)
    assert f.infer_intervals(settlements.iloc[:0]).empty


def _build_intervals_loop(observations: pd.DataFrame) -> pd.DataFrame:
    """The obvious computation: each key's observations walked one by one (what `build_intervals` did before)."""
    obs = observations.dropna(subset=["interval_h"])
    obs = obs[obs["interval_h"] > 0]
    first_reported = obs[obs["source"] != "inferred"].groupby(["exchange", "symbol"])["ts_ms"].min()
    keep = []
    for (exchange, symbol), group in obs.groupby(["exchange", "symbol"], sort=True):
        cutoff = first_reported.get((exchange, symbol))
        if cutoff is not None:
            group = group[(group["source"] != "inferred") | (group["ts_ms"] < cutoff)]
        keep.append(group)
    obs = pd.concat(keep, ignore_index=True).sort_values(["exchange", "symbol", "ts_ms"], kind="stable")
    obs[["cap", "floor"]] = obs.groupby(["exchange", "symbol"])[["cap", "floor"]].transform(lambda s: s.ffill().bfill())
    rows = []
    for (exchange, symbol), group in obs.groupby(["exchange", "symbol"], sort=True):
        spans = []
        for rec in group.itertuples(index=False):
            state = tuple(None if pd.isna(v) else float(v) for v in (rec.interval_h, rec.cap, rec.floor))
            if spans and spans[-1][0] == state:
                continue
            spans.append((state, int(rec.ts_ms), rec.source))
        for i, (state, start, source) in enumerate(spans):
            end = spans[i + 1][1] if i + 1 < len(spans) else None
            rows.append(
                (exchange, symbol, start, end, state[0], *(np.nan if v is None else v for v in state[1:]), source)
            )
    out = pd.DataFrame(rows, columns=["exchange", "symbol", "from_ms", "to_ms", "interval_h", "cap", "floor", "source"])
    out["valid_from"] = pd.to_datetime(out["from_ms"], unit="ms").astype("datetime64[us]")
    out["valid_to"] = pd.to_datetime(out["to_ms"], unit="ms").astype("datetime64[us]")
    return out[f.INTERVAL_COLUMNS]


def test_build_intervals_is_the_loop_over_each_key_s_observations():
    """Spans over all keys at once = the walk of each key's observations: reported beats inferred from a key's
    first report on, repeated states merge, a cap from one observation fills the key both ways, NaN and zero
    intervals are dropped, ties of time keep their order."""
    rng = np.random.default_rng(8)
    n = 600
    observations = pd.DataFrame(
        {
            "exchange": rng.choice(["a", "b", "c"], n),
            "symbol": rng.choice(["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"], n),
            "ts_ms": 1_735_689_600_000 + rng.integers(0, 300, n) * HOUR_MS,
            "interval_h": rng.choice([8.0, 8.0, 8.0, 4.0, 1.0, np.nan, 0.0], n),
            "cap": np.where(rng.random(n) < 0.1, rng.choice([0.003, 0.02], n), np.nan),
            "floor": np.where(rng.random(n) < 0.1, rng.choice([-0.003, -0.02], n), np.nan),
            "source": rng.choice(["reported", "inferred", "inferred", "market", "history"], n),
        }
    )
    observations.loc[observations["exchange"] == "c", "source"] = "inferred"  # keys never reported
    got = f.build_intervals(observations)
    want = _build_intervals_loop(observations)
    assert len(want) > 100 and want["cap"].notna().any() and want["valid_to"].isna().sum() == 9
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    inferred_only = observations[observations["source"] == "inferred"]
    pd.testing.assert_frame_equal(
        f.build_intervals(observations.iloc[:0], inferred_only), _build_intervals_loop(inferred_only), check_dtype=False
    )
