"""The stream schema: record dtypes, NaN defaults and the Arrow round trip every landed file goes through."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from fundarb_dagster.core import schema


def filled(stream: str, n: int, seed: int = 1) -> np.ndarray:
    """Records with every public field set to a distinct random value of its type."""
    rng = np.random.default_rng(seed)
    out = schema.empty(stream, n)
    for name in schema.public_fields(stream):
        kind = out.dtype[name].kind
        if kind == "f":
            out[name] = rng.normal(size=n)
        elif kind in "iu":
            info = np.iinfo(out.dtype[name])
            out[name] = rng.integers(max(info.min, -1000), min(info.max, 10**12), n)
        elif kind == "S":
            out[name] = [f"reason-{i}".encode() for i in range(n)]
    if "instrument_id" in out.dtype.names:
        out["instrument_id"] = rng.integers(0, 3, n)
    return out


NAMES = {0: ("binance", "BTC/USDT"), 1: ("bybit", "BTC/USDT:USDT"), 2: ("hyperliquid", "BTC/USDC:USDC")}


@pytest.mark.parametrize("stream", list(schema.STREAMS))
def test_records_survive_the_arrow_round_trip(stream: str) -> None:
    records = filled(stream, 257)
    table = schema.to_arrow(stream, records, NAMES if stream in schema.INSTRUMENT_STREAMS else None)
    assert table.schema == schema.arrow_schema(stream)
    back = schema.from_arrow(stream, table)
    for name in schema.public_fields(stream):
        np.testing.assert_array_equal(back[name], records[name], err_msg=name)


@pytest.mark.parametrize("stream", ["trades", "order_book"])
def test_records_spanning_several_gather_blocks_survive_the_arrow_round_trip(stream: str) -> None:
    # to_arrow copies fields a block of rows at a time: a partial last block and every field must come through
    n = 2 * schema.GATHER_BLOCK_ROWS + 13
    records = filled(stream, n, seed=5)
    table = schema.to_arrow(stream, records, NAMES, dictionary_strings=True)
    for name in schema.public_fields(stream):
        column = table.column(name).to_numpy(zero_copy_only=False)
        expected = records[name]
        np.testing.assert_array_equal(np.stack(column) if expected.ndim == 2 else column, expected, err_msg=name)


@pytest.mark.parametrize("stream", list(schema.INSTRUMENT_STREAMS))
def test_instrument_streams_carry_exchange_and_symbol_names(stream: str) -> None:
    records = filled(stream, 50)
    table = schema.to_arrow(stream, records, NAMES)
    expected = [NAMES[int(i)] for i in records["instrument_id"]]
    assert table.column("exchange").to_pylist() == [e for e, _ in expected]
    assert table.column("symbol").to_pylist() == [s for _, s in expected]


def test_events_about_no_instrument_have_null_names() -> None:
    events = filled("capture_events", 3)
    events["instrument_id"] = [-1, 0, -1]
    table = schema.to_arrow("capture_events", events, NAMES)
    assert table.column("exchange").to_pylist() == [None, "binance", None]
    assert table.column("reason").to_pylist() == ["reason-0", "reason-1", "reason-2"]


def test_instrument_stream_without_names_or_with_an_unknown_id_is_an_error() -> None:
    records = filled("trades", 4)
    with pytest.raises(ValueError, match="stream 'trades' needs instrument names"):
        schema.to_arrow("trades", records)
    records["instrument_id"][2] = 9
    with pytest.raises(KeyError, match="instrument_id: 9 is not in the registry"):
        schema.to_arrow("trades", records, NAMES)


def test_capture_stats_has_no_instrument_columns() -> None:
    names = schema.arrow_schema("capture_stats").names
    assert "exchange" not in names and "symbol" not in names and "_pad" not in names
    assert schema.to_arrow("capture_stats", filled("capture_stats", 2)).num_rows == 2


@pytest.mark.parametrize("stream", list(schema.STREAMS))
def test_empty_records_default_floats_to_nan_and_the_rest_to_zero(stream: str) -> None:
    out = schema.empty(stream, 5)
    for name in schema.public_fields(stream):
        column = out[name]
        if column.dtype.kind == "f":
            assert np.isnan(column).all(), name
        elif column.dtype.kind == "S":
            assert (column == b"").all()
        else:
            assert (column == 0).all(), name


@pytest.mark.parametrize("stream", list(schema.STREAMS))
def test_dtypes_are_packed_for_raw_copies_and_start_with_the_two_times(stream: str) -> None:
    dtype = schema.dtype_of(stream)
    assert dtype.itemsize % 8 == 0
    assert dtype.names[:2] == ("ts_ms", "recv_ts_ms")
    for name in dtype.names:
        field_dtype, offset = dtype.fields[name]
        if field_dtype.kind in "if" and field_dtype.itemsize == 8:
            assert offset % 8 == 0, f"{stream}.{name} is not 8-byte aligned"


def test_unknown_stream_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="stream: unknown stream 'orderbook'"):
        schema.dtype_of("orderbook")
    with pytest.raises(ValueError, match="unknown stream 'quotes'"):
        schema.empty("quotes")


def test_stream_codes_and_names_are_inverse() -> None:
    for name, code in schema.STREAM_CODES.items():
        assert schema.STREAM_NAMES[int(code)] == name
    assert set(schema.MARKET_STREAMS) <= set(schema.INSTRUMENT_STREAMS)


def test_public_fields_skip_padding_and_arrow_types_match_numpy() -> None:
    assert schema.public_fields("trades") == [
        "ts_ms",
        "recv_ts_ms",
        "instrument_id",
        "side",
        "trade_id",
        "price",
        "amount",
        "contracts",
        "contract_size",
        "cost",
    ]
    arrow = schema.arrow_schema("funding")
    assert arrow.field("is_settled").type == pa.int8()
    assert arrow.field("funding_ts_ms").type == pa.int64()
    assert arrow.field("interval_h").type == pa.float64()
    assert schema.arrow_schema("capture_events").field("reason").type == pa.string()
