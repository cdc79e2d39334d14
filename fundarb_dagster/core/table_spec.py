"""What a warehouse table is: its columns (name, kind, description), natural key, partitioning, domain.

The catalogue of every table is `tables.py`. Kinds: string, timestamp (UTC, microseconds), float64, int64,
int32, int8, bool, float64[] (a list of floats: an order book's levels).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

KINDS: Final = ("string", "timestamp", "float64", "int64", "int32", "int8", "bool", "float64[]")
DUCKDB_TYPES: Final = {
    "string": "VARCHAR",
    "timestamp": "TIMESTAMP",
    "float64": "DOUBLE",
    "int64": "BIGINT",
    "int32": "INTEGER",
    "int8": "TINYINT",
    "bool": "BOOLEAN",
    "float64[]": "DOUBLE[]",
}
PARTITIONS: Final = ("hourly", "daily", "none")
# The pandas dtype of each kind: a table's empty frame (so the SQL's casts bind).
PANDAS_DTYPES: Final = {
    "timestamp": "datetime64[us]",
    "string": "object",
    "bool": "bool",
    "int8": "int8",
    "int32": "int32",
    "int64": "int64",
    "float64": "float64",
    "float64[]": "object",
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    description: str


@dataclass(frozen=True)
class Table:
    """A warehouse table: asset key = table name = `sql/<domain>/<name>.sql`."""

    name: str
    domain: str  # its SQL file's folder, sql/<domain>/ (the risk tables' files sit with the backtest's)
    key: tuple[str, ...]  # natural key; empty: every column (exact duplicates are dropped)
    partitions: str  # event-time partitions: hourly, daily or none
    columns: tuple[Column, ...]
    frame: str = ""  # the registered frame its SQL file selects from, where the rows come from Python
    stream: str = ""  # raw tables: the landed stream they load
    description: str = ""

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def duckdb_columns(self) -> list[tuple[str, str]]:
        """(name, DuckDB type) in order: what `DESCRIBE <table>` shows of the warehouse table."""
        return [(c.name, DUCKDB_TYPES[c.kind]) for c in self.columns]

    @property
    def natural_key(self) -> str:
        return ", ".join(self.key) or "all columns"


def columns(rows: Iterable[tuple[str, str, str]]) -> tuple[Column, ...]:
    out = tuple(Column(*row) for row in rows)
    for column in out:
        if column.kind not in KINDS:
            raise ValueError(f"column {column.name}: kind {column.kind!r}; expected one of {list(KINDS)}")
    return out
