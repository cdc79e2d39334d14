"""core/tables.py: every warehouse table's columns once, the raw ones derived from the landed streams, and
the same tables, keys and partitions as docs/architecture.md describes ("Tables"), so neither can drift."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest

from fundarb_dagster.core import schema, tables
from fundarb_dagster.core.sql import sql_path

ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def documented_tables() -> dict[str, tuple[tuple[str, ...], str]]:
    """table -> (key, partitions) from the "### Tables" section of docs/architecture.md."""
    text = ARCHITECTURE.read_text()
    section = text.split("\n### Tables\n", 1)[1].split("\n### ", 1)[0]
    out: dict[str, tuple[tuple[str, ...], str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`"):
            continue
        key_text = re.sub(r"\(.*?\)", "", cells[1]).strip()
        key = () if key_text == "all columns" else tuple(k.strip() for k in key_text.split(",") if k.strip())
        partitions = re.match(r"[a-z]+", cells[2]).group(0)
        for name in re.findall(r"`(\w+)`", cells[0]):
            out[name] = (key, partitions)
    return out


def test_the_documented_tables_are_the_tables_with_the_same_keys_and_partitions():
    documented = documented_tables()
    assert len(documented) > 20  # the section was found and read
    assert set(documented) == set(tables.TABLES), "docs/architecture.md 'Tables' and core/tables.py differ"
    for name, (key, partitions) in documented.items():
        assert tables.TABLES[name].key == key, name
        assert tables.TABLES[name].partitions == partitions, name


@pytest.mark.parametrize("stream", list(schema.STREAMS))
def test_each_raw_table_has_every_landed_field_of_its_stream_with_its_type(stream):
    table = tables.TABLES[tables.STREAM_TABLES[stream]]
    kinds = {c.name: c.kind for c in table.columns}
    arrow = {pa.int64(): "int64", pa.int32(): "int32", pa.int8(): "int8", pa.float64(): "float64",
             pa.list_(pa.float64()): "float64[]"}  # fmt: skip
    landed = {f.name: arrow.get(f.type, "string") for f in schema.arrow_schema(stream)}
    assert {k: v for k, v in kinds.items() if k in landed} == landed
    # beyond the landed fields, only the TIMESTAMP forms of the epoch-ms times
    assert set(kinds) - set(landed) == ({"ts", "funding_ts"} if stream == "funding" else {"ts"})
    assert table.column_names[:2] in (["ts", "ts_ms"], ["ts", "funding_ts"])


def test_every_table_is_well_formed():
    assert set(tables.STREAM_TABLES) == set(schema.STREAMS)
    for table in tables.TABLES.values():
        names = table.column_names
        assert len(names) == len(set(names)), table.name
        assert set(table.key) <= set(names), table.name
        assert table.partitions in tables.PARTITIONS, table.name
        assert all(c.kind in tables.KINDS and c.description for c in table.columns), table.name
        if table.frame:  # rows that come from Python are typed by the SQL file that selects from the frame
            assert sql_path(table.domain, table.name).exists(), table.name


def test_an_unknown_table_is_named_in_the_error():
    with pytest.raises(KeyError, match="'ohlcv_2m'"):
        tables.table("ohlcv_2m")


def test_an_empty_frame_has_the_columns_and_types_of_its_table():
    frame = tables.empty_frame("funding_spreads")
    assert list(frame.columns) == tables.TABLES["funding_spreads"].column_names
    assert str(frame["ts"].dtype) == "datetime64[us]" and str(frame["is_predicted_a"].dtype) == "bool"
