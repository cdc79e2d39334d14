"""Capture throughput while the landing storage fails, and after it recovers, against the healthy rate.

The real MPI job (`mpiexec -n 3 python -m mpi_jobs.capture`: one flusher, two watchers) on the simulator at a
speed its watchers cannot keep up with, so the rate measured is what the watchers can do. One run, three
phases of equal length, switched from outside while the job runs:

1. healthy storage;
2. every landing write fails with ENOSPC (the fault-injecting seam of the tests,
   `tests/mpi_jobs/storage_faults/`, wrapping the landing writer's file writes: the real flusher, the real
   retries and back-off);
3. storage healthy again: the backlog held in memory must land while capture goes on.

Watcher throughput per phase comes from the flusher's progress lines (messages per second the watchers put
into their rings, per stats interval). The backlog: the pending records, the time until they fall back to
the healthy level after recovery, and at the end every trade the simulator emitted against the trades landed.
Target: >= 80 % of the healthy rate while failing, the whole backlog landed after recovery.

    python -m benchmarks.bench_recovery            # 20 s phases
    python -m benchmarks.bench_recovery --quick    # 5 s phases, to check it runs
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fundarb_dagster.core import schema  # noqa: E402
from mpi_jobs.flush import read_landed  # noqa: E402

SEAM = REPO / "tests" / "mpi_jobs" / "storage_faults"
ASSETS = ("BTC", "ETH", "SOL", "XRP", "DOGE", "LINK")
PROGRESS = re.compile(r"node 0: (?P<rates>.*?) \| ring max .*\| pending (?P<pending>[\d,]+)")
RATE = re.compile(r"(\w+) ([\d,]+)/s")
PHASES = ("healthy", "failing", "recovered")


def write_config(workdir: Path, speed: float) -> Path:
    symbols = [f"{a}/USDT:USDT" for a in ASSETS] + [f"{a}/USDT" for a in ASSETS[:3]]
    config = workdir / "capture.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "source": "sim",
                "data_dir": str(workdir / "data"),
                "exchanges": [{"id": venue, "symbols": symbols} for venue in ("binance", "bybit")],
                "sim": {"seed": 7, "speed": speed},
                "capture": {"flush_interval_s": 2.0, "stats_interval_s": 1.0},
            }
        )
    )
    return config


def run(phase_s: float, speed: float, workdir: Path) -> dict:
    failing = workdir / "failing"
    log = workdir / "injected.log"
    plan = workdir / "faults.json"
    plan.write_text(
        json.dumps({"rules": [{"match": "/landing/", "errno": "ENOSPC", "flag": str(failing)}], "log": str(log)})
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(SEAM), "FUNDARB_TEST_STORAGE_FAULTS": str(plan)}
    config = write_config(workdir, speed)
    mpiexec = str(Path(sys.executable).with_name("mpiexec"))
    cmd = [mpiexec, "-n", "3", sys.executable, "-m", "mpi_jobs.capture", "--config", str(config)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[str, float, int, float]] = []  # (phase, messages/s, pending, when)
    lines: list[str] = []
    phase = ["starting"]

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            match = PROGRESS.search(line)
            if match:
                rate = sum(int(n.replace(",", "")) for _, n in RATE.findall(match["rates"]))
                samples.append((phase[0], rate, int(match["pending"].replace(",", "")), time.monotonic()))

    errors: list[str] = []

    def read_errors() -> None:  # the job's stderr carries one line per failing flush round: keep the pipe moving
        assert proc.stderr is not None
        errors.extend(proc.stderr)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    threading.Thread(target=read_errors, daemon=True).start()
    while not any(s[1] > 0 for s in samples):  # the job is up and capturing
        if proc.poll() is not None:
            raise RuntimeError(f"capture job ended early: {''.join(errors)[-2000:]}")
        time.sleep(0.2)
    time.sleep(max(5.0, phase_s / 2))  # past the start-up transient (the watchers warm up)
    recovered_at = 0.0
    ranks = job_processes(str(config))
    flusher = json.loads((workdir / "data" / ".fundarb" / "capture.lock").read_text())["pid"]  # world rank 0
    cpu: dict[str, tuple[float, float]] = {}
    for name in PHASES:
        if name == "failing":
            failing.touch()
        if name == "recovered":
            failing.unlink()
            recovered_at = time.monotonic()
        phase[0] = name
        before = cpu_seconds(ranks, flusher)
        time.sleep(phase_s)
        after = cpu_seconds(ranks, flusher)
        cpu[name] = ((after[0] - before[0]) / phase_s, (after[1] - before[1]) / phase_s)
    phase[0] = "stopping"
    proc.send_signal(2)  # SIGINT: drain and land everything
    proc.wait(timeout=120)
    reader.join(timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"capture job exited {proc.returncode}: {''.join(errors)[-2000:]}")
    return {**summarize(samples, lines, workdir / "data", log, recovered_at), "cpu": cpu}


def job_processes(config: str) -> list[int]:
    """The pids of the job's ranks (their command line names the config)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"mpi_jobs.capture" in cmdline and config.encode() in cmdline and b"-n" not in cmdline:
                pids.append(int(entry.name))
    return pids


