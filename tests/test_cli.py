"""The `fundarb` console script: help is useful, bad config fails before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fundarb_dagster.cli import COMMANDS, build_parser, main

FUNDARB = [sys.executable, "-m", "fundarb_dagster.cli"]


def test_help_lists_every_subcommand():
    result = subprocess.run([*FUNDARB, "--help"], capture_output=True, text=True, check=True)
    for command in COMMANDS:
        assert command in result.stdout
    assert "funding-rate arbitrage" in result.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_subcommand_help_describes_it(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"fundarb {command}" in out
    # A description, not just a usage line.
    assert len(out.splitlines()) > 4


def test_check_config_accepts_the_embedded_defaults(capsys):
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "config ok: source=sim" in out
    assert "binance" in out and "BTC/USDT:USDT" in out


def test_check_config_names_the_bad_field_and_value(tmp_path: Path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: sim\nexchanges:\n  - id: notavenue\n    symbols: [BTC/USDT]\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "exchanges[0].id" in err and "'notavenue'" in err


def test_capture_with_bad_config_exits_2_before_starting_mpi(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: sim\ncapture:\n  ranks: 1\n")
    result = subprocess.run([*FUNDARB, "capture", "--config", str(bad)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "capture.ranks" in result.stderr and "1" in result.stderr
    assert not (tmp_path / "data").exists()


def test_import_exits_1_when_a_file_cannot_be_read_and_0_when_all_land(tmp_path: Path, fixtures_dir: Path, capsys):
    unreadable = tmp_path / "notes.csv"
    unreadable.write_text("this,is\nnot,market data\n")
    args = ["import", "--exchange", "binance", "--symbol", "XRP/ETH", "--data-dir", str(tmp_path / "data")]
    assert main([*args, str(unreadable)]) == 1
    assert "FAILED" in capsys.readouterr().out
    trades = fixtures_dir / "binance_xrp" / "XRP_ETH-trades.csv"
    assert main([*args, str(trades)]) == 0
    out = capsys.readouterr().out
    assert "12,477" in out or "12477" in out


def test_assets_prints_every_hourly_or_daily_asset_for_a_ranged_materialize(capsys):
    assert main(["assets", "--scope", "hourly"]) == 0
    hourly = capsys.readouterr().out.strip().split(",")
    assert {"raw_trades", "capture_stats", "ohlcv_1m", "indicators", "funding_rates", "funding_spreads"} <= set(hourly)
    assert "ohlcv_1d" not in hourly and "funding_history" not in hourly and "opportunities" not in hourly
    assert main(["assets", "--scope", "daily"]) == 0
    assert set(capsys.readouterr().out.strip().split(",")) == {"ohlcv_1d", "funding_history"}
