"""Real materializations of the funding domain on a tmp DuckDB file, checked against independent pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from dagster import DagsterInstance

from fundarb_dagster.defs.funding import checks as funding_checks
from fundarb_dagster.defs.funding.assets import (
    basis,
    funding_history,
    funding_intervals,
    funding_predictions,
    funding_rates,
    funding_spreads,
    opportunities,
)
from fundarb_dagster.defs.raw.assets import raw_funding, raw_order_book, raw_tickers
from fundarb_dagster.defs.resources import DataDirResource, SourceConfigResource
from tests.defs.funding.carry_fixtures import (
    HOURS,
    PERP_HALF_BPS,
    PREMIUM_BPS,
    SPOT_HALF_BPS,
    START,
    fixture_settlements,
    land_funding,
    land_tickers,
)
from tests.defs.raw.landing_fixtures import RANGE_END, RANGE_START, query

pytestmark = pytest.mark.slow  # real materializations of the whole chain: tens of seconds


FIRST, LAST = "2026-03-01-00:00", "2026-03-01-23:00"
HOURLY = [funding_predictions, funding_rates, basis, funding_spreads]
NO_MARKETS = {"ops": {"funding_intervals": {"config": {"use_market_info": False}}}}


def _resources(data_dir, config_path: str = "") -> dict:
    from dagster_duckdb import DuckDBResource

    return {
        "duckdb": DuckDBResource(database=str(data_dir / "warehouse.duckdb")),
        "data_dir": DataDirResource(data_dir=str(data_dir)),
        "source": SourceConfigResource(config_path=config_path),
    }


def _run(assets, data_dir, first=None, last=None, run_config=None, instance=None, checks=()) -> object:
    from dagster import materialize

    tags = {RANGE_START: first, RANGE_END: last} if first else None
    result = materialize(
        [*assets, *checks], resources=_resources(data_dir), tags=tags, run_config=run_config, instance=instance
    )
    assert result.success
    return result


@pytest.fixture(scope="module")
def carry(tmp_path_factory, fixtures_dir):
    data_dir = tmp_path_factory.mktemp("carry")
    # Settlements of the day plus the 8h ones of the next morning, which pay for the day's last hours.
    settled = fixture_settlements(fixtures_dir, START, START + pd.Timedelta(hours=HOURS + 8))
    predictions = land_funding(data_dir, settled)
    tickers = land_tickers(data_dir, START, HOURS)
    instance = DagsterInstance.ephemeral()
    _run([raw_funding, raw_tickers], data_dir, "2026-03-01-00:00", "2026-03-02-08:00", instance=instance)
    _run([funding_intervals], data_dir, run_config=NO_MARKETS, instance=instance)
    rates_run = _run(
        [funding_predictions, funding_rates], data_dir, "2026-03-01-00:00", "2026-03-02-08:00", instance=instance
    )
    spreads_run = _run([basis, funding_spreads], data_dir, FIRST, LAST, instance=instance)
    opps_run = _run(
        [opportunities],
        data_dir,
        run_config={
            "ops": {
                "opportunities": {
                    "config": {
                        "horizon_h": 8,
                        "lookback_h": 24,
                        "min_obs": 12,
                        "taker_fees_bps": {"bybit": {"spot": 8.0, "swap": 4.0}},
                        "borrow_apr": {"hyperliquid": {"*": 0.03}},
                    }
                }
            }
        },
        instance=instance,
    )
    return {
        "dir": data_dir,
        "settled": settled,
        "predictions": predictions,
        "tickers": tickers,
        "instance": instance,
        "rates_meta": rates_run.asset_materializations_for_node("funding_rates")[0].metadata,
        "opps_meta": opps_run.asset_materializations_for_node("opportunities")[0].metadata,
        "spreads_meta": spreads_run.asset_materializations_for_node("funding_spreads")[0].metadata,
    }


def test_funding_intervals_hold_8h_and_1h_from_what_the_stream_reported(carry):
    spans = query(carry["dir"], "SELECT * FROM funding_intervals ORDER BY exchange, symbol")
    assert len(spans) == 6
    assert dict(zip(spans["exchange"], spans["interval_h"], strict=False)) == {
        "binance": 8.0,
        "bybit": 8.0,
        "hyperliquid": 1.0,
    }
    assert spans["valid_to"].isna().all()


def test_funding_rates_annualize_with_the_interval_in_force_like_the_fixture(carry):
    got = query(carry["dir"], "SELECT *, epoch_ms(funding_ts_raw) AS raw_ms FROM funding_rates")
    settled = carry["settled"]
    merged = settled.merge(
        got, left_on=["exchange", "symbol", "settlement_time_ms_utc"], right_on=["exchange", "symbol", "raw_ms"]
    )
    assert len(got) == len(settled) == len(merged)
    np.testing.assert_allclose(merged["funding_apr"], merged["rate_apr_as_given"], rtol=1e-12)
    np.testing.assert_allclose(merged["rate_per_hour"], merged["funding_rate_x"] / merged["interval_hours"], rtol=1e-12)
    # keys on the grid, raw time kept
    assert (got["funding_ts"].dt.minute == 0).all() and (got["funding_ts"].dt.second == 0).all()


def test_funding_rates_carry_the_last_prediction_known_before_settlement(carry):
    got = query(carry["dir"], "SELECT * FROM funding_rates")
    # the 00:00 settlements were predicted the evening before, outside the materialized hours: no prediction
    assert got.loc[got["funding_ts"] == START, "predicted_rate"].isna().all()
    got = got[got["funding_ts"] > START]
    np.testing.assert_allclose(got["predicted_rate"], got["funding_rate"] * 0.95, rtol=1e-12)
    np.testing.assert_allclose(got["forecast_error"], got["funding_rate"] * 0.05, rtol=1e-9, atol=1e-15)
    assert ((got["funding_ts"] - got["predicted_at"]) == pd.Timedelta(minutes=20)).all()


def test_funding_predictions_are_point_in_time_rows(carry):
    got = query(carry["dir"], "SELECT * FROM funding_predictions")
    landed = carry["predictions"]
    landed = landed[(landed["ts_ms"] >= START.value // 1_000_000)]
    assert len(got) == len(landed)
    np.testing.assert_allclose(
        got.sort_values(["exchange", "symbol", "ts"])["predicted_apr"].to_numpy(),
        (landed["funding_rate"] * 8760 / landed["interval_h"]).to_numpy()[
            np.lexsort((landed["ts_ms"], landed["symbol"], landed["exchange"]))
        ],
        rtol=1e-12,
    )


def test_basis_matches_pandas_on_the_landed_tickers(carry):
    got = query(carry["dir"], "SELECT * FROM basis WHERE timeframe = '1m'")
    t = carry["tickers"].assign(minute=lambda f: pd.to_datetime(f["ts_ms"] // 60_000 * 60_000, unit="ms"))
    last = t.sort_values("ts_ms").groupby(["exchange", "symbol", "minute"]).tail(1)
    last = last.assign(mid=(last["bid"] + last["ask"]) / 2, perp=last["symbol"].str.contains(":"))
    perp = last[last["perp"]].assign(spot_symbol=lambda f: f["symbol"].str.split(":").str[0])
    spot = last[~last["perp"]][["exchange", "symbol", "minute", "mid"]].rename(columns={"symbol": "spot_symbol"})
    expected = perp.merge(spot, on=["exchange", "spot_symbol", "minute"], suffixes=("_perp", "_spot"))
    expected["basis_bps"] = (expected["mid_perp"] / expected["mid_spot"] - 1) * 1e4
    merged = expected.merge(got, left_on=["exchange", "symbol", "minute"], right_on=["exchange", "symbol", "ts"])
    assert len(merged) == len(expected) == len(got) == HOURS * 60 * 6
    np.testing.assert_allclose(merged["basis_bps_y"], merged["basis_bps_x"], rtol=1e-9)
    for venue in PREMIUM_BPS:
        rows = merged[merged["exchange"] == venue]
        assert rows["basis_bps_y"].mean() == pytest.approx(PREMIUM_BPS[venue], abs=0.1)
        np.testing.assert_allclose(rows["perp_half_spread_bps"], PERP_HALF_BPS[venue], rtol=1e-6)
        np.testing.assert_allclose(rows["spot_half_spread_bps"], SPOT_HALF_BPS[venue], rtol=1e-6)
    hourly = query(carry["dir"], "SELECT count(*) AS n FROM basis WHERE timeframe = '1h'")["n"].iloc[0]
    assert hourly == HOURS * 6


def test_funding_spreads_match_an_independent_per_hour_computation(carry):
    got = query(carry["dir"], "SELECT * FROM funding_spreads")
    per_hour: dict[tuple[str, str], dict[pd.Timestamp, float]] = {}
    for row in carry["settled"].itertuples():
        grid = pd.Timestamp(round(row.settlement_time_ms_utc / 3_600_000) * 3_600_000, unit="ms")
        for k in range(1, int(row.interval_hours) + 1):
            per_hour.setdefault((row.exchange, row.symbol), {})[grid - pd.Timedelta(hours=k)] = (
                row.funding_rate / row.interval_hours
            )
    hours = pd.date_range(START, periods=HOURS, freq="h")
    for pair in got[["exchange_a", "symbol_a", "exchange_b", "symbol_b"]].drop_duplicates().itertuples(index=False):
        rows = got[
            (got.exchange_a == pair.exchange_a) & (got.symbol_a == pair.symbol_a) & (got.exchange_b == pair.exchange_b)
        ]
        rows = rows.set_index("ts").sort_index()
        a = per_hour[(pair.exchange_a, pair.symbol_a)]
        b = per_hour[(pair.exchange_b, pair.symbol_b)]
        expected = [(a[h] - b[h]) * 8760 for h in hours]
        assert len(rows) == HOURS
        np.testing.assert_allclose(rows["funding_spread_apr"].to_numpy(), expected, rtol=1e-9)
        basis_diff = PREMIUM_BPS[pair.exchange_a] - PREMIUM_BPS[pair.exchange_b]
        assert rows["basis_spread_bps"].mean() == pytest.approx(basis_diff, abs=0.2)
    assert len(got) == HOURS * 6  # 2 underlyings x 3 venue pairs x 24 hours
    assert not got["is_predicted_a"].any()


def test_opportunities_rank_by_net_carry_with_fees_and_half_spreads(carry):
    got = query(carry["dir"], "SELECT * FROM opportunities ORDER BY rank")
    assert set(got["strategy"]) == {"cash_carry", "perp_perp"}
    assert len(got[got.strategy == "perp_perp"]) == 6
    # cash-and-carry: forward (long spot, short perp) pays no borrow; the reverse (short spot) only where a
    # borrow rate is configured (hyperliquid, 3 %), net of it; on binance and bybit it is not ranked
    cnc_all = got[got.strategy == "cash_carry"]
    reverse = ~cnc_all["short_symbol"].str.contains(":")
    assert set(cnc_all.loc[reverse, "long_exchange"]) == {"hyperliquid"}
    assert (cnc_all.loc[reverse, "borrow_apr"] == 0.03).all() and (cnc_all.loc[~reverse, "borrow_apr"] == 0).all()
    assert reverse.any()
    np.testing.assert_allclose(
        got["net_carry_apr"],
        got["expected_carry_apr"] - got["borrow_apr"] - got["entry_cost_bps"] / 1e4 * 8760 / 8,
        rtol=1e-9,
    )
    assert got["net_carry_apr"].is_monotonic_decreasing
    cnc = got[(got.strategy == "cash_carry") & (got.long_exchange == "bybit")].iloc[0]
    # bybit's fees are overridden in the run config (8 / 4 bps); the other venues keep the documented defaults
    assert cnc.entry_cost_bps == pytest.approx(
        2 * (8 + 4) + 2 * (SPOT_HALF_BPS["bybit"] + PERP_HALF_BPS["bybit"]), rel=1e-6
    )
    pp = got[
        (got.strategy == "perp_perp")
        & got.long_exchange.isin(["binance", "hyperliquid"])
        & got.short_exchange.isin(["binance", "hyperliquid"])
    ].iloc[0]
    assert pp.entry_cost_bps == pytest.approx(
        2 * (5.0 + 4.5) + 2 * (PERP_HALF_BPS["binance"] + PERP_HALF_BPS["hyperliquid"]), rel=1e-6
    )
    assert (got["horizon_h"] == 8).all()
    # as_of: the last hour with data (hyperliquid's last settlement pays for the hour before it)
    last_hl = carry["settled"].query("exchange == 'hyperliquid'")["settlement_time_ms_utc"].max()
    as_of = pd.Timestamp(round(last_hl / 3_600_000) * 3_600_000 - 3_600_000, unit="ms")
    assert (got["as_of"] == as_of).all()
    window = pd.date_range(as_of - pd.Timedelta(hours=23), as_of, freq="h")
    last_8h = pd.Timestamp(
        round(carry["settled"].query("exchange == 'bybit'")["settlement_time_ms_utc"].max() / 3_600_000) * 3_600_000,
        unit="ms",
    )
    covered_8h = int((window < last_8h).sum())
    assert (got.loc[got.strategy == "cash_carry"].set_index("long_exchange").loc["hyperliquid", "n_obs"] == 24).all()
    assert (got.loc[(got.strategy == "perp_perp"), "n_obs"] == covered_8h).all()
    carry = got["expected_carry_apr"] - got["borrow_apr"]  # what is left to pay the costs back (inf: never)
    np.testing.assert_allclose(
        got["break_even_h"],
        np.where(carry > 0, got["entry_cost_bps"] / 1e4 / (carry / 8760), np.inf),
        rtol=1e-9,
    )


def _land_books(data_dir, at: pd.Timestamp) -> None:
    """One deep book per instrument at `at`: 20 levels a bp apart, 1 M USD each, around the fixture's price."""
    from fundarb_dagster.core import landing, schema
    from tests.defs.funding.carry_fixtures import ASSETS, instrument_names

    names = instrument_names()
    rec = schema.empty("order_book", len(names))
    rec["ts_ms"] = at.value // 1_000_000
    rec["recv_ts_ms"] = rec["ts_ms"] + 5
    rec["instrument_id"] = list(names)
    rec["updates"], rec["nonce"] = 1, -1
    steps = np.arange(1, schema.BOOK_LEVELS + 1) / 1e4
    for i, (_, symbol) in names.items():
        price = ASSETS[symbol.split("/")[0]]
        rec["bid_price"][i], rec["ask_price"][i] = price * (1 - steps), price * (1 + steps)
        rec["bid_size"][i] = rec["ask_size"][i] = 1e6 / price
    landing.write_stream(data_dir, "order_book", schema.to_arrow("order_book", rec, names), "books", 0)
    hour = at.floor("h").strftime("%Y-%m-%d-%H:%M")
    _run([raw_order_book], data_dir, hour, hour)


