"""Binance public-data archives as data.binance.vision ships them, written by the tests that read them.

The column list is written out here, independently of the parser under test (`core/sources/replay/parsers.py`).
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

KLINE_HEADER = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
]


def write_csv(path: Path, rows: list[list], header: list[str] | None, micros_cols: list[int], zipped: bool) -> Path:
    """A Binance-shaped CSV: optionally a header, microsecond timestamps in `micros_cols`, zipped."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(header)
    for row in rows:
        writer.writerow([int(v) * 1000 + 7 if i in micros_cols else v for i, v in enumerate(row)])
    path.parent.mkdir(parents=True, exist_ok=True)
    if zipped:
        target = path.with_suffix(".zip")
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(path.name, buffer.getvalue())
        return target
    path.write_text(buffer.getvalue())
    return path
