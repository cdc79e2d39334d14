"""Records/s through the shared-memory ring vs multiprocessing.Queue and Pipe, doing the same job side by side.

One producer process sends N trade records (the real `schema.TRADES` dtype) in batches of 1, 64 and 4096 to
one consumer process, which checks the count and the last record. The ring runs under `mpiexec -n 2`
(`MPI.Win.Allocate_shared`, exactly as the capture job uses it); Queue and Pipe run as multiprocessing
children. Each figure is the median of `--repeat` runs (the machine may be shared: the load average is
printed before and after, and min-max shows the spread). Usage:

    python -m benchmarks.bench_ring            # full sizes
    python -m benchmarks.bench_ring --quick    # a small run to check it works
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fundarb_dagster.core import schema  # noqa: E402

BATCHES = (1, 64, 4096)
RING_RECORDS = 65536


def _sizes(quick: bool) -> dict[int, int]:
    scale = 10 if quick else 1
    return {1: 300_000 // scale, 64: 5_000_000 // scale, 4096: 40_000_000 // scale}


def _batch(batch: int) -> np.ndarray:
    records = schema.empty("trades", batch)
    records["trade_id"] = np.arange(batch)
    records["price"] = 100.0
    return records


# -- ring, under mpiexec ---------------------------------------------------------------------------------
def ring_worker(sizes: dict[int, int], repeats: int = 1) -> None:
    """Runs on both ranks of `mpiexec -n 2`; rank 0 prints `ring <batch> <records> <seconds>` lines."""
    from mpi4py import MPI

    from mpi_jobs.ring import Backoff, Ring

    world = MPI.COMM_WORLD
    node = world.Split_type(MPI.COMM_TYPE_SHARED)
    for batch, total in [item for _ in range(repeats) for item in sizes.items()]:
        with Ring.create(node, schema.TRADES, RING_RECORDS, owner=0, backoff=Backoff(spins=200)) as ring:
            node.Barrier()
            if node.Get_rank() == 1:
                records = _batch(batch).view(f"V{schema.TRADES.itemsize}")  # raw view taken once
                push = ring.push
                for _ in range(total // batch):
                    push(records)
                ring.close()
            else:
                # The consumer drains whatever is waiting, like the capture job's flusher (at batch 1 a one-slot
                # buffer would measure the consumer's call overhead, not the ring).
                out = np.empty(max(batch, 4096), schema.TRADES).view(f"V{schema.TRADES.itemsize}")
                pop_into = ring.pop_into
                backoff = Backoff(spins=200)
                got = 0
                t0 = time.perf_counter()
                want = (total // batch) * batch
                while got < want:
                    n = pop_into(out)
                    if n:
                        got += n
                        backoff.reset()
                    else:
                        backoff.pause()
                elapsed = time.perf_counter() - t0
                print(f"ring {batch} {got} {elapsed:.6f} waits={ring.waits}", flush=True)
            node.Barrier()


def run_ring(sizes: dict[int, int], repeats: int) -> dict[int, list[tuple[int, float]]]:
    """{batch: [(records, seconds) per run]}: the runs of all batch sizes interleave, so load hits them alike."""
    mpiexec = Path(sys.executable).with_name("mpiexec")
    arg = ",".join(f"{b}:{n}" for b, n in sizes.items())
    proc = subprocess.run(
        [str(mpiexec), "-n", "2", sys.executable, "-m", "benchmarks.bench_ring", "--ring-worker", arg]
        + ["--repeat", str(repeats)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"ring worker failed: {proc.stderr}")
    out: dict[int, list[tuple[int, float]]] = {b: [] for b in sizes}
    for line in proc.stdout.splitlines():
        if line.startswith("ring "):
            _, batch, got, seconds, *_ = line.split()
            out[int(batch)].append((int(got), float(seconds)))
    return out


# -- multiprocessing baselines ---------------------------------------------------------------------------
def _queue_producer(queue: mp.Queue, batch: int, count: int) -> None:
    records = _batch(batch)
    for _ in range(count):
        queue.put(records)
    queue.put(None)


def _pipe_producer(conn: mp.connection.Connection, batch: int, count: int) -> None:
    payload = _batch(batch).tobytes()  # raw bytes: the cheapest a Pipe can do (no pickling)
    for _ in range(count):
        conn.send_bytes(payload)
    conn.send_bytes(b"")
    conn.close()


def run_queue(batch: int, total: int) -> tuple[int, float]:
    queue: mp.Queue = mp.Queue(maxsize=max(4, RING_RECORDS // batch))
    proc = mp.Process(target=_queue_producer, args=(queue, batch, total // batch))
    proc.start()
    got = 0
    t0 = time.perf_counter()
    while (item := queue.get()) is not None:
        got += len(item)
    elapsed = time.perf_counter() - t0
    proc.join()
    return got, elapsed


def run_pipe(batch: int, total: int) -> tuple[int, float]:
    receiver, sender = mp.Pipe(duplex=False)
    proc = mp.Process(target=_pipe_producer, args=(sender, batch, total // batch))
    proc.start()
    sender.close()
    got = 0
    t0 = time.perf_counter()
    while payload := receiver.recv_bytes():
        got += len(np.frombuffer(payload, dtype=schema.TRADES))
    elapsed = time.perf_counter() - t0
    proc.join()
    return got, elapsed


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _rates(runs: list[tuple[int, float]]) -> tuple[float, float, float]:
    """Median, min and max records/s over the runs."""
    rates = [got / seconds for got, seconds in runs]
    return statistics.median(rates), min(rates), max(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10x smaller sizes, to check it runs")
    parser.add_argument("--repeat", type=int, default=None, help="runs per figure (default 5, --quick 3)")
    parser.add_argument("--ring-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    repeats = args.repeat or (3 if args.quick else 5)
    if args.ring_worker:
        sizes = {int(b): int(n) for b, n in (part.split(":") for part in args.ring_worker.split(","))}
        ring_worker(sizes, repeats)
        return 0
    sizes = _sizes(args.quick)
    itemsize = schema.TRADES.itemsize
    print(
        f"records: schema.TRADES, {itemsize} bytes each; ring {RING_RECORDS} slots; 1 producer -> 1 consumer; "
        f"median of {repeats} runs (min-max); {_load()}"
    )
    ring = run_ring(sizes, repeats)
    rows = []
    for batch, total in sizes.items():
        q_total = min(total, 2_000_000 if batch > 1 else 200_000) // (10 if args.quick else 1)
        queue_runs = [run_queue(batch, q_total) for _ in range(repeats)]
        pipe_runs = [run_pipe(batch, q_total) for _ in range(repeats)]
        rows.append((batch, _rates(ring[batch]), _rates(queue_runs), _rates(pipe_runs), ring[batch][0][0], q_total))
    print(
        f"{'batch':>6} {'ring M rec/s (min-max)':>24} {'Queue M rec/s':>14} {'Pipe M rec/s':>13} {'ring/Queue':>11} "
        f"{'ring/Pipe':>10} {'ring GB/s':>10}  (records per run: ring, Queue/Pipe)"
    )
    for batch, (r, r_lo, r_hi), (q, _, _), (p, _, _), r_n, q_n in rows:
        spread = f"{r / 1e6:.2f} ({r_lo / 1e6:.1f}-{r_hi / 1e6:.1f})"
        print(
            f"{batch:>6} {spread:>24} {q / 1e6:>14.2f} {p / 1e6:>13.2f} {r / q:>10.1f}x {r / p:>9.1f}x "
            f"{r * itemsize / 1e9:>10.2f}  ({r_n:,}, {q_n:,})"
        )
    print(_load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
