"""The project's own landing zone as a recording: `<data_dir>/landing/<stream>/date=.../[hour=.../]*.parquet`.

Read with pyarrow's hive partitioning, filtered to one exchange (and symbols) before anything is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as ds

from ... import landing, schema


def read_landing(
    path: str | Path, exchange: str, symbols: Sequence[str] | None = None
) -> dict[tuple[str, str], np.ndarray]:
    """{(symbol, stream): records} for one exchange from a data folder or its `landing/` folder."""
    root = Path(path)
    if (root / "landing").is_dir():
        root = root / "landing"
    out: dict[tuple[str, str], np.ndarray] = {}
    for stream in schema.MARKET_STREAMS:
        folder = root / stream
        if not folder.is_dir():
            continue
        files = landing.stream_files(root.parent, stream)  # hour folders' files and imports' day files
        if not files:
            continue
        dataset = ds.dataset(files, format="parquet")
        condition = pc.field("exchange") == exchange
        if symbols:
            condition = condition & pc.field("symbol").isin(list(symbols))
        table = dataset.to_table(filter=condition, columns=[*schema.public_fields(stream), "symbol"])
        if table.num_rows == 0:
            continue
        symbol_column = table.column("symbol")
        for symbol in pc.unique(symbol_column).to_pylist():
            part = table.filter(pc.equal(symbol_column, symbol))
            records = schema.from_arrow(stream, part)
            out[(symbol, stream)] = _landing_dedupe(stream, records)
    return out


def _landing_dedupe(stream: str, records: np.ndarray) -> np.ndarray:
    """Landed data may hold duplicates (re-captures); keep the last received copy of each natural key."""
    order = np.lexsort((records["recv_ts_ms"], records["ts_ms"]))
    records = records[order]
    if stream == "tickers":
        return records
    frame = pd.DataFrame({"ts": records["ts_ms"]})
    if stream == "trades":
        frame = pd.DataFrame({"id": records["trade_id"]})
    elif stream == "liquidations":  # prints can share a millisecond: their hash is their identity
        frame = pd.DataFrame({"id": records["liquidation_id"]})
    elif stream == "ohlcv":
        frame["tf"] = records["timeframe_s"]
    elif stream == "funding":
        frame["f"], frame["s"] = records["funding_ts_ms"], records["is_settled"]
    keep = ~frame.duplicated(keep="last").to_numpy()
    return records[keep]