def test_opportunities_walk_the_last_book_sampled_before_the_as_of_hour(carry, tmp_path):
    # A capture's books are samples (one per few market minutes): when the data ends minutes into a new hour,
    # the latest book is from the hour before. Within book_max_age_h of the as-of hour's start it is walked.
    import shutil

    data_dir = tmp_path / "books"
    shutil.copytree(carry["dir"], data_dir)
    as_of = query(data_dir, "SELECT max(as_of) AS t FROM opportunities")["t"].iloc[0]
    _land_books(data_dir, as_of - pd.Timedelta(minutes=2))
    _run([opportunities], data_dir, run_config={"ops": {"opportunities": {"config": {"min_obs": 12}}}})
    got = query(data_dir, "SELECT cost_source, capacity_usd, entry_cost_bps FROM opportunities")
    assert len(got) and (got["cost_source"] == "book").all(), got
    assert got["capacity_usd"].notna().all()  # measured on the books (0 where the carry cannot pay the fees)
    # A book older than that is not: the flat model again.
    shutil.rmtree(data_dir / "landing" / "order_book")
    (data_dir / "warehouse.duckdb").unlink()
    shutil.copy(carry["dir"] / "warehouse.duckdb", data_dir / "warehouse.duckdb")
    _land_books(data_dir, as_of - pd.Timedelta(minutes=61))
    _run([opportunities], data_dir, run_config={"ops": {"opportunities": {"config": {"min_obs": 12}}}})
    got = query(data_dir, "SELECT cost_source FROM opportunities")
    assert len(got) and (got["cost_source"] == "flat").all(), got


