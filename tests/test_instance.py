"""The data folder's Dagster instance: what `fundarb demo` writes and `fundarb ui` opens."""

from __future__ import annotations

from pathlib import Path

from fundarb_dagster.instance import DAGSTER_YAML, dagster_env


def test_dagster_env_points_at_the_data_folder_home_with_the_pool_config(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("FUNDARB_CONFIG", raising=False)
    env = dagster_env(tmp_path / "data")
    home = (tmp_path / "data" / "dagster_home").resolve()
    assert env["DAGSTER_HOME"] == str(home) and env["FUNDARB_DATA_DIR"] == str((tmp_path / "data").resolve())
    assert (home / "dagster.yaml").read_text() == DAGSTER_YAML.read_text()  # the duckdb pool limit of 1
    assert "FUNDARB_CONFIG" not in env


def test_dagster_env_keeps_an_edited_instance_config_and_uses_the_demo_config(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("FUNDARB_CONFIG", raising=False)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("# edited\n")
    (tmp_path / "demo_config.yaml").write_text("source: sim\n")
    env = dagster_env(tmp_path)
    assert (home / "dagster.yaml").read_text() == "# edited\n"
    assert env["FUNDARB_CONFIG"] == str((tmp_path / "demo_config.yaml").resolve())
