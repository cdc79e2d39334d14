"""What a trader run is, saved beside the landing zone: its strategy, parameters and markets, so the warehouse
can run the backtest of the same parameters over the same period (`live_pnl`'s comparison plot).

`<data_dir>/.fundarb/trade/<name>.json`, written atomically when the trader starts (the first start's time is
kept across restarts: the live period starts there).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..landing import write_atomic


@dataclass(frozen=True)
class RunRecord:
    name: str
    strategy: str
    venue: str  # sim | paper | live
    enter_apr: float
    exit_apr: float
    leverage: float
    capital_usd: float
    markets: tuple[tuple[str, str], ...]  # (exchange, symbol) the trader trades
    options: dict[str, Any] = field(default_factory=dict)  # the strategy's options (underlyings, exchanges)
    started_ms: int = 0

    def to_json(self) -> str:
        data = asdict(self)
        data["markets"] = [list(m) for m in self.markets]
        return json.dumps(data, sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        data = json.loads(text)
        data["markets"] = tuple(tuple(m) for m in data["markets"])
        return cls(**data)


def record_path(data_dir: str | os.PathLike[str], name: str) -> Path:
    return Path(data_dir) / ".fundarb" / "trade" / f"{name}.json"


def save(data_dir: str | os.PathLike[str], record: RunRecord) -> RunRecord:
    """Write the record; a restart keeps the first start's time."""
    path = record_path(data_dir, record.name)
    if path.exists():
        earlier = RunRecord.from_json(path.read_text())
        record = RunRecord(**{**asdict(record), "started_ms": earlier.started_ms or record.started_ms})
    write_atomic(path, lambda handle: handle.write(record.to_json().encode()))
    return record


def load_all(data_dir: str | os.PathLike[str]) -> Sequence[RunRecord]:
    folder = Path(data_dir) / ".fundarb" / "trade"
    out = []
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            out.append(RunRecord.from_json(path.read_text()))
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(out, key=lambda r: r.started_ms)