def test_rerunning_a_partition_is_idempotent(carry):
    before = query(carry["dir"], "SELECT count(*) AS n, sum(funding_apr) AS s FROM funding_rates")
    _run([funding_rates], carry["dir"], "2026-03-01-05:00", "2026-03-01-10:00", instance=carry["instance"])
    after = query(carry["dir"], "SELECT count(*) AS n, sum(funding_apr) AS s FROM funding_rates")
    pd.testing.assert_frame_equal(before, after)


def test_checks_pass_on_good_tables(carry):
    from dagster import AssetSelection, materialize

    assets = [funding_intervals, funding_predictions, funding_rates, basis, funding_spreads, opportunities]
    result = materialize(
        [*assets, *funding_checks.FUNDING_CHECKS],
        resources=_resources(carry["dir"]),
        selection=AssetSelection.checks(*funding_checks.FUNDING_CHECKS),
        instance=carry["instance"],
    )
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == len(funding_checks.FUNDING_CHECKS)
    failed = [e.check_name for e in evaluations if not e.passed]
    assert failed == []


def test_funding_history_backfills_from_a_replay_with_coverage(tmp_path, fixtures_dir):
    src = tmp_path / "fx"
    src.mkdir()
    csv = fixtures_dir / "funding_2025_2026" / "funding_btc_eth_binance_bybit_hyperliquid_utc.csv"
    (src / csv.name).write_bytes(csv.read_bytes())
    config = {
        "source": "replay",
        "replay": {"path": str(src), "format": "fixture_csv"},
        "exchanges": [
            {"id": "bybit", "symbols": ["BTC/USDT:USDT", "ETH/USDT:USDT"]},
            {"id": "hyperliquid", "symbols": ["BTC/USDC:USDC"]},
        ],
    }
    path = tmp_path / "fundarb.yaml"
    path.write_text(yaml.safe_dump(config))
    from dagster import materialize

    result = materialize(
        [funding_history],
        resources=_resources(tmp_path, str(path)),
        tags={RANGE_START: "2026-03-01", RANGE_END: "2026-03-02"},
    )
    assert result.success
    got = query(tmp_path, "SELECT * FROM funding_history")
    expected = fixture_settlements(fixtures_dir, pd.Timestamp("2026-03-01"), pd.Timestamp("2026-03-03"))
    expected = expected[expected["exchange"].isin(["bybit", "hyperliquid"]) & (expected["symbol"] != "ETH/USDC:USDC")]
    assert len(got) == len(expected) == 2 * 6 + 48
    merged = expected.merge(
        got, left_on=["exchange", "symbol", "settlement_time_ms_utc"], right_on=["exchange", "symbol", "funding_ts_ms"]
    )
    np.testing.assert_array_equal(merged["funding_rate_x"], merged["funding_rate_y"])
    meta = result.asset_materializations_for_node("funding_history")[0].metadata
    assert meta["min_coverage_pct"].value == pytest.approx(100.0)
    assert "hyperliquid" in meta["coverage"].value


