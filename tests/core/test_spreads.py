"""Cross-venue spreads of 8h and 1h venues on a common hourly grid vs independent computations."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from fundarb_dagster.core import funding as f
from fundarb_dagster.core import spreads as s
from fundarb_dagster.core.sql import execute, load_sql
from fundarb_dagster.core.window import Window


@pytest.fixture(scope="module")
def fixture_rates(fixtures_dir) -> pd.DataFrame:
    raw = pd.read_csv(fixtures_dir / "funding_2025_2026" / "funding_btc_eth_binance_bybit_hyperliquid_utc.csv")
    raw = raw.rename(
        columns={"venue": "exchange", "canonical_symbol": "symbol", "settlement_time_ms_utc": "funding_ts_ms"}
    )
    # BTC-USDT-PERP -> the ccxt unified BTC/USDT:USDT the warehouse uses
    parts = raw["symbol"].str.split("-", expand=True)
    raw["symbol"] = parts[0] + "/" + parts[1] + ":" + parts[1]
    obs = raw[["exchange", "symbol", "funding_ts_ms", "interval_hours"]].rename(
        columns={"funding_ts_ms": "ts_ms", "interval_hours": "interval_h"}
    )
    intervals = f.build_intervals(obs.assign(cap=np.nan, floor=np.nan, source="reported"))
    return f.settled_rates(raw, intervals, None)


def test_8h_settlement_spreads_its_rate_evenly_over_the_8_hours_it_accrued(fixture_rates):
    start, end = pd.Timestamp("2026-03-01"), pd.Timestamp("2026-03-03")
    hourly = s.hourly_rates(fixture_rates, None, start, end)
    binance = hourly[(hourly.exchange == "binance") & (hourly.symbol == "BTC/USDT:USDT")].set_index("ts")
    assert len(binance) == 48
    settle = fixture_rates[(fixture_rates.exchange == "binance") & (fixture_rates.symbol == "BTC/USDT:USDT")]
    rate_0800 = settle.set_index("funding_ts").loc[pd.Timestamp("2026-03-01 08:00"), "funding_rate"]
    for h in range(8):
        assert binance.loc[pd.Timestamp("2026-03-01") + pd.Timedelta(hours=h), "rate_per_hour"] == pytest.approx(
            rate_0800 / 8
        )


def test_spread_of_8h_vs_1h_venue_matches_an_independent_per_hour_computation(fixture_rates):
    start, end = pd.Timestamp("2026-02-01"), pd.Timestamp("2026-02-08")
    spreads = s.funding_spreads(s.hourly_rates(fixture_rates, None, start, end))
    got = spreads[
        (spreads.exchange_a == "binance")
        & (spreads.symbol_a == "BTC/USDT:USDT")
        & (spreads.exchange_b == "hyperliquid")
    ].set_index("ts")
    # Independent: plain Python loops over settlements.
    expected = {}
    per_hour = {"binance": {}, "hyperliquid": {}}
    for row in fixture_rates.itertuples():
        if row.symbol not in ("BTC/USDT:USDT", "BTC/USDC:USDC") or row.exchange not in per_hour:
            continue
        for k in range(1, int(row.interval_h) + 1):
            per_hour[row.exchange][row.funding_ts - pd.Timedelta(hours=k)] = row.funding_rate / row.interval_h
    for hour in pd.date_range(start, end, freq="h", inclusive="left"):
        if hour in per_hour["binance"] and hour in per_hour["hyperliquid"]:
            expected[hour] = (per_hour["binance"][hour] - per_hour["hyperliquid"][hour]) * 8760
    assert len(got) == len(expected) > 150
    np.testing.assert_allclose(got.loc[list(expected), "funding_spread_apr"].to_numpy(), list(expected.values()))
    assert set(spreads.underlying) == {"BTC", "ETH"}
    # 3 venues per underlying -> 3 pairs, each pair ordered once
    assert spreads.groupby("underlying")[["exchange_a", "exchange_b"]].apply(
        lambda g: len(g.drop_duplicates())
    ).tolist() == [3, 3]


def test_hours_not_yet_settled_use_the_last_prediction_known_before_the_hour_ended():
    rates = pd.DataFrame(
        {
            "exchange": "bybit",
            "symbol": "BTC/USDT:USDT",
            "funding_ts": [pd.Timestamp("2026-01-01 08:00")],
            "interval_h": 8.0,
            "rate_per_hour": 1e-5,
        }
    )
    predictions = pd.DataFrame(
        {
            "exchange": "bybit",
            "symbol": "BTC/USDT:USDT",
            "ts": pd.to_datetime(["2026-01-01 08:30", "2026-01-01 09:59", "2026-01-01 10:00"]),
            "funding_ts": pd.Timestamp("2026-01-01 16:00"),
            "interval_h": 8.0,
            "rate_per_hour": [2e-5, 3e-5, 4e-5],
        }
    )
    hourly = s.hourly_rates(rates, predictions, pd.Timestamp("2026-01-01 07:00"), pd.Timestamp("2026-01-01 11:00"))
    by_ts = hourly.set_index("ts")
    assert not by_ts.loc[pd.Timestamp("2026-01-01 07:00"), "is_predicted"]
    assert by_ts.loc[pd.Timestamp("2026-01-01 08:00"), "rate_per_hour"] == pytest.approx(2e-5)
    assert by_ts.loc[pd.Timestamp("2026-01-01 09:00"), "rate_per_hour"] == pytest.approx(3e-5)
    assert by_ts.loc[pd.Timestamp("2026-01-01 10:00"), "rate_per_hour"] == pytest.approx(4e-5)
    assert by_ts.loc[pd.Timestamp("2026-01-01 10:00"), "is_predicted"]


def test_basis_spread_joins_the_1h_basis_of_both_legs():
    hourly = pd.DataFrame(
        {
            "exchange": ["a", "b"],
            "symbol": ["ETH/USDT:USDT", "ETH/USDC:USDC"],
            "ts": pd.Timestamp("2026-01-01"),
            "rate_per_hour": [1e-5, 2e-5],
            "funding_apr": [0.0876, 0.1752],
            "is_predicted": False,
        }
    )
    basis = pd.DataFrame(
        {
            "exchange": ["a", "b"],
            "symbol": ["ETH/USDT:USDT", "ETH/USDC:USDC"],
            "ts": pd.Timestamp("2026-01-01"),
            "basis_bps": [5.0, -2.0],
        }
    )
    out = s.funding_spreads(hourly, basis)
    assert len(out) == 1
    assert out["funding_spread_apr"].iloc[0] == pytest.approx(-1e-5 * 8760)
    assert out["basis_spread_bps"].iloc[0] == pytest.approx(7.0)


def _warehouse(rates: pd.DataFrame, predictions: pd.DataFrame, basis: pd.DataFrame) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    for name, frame in (("funding_rates", rates), ("funding_predictions", predictions), ("basis", basis)):
        conn.register("_frame", frame)
        conn.execute(f"CREATE TABLE {name} AS SELECT * FROM _frame")
        conn.unregister("_frame")
    return conn


def _predictions_and_basis(rates: pd.DataFrame, stop: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions every 20 minutes of every perp (the next 8h or 1h settlement's rate, jittered) from a day
    before `stop`, and an hourly basis of every perp."""
    rng = np.random.default_rng(11)
    perps = rates[["exchange", "symbol", "interval_h"]].drop_duplicates(["exchange", "symbol"])
    frames, bases = [], []
    for perp in perps.itertuples(index=False):
        known = pd.date_range(stop - pd.Timedelta(hours=30), stop + pd.Timedelta(hours=10), freq="20min")
        known = known + pd.to_timedelta(rng.integers(0, 59, len(known)), unit="s")
        interval = pd.Timedelta(hours=perp.interval_h)
        frames.append(
            pd.DataFrame(
                {
                    "exchange": perp.exchange,
                    "symbol": perp.symbol,
                    "ts": known,
                    "funding_ts": known.floor(interval) + interval,
                    "interval_h": perp.interval_h,
                    "rate_per_hour": rng.normal(1e-5, 2e-5, len(known)),
                }
            )
        )
        hours = pd.date_range(stop - pd.Timedelta(days=9), stop + pd.Timedelta(hours=10), freq="h")
        bases.append(
            pd.DataFrame(
                {
                    "exchange": perp.exchange,
                    "symbol": perp.symbol,
                    "ts": hours,
                    "timeframe": rng.choice(["1h", "1h", "1h", "5m"], len(hours)),  # some hours have no 1h basis
                    "basis_bps": rng.normal(2, 5, len(hours)),
                }
            )
        )
    return pd.concat(frames, ignore_index=True), pd.concat(bases, ignore_index=True)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-02-01 00:00", "2026-02-08 00:00"),  # settled hours only, a week
        ("2026-02-27 07:00", "2026-03-01 05:00"),  # unaligned to 8h, across a month's end
        ("2026-03-09 00:00", "2026-03-10 06:00"),  # the last settled hours then predictions (settlements stop)
        ("2026-03-10 03:00", "2026-03-10 04:00"),  # one hour, predictions only
    ],
)
def test_funding_spreads_in_duckdb_are_the_pandas_computation_row_for_row(fixture_rates, start, end):
    """`replace_funding_spreads` (SQL) writes the rows of `funding_spreads(hourly_rates(...), basis)` (pandas) on the
    inputs the pandas path read (sql/funding/spread_inputs_*.sql): real settlements of 3 venues (8h and 1h), an
    off-grid extra settlement, predictions for the hours not settled yet, and a 1h basis with gaps."""
    stop = pd.Timestamp("2026-03-10 00:00")  # settlements end here: the hours after use predictions
    rates = fixture_rates[fixture_rates["funding_ts"] < stop].copy()
    binance = rates[(rates.exchange == "binance") & (rates.symbol == "BTC/USDT:USDT")]
    extra = binance[binance["funding_ts"].isin(pd.to_datetime(["2026-02-03 08:00", "2026-02-28 16:00"]))].copy()
    assert len(extra) == 2
    extra["funding_ts"] = extra["funding_ts"] - pd.Timedelta(hours=3)  # off-grid settlements: hours with 2
    rates = pd.concat([rates, extra], ignore_index=True)
    predictions, basis = _predictions_and_basis(rates, stop)
    conn = _warehouse(rates, predictions, basis)
    params = Window(pd.Timestamp(start).to_pydatetime(), pd.Timestamp(end).to_pydatetime()).params()
    written = s.replace_funding_spreads(conn, params)
    got = conn.execute("SELECT * FROM funding_spreads ORDER BY underlying, exchange_a, symbol_a, exchange_b, ts").df()

    rate_inputs = execute(conn, load_sql("funding", "spread_inputs_rates"), params).df()
    pred_inputs = execute(conn, load_sql("funding", "spread_inputs_predictions"), params).df()
    basis_inputs = execute(conn, load_sql("funding", "spread_inputs_basis"), params).df()
    hourly = s.hourly_rates(rate_inputs, pred_inputs, pd.Timestamp(start), pd.Timestamp(end))
    want = s.funding_spreads(hourly, basis_inputs)
    want = want.sort_values(["underlying", "exchange_a", "symbol_a", "exchange_b", "ts"], ignore_index=True)
    assert written == len(got) == len(want) > 0
    got["ts"] = got["ts"].astype("datetime64[us]")
    pd.testing.assert_frame_equal(got, want, check_dtype=False, check_exact=True)
    assert (got["is_predicted_a"] | got["is_predicted_b"]).any() == (pd.Timestamp(end) > stop)
    if pd.Timestamp(start) >= stop - pd.Timedelta(days=9):  # where the basis is: some hours with, some without
        assert got["basis_spread_bps"].notna().any() and got["basis_spread_bps"].isna().any()
    # the window is replaced, not appended to: running it again writes the same rows
    assert s.replace_funding_spreads(conn, params) == written
    assert conn.execute("SELECT count(*) FROM funding_spreads").fetchone()[0] == written
