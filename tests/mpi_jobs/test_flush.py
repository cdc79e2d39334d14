"""The flusher: pending records -> hourly Parquet files, atomically, with sequences that survive restarts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from fundarb_dagster.core import landing, schema
from mpi_jobs.flush import Flusher, read_landed

HOUR = landing.HOUR_MS
T0 = 1_793_491_200_000  # 2026-11-01T00:00Z
NAMES = {0: ("bybit", "BTC/USDT:USDT"), 1: ("binance", "ETH/USDT")}


def _trades(ts: np.ndarray, first_id: int = 0) -> np.ndarray:
    records = schema.empty("trades", len(ts))
    records["ts_ms"] = ts
    records["recv_ts_ms"] = ts + 5
    records["trade_id"] = np.arange(first_id, first_id + len(ts))
    records["instrument_id"] = np.arange(len(ts)) % 2
    records["price"] = 100 + np.arange(len(ts)) / 10
    records["amount"] = 0.5
    records["side"] = 1
    return records


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_flush_writes_one_file_per_event_hour_with_every_record(tmp_path: Path) -> None:
    flusher = Flusher(tmp_path, "node0-0", NAMES)
    ts = np.concatenate([T0 + np.arange(0, HOUR, 600_000), T0 + HOUR + np.arange(0, 1000, 100)])
    expected = _trades(ts)
    flusher.add("trades", expected[:4])
    flusher.add("trades", expected[4:])
    result = flusher.flush()
    assert result.records == {"trades": len(ts)}
    assert sorted(p.relative_to(tmp_path / "landing").as_posix() for p in result.files) == [
        "trades/date=2026-11-01/hour=00/node0-0-00000000.parquet",
        "trades/date=2026-11-01/hour=01/node0-0-00000000.parquet",
    ]
    landed = read_landed(tmp_path, "trades")
    landed.sort(order="trade_id")
    assert landed.tobytes() == expected.tobytes()
    table = pq.read_table(result.files[0])
    assert set(table.column("exchange").to_pylist()) == {"bybit", "binance"}
    assert flusher.pending() == 0


def test_sequence_continues_after_a_restart_and_stale_temporaries_are_removed(tmp_path: Path) -> None:
    first = Flusher(tmp_path, "node0-0", NAMES)
    for i in range(3):
        first.add("trades", _trades(np.array([T0 + i]), first_id=i))
        first.flush()
    # A crashed predecessor's temporary next to the finished files.
    tmp = landing.partition_dir(tmp_path, "trades", T0) / f"{landing.TMP_PREFIX}node0-0-00000003.parquet.999"
    tmp.write_bytes(b"half a file")
    again = Flusher(tmp_path, "node0-0", NAMES)
    assert again.stale_removed == 1 and not tmp.exists()
    assert again.seq == 3
    again.add("trades", _trades(np.array([T0 + 10]), first_id=10))
    names = [p.name for p in again.flush().files]
    assert names == ["node0-0-00000003.parquet"]
    assert len(read_landed(tmp_path, "trades")) == 4


def test_flush_is_due_after_the_interval_or_when_an_event_hour_closes(tmp_path: Path) -> None:
    clock = FakeClock()
    flusher = Flusher(tmp_path, "w", NAMES, flush_interval_s=2.0, clock=clock)
    assert not flusher.due()
    clock.now = 5.0
    assert not flusher.due()  # nothing pending: nothing to write
    flusher.add("trades", _trades(np.array([T0 + HOUR - 10])))
    assert flusher.due()
    flusher.flush()
    clock.now = 5.5
    flusher.add("trades", _trades(np.array([T0 + HOUR + 1])))
    assert not flusher.due()  # same hour as its own first record, interval not over
    flusher.add("trades", _trades(np.array([T0 + 2 * HOUR + 1])))
    assert flusher.due()  # the pending records now reach into the next hour


def test_streams_flush_together_under_one_sequence_number(tmp_path: Path) -> None:
    flusher = Flusher(tmp_path, "w", NAMES)
    events = schema.empty("capture_events", 2)
    events["ts_ms"] = T0
    events["instrument_id"] = [0, -1]
    events["kind"] = int(schema.EventKind.RECONNECT)
    events["reason"] = [b"socket closed", b""]
    stats = schema.empty("capture_stats", 1)
    stats["ts_ms"] = T0
    flusher.add("capture_events", events)
    flusher.add("capture_stats", stats)
    flusher.add("trades", _trades(np.array([T0])))
    result = flusher.flush()
    assert {p.name for p in result.files} == {"w-00000000.parquet"}
    assert result.records == {"trades": 1, "capture_events": 2, "capture_stats": 1}
    landed = read_landed(tmp_path, "capture_events")
    assert sorted(landed["reason"].tolist()) == [b"", b"socket closed"]
    assert pq.read_table(landing.partition_dir(tmp_path, "capture_events", T0) / "w-00000000.parquet").column(
        "exchange"
    ).to_pylist() == ["bybit", None]


def test_a_failed_write_keeps_records_pending_and_the_retry_writes_them_once(tmp_path: Path) -> None:
    flusher = Flusher(tmp_path, "w", NAMES)
    records = _trades(T0 + np.arange(10))
    flusher.add("trades", records)
    blocker = tmp_path / "landing" / "trades"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the stream folder should be")  # every write below it fails
    try:
        flusher.flush()
    except OSError:
        pass
    else:
        raise AssertionError("the write should have failed")
    assert flusher.pending("trades") == 10
    blocker.unlink()
    result = flusher.flush()
    assert result.records == {"trades": 10}
    assert read_landed(tmp_path, "trades").tobytes() == records.tobytes()


def test_landed_exchange_and_symbol_match_the_registry_row_by_row(tmp_path: Path) -> None:
    # Sparse ids, the same symbol on two venues, events not about an instrument (-1), and an id too large for
    # the dense lookup: the flusher's dictionary columns must land as the plain strings of the registry.
    names = {
        0: ("bybit", "BTC/USDT:USDT"),
        3: ("binance", "BTC/USDT:USDT"),
        7: ("binance", "ETH/USDT"),
        9: ("okx", "SOL/USDT:USDT"),
        5_000_000: ("okx", "XRP/USDT:USDT"),
    }
    rng = np.random.default_rng(4)
    trades = _trades(T0 + np.arange(2000) * 100)
    trades["instrument_id"] = rng.choice([0, 3, 7], len(trades))  # 9 never trades in this batch
    events = schema.empty("capture_events", 6)
    events["ts_ms"] = T0 + np.arange(6)
    events["instrument_id"] = [-1, 9, -1, 5_000_000, 0, -1]
    flusher = Flusher(tmp_path, "node0-0", names)
    flusher.add("trades", trades)
    flusher.add("capture_events", events)
    flusher.flush()
    for stream, records in (("trades", trades), ("capture_events", events)):
        [path] = (tmp_path / "landing" / stream).rglob("*.parquet")
        table = pq.read_table(path)
        assert table.schema == schema.arrow_schema(stream)
        expected = [names.get(int(i), (None, None)) for i in records["instrument_id"]]
        assert table.column("exchange").to_pylist() == [e for e, _ in expected]
        assert table.column("symbol").to_pylist() == [s for _, s in expected]
        # Stored as dictionaries, not string by string (a dictionary with repeated values falls back to plain).
        row_group = pq.ParquetFile(path).metadata.row_group(0)
        for column in ("exchange", "symbol"):
            chunk = row_group.column(table.schema.get_field_index(column))
            assert "RLE_DICTIONARY" in chunk.encodings, (stream, column, chunk.encodings)
