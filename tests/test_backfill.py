"""`fundarb backfill`: imported history materialized in bounded runs by one command, checked against the files."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from fundarb_dagster import cli
from fundarb_dagster.core.importer import import_files
from tests.core.binance_archives import write_csv

HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
DAYS = 2


def _funding(folder: Path, name: str, interval_h: int, seed: int) -> list[list]:
    rng = np.random.default_rng(seed)
    rows = [[t + 7, interval_h, f"{rng.normal(1e-4, 5e-5) * interval_h / 8:.8f}"]
            for t in range(T0, T0 + DAYS * 24 * HOUR, interval_h * HOUR)]  # fmt: skip
    write_csv(folder / f"{name}-fundingRate-2024-01.csv", rows, None, [], False)
    return rows


def _klines(folder: Path, name: str) -> list[list]:
    rng = np.random.default_rng(3)
    rows, price = [], 42_000.0
    for i in range(DAYS * 1440):
        o, c = price, price * (1 + rng.normal(0, 5e-4))
        t = T0 + i * 60_000
        rows.append([t, f"{o:.2f}", f"{max(o, c) + 1:.2f}", f"{min(o, c) - 1:.2f}", f"{c:.2f}", "1.5", t + 59_999])
        price = c
    rows = [r + ["63000", 10, "0.7", "29400", 0] for r in rows]
    write_csv(folder / f"{name}-1m-2024-01.csv", rows, None, [], False)
    return rows


@pytest.mark.slow
def test_one_command_loads_imported_history_in_bounded_runs(tmp_path: Path, monkeypatch, capsys) -> None:
    import fundarb_dagster.defs.partitions as partitions_module

    data = tmp_path / "data"
    binance = _funding(tmp_path / "binance", "BTCUSDT", 8, 1)
    bybit = _funding(tmp_path / "bybit", "BTCUSDT", 1, 2)
    klines = _klines(tmp_path / "binance", "BTCUSDT")
    for exchange in ("binance", "bybit"):
        summary = import_files([tmp_path / exchange], data, exchange=exchange, symbol="BTC/USDT:USDT", progress=None)
        assert summary.ok
    monkeypatch.setattr(partitions_module, "MAX_RUN_PARTITIONS", 24)  # a day per run: two runs per job
    monkeypatch.delenv("FUNDARB_PARTITIONS_START", raising=False)
    assert cli.main(["backfill", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out.splitlines()
    runs = [line for line in out if line.startswith(("hourly_job ", "signals_job "))]
    assert len([r for r in runs if r.startswith("hourly_job")]) == DAYS
    assert len([r for r in runs if r.startswith("signals_job")]) == DAYS  # the first window starts at the start
    assert all("Dagster" in r and "FAILED" not in r for r in runs) and out[-1].startswith(f"backfill: {2 * DAYS} runs")
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        raw = con.execute("SELECT exchange, count(*) FROM raw_funding GROUP BY 1 ORDER BY 1").fetchall()
        assert raw == [("binance", len(binance)), ("bybit", len(bybit))]
        rates = con.execute(
            "SELECT exchange, count(*), sum(funding_rate) FROM funding_rates GROUP BY 1 ORDER BY 1"
        ).fetchall()
        for (exchange, n, total), rows in zip(rates, (binance, bybit), strict=True):
            assert n == len(rows) and total == pytest.approx(sum(float(r[2]) for r in rows), rel=1e-12), exchange
        bars = con.execute("SELECT count(*), sum(volume) FROM ohlcv_1m WHERE exchange = 'binance'").fetchone()
        assert bars == (len(klines), pytest.approx(1.5 * len(klines)))
        hours = con.execute(
            "SELECT epoch_ms(ts), open, high, low, close FROM ohlcv_1h WHERE exchange = 'binance' ORDER BY ts"
        ).fetchall()
        assert len(hours) == DAYS * 24
        for t, o, h, low, c in hours:  # an independent resample of the file's minutes
            minutes = [r for r in klines if t <= r[0] < t + HOUR]
            assert (o, c) == (float(minutes[0][1]), float(minutes[-1][4]))
            assert (h, low) == (max(float(r[2]) for r in minutes), min(float(r[3]) for r in minutes))
        spreads = con.execute(
            "SELECT count(*), count(DISTINCT ts) FROM funding_spreads WHERE underlying = 'BTC'"
        ).fetchone()
        assert spreads[0] > 0 and spreads[1] >= DAYS * 24 - 8
    from dagster import AssetKey, DagsterEventType, DagsterInstance, EventRecordsFilter, RunsFilter

    with DagsterInstance.from_config(str(data / "dagster_home")) as instance:  # the UI's instance lists the runs
        records = instance.get_run_records(RunsFilter(tags={"fundarb/trigger": "fundarb backfill"}))
        assert len(records) == 2 * DAYS
        planned = instance.get_event_records(
            EventRecordsFilter(DagsterEventType.ASSET_MATERIALIZATION_PLANNED, asset_key=AssetKey("raw_funding"))
        )
        assert len(planned) == DAYS  # one per run, not one per hour of it (24 per run)
        assert set(instance.get_materialized_partitions(AssetKey("raw_funding"))) == {
            f"2024-01-0{d + 1}-{h:02d}:00" for d in range(DAYS) for h in range(24)
        }
