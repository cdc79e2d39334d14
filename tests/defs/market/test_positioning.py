"""raw_open_interest, raw_liquidations, open_interest and liquidations: the simulator's values landed (one hour
twice, as a re-landed file), materialized for real, and held against an independent pandas computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core import landing, schema
from fundarb_dagster.core.config import SimConfig
from fundarb_dagster.core.sources import normalize
from fundarb_dagster.core.units import HOUR_MS, MINUTE_MS
from fundarb_dagster.defs.market.assets import liquidations, ohlcv_1m, open_interest
from fundarb_dagster.defs.raw.assets import raw_liquidations, raw_ohlcv, raw_open_interest, raw_trades
from tests.core.sources.sim.common import sim_perp
from tests.defs.raw.landing_fixtures import NAMES, land_trades, query, run

ASSETS = [raw_open_interest, raw_liquidations, open_interest, liquidations]
INSTRUMENT = 1  # bybit BTC/USDT:USDT in the fixtures' names
START = SimConfig().start_ms
HOURS = 5
SKIPPED_HOUR = 2  # no open interest captured in this hour: the next hour's change reaches back over it


@pytest.fixture(scope="module")
def captured() -> tuple[np.ndarray, np.ndarray]:
    """A simulated bybit perp's open interest (one value a minute) and liquidation prints over HOURS hours."""
    ex, instrument, m = sim_perp("bybit", "BTC/USDT:USDT", SimConfig())
    times = [START + k * MINUTE_MS for k in range(HOURS * 60) if k // 60 != SKIPPED_HOUR]
    interest = np.concatenate(
        [normalize.open_interest_to_record(ex.positioning.open_interest(m, t), instrument, t + 250) for t in times]
    )
    prints = ex.positioning.between(m, START - 1, START + HOURS * HOUR_MS - 1)
    liquidated = normalize.liquidations_to_records(prints, instrument, START, "position")
    liquidated["recv_ts_ms"] = liquidated["ts_ms"] + 40
    for records in (interest, liquidated):
        records["instrument_id"] = INSTRUMENT
    assert len(liquidated) >= HOURS and set(liquidated["position_side"].tolist()) == {-1, 1}
    return interest, liquidated


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory, captured):
    interest, liquidated = captured
    data_dir = tmp_path_factory.mktemp("positioning")
    landing.write_stream(data_dir, "open_interest", schema.to_arrow("open_interest", interest, NAMES), "oi", 0)
    landing.write_stream(data_dir, "liquidations", schema.to_arrow("liquidations", liquidated, NAMES), "liq", 0)
    # the first hour landed again, later (a re-delivered file): the raw tables keep one row per key
    first_hour = interest[interest["ts_ms"] < START + HOUR_MS].copy()
    first_hour["recv_ts_ms"] += 1_000
    landing.write_stream(data_dir, "open_interest", schema.to_arrow("open_interest", first_hour, NAMES), "oi", 1)
    again = liquidated[liquidated["ts_ms"] < START + HOUR_MS].copy()
    again["recv_ts_ms"] += 1_000
    landing.write_stream(data_dir, "liquidations", schema.to_arrow("liquidations", again, NAMES), "liq", 1)
    first, last = pd.Timestamp(START, unit="ms"), pd.Timestamp(START + (HOURS - 1) * HOUR_MS, unit="ms")
    run(ASSETS, data_dir, first=first.strftime("%Y-%m-%d-%H:%M"), last=last.strftime("%Y-%m-%d-%H:%M"))
    return data_dir


def test_raw_tables_hold_each_value_and_print_once(warehouse, captured):
    interest, liquidated = captured
    raw = query(warehouse, "SELECT ts_ms, contracts, amount, value FROM raw_open_interest ORDER BY ts_ms")
    assert raw["ts_ms"].tolist() == interest["ts_ms"].tolist()
    np.testing.assert_array_equal(raw["amount"], interest["amount"])
    prints = query(
        warehouse, "SELECT ts_ms, liquidation_id, value FROM raw_liquidations ORDER BY ts_ms, liquidation_id"
    )
    assert len(prints) == len(liquidated) and prints["liquidation_id"].is_unique