def test_metadata_shows_the_forecast_error_plot_and_the_ranking_chart(carry):
    rates = carry["rates_meta"]
    assert rates["forecast_error_plot"].value.count("data:image/png;base64,") == 1
    # settled - last prediction = 5% of each rate: the mean absolute error in bps is 5% of the mean |rate|
    landed = carry["settled"]
    landed = landed[landed["settlement_time_ms_utc"] > START.value // 1_000_000 + 1_800_000]  # 00:00 had none
    assert rates["forecast_mae_bps"].value == pytest.approx(
        (landed["funding_rate"].abs() * 0.05 * 1e4).mean(), rel=1e-6
    )
    assert "data:image/png;base64," in carry["opps_meta"]["top_opportunities"].value
    # the ranking is a table (inline on the page), in rank order, APR in percent, as the warehouse holds it
    got = query(carry["dir"], "SELECT * FROM opportunities ORDER BY rank")
    ranking = [r.data for r in carry["opps_meta"]["ranking"].records]
    assert {"cash_carry", "perp_perp"} <= {r["strategy"] for r in ranking}
    assert len(ranking) == min(20, len(got))
    for row, want in zip(ranking, got.itertuples(), strict=False):
        assert (row["rank"], row["strategy"], row["long_exchange"]) == (want.rank, want.strategy, want.long_exchange)
        assert row["net_carry_apr_pct"] == pytest.approx(round(want.net_carry_apr * 100, 2))
        assert row["entry_cost_bps"] == pytest.approx(round(want.entry_cost_bps, 1))
    assert carry["opps_meta"]["best_net_carry_apr_pct"].value == pytest.approx(round(got["net_carry_apr"][0] * 100, 2))
    # the forecast's own errors at past hours (the look-back's first hours, 8 h horizon), per strategy
    assert (got["error_origins"] > 0).all()
    errors = {r.data["strategy"]: r.data for r in carry["opps_meta"]["forecast_error"].records}
    for strategy, rows in got.groupby("strategy"):
        mae = float(np.average(rows["forecast_mae_apr"], weights=rows["error_origins"]))
        assert errors[strategy]["origins"] == rows["error_origins"].sum()
        assert errors[strategy]["forecast_mae_apr_pct"] == pytest.approx(mae * 100, abs=0.006)


def test_funding_rates_metadata_has_the_heat_map_of_the_last_day_and_week(carry):
    rates = query(carry["dir"], "SELECT * FROM funding_rates")
    meta = carry["rates_meta"]
    end = rates["funding_ts"].max().floor("h") + pd.Timedelta(hours=1)
    for name, hours in (("day", 24), ("week", 168)):
        shown = {r.data["exchange"]: r.data for r in meta[f"funding_heat_{name}"].records}
        recent = rates[rates["funding_ts"] >= end - pd.Timedelta(hours=hours)]
        for (exchange, symbol), group in recent.groupby(["exchange", "symbol"]):
            # time-weighted: 8760 x sum(rate) / sum(interval), computed here from the stored settlements
            want = 8760 * group["funding_rate"].sum() / group["interval_h"].sum() * 100
            assert shown[exchange][f"{symbol.split('/')[0]}_pct"] == pytest.approx(want, abs=0.006), (name, exchange)
    assert "data:image/png;base64," in meta["funding_heat_map"].value


def test_funding_spreads_metadata_lists_every_pair_with_its_latest_spread_and_plots_them(carry):
    spreads = query(carry["dir"], "SELECT * FROM funding_spreads ORDER BY ts")
    meta = carry["spreads_meta"]
    shown = {(r.data["underlying"], r.data["exchange_a"], r.data["exchange_b"]): r.data for r in
             meta["spreads_by_pair"].records}  # fmt: skip
    pairs = spreads.groupby(["underlying", "exchange_a", "exchange_b"])
    assert set(shown) == set(pairs.groups)
    for key, group in pairs:
        latest = group["funding_spread_apr"].iloc[-1]
        assert shown[key]["funding_spread_apr_pct"] == pytest.approx(round(latest * 100, 2))
        assert shown[key]["week_mean_apr_pct"] == pytest.approx(group["funding_spread_apr"].mean() * 100, abs=0.006)
    widest = max(abs(r["funding_spread_apr_pct"]) for r in shown.values())
    assert meta["widest_spread_apr_pct"].value == pytest.approx(widest, abs=0.006)
    assert "data:image/png;base64," in meta["spread_plot"].value
