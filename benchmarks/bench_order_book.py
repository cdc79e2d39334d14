"""Order-book capture: records/s through the ring and the flush at N=20 levels, and storage per venue-symbol-day.

Throughput, side by side and interleaved (`--repeat` times, medians with min-max):
- fundarb: ORDER_BOOK records (20 levels per side, 672 bytes) pushed into a shared-memory ring (`mpi_jobs.ring`,
  on a numpy buffer: the same memcpy path the capture job uses, without MPI), drained, and landed as zstd Parquet
  (`schema.to_arrow` + `landing.write_parquet_atomic`) every `FLUSH` records, as the flusher does;
- the obvious alternative: ccxt's book structures (dicts of [price, amount] lists) pickled through a
  `multiprocessing.Queue`, collected into a pandas frame and written with `DataFrame.to_parquet`.

Storage: one simulated day of bybit's BTC perp book (the simulator renews it every second) landed as zstd
Parquet, every update vs one per `capture.book_interval_s` (10 s); and the every-update figure at the update
rate of the real bybit `orderbook.200` recording (BYBIT.jsonl.zst), per byte of a landed row. Usage:

    python -m benchmarks.bench_order_book            # full sizes
    python -m benchmarks.bench_order_book --quick
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.harness import interleaved, load, ratios, spread  # noqa: E402
from fundarb_dagster.core import landing, schema  # noqa: E402
from fundarb_dagster.core.config import SimConfig  # noqa: E402
from fundarb_dagster.core.sources.sim import SimExchange  # noqa: E402
from mpi_jobs.ring import Ring  # noqa: E402

LEVELS = 20
BATCH = 256
FLUSH = 20_000
NAMES = {0: ("bybit", "BTC/USDT:USDT")}
RECORDING = REPO.parent / "shared" / "fixtures" / "ws_recordings" / "BYBIT.jsonl.zst"


def sim_books(seconds: int, step_s: int = 1) -> tuple[np.ndarray, list[dict]]:
    """One simulated book per `step_s` over `seconds`: as records and as ccxt structures."""
    ex = SimExchange("bybit", SimConfig(start="2026-11-01T00:00:00Z"), symbols=["BTC/USDT:USDT"])
    import asyncio

    asyncio.run(ex.load_markets())
    market = ex._m["BTC/USDT:USDT"]  # noqa: SLF001 - the served book, asked directly (no clock to wait on)
    start = ex.start_ms - 86_400_000
    structures = [ex.book.structure(market, start + i * 1000, LEVELS) for i in range(0, seconds, step_s)]
    records = schema.empty("order_book", len(structures))
    for i, book in enumerate(structures):
        records["ts_ms"][i] = records["recv_ts_ms"][i] = book["timestamp"]
        records["nonce"][i], records["updates"][i], records["instrument_id"][i] = book["nonce"], step_s, 0
        for side in ("bid", "ask"):
            levels = np.asarray(book[f"{side}s"], dtype=np.float64)
            records[f"{side}_price"][i, : len(levels)] = levels[:, 0]
            records[f"{side}_size"][i, : len(levels)] = levels[:, 1]
    return records, structures


def through_ring(records: np.ndarray, folder: Path) -> None:
    folder = Path(tempfile.mkdtemp(dir=folder))  # one folder per run: landing files are never overwritten
    ring = Ring(schema.ORDER_BOOK, 8192)
    pending: list[np.ndarray] = []
    held, seq = 0, 0
    for start in range(0, len(records), BATCH):
        ring.try_push(records[start : start + BATCH])
        out = ring.pop()
        pending.append(out)
        held += len(out)
        if held >= FLUSH or start + BATCH >= len(records):
            table = schema.to_arrow("order_book", np.concatenate(pending), NAMES, dictionary_strings=True)
            landing.write_parquet_atomic(table, folder / f"ring-{seq:08d}.parquet")
            pending, held, seq = [], 0, seq + 1


def _consume(queue: mp.Queue, n: int, folder: str) -> None:
    rows, seq = [], 0
    for _ in range(n):
        rows.append(queue.get())
        if len(rows) >= FLUSH:
            pd.DataFrame(rows).to_parquet(f"{folder}/queue-{seq:08d}.parquet", compression="zstd")
            rows, seq = [], seq + 1
    if rows:
        pd.DataFrame(rows).to_parquet(f"{folder}/queue-{seq:08d}.parquet", compression="zstd")


def through_queue(structures: list[dict], folder: Path) -> None:
    folder = Path(tempfile.mkdtemp(dir=folder))
    queue: mp.Queue = mp.Queue(maxsize=8192)
    consumer = mp.Process(target=_consume, args=(queue, len(structures), str(folder)))
    consumer.start()
    for book in structures:
        queue.put({"ts_ms": book["timestamp"], "nonce": book["nonce"], "bids": book["bids"], "asks": book["asks"]})
    consumer.join()


def recorded_update_rate() -> float:
    """Book updates per second of bybit's BTCUSDT perp in the real recording (orderbook.200, linear)."""
    with pa.input_stream(str(RECORDING), compression="zstd") as stream:
        rows = [json.loads(line) for line in stream.read().decode().splitlines()]
    times = [r["ts"] for r in rows if r.get("t") == "recv" and r.get("conn") == "BYBIT.ws.2"
             and '"orderbook.200.BTCUSDT"' in r["data"]]  # fmt: skip
    return (len(times) - 1) / (times[-1] - times[0])


def parquet_bytes(records: np.ndarray, folder: Path, name: str) -> int:
    path = folder / f"{name}.parquet"
    landing.write_parquet_atomic(schema.to_arrow("order_book", records, NAMES), path)
    return path.stat().st_size


def main(quick: bool, repeat: int) -> str:
    day = 86_400 // (24 if quick else 1)
    records, structures = sim_books(day)
    lines = [f"{load()}; {len(records):,} books of {LEVELS} levels per side ({schema.ORDER_BOOK.itemsize} bytes each)"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        times = interleaved(
            {"ring": lambda: through_ring(records, folder), "queue": lambda: through_queue(structures, folder)},
            repeat,
        )
        n = len(records)
        rates = {name: [n / t for t in values] for name, values in times.items()}
        lines.append(f"records/s  ring + flush: {spread(rates['ring'])}   Queue + pandas: {spread(rates['queue'])}"
                     f"   ring faster by: {spread(ratios(times['queue'], times['ring']))}x")  # fmt: skip
        every = parquet_bytes(records, folder, "every")
        sampled = parquet_bytes(records[::10], folder, "sampled")
        scale = 86_400 / day
        rate = recorded_update_rate()
        per_row = every / len(records)
        lines.append(
            f"storage per venue-symbol-day (zstd Parquet): every update at the sim's 1/s {every * scale / 1e6:.1f} MB; "
            f"one per 10 s {sampled * scale / 1e6:.2f} MB ({every / sampled:.1f}x less); every update at the "
            f"recorded bybit rate ({rate:.1f}/s) ~{per_row * rate * 86_400 / 1e6:.0f} MB"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(main(args.quick, args.repeat))
