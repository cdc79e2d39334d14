"""SIGKILL of the trader at random moments, restarted each time, against venues in a process of their own
(`fundarb sim-venue`, with every order fault on): afterwards the trader's landed orders, fills and funding
reconcile to the venue's truth, read from the venue itself, with nothing doubled and nothing lost.

Real processes throughout: the venue server and each `fundarb trade` are subprocesses, the kill is SIGKILL
(no handler runs), the last run flattens with `fundarb trade --flatten`.

Each kill follows something the test saw happen, never a wall time since the start (a loaded machine starts a
trader slower, and one killed a few seconds after its start had sent nothing): after a random number of the
run's own progress lines (one per turn of its loop, at most a wall second apart), just after the venue received
two orders of that run (legs maybe apart), or while the venue holds an open order of that run (a never-filling
leg inside its timeout). A market order the venue holds open after a kill is a never-filling one: it rests
until canceled, so the next run must find it in flight and say so; which kills leave one is read from the
venue, not assumed (a leg can fill before the kill lands)."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from fundarb_dagster.core.execution.ids import parse
from fundarb_dagster.core.execution.ledger import decoded, read_landed
from fundarb_dagster.core.execution.venue_server import SHUTDOWN, connect, wait_ready
from fundarb_dagster.core.schema import OrderStatus

FUNDARB = [sys.executable, "-m", "fundarb_dagster.cli"]
KILLS = 8
MORE_KILLS = 8  # at most this many extra kills aimed at an open order, until one leaves an order in flight
WRITER = "trader-restarts"
WAIT_S = 180.0  # for the event a kill follows; only a trader that stopped trading takes this long
pytestmark = pytest.mark.slow


def write_config(path: Path, data_dir: Path) -> Path:
    raw = {
        "source": "sim",
        "data_dir": str(data_dir),
        "exchanges": [
            {"id": "binance", "symbols": ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]},
            {"id": "hyperliquid", "symbols": ["BTC/USDC:USDC", "ETH/USDC:USDC", "SOL/USDC:USDC"]},
        ],
        # 5 market minutes per wall second: a decision every wall second
        "sim": {
            "seed": 7,
            "speed": 300.0,
            "start": "2026-11-01T00:00:00Z",
            "faults": {
                "order_reject_rate": 0.05,
                "order_timeout_rate": 0.05,
                "order_never_fill_rate": 0.4,  # a leg left open for the leg timeout: a kill then finds it
                "order_disconnect_rate": 0.05,
            },
        },
        "trade": {
            "name": "restarts",
            "strategy": "perp_perp",
            # a narrow band and one pair at a time: the best pair rotates, so the runs keep entering and exiting
            "enter_apr": 0.05,
            "exit_apr": 0.03,
            "max_pairs": 1,
            "decision_interval_s": 300.0,
            "leg_timeout_s": 90.0,  # 300 ms of wall: a window to see a never-filling leg open at the venue
            "reconcile_interval_s": 600.0,
            "progress_interval_s": 1.0,
        },
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def venue_orders_now(socket: Path) -> dict[str, str]:
    """Every order the venues ever accepted, client id -> status ('open' until filled or canceled), asked of
    the venue process."""

    async def ask() -> dict[str, str]:
        venues = connect(socket, ["binance", "hyperliquid"])
        try:
            return {o["clientOrderId"]: o["status"] for ex in venues.values() for o in await ex.fetch_orders()}
        finally:
            await next(iter(venues.values())).close()

    return asyncio.run(ask())


def open_orders(orders: dict[str, str], after: dict[str, str] | None = None) -> list[str]:
    """The open ones among `orders`, only those not in `after` when given (a run's own orders)."""
    return [c for c, status in orders.items() if status == "open" and (after is None or c not in after)]


class Output:
    """A process's output lines as they come (read by a thread: the test waits for lines while it runs)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=lambda: self.lines.extend(iter(proc.stdout.readline, "")))
        self.thread.start()

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))

    def text(self) -> str:
        self.thread.join(timeout=30)
        return "".join(self.lines)


def wait_for(seen: Callable[[], bool], what: str, out: Output) -> None:
    deadline = time.monotonic() + WAIT_S
    while not seen():
        assert time.monotonic() < deadline, f"no {what} in {WAIT_S:.0f} s:\n" + "".join(out.lines)
        time.sleep(0.005)


async def venue_truth(socket: Path) -> dict[str, dict[str, Any]]:
    venues = connect(socket, ["binance", "hyperliquid"])
    out = {}
    try:
        for name, ex in venues.items():
            out[name] = {
                "orders": await ex.fetch_orders(),
                "trades": await ex.fetch_my_trades(),
                "funding": await ex.fetch_funding_history(),
                "positions": await ex.fetch_positions(),
                "markets": await ex.load_markets(),
                "stats": await ex.stats(),
            }
    finally:
        await next(iter(venues.values())).close()
    return out


async def shutdown(socket: Path) -> None:
    venue = connect(socket, ["binance"])["binance"]
    await venue.connection.request("", SHUTDOWN, (), {})
    await venue.close()


def test_sigkilled_trader_restarts_and_reconciles_to_the_venue_with_nothing_doubled(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = write_config(tmp_path / "trade.yaml", data_dir)
    socket = tmp_path / "venue.sock"
    venue = subprocess.Popen(
        [*FUNDARB, "sim-venue", "--config", str(config), "--socket", str(socket)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    outputs: list[str] = []
    try:
        wait_ready(socket)
        trade = [*FUNDARB, "trade", "--config", str(config), "--venue-socket", str(socket)]
        rng = random.Random(20261102)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # its progress lines as it prints them
        killed_with_orders = 0
        left_open: list[bool] = []  # per run: the venue held an order open just after its kill
        k = 0
        while k < KILLS or (not any(left_open) and k < KILLS + MORE_KILLS):
            before = venue_orders_now(socket)
            proc = subprocess.Popen(trade, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            out = Output(proc)
            if k % 2 and k < KILLS:  # a random moment of its run: after its n-th turn with a progress line
                turns = rng.randint(1, 6)
                wait_for(lambda o=out, n=turns: o.count("trade restarts @") >= n, f"{turns} progress lines", out)
            elif k % 4 == 0 and k < KILLS:  # just after the venue received two orders of this run
                wait_for(lambda b=before: len(venue_orders_now(socket)) >= len(b) + 2, "two orders at the venue", out)
                time.sleep(rng.uniform(0.0, 0.06))
            else:  # while the venue holds an open order of this run: a never-filling leg inside its timeout
                wait_for(lambda b=before: bool(open_orders(venue_orders_now(socket), b)), "an open order", out)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            assert proc.returncode == -signal.SIGKILL
            outputs.append(out.text())
            after = venue_orders_now(socket)
            killed_with_orders += len(after) > len(before)
            left_open.append(bool(open_orders(after)))
            k += 1
        clean = subprocess.run([*trade, "--duration", "6"], capture_output=True, text=True, timeout=120)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        outputs.append(clean.stdout)
        flat = subprocess.run([*trade, "--flatten"], capture_output=True, text=True, timeout=180)
        assert flat.returncode == 0, flat.stdout + flat.stderr
        assert "flat after --flatten" in flat.stdout
        outputs.append(flat.stdout)
        truth = asyncio.run(venue_truth(socket))
        asyncio.run(shutdown(socket))
        venue.wait(timeout=30)
    finally:
        if venue.poll() is None:
            venue.kill()
            venue.wait()

    orders = read_landed(data_dir, "orders", WRITER)
    fills = read_landed(data_dir, "fills", WRITER)
    payments = read_landed(data_dir, "funding_payments", WRITER)

    # the runs traded, met faults, and were killed with work to recover at least once
    venue_orders = [(e, o) for e, t in truth.items() for o in t["orders"]]
    assert len(venue_orders) >= 6, "\n".join(outputs)
    assert killed_with_orders >= KILLS // 2  # every other run was killed with its orders just sent
    assert sum(sum(t["stats"]["faults_injected"].values()) for t in truth.values()) >= 1
    # a kill that left an order open at the venue: the next run found it in flight and said so
    assert any(left_open), outputs
    found = re.compile(r"trade: recovered .*, [1-9]\d* order\(s\) in flight after the restart")
    for run, was_open in enumerate(left_open):
        if was_open:
            assert found.search(outputs[run + 1]), (run, outputs[run + 1])

    # no order twice at the venue, each journaled as an intent before it was sent
    client_ids = [o["clientOrderId"] for _, o in venue_orders]
    assert all(parse(cid) is not None for cid in client_ids)
    assert len(client_ids) == len(set(client_ids))
    intents = {
        c for c, s in zip(decoded(orders, "client_order_id"), orders["status"], strict=True) if s == OrderStatus.INTENT
    }
    assert set(client_ids) <= intents
    # every order's last landed state is the venue's (nothing left "open" that the venue closed)
    last: dict[str, int] = {}
    for cid, status in zip(decoded(orders, "client_order_id"), orders["status"], strict=True):
        last[cid] = int(status)
    venue_status = {o["clientOrderId"]: o["status"] for _, o in venue_orders}
    for cid, status in venue_status.items():
        assert OrderStatus(last[cid]).name.lower() == status, cid

    # every fill the venue made is landed exactly once, none invented
    landed = Counter(zip(decoded(fills, "exchange"), decoded(fills, "trade_id"), strict=True))
    booked = Counter((e, str(t["id"])) for e, v in truth.items() for t in v["trades"])
    assert landed == booked

    # funding: every payment the venue booked is landed once, with its amount
    landed_funding = Counter(
        zip(decoded(payments, "exchange"), decoded(payments, "symbol"), payments["ts_ms"].tolist(), strict=True)
    )
    assert all(n == 1 for n in landed_funding.values())
    venue_funding = {(e, r["symbol"], r["timestamp"]): r["amount"] for e, v in truth.items() for r in v["funding"]}
    assert set(landed_funding) == set(venue_funding)
    for rec, e, s in zip(payments, decoded(payments, "exchange"), decoded(payments, "symbol"), strict=True):
        assert float(rec["amount"]) == pytest.approx(venue_funding[(e, s, int(rec["ts_ms"]))], abs=1e-12)

    # positions: the landed fills sum to the venue's positions, which are flat after --flatten
    units: dict[tuple[str, str], float] = defaultdict(float)
    for rec, e, s in zip(fills, decoded(fills, "exchange"), decoded(fills, "symbol"), strict=True):
        units[(e, s)] += float(rec["side"]) * float(rec["amount"])
    assert all(v["positions"] == [] for v in truth.values())
    assert all(abs(u) < 1e-9 for u in units.values()), units
