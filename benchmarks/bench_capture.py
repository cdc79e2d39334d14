"""End-to-end capture throughput, flush throughput, and per-message costs: ccxt.pro's parsing vs the pipeline.

1. The real MPI job (`mpiexec -n R python -m mpi_jobs.capture`) on the simulator at a high speed, R = 2 and 4:
   market messages landed in Parquet per wall second of capture (from the job's own TOTAL line and the
   landed files).
2. The flusher alone: trades records -> Arrow -> zstd Parquet, atomically (fsync + rename), records/s and
   MB/s, next to `np.save` of the same records (the raw-bytes lower bound).
3. Per-message CPU cost: ccxt.pro parsing the recorded bybit websocket session through the real classes
   (`core/sources/wire.py`) plus the Feed, next to the pipeline's own cost per message (ring push + pop at
   the job's batch size, and the flush).

    python -m benchmarks.bench_capture            # full sizes
    python -m benchmarks.bench_capture --quick    # small sizes, to check it runs
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fundarb_dagster.core import schema  # noqa: E402
from mpi_jobs.flush import Flusher, read_landed  # noqa: E402
from mpi_jobs.launcher import capture_command  # noqa: E402
from mpi_jobs.ring import Ring  # noqa: E402
from tests.mpi_jobs.hosts import NoNamespaces, mpi_env, two_namespaces, write_launcher  # noqa: E402

FIXTURES = REPO.parent / "shared" / "fixtures"
ASSETS = ("BTC", "ETH", "SOL", "XRP", "DOGE", "LINK")


# -- 1. end to end ----------------------------------------------------------------------------------------
def capture_run(
    ranks: int, seconds: float, speed: float, workdir: Path, hosts: dict[str, str] | None = None
) -> dict[str, float]:
    """One run; with `hosts` (two network namespaces, name -> address) the first host's flusher runs alone
    and the second host holds the other ranks, forwarding over MPI (capture.landing first_host)."""
    name = f"{ranks}-hosts" if hosts else str(ranks)
    data = workdir / f"data-{name}"
    config = workdir / f"capture-{name}.yaml"
    capture: dict[str, object] = {"flush_interval_s": 2.0, "stats_interval_s": 2.0}
    cmd_prefix: list[str] = []
    env = None
    hostfile = ""
    if hosts:
        (first, first_address), (_, second_address) = hosts.items()
        hostfile = str(workdir / "hosts")
        Path(hostfile).write_text(f"{first_address}:1\n{second_address}:{ranks - 1}\n")
        capture |= {"hostfile": hostfile, "landing": "first_host"}
        cmd_prefix = ["ip", "netns", "exec", first]
        env = mpi_env(write_launcher(workdir / "launcher.sh", hosts))
    symbols = [f"{a}/USDT:USDT" for a in ASSETS] + [f"{a}/USDT" for a in ASSETS[:3]]
    config.write_text(
        yaml.safe_dump(
            {
                "source": "sim",
                "data_dir": str(data),
                "exchanges": [
                    {"id": venue, "symbols": symbols, "streams": ["trades", "tickers", "funding", "ohlcv"]}
                    for venue in ("binance", "bybit")
                ],
                "sim": {"seed": 7, "speed": speed},
                "capture": capture,
            }
        )
    )
    mpiexec = str(Path(sys.executable).with_name("mpiexec"))
    cmd = capture_command(mpiexec, ranks, str(config), hostfile=hostfile)
    proc = subprocess.run(
        [*cmd_prefix, *cmd, "--duration", str(seconds)], cwd=REPO, capture_output=True, text=True, timeout=600, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"capture job failed ({proc.returncode}): {proc.stderr[-2000:]}")
    total = next(line for line in proc.stdout.splitlines() if " TOTAL " in line and "node 0" in line)
    elapsed = float(re.search(r"TOTAL ([0-9.]+) s", total).group(1))
    landed = {s: len(read_landed(data, s)) for s in schema.MARKET_STREAMS}
    messages = sum(landed.values())
    return {
        "ranks": ranks,
        "seconds": elapsed,
        "messages": messages,
        "rate": messages / elapsed,
        "steady": steady_rate(read_landed(data, "capture_stats")),
        **landed,
    }


def steady_rate(stats: np.ndarray) -> float:
    """Messages/s between the first stats sample with data and the last (start-up excluded)."""
    market = np.isin(stats["stream"], [int(schema.STREAM_CODES[s]) for s in schema.MARKET_STREAMS])
    stats = stats[market]
    times = np.unique(stats["ts_ms"])
    totals = np.array([stats["messages"][stats["ts_ms"] == t].sum() for t in times])
    started = np.flatnonzero(totals > 0)
    if len(started) < 2:
        return float("nan")
    first, last = started[0], len(times) - 1
    return float((totals[last] - totals[first]) / ((times[last] - times[first]) / 1000.0))


# -- 2. flush ---------------------------------------------------------------------------------------------
def _trades(n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    records = schema.empty("trades", n)
    records["ts_ms"] = 1_793_491_200_000 + np.sort(rng.integers(0, 3_000_000, n))  # inside one hour
    records["recv_ts_ms"] = records["ts_ms"] + 3
    records["instrument_id"] = rng.integers(0, 18, n)
    records["side"] = rng.choice([-1, 1], n)
    records["trade_id"] = np.arange(n)
    records["price"] = np.round(50_000 + rng.standard_normal(n).cumsum(), 1)
    records["amount"] = np.round(rng.lognormal(-3, 1, n), 4)
    return records


def flush_run(n: int, workdir: Path, repeats: int = 3) -> dict[str, float]:
    """One flush of `n` trades (one event hour: one file), median of `repeats`: wall and CPU seconds.

    CPU time is reported next to wall time because the machine may be shared: wall time then includes waiting
    for a core, CPU time does not (the fsyncs are in wall time only).
    """
    names = {i: ("bybit", f"SYM{i}/USDT:USDT") for i in range(18)}
    records = _trades(n)
    walls, cpus, npys, nbytes = [], [], [], 0
    # The job's flusher is long-lived: an untimed first flush pays pyarrow's one-off start-up (~0.3 s), which is
    # no per-flush cost.
    warm = Flusher(workdir / f"flush-{n}-warm", "bench-0", names)
    warm.add("trades", records)
    warm.flush()
    shutil.rmtree(workdir / f"flush-{n}-warm")
    for r in range(repeats):
        flusher = Flusher(workdir / f"flush-{n}-{r}", "bench-0", names)
        flusher.add("trades", records)
        t0, c0 = time.perf_counter(), time.process_time()
        result = flusher.flush()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        nbytes = result.bytes
        shutil.rmtree(workdir / f"flush-{n}-{r}")
    for r in range(repeats):
        t0 = time.perf_counter()
        with open(workdir / f"raw-{n}-{r}.npy", "wb") as handle:
            np.save(handle, records)
        npys.append(time.perf_counter() - t0)
        (workdir / f"raw-{n}-{r}.npy").unlink()
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return {
        "records": n,
        "seconds": wall,
        "cpu_seconds": cpu,
        "rate": n / wall,
        "cpu_rate": n / cpu,
        "mb_s_in": records.nbytes / wall / 1e6,
        "mb_in": records.nbytes / 1e6,
        "file_mb": nbytes / 1e6,
        "npy_rate": n / statistics.median(npys),
    }


def print_flush(sizes: tuple[int, ...], workdir: Path, repeats: int) -> dict[str, float]:
    """The flush figures at each size, then the fixed and per-record cost fitted through them."""
    print(
        f"{'records':>10} {'in MB':>7} {'file MB':>8} {'wall s':>7} {'M rec/s':>8} {'MB/s in':>8} "
        f"{'CPU s':>6} {'M rec/s CPU':>12} {'np.save M rec/s':>16}"
    )
    runs = []
    for n in sizes:
        f = flush_run(n, workdir, repeats)
        runs.append(f)
        print(
            f"{n:>10,} {f['mb_in']:>7.1f} {f['file_mb']:>8.1f} {f['seconds']:>7.3f} {f['rate'] / 1e6:>8.2f} "
            f"{f['mb_s_in']:>8.0f} {f['cpu_seconds']:>6.3f} {f['cpu_rate'] / 1e6:>12.2f} {f['npy_rate'] / 1e6:>16.1f}"
        )
    if len(runs) >= 2:
        small, large = runs[0], runs[-1]
        fits = []
        for label, key in (("wall", "seconds"), ("CPU", "cpu_seconds")):
            per_record = (large[key] - small[key]) / (large["records"] - small["records"])
            fixed = small[key] - per_record * small["records"]
            fits.append(f"{label} {fixed * 1e3:.1f} ms per flush + {per_record * 1e6:.3f} us per record")
        print(f"fit through {small['records']:,} and {large['records']:,}: " + "; ".join(fits))
    return runs[-1]


# -- 3. per-message costs ---------------------------------------------------------------------------------
def wire_cost(recording: Path) -> dict[str, float] | str:
    """CPU per recorded frame: the real ccxt.pro bybit classes parsing + the Feed normalizing/validating."""
    try:
        from fundarb_dagster.core.instruments import InstrumentRegistry
        from fundarb_dagster.core.sources.feed import Feed
        from fundarb_dagster.core.sources.wire import create_wire_exchange, load_recording
    except ImportError as exc:  # wire.py has not landed
        return f"skipped ({exc})"
    frames = len(load_recording(recording).frames)

    async def replay() -> int:
        exchange = create_wire_exchange("bybit", recording, speed=0)
        markets = await exchange.load_markets()
        symbols = [s for s in ("BTC/USDT:USDT", "ETH/USDT:USDT") if s in markets]
        registry = InstrumentRegistry()
        registry.add_markets("bybit", markets, symbols)
        feed = Feed(exchange, registry, stale_timeout_s={s: 1e9 for s in schema.MARKET_STREAMS})
        count = 0

        async def pump(stream: str, symbol: str) -> None:
            nonlocal count
            async for batch in feed.watch(stream, symbol):
                count += len(batch.records)

        try:
            await asyncio.wait_for(
                asyncio.gather(*(pump(st, sy) for sy in symbols for st in ("trades", "tickers", "ohlcv"))), 120
            )
        finally:
            await exchange.close()
        return count

    t0, c0 = time.perf_counter(), time.process_time()
    records = asyncio.run(replay())
    cpu = time.process_time() - c0
    return {
        "frames": frames,
        "records": records,
        "cpu_s": cpu,
        "wall_s": time.perf_counter() - t0,
        "us_per_frame": cpu / max(frames, 1) * 1e6,
    }


def pipeline_cost(batch: int, n: int, flush: dict[str, float]) -> dict[str, float]:
    """CPU per record of the pipeline's own steps: ring push + pop at the job's batch size, then the flush."""
    records = _trades(batch)
    out = np.empty(batch, schema.TRADES)
    with Ring(schema.TRADES, 65536) as ring:
        c0 = time.process_time()
        for _ in range(n // batch):
            ring.push(records)  # the watcher's copy (structured -> raw view each call, as the job does)
            ring.pop_into(out)  # the flusher's copy
        ring_s = time.process_time() - c0
    ring_us = ring_s / (n // batch * batch) * 1e6
    flush_us = 1e6 / flush["cpu_rate"]  # CPU, like the ring figure next to it
    return {"ring_us": ring_us, "flush_us": flush_us, "total_us": ring_us + flush_us}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs and small sizes, to check it runs")
    parser.add_argument("--speed", type=float, default=4000.0, help="sim speed for the end-to-end runs")
    parser.add_argument(
        "--part",
        choices=("all", "capture", "flush", "hosts"),
        default="all",
        help="run one section only (flush: 2 only; hosts: 4 only, as root)",
    )
    args = parser.parse_args(argv)
    seconds = 4.0 if args.quick else 20.0
    # A flush lands what arrived during flush_interval_s (2 s): at ~100 k msgs/s per node that is ~200 k records,
    # and a backlog after a slow disk or a larger interval is millions.
    flush_sizes = (200_000, 1_000_000) if args.quick else (200_000, 1_000_000, 5_000_000)
    repeats = 3 if args.quick else 5
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench_capture-") as tmp:
        work = Path(tmp)
        if args.part == "hosts":
            return print_hosts(seconds, args.speed, work)
        if args.part in ("all", "capture"):
            print(
                f"== 1. end-to-end sim capture: 2 venues x 9 symbols x 4 streams, speed {args.speed:g}, {seconds:g} s"
            )
            print(f"{'ranks':>5} {'seconds':>8} {'landed msgs':>12} {'msgs/s':>10} {'steady/s':>10}  per stream")
            for ranks in (2, 4):
                r = capture_run(ranks, seconds, args.speed, work)
                streams = " ".join(f"{s}={r[s]}" for s in schema.MARKET_STREAMS)
                print(
                    f"{ranks:>5} {r['seconds']:>8.1f} {r['messages']:>12,} {r['rate']:>10,.0f} "
                    f"{r['steady']:>10,.0f}  {streams}"
                )
        if args.part == "capture":
            return 0
        print(
            f"\n== 2. flush: trades records ({schema.TRADES.itemsize} B each) -> Arrow -> zstd Parquet, one file, "
            f"atomic (tmp, fsync, rename, dir fsync); median of {repeats}"
        )
        f = print_flush(flush_sizes, work, repeats)
        if args.part == "flush":
            return 0
        print("\n== 3. per-message CPU cost")
        recording = FIXTURES / "ws_recordings" / "BYBIT.jsonl.zst"
        wire = wire_cost(recording) if recording.exists() else f"skipped ({recording} missing)"
        pipe = pipeline_cost(256, 200_000 if args.quick else 2_000_000, f)
        if isinstance(wire, str):
            print(f"ccxt.pro wire replay: {wire}")
        else:
            print(
                f"ccxt.pro bybit + Feed (wire replay of {recording.name}): {wire['frames']:,} frames -> "
                f"{wire['records']:,} records, {wire['us_per_frame']:.1f} us CPU per frame"
            )
        print(
            f"pipeline own cost per record: ring push+pop {pipe['ring_us']:.3f} us + flush {pipe['flush_us']:.3f} us"
            f" = {pipe['total_us']:.3f} us"
        )
        if not isinstance(wire, str):
            print(f"ratio: the pipeline adds {pipe['total_us'] / wire['us_per_frame'] * 100:.2f} % to the parsing cost")
    return 0


# -- 4. across hosts ----------------------------------------------------------------------------------------
def print_hosts(seconds: float, speed: float, work: Path, repeats: int = 3) -> int:
    """One host (flusher + 2 watchers) against two namespaces (the first host's flusher alone; on the second a
    forwarder + 2 watchers, records over TCP), interleaved, median of `repeats` each."""
    print(
        f"== 4. capture across two hosts (network namespaces, MPI over TCP) vs one host, 2 watchers each, "
        f"speed {speed:g}, {seconds:g} s, median of {repeats}"
    )
    try:
        with two_namespaces(os.getpid() % 250 + 1) as hosts:
            one, two = [], []
            for _ in range(repeats):
                one.append(capture_run(3, seconds, speed, work))
                two.append(capture_run(4, seconds, speed, work, hosts))
    except NoNamespaces as exc:
        print(f"skipped: {exc}")
        return 0
    for label, runs in (("one host [3]", one), ("two hosts [1, 3]", two)):
        rate = statistics.median(r["rate"] for r in runs)
        messages = statistics.median(r["messages"] for r in runs)
        print(f"{label:>18}: {messages:>10,.0f} msgs landed, {rate:>9,.0f} msgs/s")
    ratio = statistics.median(r["rate"] for r in two) / statistics.median(r["rate"] for r in one)
    print(f"ratio two hosts / one host: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
