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
    daily = {"ohlcv_8h", "ohlcv_1d", "funding_history", "borrow_rates"}
    assert set(capsys.readouterr().out.strip().split(",")) == daily


# -- every bad argument: one line naming it and the value, exit 2, nothing done --------------------------------
# Paths in braces are made in the test's folder: {file} a file, {zip} a broken .zip, {folder} an empty folder,
# {data} the data folder (never created), {empty} an empty config, {blank} one with only a comment,
# {bad_yaml}, {unknown} (an unknown field), {bad_value} (flush_interval_s: -1), {file_data_dir} (data_dir: {file}).
DATA = ["--data-dir", "{data}"]
IMPORT = ["import", "--exchange", "binance", "--symbol", "BTC/USDT", *DATA]
BAD_ARGUMENTS: list[tuple[list[str], tuple[str, ...]]] = [
    (["demo", "--ranks", "1", *DATA], ("--ranks", "1")),
    (["demo", "--ranks", "0", *DATA], ("--ranks", "0")),
    (["demo", "--ranks", "two", *DATA], ("--ranks", "'two'")),
    (["demo", "--speed", "0", *DATA], ("--speed", "0")),
    (["demo", "--speed", "-3", *DATA], ("--speed", "-3")),
    (["demo", "--speed", "nan", *DATA], ("--speed", "nan")),
    (["demo", "--history-days", "-1", *DATA], ("--history-days", "-1")),
    (["demo", "--history-days", "inf", *DATA], ("--history-days", "inf")),
    (["demo", "--capture-seconds", "-5", *DATA], ("--capture-seconds", "-5")),
    (["demo", "--data-dir", "{file}"], ("--data-dir", "{file}", "is a file")),
    (["demo", "--data-dir", "{file}/sub"], ("--data-dir", "{file}/sub", "which is a file")),
    ([*IMPORT, "--kind", "bogus", "{file}"], ("--kind", "'bogus'")),
    (["import", "--exchange", "krakenx", "--symbol", "BTC/USDT", *DATA, "{file}"], ("--exchange", "'krakenx'")),
    (["import", "--exchange", "binance", "--symbol", "BTCUSD_PERP", *DATA, "{file}"], ("--symbol", "'BTCUSD_PERP'")),
    ([*IMPORT, "{folder}/missing.csv"], ("paths", "missing.csv", "does not exist")),
    ([*IMPORT, "{zip}"], ("paths", "{zip}", "not a readable zip")),
    ([*IMPORT, "{folder}"], ("paths", "{folder}", "no .csv, .zip or .parquet")),
    ([*IMPORT, "--data-dir", "{file}", "{zip}"], ("--data-dir", "{file}")),  # the last --data-dir counts
    (["capture", "--ranks", "1", *DATA], ("ranks", "1")),
    (["capture", "--duration", "0", *DATA], ("duration", "0")),
    (["capture", "--duration", "-5", *DATA], ("duration", "-5")),
    (["capture", "--duration", "nan", *DATA], ("duration", "nan")),
    (["capture", "--data-dir", "{file}"], ("data_dir", "{file}", "is a file")),
    (["capture", "--source", "bogus", *DATA], ("--source", "'bogus'")),
    (["capture", "--config", "{folder}/missing.yaml", *DATA], ("config", "missing.yaml", "does not exist")),
    (["capture", "--config", "{empty}", *DATA], ("config", "{empty}", "is empty")),
    (["capture", "--config", "{bad_value}", *DATA], ("capture.flush_interval_s", "-1")),
    (["check-config", "{empty}"], ("config", "{empty}", "is empty")),
    (["check-config", "{blank}"], ("config", "{blank}", "is empty")),
    (["check-config", "{folder}/missing.yaml"], ("config", "missing.yaml", "does not exist")),
    (["check-config", "{folder}"], ("config", "{folder}", "is a folder")),
    (["check-config", "{bad_yaml}"], ("config", "{bad_yaml}", "not valid YAML")),
    (["check-config", "{unknown}"], ("flush", "unknown field")),
    (["check-config", "{bad_value}"], ("capture.flush_interval_s", "-1")),
    (["check-config", "{file_data_dir}"], ("data_dir", "{file}", "is a file")),
    (["history", "--since", "yesterday", "--until", "2026-11-02T00:00:00Z", *DATA], ("--since", "'yesterday'")),
    (["history", "--since", "2026-11-02", "--until", "2026-11-01", *DATA], ("--until", "'2026-11-01'", "not after")),
    (["history", "--since", "2026-11-01", "--until", "2026-11-02", "--streams", "candles"], ("--streams", "'candles'")),
]  # fmt: skip


def _bad_argument_files(tmp: Path) -> dict[str, str]:
    files = {name: tmp / name for name in ("file", "zip", "folder", "empty", "blank", "bad_yaml", "unknown")}
    files |= {"bad_value": tmp / "bad_value.yaml", "file_data_dir": tmp / "file_data_dir.yaml"}
    files["zip"] = tmp / "BTCUSDT-1m-2024-01-01.zip"
    files["file"].write_text("not a folder")
    files["zip"].write_bytes(b"PK\x03\x04 this is not a whole zip archive")
    files["folder"].mkdir()
    files["empty"].write_text("")
    files["blank"].write_text("# only a comment\n")
    files["bad_yaml"].write_text("source: [sim\n")
    files["unknown"].write_text("source: sim\nflush: 2\n")
    files["bad_value"].write_text("capture:\n  flush_interval_s: -1\n")
    files["file_data_dir"].write_text(f"data_dir: {files['file']}\n")
    return {name: str(path) for name, path in files.items()} | {"data": str(tmp / "data")}


@pytest.mark.parametrize(("argv", "expected"), BAD_ARGUMENTS, ids=[" ".join(a[:3]) for a, _ in BAD_ARGUMENTS])
def test_every_bad_argument_is_one_line_naming_it_and_its_value_with_exit_2_and_no_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: tuple[str, ...]
) -> None:
    files = _bad_argument_files(tmp_path)
    try:
        code = main([arg.format(**files) for arg in argv])
    except SystemExit as exit_info:  # argparse's own refusals (a non-number, an unknown choice)
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    for text in expected:
        assert text.format(**files) in lines[0], (text, lines[0])
    assert not (tmp_path / "data").exists()  # nothing was started, nothing written
