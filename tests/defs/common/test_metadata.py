"""defs/common/metadata: what the asset pages show, held against hand-computed cells."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from dagster import FloatMetadataValue, NullMetadataValue, TableMetadataValue

from fundarb_dagster.defs.common.metadata import metadata_table, number


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rank": [1, 2],
            "pair": ["BTC binance/bybit", "ETH okx/bybit"],
            "net_carry_apr": [0.157719, -0.0123456],
            "entry_cost_bps": [12.3456, 8.0],
            "pnl_usd": [1_234_567.891, 12.3456],
            "half_life_h": [7.26, float("nan")],
            "as_of": pd.to_datetime(["2026-01-02 03:00", "2026-01-02 04:00"]),
            "same_sign": [True, False],
        }
    )


def test_metadata_table_shows_units_in_names_and_descriptions_and_rounds_each_unit():
    value = metadata_table(
        _frame(),
        {"net_carry_apr": "pct", "entry_cost_bps": "bps", "pnl_usd": "usd", "half_life_h": "h"},
        {"net_carry_apr": "expected carry net of costs"},
    )
    assert isinstance(value, TableMetadataValue)
    columns = {c.name: c for c in value.schema.columns}
    # a fraction is shown in percent under a _pct name; names that carry their unit keep it
    assert list(columns) == ["rank", "pair", "net_carry_apr_pct", "entry_cost_bps", "pnl_usd", "half_life_h",
                             "as_of", "same_sign"]  # fmt: skip
    assert "percent" in columns["net_carry_apr_pct"].description
    assert "expected carry net of costs" in columns["net_carry_apr_pct"].description
    assert "basis points" in columns["entry_cost_bps"].description and "USD" in columns["pnl_usd"].description
    assert (columns["rank"].type, columns["pnl_usd"].type, columns["same_sign"].type) == ("int", "string", "bool")
    first, second = (r.data for r in value.records)
    assert first == {
        "rank": 1,
        "pair": "BTC binance/bybit",
        "net_carry_apr_pct": 15.77,
        "entry_cost_bps": 12.3,
        "pnl_usd": "1,234,568",
        "half_life_h": 7.3,
        "as_of": "2026-01-02 03:00",
        "same_sign": True,
    }
    assert second["net_carry_apr_pct"] == -1.23 and second["pnl_usd"] == "12.35"
    assert second["half_life_h"] is None  # a missing value is empty, not NaN or a made-up 0


def test_metadata_table_keeps_the_callers_order_and_cuts_at_max_rows():
    frame = pd.DataFrame({"rank": range(1, 51), "v": [0.5] * 50})
    value = metadata_table(frame, {"v": "pct"}, max_rows=20)
    assert [r.data["rank"] for r in value.records] == list(range(1, 21))
    assert value.records[0].data["v_pct"] == 50.0


def test_metadata_table_names_an_unknown_column_or_unit():
    with pytest.raises(KeyError, match="nope"):
        metadata_table(_frame(), {"nope": "pct"})
    with pytest.raises(KeyError, match="furlongs"):
        metadata_table(_frame(), {"rank": "furlongs"})


def test_an_empty_frame_is_a_table_with_its_schema_and_no_rows():
    value = metadata_table(_frame().iloc[:0], {"net_carry_apr": "pct"})
    assert value.records == [] and "net_carry_apr_pct" in [c.name for c in value.schema.columns]


def test_number_is_typed_scaled_and_null_when_missing():
    assert number(0.157719, "pct") == FloatMetadataValue(15.77)
    assert number(1_234_567.891, "usd") == FloatMetadataValue(1_234_567.89)
    assert number(1.23456, "ratio") == FloatMetadataValue(1.23)
    assert isinstance(number(float("nan"), "pct"), NullMetadataValue)
    assert isinstance(number(math.inf), NullMetadataValue)
