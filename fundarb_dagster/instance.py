"""The Dagster instance of a data folder: the environment that points Dagster at its home and warehouse.

`fundarb demo` materializes into it and `fundarb ui` opens it, so both see the same runs, checks and plots.
"""

from __future__ import annotations

import os
from pathlib import Path

DAGSTER_YAML = Path(__file__).resolve().parent.parent / "config" / "dagster.yaml"


def dagster_env(data_dir: Path) -> dict[str, str]:
    """The environment that points Dagster at a data folder's instance and warehouse."""
    data_dir = data_dir.resolve()
    home = data_dir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    if DAGSTER_YAML.exists() and not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML.read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home), "FUNDARB_DATA_DIR": str(data_dir)}
    # The demo leaves its config beside its data, so the UI's funding_history pulls from the same sim.
    if (data_dir / "demo_config.yaml").exists():
        env.setdefault("FUNDARB_CONFIG", str(data_dir / "demo_config.yaml"))
    return env
