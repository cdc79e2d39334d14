"""The simulated venues in a process of their own, so they outlive the trader as a real exchange does.

`fundarb sim-venue --socket PATH` hosts one `SimExchange` per configured exchange (one clock for all) and
answers ccxt calls over a Unix socket: one JSON object per line, `{"id", "venue", "method", "args",
"kwargs"}` -> `{"id", "result"}` or `{"id", "error": <ccxt error class>, "message"}`. Requests run
concurrently (an order waiting out its latency does not hold up a status query). The trader's side,
`connect(path, exchanges)`, gives one `RemoteExchange` per venue: the same method names, the same unified
structures (they are JSON), the same ccxt errors re-raised, and `milliseconds()` computed locally from the
server's clock (start, speed, wall start), as every process sharing a simulated clock does.

A SIGKILLed trader loses its socket; the venues keep their orders, fills, positions and funding, and the
next trader connects to the same state. The server stops on SIGTERM/SIGINT or `__shutdown__`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket as socketlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ccxt

from ..config import FundarbConfig

CLOCK = "__clock__"
STATS = "__stats__"
SHUTDOWN = "__shutdown__"
READY = "fundarb sim-venue ready"


def _stats(exchange: Any) -> dict[str, Any]:
    """The venue's own counters (faults injected per kind), for tests and the proof runs."""
    injected = getattr(exchange, "faults_injected", {})
    return {"faults_injected": {"|".join(map(str, k)): int(v) for k, v in dict(injected).items()}}


async def serve(config: FundarbConfig, path: str | os.PathLike[str], stop: asyncio.Event | None = None) -> None:
    """Serve the config's exchanges on a Unix socket until `stop` (or a signal, or `__shutdown__`)."""
    from ..sources.sim import SimExchange

    wall = time.time()
    venues = {e.id: SimExchange(e.id, config.sim, wall_start=wall) for e in config.exchanges}
    for venue in venues.values():
        await venue.load_markets()
    stop = stop or asyncio.Event()
    clock = {"start_ms": config.sim.start_ms, "speed": config.sim.speed, "wall0": wall}

    async def call(request: Mapping[str, Any]) -> dict[str, Any]:
        method = str(request["method"])
        if method == CLOCK:
            return {"result": clock}
        if method == SHUTDOWN:
            stop.set()
            return {"result": None}
        venue = venues[str(request["venue"])]
        if method == STATS:
            return {"result": _stats(venue)}
        if method.startswith("_"):
            raise ccxt.NotSupported(f"sim-venue: {method!r} is not a ccxt call")
        result = getattr(venue, method)(*request.get("args", ()), **request.get("kwargs", {}))
        if asyncio.iscoroutine(result):
            result = await result
        return {"result": result}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lock = asyncio.Lock()

        async def answer(request: dict[str, Any]) -> None:
            try:
                response = await call(request)
            except ccxt.BaseError as exc:
                response = {"error": type(exc).__name__, "message": str(exc)}
            except Exception as exc:  # noqa: BLE001 - said to the client, the server keeps serving
                response = {"error": "ExchangeError", "message": f"{type(exc).__name__}: {exc}"}
            response["id"] = request.get("id")
            async with lock:
                writer.write(json.dumps(response).encode() + b"\n")
                with contextlib.suppress(ConnectionError):
                    await writer.drain()

        tasks = set()
        while not reader.at_eof():
            line = await reader.readline()
            if not line:
                break
            task = asyncio.create_task(answer(json.loads(line)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        writer.close()

    path = str(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = await asyncio.start_unix_server(handle, path=path, limit=2**24)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    print(f"{READY} on {path} ({', '.join(venues)}; clock {config.sim.start} x{config.sim.speed:g})", flush=True)
    async with server:
        await stop.wait()
    for venue in venues.values():
        await venue.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class Connection:
    """One socket to the server, shared by the venues' proxies; replies matched to requests by id."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.listener: asyncio.Task[None] | None = None
        self.clock: dict[str, float] = {}

    async def open(self) -> None:
        if self.writer is not None:
            return
        self.reader, self.writer = await asyncio.open_unix_connection(self.path, limit=2**24)
        self.listener = asyncio.create_task(self._listen())
        self.clock = await self.request("", CLOCK, (), {})

    async def _listen(self) -> None:
        assert self.reader is not None
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    break
                reply = json.loads(line)
                future = self.waiting.pop(int(reply["id"]), None)
                if future is None or future.done():
                    continue
                if "error" in reply:
                    error = getattr(ccxt, str(reply["error"]), None)
                    error = (
                        error if isinstance(error, type) and issubclass(error, ccxt.BaseError) else ccxt.ExchangeError
                    )
                    future.set_exception(error(reply.get("message", "")))
                else:
                    future.set_result(reply.get("result"))
        finally:
            for future in self.waiting.values():
                if not future.done():
                    future.set_exception(ccxt.NetworkError(f"sim-venue {self.path}: connection closed"))
            self.waiting.clear()

    async def request(self, venue: str, method: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        await self.open()
        assert self.writer is not None
        rid = next(self.ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[rid] = future
        payload = {"id": rid, "venue": venue, "method": method, "args": list(args), "kwargs": dict(kwargs)}
        self.writer.write(json.dumps(payload).encode() + b"\n")
        await self.writer.drain()
        return await future

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()
            self.writer = None
        if self.listener is not None:
            self.listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.listener
            self.listener = None


class RemoteExchange:
    """A venue served by `serve`, with ccxt's method names (see the module doc)."""

    is_sim = True

    def __init__(self, venue: str, connection: Connection) -> None:
        self.id = venue
        self.connection = connection
        self.markets: dict[str, Any] = {}
        self.has: dict[str, Any] = {}

    @property
    def speed(self) -> float:
        return float(self.connection.clock.get("speed", 1.0))

    def milliseconds(self) -> int:
        c = self.connection.clock
        return int(c["start_ms"] + (time.time() - c["wall0"]) * c["speed"] * 1000.0)

    async def load_markets(self, reload: bool = False) -> dict[str, Any]:
        if not self.markets or reload:
            self.markets = await self.connection.request(self.id, "load_markets", (), {})
        return self.markets

    async def stats(self) -> dict[str, Any]:
        return await self.connection.request(self.id, STATS, (), {})

    async def close(self) -> None:
        await self.connection.close()

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self.connection.request(self.id, method, args, kwargs)

        call.__name__ = method
        return call


def connect(path: str | os.PathLike[str], exchanges: Sequence[str]) -> dict[str, RemoteExchange]:
    """One proxy per venue over one connection (opened at the first call)."""
    connection = Connection(str(path))
    return {e: RemoteExchange(e, connection) for e in exchanges}


def wait_ready(path: str | os.PathLike[str], timeout_s: float = 30.0) -> None:
    """Block until the server accepts connections (for launchers and tests)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if Path(path).exists():
            with contextlib.suppress(OSError), socketlib.socket(socketlib.AF_UNIX) as probe:
                probe.connect(str(path))
                return
        time.sleep(0.05)
    raise TimeoutError(f"sim-venue: nothing listens on {path} after {timeout_s:g}s")
