"""The execution domain against a real DuckDB file and real materializations: the trader's landed streams
loaded once each (a record landed twice counts once), funding reconciled per settlement with the blocking check
and an alert on a mismatch, the live P&L split, and the risk report on the live book."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster import materialize
from dagster_duckdb import DuckDBResource

from fundarb_dagster.core.execution import ledger as rows
from fundarb_dagster.core.execution import run_record
from fundarb_dagster.core.execution.ids import OrderKey, Purpose, client_order_id, decision_id, pair_tag
from fundarb_dagster.core.execution.ledger import Ledger
from fundarb_dagster.core.execution.machine import LegOrder
from fundarb_dagster.core.execution.sizing import LegMarket
from fundarb_dagster.core.units import HOUR_MS
from fundarb_dagster.defs.execution import assets, checks
from fundarb_dagster.defs.resources import AlertChannelsResource, DataDirResource
from fundarb_dagster.defs.risk.assets import risk

T0 = 1_793_491_200_000  # 2026-11-01 00:00 UTC, a settlement
PAIR = "binance:BTC/USDT:USDT|binance:BTC/USDT"
PERP = LegMarket("binance", "BTC/USDT:USDT", "perp", "BTC", "USDT", 1.0, 0.001, 0.001, 5.0)
SPOT = LegMarket("binance", "BTC/USDT", "spot", "BTC", "USDT", 1.0, 0.0001, 0.0001, 5.0)
RATE, MARK, INDEX = 1.2e-4, 60_000.0, 59_000.0
RANGE = {
    "dagster/asset_partition_range_start": "2026-11-01-00:00",
    "dagster/asset_partition_range_end": "2026-11-01-23:00",
}
RANGE_HOURS = 24


def trade(trade_id: str, order_id: str, t: int, side: str, amount: float, price: float) -> dict:
    fee = amount * price * 5e-4
    return {
        "id": trade_id,
        "order": order_id,
        "timestamp": t,
        "side": side,
        "amount": amount,
        "price": price,
        "fee": {"cost": fee, "currency": "USDT"},
        "takerOrMaker": "taker",
    }


def land_a_trading_day(data_dir: Path) -> None:
    """Short 2 BTC perp / long 2 BTC spot at 01:00; paid right at 08:00, on the index (wrong) at 16:00."""
    book = Ledger(data_dir, "trader-test")
    d = decision_id(PAIR, T0 + HOUR_MS, "target:+1:2")
    for leg, (market, side) in enumerate(((PERP, -1), (SPOT, 1))):
        cid = client_order_id(OrderKey(pair_tag(PAIR), d, leg, Purpose.ENTRY, 0), "binance")
        order = LegOrder(cid, leg, side, 2.0, False, Purpose.ENTRY, d, 0, T0 + HOUR_MS)
        book.add("orders", rows.order_record(order, pair=PAIR, leg=market, ts_ms=T0 + HOUR_MS, recv_ts_ms=T0 + HOUR_MS))
        fill = trade(f"t{leg}", f"o{leg}", T0 + HOUR_MS + 30, "sell" if side < 0 else "buy", 2.0, MARK + 5 * side)
        record = rows.fill_record(
            fill, pair=PAIR, leg_index=leg, leg=market, client_order_id=cid, ref_mid=MARK, recv_ts_ms=T0 + HOUR_MS + 40
        )
        book.add("fills", record)
        book.add("fills", record)  # landed again (as after a restart): must count once
    for k, amount in ((8, 2 * RATE * MARK), (16, 2 * RATE * INDEX)):
        item = {
            "timestamp": T0 + k * HOUR_MS + 3,
            "symbol": PERP.symbol,
            "code": "USDT",
            "id": str(k),
            "amount": amount,
        }
        book.add("funding_payments", rows.funding_record("binance", item, T0 + k * HOUR_MS + 5))
    for h in range(1, 24):
        for leg, (market, units) in enumerate(((PERP, -2.0), (SPOT, 2.0))):
            values = {
                "ts_ms": T0 + h * HOUR_MS,
                "recv_ts_ms": T0 + h * HOUR_MS,
                "units": units,
                "target_units": units,
                "venue_units": units,
                "entry_price": MARK,
                "mark_price": MARK + 10 * h,
                "wallet_usd": 40_000.0 if leg == 0 else np.nan,
                "liquidation_price": 79_000.0 if leg == 0 else np.nan,
                "mmr": 0.004,
                "taker_fee": 5e-4,
                "leverage": 3.0,
                "leg": leg,
                "is_perp": int(leg == 0),
                "phase": 0,
                "exchange": "binance",
                "symbol": market.symbol,
                "underlying": "BTC",
                "pair": PAIR,
                "decision": d,
            }
            book.add("positions", rows.position_record(values))
    book.flush()
    record = run_record.RunRecord(
        "test",
        "cash_carry",
        "sim",
        0.1,
        0.02,
        3.0,
        100_000.0,
        ((PERP.exchange, PERP.symbol), (SPOT.exchange, SPOT.symbol)),
        started_ms=T0,
    )
    run_record.save(data_dir, record)


def write_rates(path: Path) -> None:
    """funding_rates as the funding domain writes it: settlements every 8 h with mark and index prices."""
    t = pd.to_datetime([T0 + k * HOUR_MS for k in (8, 16)], unit="ms").astype("datetime64[us]")
    frame = pd.DataFrame(
        {
            "exchange": "binance",
            "symbol": PERP.symbol,
            "funding_ts": t,
            "funding_ts_raw": t,
            "funding_rate": RATE,
            "interval_h": 8.0,
            "mark_price": MARK,
            "index_price": INDEX,
        }
    )
    with duckdb.connect(str(path)) as conn:
        conn.register("rates", frame)
        conn.execute("CREATE TABLE funding_rates AS SELECT * FROM rates")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("execution")
    land_a_trading_day(data_dir)
    write_rates(data_dir / "warehouse.duckdb")
    result = materialize([*(getattr(assets, n) for n in assets.LANDED)], resources=res(data_dir), tags=RANGE)
    assert result.success
    return data_dir


def res(data_dir: Path) -> dict:
    return {
        "duckdb": DuckDBResource(database=str(data_dir / "warehouse.duckdb")),
        "data_dir": DataDirResource(data_dir=str(data_dir)),
        "alert_channels": AlertChannelsResource(),
    }


def query(data_dir: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as conn:
        return conn.execute(sql).df()


def test_landed_streams_load_once_each(warehouse: Path) -> None:
    counts = query(
        warehouse,
        "SELECT (SELECT count(*) FROM orders) o, (SELECT count(*) FROM fills) f, "
        "(SELECT count(*) FROM funding_payments) p, (SELECT count(*) FROM positions) s",
    )
    assert counts.iloc[0].tolist() == [2, 2, 2, 46]


def test_funding_reconciliation_explains_the_mismatch_blocks_and_alerts(warehouse: Path) -> None:
    result = materialize(
        [assets.funding_reconciliation, checks.funding_reconciliation_matches_the_venue],
        resources=res(warehouse),
        tags=RANGE,
        raise_on_error=False,
    )
    out = query(warehouse, "SELECT * FROM funding_reconciliation ORDER BY funding_ts")
    assert out["status"].tolist() == ["ok", "mismatch"]
    assert out["expected_usd"].tolist() == pytest.approx([2 * RATE * MARK] * 2)
    assert out["explanation"].iloc[1] == "wrong reference price (paid on the other price)"
    assert out["implied_price"].iloc[1] == pytest.approx(INDEX)
    evaluations = [e for e in result.get_asset_check_evaluations()]
    # blocking: funding_reconciliation's dependents wait; the window's result is recorded for each of its hours
    assert {e.passed for e in evaluations} == {False}
    assert len({e.partition for e in evaluations}) == len(evaluations) == RANGE_HOURS
    alerts = [json.loads(line) for line in (warehouse / "alerts" / "alerts.jsonl").read_text().splitlines()]
    assert [a["rule"] for a in alerts] == ["funding_mismatch"] and "wrong reference price" in alerts[0]["message"]


def test_live_pnl_splits_funding_basis_fees_and_slippage(warehouse: Path) -> None:
    assert materialize([assets.live_pnl], resources=res(warehouse), tags=RANGE).success
    pnl = query(warehouse, "SELECT * FROM live_pnl ORDER BY ts").set_index("ts")
    last = pnl.iloc[-1]
    fees = 2 * (MARK - 5) * 5e-4 + 2 * (MARK + 5) * 5e-4
    assert last["fees_usd"] == pytest.approx(fees)
    assert last["slippage_usd"] == pytest.approx(2 * 5 + 2 * 5)  # sold 5 below the mid, bought 5 above
    assert last["funding_usd"] == pytest.approx(2 * RATE * (MARK + INDEX))
    assert last["basis_usd"] == pytest.approx(0.0)  # both legs marked alike: the hedge has no price P&L
    assert last["pnl_usd"] == pytest.approx(last["funding_usd"] - fees - 20.0)
    assert last["equity_usd"] == pytest.approx(100_000.0 + last["pnl_usd"])  # the run record's capital
    # rows from the first fill's hour; a fill counts from the first hour start after it
    assert pnl.index[0] == pd.Timestamp(T0 + HOUR_MS, unit="ms") and pnl["open_legs"].tolist()[:2] == [0, 2]


def test_risk_report_evaluates_the_live_book(warehouse: Path) -> None:
    config = {"ops": {"risk": {"config": {"max_leverage": 1.0, "shocks": [-0.2, 0.2]}}}}
    assert materialize([risk], resources=res(warehouse), run_config=config).success
    report = query(warehouse, "SELECT * FROM risk_report")
    assert set(report["source_run_id"]) == {"live"}
    figures = report[report["section"] == "figure"].set_index("name")["value"]
    assert figures["gross_usd"] == pytest.approx(4 * (MARK + 230))  # both legs of 2 BTC at the last mark
    assert "risk_leverage" in set(report.loc[report["section"] == "breach", "name"])
    stress = query(warehouse, "SELECT * FROM risk_stress")
    assert sorted(stress["shock_pct"]) == [-20.0, 20.0] and set(stress["pair"]) == {PAIR}


def test_a_flat_trader_s_live_book_is_reported_flat_and_auto_falls_back_to_the_backtest(tmp_path: Path) -> None:
    # The day above, then both legs closed at 23:30: the live book is flat but the trader has an equity curve.
    land_a_trading_day(tmp_path)
    write_rates(tmp_path / "warehouse.duckdb")
    book = Ledger(tmp_path, "trader-flat")
    for leg, market in enumerate((PERP, SPOT)):
        values = {"ts_ms": T0 + 23 * HOUR_MS + HOUR_MS // 2, "recv_ts_ms": T0 + 23 * HOUR_MS + HOUR_MS // 2}
        values |= {"units": 0.0, "target_units": 0.0, "venue_units": 0.0, "entry_price": MARK, "mark_price": MARK}
        values |= {"wallet_usd": 0.0, "mmr": 0.004, "taker_fee": 5e-4, "leverage": 3.0, "leg": leg}
        values |= {"is_perp": int(leg == 0), "phase": 0, "exchange": "binance", "symbol": market.symbol}
        values |= {"underlying": "BTC", "pair": PAIR, "decision": "flat"}
        book.add("positions", rows.position_record(values))
    book.flush()
    landed = [getattr(assets, n) for n in assets.LANDED]
    assert materialize([*landed, assets.live_pnl], resources=res(tmp_path), tags=RANGE).success
    live = {"ops": {"risk": {"config": {"book": "live", "max_leverage": 1.0}}}}
    assert materialize([risk], resources=res(tmp_path), run_config=live).success
    report = query(tmp_path, "SELECT * FROM risk_report")
    figures = report[report["section"] == "figure"].set_index("name")["value"]
    assert set(report["source_run_id"]) == {"live"} and figures["gross_usd"] == 0.0
    assert "risk_leverage" not in set(report.loc[report["section"] == "breach", "name"])  # nothing held
    assert query(tmp_path, "SELECT count(*) n FROM risk_stress")["n"].iloc[0] == 0
    # auto: a flat trader leaves the backtest's book to evaluate, and there is none here: said, not guessed
    auto = {"ops": {"risk": {"config": {"book": "auto"}}}}
    result = materialize([risk], resources=res(tmp_path), run_config=auto, raise_on_error=False)
    assert not result.success
