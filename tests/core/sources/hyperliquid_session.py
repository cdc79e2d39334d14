"""Record a hyperliquid session the way a live capture does, from local servers speaking its public protocol.

No fixture recorded hyperliquid, and no machine here reaches it: a real local HTTP server answers the
`/info` REST call (`metaAndAssetCtxs`, the shape hyperliquid documents) and a real local websocket server
streams `activeAssetCtx` frames (funding, markPx, oraclePx, impactPxs; no time, no interval, no settlement).
The real `ccxt.pro.hyperliquid` (fundarb's live class with `live.record_raw`) connects to them through the
real Feed, so what lands on disk is what a live run against the venue writes: markets, connects, sends,
frames and the REST response the Feed's interval lookup got.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from fundarb_dagster.core.config import LiveConfig
from fundarb_dagster.core.instruments import InstrumentRegistry
from fundarb_dagster.core.sources.feed import Feed
from fundarb_dagster.core.sources.live import create_live_exchange
from fundarb_dagster.core.sources.rest_replay import build_market

SYMBOL = "BTC/USDC:USDC"
# (funding, markPx, oraclePx) of the contexts streamed, one frame each
CONTEXTS = [
    ("0.0000125", "65010.0", "65000.0"),
    ("0.0000131", "65020.0", "65012.0"),
    ("-0.0000040", "64990.0", "65001.0"),
]


def context(funding: str, mark: str, oracle: str) -> dict[str, Any]:
    return {"funding": funding, "markPx": mark, "oraclePx": oracle, "midPx": mark, "premium": "0.0001",
            "openInterest": "100.5", "dayNtlVlm": "1000000.0", "prevDayPx": "64000.0",
            "impactPxs": [f"{float(mark) - 1:.1f}", f"{float(mark) + 1:.1f}"]}  # fmt: skip


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    """A real server for `app` on a free localhost port: (its runner, to clean up; the port)."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def record_session(folder: Path) -> tuple[Path, list[Any], InstrumentRegistry]:
    """The recording, the funding records the live Feed produced, and its registry (what it learned)."""
    frames_sent = asyncio.Event()

    async def info(request: web.Request) -> web.Response:
        body = await request.json()
        assert body == {"type": "metaAndAssetCtxs"}, body
        universe = {"universe": [{"name": "BTC", "szDecimals": 5, "maxLeverage": 40, "onlyIsolated": False}]}
        return web.json_response([universe, [context(*CONTEXTS[0])]])

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            body = json.loads(message.data)
            if body.get("method") == "subscribe":
                await ws.send_str(json.dumps({"channel": "subscriptionResponse", "data": body}))
                for ctx in CONTEXTS:
                    await asyncio.sleep(0.05)
                    await ws.send_str(
                        json.dumps({"channel": "activeAssetCtx", "data": {"coin": "BTC", "ctx": context(*ctx)}})
                    )
                frames_sent.set()
        return ws

    app = web.Application()
    app.router.add_post("/info", info)
    app.router.add_get("/ws", ws_handler)
    runner, port = await serve(app)
    ex = create_live_exchange("hyperliquid", LiveConfig(record_raw=str(folder)), {})
    ex.urls["api"]["public"] = ex.urls["api"]["private"] = f"http://127.0.0.1:{port}"
    ex.urls["api"]["ws"]["public"] = f"ws://127.0.0.1:{port}/ws"
    ex.set_markets([build_market(ex, SYMBOL)])  # offline, and recorded as the session's markets line
    registry = InstrumentRegistry()
    registry.add_markets("hyperliquid", ex.markets, [SYMBOL])
    feed = Feed(ex, registry)
    records: list[Any] = []

    async def drain() -> None:
        async for batch in feed.watch("funding", SYMBOL):
            records.extend(batch.records)

    task = asyncio.create_task(drain())
    try:
        await asyncio.wait_for(frames_sent.wait(), timeout=30)
        await asyncio.sleep(0.3)  # let the client parse what the server sent last
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ex.close()
        await runner.cleanup()
    path = next(folder.glob("hyperliquid-*.jsonl"))
    return path, records, registry
