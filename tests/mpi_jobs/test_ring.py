"""The shared-memory ring: its logic on a plain buffer (comm=None), then for real across MPI processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from fundarb_dagster.core import schema
from mpi_jobs.ring import Backoff, Ring, RingTimeout

REPO = Path(__file__).resolve().parents[2]
MPIEXEC = Path(sys.executable).with_name("mpiexec")


def _trades(start: int, n: int) -> np.ndarray:
    records = schema.empty("trades", n)
    records["trade_id"] = np.arange(start, start + n)
    records["ts_ms"] = 1_700_000_000_000 + np.arange(start, start + n)
    records["price"] = 100.0 + np.arange(start, start + n) * 0.5
    records["instrument_id"] = np.arange(start, start + n) % 7
    # no NaN: the records are compared whole
    records["amount"] = records["contracts"] = records["contract_size"] = records["cost"] = 1.0
    return records


def test_records_come_out_in_order_and_intact_across_many_wraparounds() -> None:
    rng = np.random.default_rng(3)
    expected = _trades(0, 3000)
    with Ring(schema.TRADES, 37) as ring:
        sent, received = 0, []
        while sent < len(expected):
            n = int(rng.integers(1, 30))
            wrote = ring.try_push(expected[sent : sent + n])
            assert wrote == min(n, len(expected) - sent, 37 - (sent - sum(map(len, received))))
            sent += wrote
            received.append(ring.pop())
        got = np.concatenate(received)
    assert ring.capacity * 50 < len(got)  # wrapped around dozens of times
    # Byte-identical, so NaN fields and padding compare too.
    assert got.tobytes() == expected.tobytes()


def test_pushes_and_pops_of_odd_sizes_preserve_bytes_exactly() -> None:
    rng = np.random.default_rng(11)
    expected = _trades(0, 5000)
    out = []
    with Ring(schema.TRADES, 100) as ring:
        i = 0
        while i < len(expected) or len(ring):
            if i < len(expected):
                i += ring.try_push(expected[i : i + int(rng.integers(1, 120))])
            out.append(ring.pop(int(rng.integers(1, 90))))
    got = np.concatenate(out)
    assert got.tobytes() == expected.tobytes()


def test_full_ring_makes_the_producer_wait_and_counts_each_wait() -> None:
    with Ring(schema.TRADES, 64, backoff=Backoff(spins=0, max_sleep_s=0.0005)) as ring:
        received: list[np.ndarray] = []

        def consume() -> None:
            while sum(map(len, received)) < 1000:
                batch = ring.pop()
                if len(batch):
                    received.append(batch)
                else:
                    threading.Event().wait(0.002)  # a slow consumer: the producer must wait for room

        consumer = threading.Thread(target=consume)
        consumer.start()
        for start in range(0, 1000, 50):
            assert ring.push(_trades(start, 50)) == 50
        consumer.join(timeout=20)
        assert ring.waits > 0
        assert ring.drops == 0
        np.testing.assert_array_equal(np.concatenate(received), _trades(0, 1000))


def test_drop_newest_discards_what_does_not_fit_and_counts_it() -> None:
    with Ring(schema.TRADES, 100) as ring:
        assert ring.push(_trades(0, 70), drop=True) == 70
        assert ring.push(_trades(70, 50), drop=True) == 30
        assert ring.push(_trades(120, 10), drop=True) == 0
        assert ring.drops == 20 + 10
        assert ring.waits == 0
        np.testing.assert_array_equal(ring.pop(), _trades(0, 100))


def test_blocking_push_times_out_when_no_consumer_drains() -> None:
    with Ring(schema.TRADES, 8, backoff=Backoff(spins=0, max_sleep_s=0.001)) as ring:
        ring.push(_trades(0, 8))
        with pytest.raises(RingTimeout):
            ring.push(_trades(8, 1), timeout_s=0.05)
        assert ring.waits == 1


@pytest.mark.parametrize("batch", [1, 64, 4096])
def test_batch_sizes_round_trip_with_fill_and_counters(batch: int) -> None:
    total = batch * 5
    with Ring(schema.TICKERS, 8192) as ring:
        recs = schema.empty("tickers", batch)
        out = np.empty(batch, schema.TICKERS)
        got = 0
        for i in range(5):
            recs["ts_ms"] = np.arange(i * batch, (i + 1) * batch)
            assert ring.try_push(recs) == batch
            assert ring.fill() == pytest.approx(batch / 8192)
            assert ring.pop_into(out) == batch
            np.testing.assert_array_equal(out["ts_ms"], recs["ts_ms"])
            got += batch
        assert ring.written == total == ring.read == got
        assert len(ring) == 0


def test_wrong_dtype_is_refused_naming_both_dtypes() -> None:
    with Ring(schema.TRADES, 8) as ring, pytest.raises(TypeError, match="records: dtype"):
        ring.push(schema.empty("tickers", 1))


def test_close_is_seen_by_the_consumer_after_the_last_records() -> None:
    ring = Ring(schema.OHLCV, 16)
    ring.try_push(schema.empty("ohlcv", 3))
    ring.close()
    assert ring.closed and len(ring.pop()) == 3 and len(ring) == 0
    ring.free()
    ring.free()  # idempotent


_CROSS_PROCESS = textwrap.dedent(
    """
    import sys
    import numpy as np
    from mpi4py import MPI
    from fundarb_dagster.core import schema
    from mpi_jobs.ring import Ring

    world = MPI.COMM_WORLD
    node = world.Split_type(MPI.COMM_TYPE_SHARED)
    total, batch = int(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(5)
    records = schema.empty("trades", total)
    records["trade_id"] = np.arange(total)
    records["ts_ms"] = rng.integers(0, 2**62, total)
    records["price"] = rng.random(total)
    records["amount"] = rng.random(total)
    records["side"] = rng.choice([-1, 1], total)
    records["instrument_id"] = rng.integers(0, 50, total)
    with Ring.create(node, schema.TRADES, 1000, owner=0) as ring:  # small: forces waits and wraparound
        if node.Get_rank() == 1:
            for start in range(0, total, batch):
                ring.push(records[start : start + batch])
            ring.close()
            print("producer waits", ring.waits, flush=True)
        else:
            parts = []
            while True:
                got = ring.pop()
                if len(got):
                    parts.append(got)
                elif ring.closed and ring.available() == 0:
                    break
            received = np.concatenate(parts)
            ok = received.tobytes() == records.tobytes()
            print("consumer received", len(received), "identical", ok, flush=True)
        node.Barrier()
    """
)


@pytest.mark.mpi
def test_records_cross_mpi_processes_intact_through_shared_memory(tmp_path: Path) -> None:
    script = tmp_path / "ring_pair.py"
    script.write_text(_CROSS_PROCESS)
    proc = subprocess.run(
        [str(MPIEXEC), "-n", "2", sys.executable, str(script), "200000", "333"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "consumer received 200000 identical True" in proc.stdout
    waits = int(proc.stdout.split("producer waits")[1].split()[0])
    assert waits > 0  # a 1000-slot ring with 200k records: the producer must have waited


def test_a_staging_buffer_refilled_in_place_round_trips_through_the_cached_fast_path() -> None:
    # The producer pushes the same array object again and again (the ring reuses its byte view) and the
    # consumer drains into the same `out`; contents change between calls and the ring wraps many times.
    batch, rounds = 7, 400
    expected = _trades(0, batch * rounds)
    staging = schema.empty("trades", batch)
    raw_staging = staging.view(f"V{schema.TRADES.itemsize}")
    out = np.empty(5, schema.TRADES)
    got: list[np.ndarray] = []
    with Ring(schema.TRADES, 30) as ring:
        for r in range(rounds):
            staging[...] = expected[r * batch : (r + 1) * batch]
            assert ring.push(raw_staging if r >= rounds // 2 else staging) == batch  # typed, then raw view
            while len(ring) > 12:
                n = ring.pop_into(out)
                got.append(out[:n].copy())
        while n := ring.pop_into(out):
            got.append(out[:n].copy())
        assert ring.written == batch * rounds == ring.read
    assert np.concatenate(got).tobytes() == expected.tobytes()


def test_strided_records_and_a_strided_out_are_copied_correctly() -> None:
    expected = _trades(0, 200)
    with Ring(schema.TRADES, 64) as ring:
        assert ring.try_push(expected[::2]) == 64  # not contiguous: copied, not cached
        holder = np.zeros(128, schema.TRADES)
        assert ring.pop_into(holder[::2]) == 64
    assert holder[::2].tobytes() == expected[::2][:64].tobytes()
    assert not holder[1::2]["trade_id"].any()  # the skipped rows are untouched


def test_backoff_spins_then_yields_the_core_then_sleeps_longer_up_to_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wait gives the core away instead of spinning: `spins` free polls, then `yields` sched_yields, then
    sleeps doubling from 20 us to `max_sleep_s`; `reset` starts over (after progress)."""
    from mpi_jobs import ring as ring_module

    calls: list[tuple[str, float]] = []
    monkeypatch.setattr(ring_module.os, "sched_yield", lambda: calls.append(("yield", 0.0)))
    monkeypatch.setattr(ring_module.time, "sleep", lambda s: calls.append(("sleep", s)))
    backoff = Backoff(spins=2, yields=3, max_sleep_s=0.0002)
    for _ in range(2 + 3 + 6):
        backoff.pause()
    assert [kind for kind, _ in calls] == ["yield"] * 3 + ["sleep"] * 6
    assert [s for kind, s in calls if kind == "sleep"] == pytest.approx([2e-5, 4e-5, 8e-5, 1.6e-4, 2e-4, 2e-4])
    calls.clear()
    backoff.reset()
    backoff.pause()
    backoff.pause()
    backoff.pause()
    assert calls == [("yield", 0.0)]
    default = Backoff()
    assert (default.spins, default.yields) == (0, 3)  # the default never spins: the cores may be shared
