"""The landing zone as the raw SQL reads it: the files of a window, listed by day folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fundarb_dagster.core import landing, schema
from fundarb_dagster.core.window import Window, window_from_ms
from fundarb_dagster.defs.common.landing import window_files
from tests.defs.raw.landing_fixtures import NAMES, land_trades

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def _obvious_window_files(data_dir: Path, stream: str, window: Window) -> list[Path]:
    """Every hour of the window looked up one by one, then the day files of its days (the listing before)."""
    files: list[Path] = []
    for hour_ms in range(window.start_ms, window.end_ms, HOUR):
        folder = landing.partition_dir(data_dir, stream, hour_ms)
        if folder.is_dir():
            files.extend(sorted(folder.glob("*.parquet")))
    for day_ms in range(window.start_ms // DAY * DAY, window.end_ms, DAY):
        files.extend(landing.day_files(landing.day_dir(data_dir, stream, day_ms)))
    return files


def test_window_files_lists_day_folders_as_the_hour_by_hour_look_up_did(tmp_path: Path) -> None:
    """Hour files (capture) and day files (imports) mixed over 4 days, some hours and a day without files: every
    window, aligned or not, one hour or days long, lists the same files in the same order as a look-up per hour."""
    rng = np.random.default_rng(4)
    hours = sorted(rng.choice(4 * 24, 30, replace=False))
    trades = pd.DataFrame({"ts_ms": [T0 + int(h) * HOUR + 17 for h in hours], "trade_id": [str(h) for h in hours]})
    land_trades(tmp_path, trades.assign(price=1.0, amount=1.0))
    land_trades(tmp_path, trades.iloc[::3].assign(price=1.0, amount=1.0), writer="second")
    records = schema.empty("trades", 3)
    records["ts_ms"] = [T0 + 5 * HOUR, T0 + DAY + 7 * HOUR, T0 + 3 * DAY + 23 * HOUR]  # days 1, 2 and 4 as day files
    landing.write_days(tmp_path, "trades", schema.to_arrow("trades", records, NAMES), "import-a")
    compared = 0
    for start_h, end_h in [(0, 1), (5, 6), (0, 24), (3, 40), (23, 73), (0, 96), (47, 48), (95, 120), (100, 130)]:
        window = window_from_ms(T0 + start_h * HOUR, T0 + end_h * HOUR)
        got = window_files(tmp_path, "trades", window)
        assert got == _obvious_window_files(tmp_path, "trades", window), (start_h, end_h)
        compared += len(got)
    assert compared > 60
    assert window_files(tmp_path, "no_such_stream", window_from_ms(T0, T0 + DAY)) == []