def test_open_interest_is_the_hours_last_value_and_its_change_as_pandas_computes_it(warehouse, captured):
    interest, _ = captured
    frame = pd.DataFrame({k: interest[k] for k in ("ts_ms", "contracts", "amount", "value")})
    frame["hour"] = frame["ts_ms"] // HOUR_MS * HOUR_MS
    by_hour = frame.sort_values("ts_ms").groupby("hour")
    expected = pd.DataFrame(
        {
            "samples": by_hour.size(),
            "oi_amount": by_hour["amount"].last(),
            "oi_value": by_hour["value"].last(),
            "low": by_hour["amount"].min(),
            "high": by_hour["amount"].max(),
        }
    ).reset_index()
    expected["change"] = expected["oi_amount"].diff()  # the previous captured hour, the skipped one left out
    got = query(
        warehouse,
        "SELECT epoch_ms(ts) AS hour, samples, oi_amount, oi_value, oi_amount_low AS low, oi_amount_high AS high, "
        "oi_amount_change AS change, oi_amount_change_pct AS pct, oi_notional, notional_source "
        "FROM open_interest ORDER BY ts",
    )
    np.testing.assert_array_equal(got["oi_notional"], expected["oi_value"])  # the venue gave the value
    assert (got["notional_source"] == "venue").all()
    assert got["hour"].tolist() == expected["hour"].tolist()
    assert SKIPPED_HOUR not in [(h - START) // HOUR_MS for h in got["hour"]] and len(got) == HOURS - 1
    assert got["samples"].tolist() == [60] * (HOURS - 1)
    for column in ("oi_amount", "oi_value", "low", "high"):
        np.testing.assert_array_equal(got[column], expected[column], err_msg=column)
    assert np.isnan(got["change"][0]) or got["change"].isna()[0]  # nothing before the first hour
    np.testing.assert_allclose(got["change"][1:], expected["change"][1:], rtol=1e-12)
    np.testing.assert_allclose(got["pct"][1:], 100 * expected["change"][1:] / expected["oi_amount"].shift()[1:])


def test_liquidations_per_hour_match_pandas_by_liquidated_side(warehouse, captured):
    _, liquidated = captured
    frame = pd.DataFrame({k: liquidated[k] for k in ("ts_ms", "position_side", "amount", "value")})
    frame["hour"] = frame["ts_ms"] // HOUR_MS * HOUR_MS
    longs, shorts = frame[frame["position_side"] > 0], frame[frame["position_side"] < 0]
    expected = pd.DataFrame(
        {
            "prints": frame.groupby("hour").size(),
            "long_prints": longs.groupby("hour").size(),
            "short_prints": shorts.groupby("hour").size(),
            "long_notional": longs.groupby("hour")["value"].sum(),
            "short_notional": shorts.groupby("hour")["value"].sum(),
            "short_amount": shorts.groupby("hour")["amount"].sum(),
            "largest_notional": frame.groupby("hour")["value"].max(),
        }
    ).fillna(0)
    got = query(warehouse, "SELECT epoch_ms(ts) AS hour, * EXCLUDE (ts) FROM liquidations ORDER BY ts")
    got = got.set_index("hour")
    assert got.index.tolist() == expected.index.tolist()
    assert (got["exchange"] == "bybit").all() and (got["symbol"] == "BTC/USDT:USDT").all()
    for column in expected.columns:
        np.testing.assert_allclose(got[column], expected[column], rtol=1e-12, err_msg=column)


def test_a_one_hour_rerun_gives_the_same_rows(warehouse):
    before = query(warehouse, "SELECT * FROM open_interest ORDER BY ts")
    prints_before = query(warehouse, "SELECT * FROM liquidations ORDER BY ts")
    last = pd.Timestamp(START + (HOURS - 1) * HOUR_MS, unit="ms").strftime("%Y-%m-%d-%H:%M")
    run(ASSETS, warehouse, partition=last)
    pd.testing.assert_frame_equal(query(warehouse, "SELECT * FROM open_interest ORDER BY ts"), before)
    pd.testing.assert_frame_equal(query(warehouse, "SELECT * FROM liquidations ORDER BY ts"), prints_before)


def test_without_the_venues_value_the_notional_is_the_amount_at_its_minutes_close(tmp_path):
    """binance's and bybit's linear REST give the amount only: the notional is amount x the 1m close (from the
    trades) of the minute of the hour's last value, as pandas computes it from the same trades."""
    rng = np.random.default_rng(5)
    n = 400
    trades = pd.DataFrame(
        {
            "ts_ms": np.sort(rng.choice(HOUR_MS, n, replace=False)) + START,
            "trade_id": np.arange(n),
            "price": 95_000 + np.cumsum(rng.normal(0, 5, n)),
            "amount": rng.uniform(0.01, 1.0, n),
        }
    )
    land_trades(tmp_path, trades, instrument_id=INSTRUMENT)
    interest = schema.empty("open_interest", 3)
    interest["ts_ms"] = [START + 5 * MINUTE_MS, START + 30 * MINUTE_MS, START + 47 * MINUTE_MS + 31_000]
    interest["recv_ts_ms"] = interest["ts_ms"] + 200
    interest["instrument_id"] = INSTRUMENT
    interest["contracts"] = interest["amount"] = [50_000.0, 50_100.0, 49_900.5]
    interest["contract_size"] = 1.0  # value stays NaN: the venue gave none
    landing.write_stream(tmp_path, "open_interest", schema.to_arrow("open_interest", interest, NAMES), "oi", 0)
    hour = pd.Timestamp(START, unit="ms").strftime("%Y-%m-%d-%H:%M")
    run([raw_trades, raw_ohlcv, ohlcv_1m, raw_open_interest, open_interest], tmp_path, partition=hour)
    got = query(tmp_path, "SELECT oi_amount, oi_value, oi_notional, notional_source FROM open_interest")
    minute_end = (int(interest["ts_ms"][-1]) // MINUTE_MS + 1) * MINUTE_MS
    close = trades.loc[trades["ts_ms"] < minute_end, "price"].iloc[-1]  # the last trade up to the minute's end
    assert len(got) == 1 and np.isnan(got["oi_value"][0]) and got["notional_source"][0] == "close"
    assert got["oi_notional"][0] == pytest.approx(49_900.5 * close, rel=1e-12)
