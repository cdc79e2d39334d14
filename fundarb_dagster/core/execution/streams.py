"""The trader's private streams: ccxt.pro's `watch_orders` and `watch_my_trades`, where a venue `has` both.

One task per venue and stream calls the method again and again (ccxt.pro's `newUpdates`: each call returns
what came since the previous one, waiting for the next update) and buffers what it returns; the trader takes
the buffers at each turn (`take`). So in steady state an order's progress and its fills cost no REST call.

A venue is *streaming* only once its streams have delivered since they were (re)subscribed, and the trader
has caught up by REST after that (`caught_up`): until then it polls (fetch_order, fetch_my_trades), as it does
on a venue without the streams. A stream that errors (a dropped connection) counts the error, is called again
(ccxt.pro reconnects and re-subscribes; waits, on the trader's clock, grow with consecutive errors) and puts its
venue back to polling:
what happened while it was down is fetched, and a fill seen twice is landed once (fills are keyed by trade id).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Final

from .clocks import TraderClock
from .gateway import error_reason

KINDS: Final = {"orders": ("watchOrders", "watch_orders"), "trades": ("watchMyTrades", "watch_my_trades")}
RECONNECT_S: Final = (0.0, 0.5, 1.0, 2.0, 5.0)  # wait before re-subscribing after 1, 2, ... errors in a row
SETTLE_YIELDS: Final = 16  # event-loop turns `settle` gives the stream tasks (an in-process venue needs ~4)


def streamable(exchange: Any) -> bool:
    """The venue has both private streams (ccxt's `has['watchOrders']` and `has['watchMyTrades']`)."""
    has = getattr(exchange, "has", None) or {}
    return all(bool(has.get(flag)) for flag, _ in KINDS.values())


class PrivateStreams:
    """Buffered private streams of the venues that have them (see the module doc)."""

    def __init__(
        self, exchanges: Mapping[str, Any], say: Callable[[str], None] = print, clock: TraderClock | None = None
    ) -> None:
        self.exchanges = {e: ex for e, ex in exchanges.items() if streamable(ex)}
        self.say = say
        self.clock = clock  # the reconnect waits run on it (a stepped run stays repeatable); None: wall time
        self.buffers: dict[tuple[str, str], list[dict[str, Any]]] = {(e, k): [] for e in self.exchanges for k in KINDS}
        self.errors: Counter[str] = Counter()  # venue -> stream errors
        self.delivered: Counter[str] = Counter()  # venue -> updates delivered by its streams
        self._fresh: set[str] = set()  # venues whose streams delivered since the last (re)subscription
        self._live: set[str] = set()  # venues streaming (delivered, then caught up by REST)
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        for venue, exchange in self.exchanges.items():
            for kind, (_, method) in KINDS.items():
                self._tasks.append(asyncio.create_task(self._consume(venue, kind, getattr(exchange, method))))

    async def _consume(self, venue: str, kind: str, watch: Callable[[], Any]) -> None:
        in_a_row = 0
        while True:
            try:
                batch = await watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any stream failure: count it, poll, re-subscribe
                self.errors[venue] += 1
                self._fresh.discard(venue)
                self._live.discard(venue)
                self.say(f"trade: {venue} private stream {kind} failed ({error_reason(exc)}); polling, re-subscribing")
                await self._pause(RECONNECT_S[min(in_a_row, len(RECONNECT_S) - 1)])
                in_a_row += 1
                continue
            in_a_row = 0
            self.buffers[(venue, kind)].extend(batch or [])
            self.delivered[venue] += len(batch or [])
            self._fresh.add(venue)

    async def _pause(self, seconds: float) -> None:
        if self.clock is None:
            await asyncio.sleep(seconds)
        elif seconds > 0:
            await self.clock.wait_for(self.clock.now() + int(seconds * 1000))

    def streaming(self, venue: str) -> bool:
        return venue in self._live

    def needs_catch_up(self, venue: str) -> bool:
        """Its streams delivered since they were (re)subscribed, and the REST catch-up after that is due."""
        return venue in self._fresh and venue not in self._live

    def caught_up(self, venue: str) -> None:
        """The trader fetched what the venue holds after its streams delivered: from now on the streams suffice."""
        if venue in self._fresh:
            self._live.add(venue)

    def take(self, venue: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(order updates, trades) buffered for `venue` since the last take."""
        if venue not in self.exchanges:
            return [], []
        out = tuple(self.buffers[(venue, k)] for k in KINDS)
        for k in KINDS:
            self.buffers[(venue, k)] = []
        return out[0], out[1]

    async def settle(self) -> None:
        """Let the stream tasks hand over what their venues already have (an in-process venue answers within a
        few event-loop turns; a venue across a network in its own time)."""
        for _ in range(SETTLE_YIELDS if self._tasks else 0):
            await asyncio.sleep(0)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