def cpu_seconds(pids: list[int], flusher: int) -> tuple[float, float]:
    """(flusher, watchers) CPU seconds so far (user + system), from /proc/<pid>/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    out = [0.0, 0.0]
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out[pid != flusher] += (int(fields[11]) + int(fields[12])) / tick
    return out[0], out[1]


def summarize(
    samples: list[tuple[str, float, int, float]], lines: list[str], data: Path, log: Path, recovered_at: float
) -> dict:
    # The first sample of a phase straddles the switch; the rest are whole.
    rates = {p: [r for (q, r, _, _) in samples if q == p][1:] for p in PHASES}
    max_pending = max((n for (q, _, n, _) in samples if q == "failing"), default=0)
    # The backlog has landed when pending falls to a tenth of its peak (new records keep arriving meanwhile).
    drained = next(
        (t for (q, _, n, t) in samples if q != "failing" and t > recovered_at and n <= max_pending / 10), None
    )
    emitted = 0
    for line in lines:
        if line.startswith("[capture] source counts "):
            report = json.loads(line[len("[capture] source counts ") :])
            for counters in report["sources"].values():
                emitted += sum(n for k, n in counters.get("emitted", {}).items() if k.startswith("trades|"))
    trades = read_landed(data, "trades")
    events = read_landed(data, "capture_events")
    backfilled = events["count"][
        (events["kind"] == int(schema.EventKind.GAP_FILLED)) & (events["stream"] == int(schema.StreamCode.TRADES))
    ].sum()
    return {
        "median_rate": {p: statistics.median(rates[p]) if rates[p] else float("nan") for p in PHASES},
        "samples": {p: len(rates[p]) for p in PHASES},
        "max_pending": max_pending,
        "drain_s": None if drained is None else drained - recovered_at,
        "flush_failures": len(log.read_text().splitlines()) if log.exists() else 0,
        "trades_emitted": emitted,
        "trades_backfilled": int(backfilled),
        "trades_landed": len(trades),
        "trades_unique": len(set(zip(trades["instrument_id"].tolist(), trades["trade_id"].tolist(), strict=True))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 s phases")
    parser.add_argument("--phase-seconds", type=float, help="length of each phase (20; 5 with --quick)")
    parser.add_argument("--speed", type=float, default=20_000.0, help="sim speed (market s per wall s)")
    args = parser.parse_args(argv)
    phase_s = args.phase_seconds or (5.0 if args.quick else 20.0)
    print(f"capture with storage failing: 3 ranks (1 flusher, 2 watchers), 2 venues x 9 symbols x 4 streams, "
          f"sim speed {args.speed:g}, phases of {phase_s:g} s (healthy, every landing write failing with "
          f"ENOSPC, healthy again)")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
        result = run(phase_s, args.speed, Path(tmp))
    healthy = result["median_rate"]["healthy"]
    print(
        f"{'phase':<10} {'samples':>7} {'median msgs/s':>14} {'vs healthy':>10} {'flusher cpu':>11} "
        f"{'watchers cpu':>12} {'msgs/watcher-cpu-s':>18} {'vs healthy':>10}"
    )
    per_cpu = {p: result["median_rate"][p] / max(result["cpu"][p][1], 1e-9) for p in PHASES}
    for phase in PHASES:
        rate = result["median_rate"][phase]
        flusher_cpu, watchers_cpu = result["cpu"][phase]
        print(
            f"{phase:<10} {result['samples'][phase]:>7} {rate:>14,.0f} {rate / healthy:>10.2f} {flusher_cpu:>11.2f} "
            f"{watchers_cpu:>12.2f} {per_cpu[phase]:>18,.0f} {per_cpu[phase] / per_cpu['healthy']:>10.2f}"
        )
    print("(cpu: CPU seconds per wall second, 2 cores; the machine may be shared, which moves the wall rates)")
    drain = result["drain_s"]
    print(
        f"while failing: {result['flush_failures']} failed file writes (each retried with back-off), "
        f"{result['max_pending']:,} records held in memory at the peak"
    )
    print(
        "after recovery: the backlog landed "
        + (f"within {drain:.1f} s (pending under a tenth of its peak)" if drain is not None else "NOT within the phase")
    )
    expected = result["trades_emitted"] + result["trades_backfilled"]
    print(
        f"trades: {result['trades_emitted']:,} emitted by the simulator + {result['trades_backfilled']:,} backfilled "
        f"over REST after stale restarts = {expected:,}; landed {result['trades_landed']:,}, "
        f"{result['trades_unique']:,} distinct"
    )
    ok = (
        result["median_rate"]["failing"] >= 0.8 * healthy
        and result["trades_landed"] == result["trades_unique"] == expected
    )
    print("target (>= 80 % of healthy while failing, every emitted trade landed once):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
