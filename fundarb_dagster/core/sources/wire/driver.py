"""The wire replay's transport and driver: a ccxt.pro client that never dials, and the task that feeds it the
recorded frames, routed to the client of each frame's subscription, and counts what every frame became."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from ccxt.async_support.base.ws.client import Client

from ...schema import EventKind
from ..validation import concat_events, event_rows
from .recording import EndOfRecording, Frame, Recording, _loads
from .venues import WireVenue, _url_kind

_MAX_SETTLE_S = 5.0  # wall seconds the driver waits for a first subscription topic


@dataclass(frozen=True)
class FrameUsage:
    """What became of a replayed recording's frames, per channel: what a capture reports and checks.

    `unused` keys: a channel nobody subscribed (`linear:depth@100ms`), `error:<channel>` (ccxt's handler
    rejected the frame), `control` (acks, pongs: no market data), `not_replayed` (the replay was stopped).
    The use ratio counts market-data frames only: used / (frames - control).
    """

    exchange: str
    frames: int
    used: dict[str, int]
    unused: dict[str, int]

    @property
    def data_frames(self) -> int:
        return self.frames - self.unused.get("control", 0)

    @property
    def use_ratio(self) -> float:
        return sum(self.used.values()) / self.data_frames if self.data_frames else 1.0

    def line(self) -> str:
        """One line for the job's output: `bybit: 3227 frames, 1523 used (48.0 % of 3203 data frames), ...`."""
        unused = ", ".join(f"{c} {n}" for c, n in sorted(self.unused.items(), key=lambda x: (-x[1], x[0])))
        used = ", ".join(f"{c} {n}" for c, n in sorted(self.used.items(), key=lambda x: (-x[1], x[0])))
        return (
            f"{self.exchange}: {self.frames} frames, {sum(self.used.values())} used "
            f"({100 * self.use_ratio:.1f} % of {self.data_frames} data frames) [{used}]; unused [{unused or 'none'}]"
        )

    def events(self, now_ms: int) -> np.ndarray:
        """USED and UNUSED capture_events rows, one per channel (reason: the channel, count: frames)."""
        rows = [(EventKind.USED, c, n) for c, n in sorted(self.used.items())]
        rows += [(EventKind.UNUSED, c, n) for c, n in sorted(self.unused.items())]
        return concat_events(
            event_rows(kind, "capture_events", -1, now_ms, now_ms, count=n, reason=f"{self.exchange} {channel}")
            for kind, channel, n in rows
        )


class WireClient(Client):
    """A ccxt.pro websocket client whose connection is a recording: never dials, sends are recorded."""

    replay: WireReplay
    conn_id: str

    def connect(self, session: Any, backoff_delay: float = 0) -> Any:
        if not self.connected.done():
            self.connecting = False
            self.isConnected = True
            self.connectionStarted = self.connectionEstablished = self.replay.milliseconds()
            self.connected.resolve(self.url)
            self.on_connected_callback(self)
            self.replay.on_connect(self)
        return self.connected

    async def send(self, message: Any) -> None:
        raw = message if isinstance(message, str) else json.dumps(message, separators=(",", ":"))
        self.replay.on_send(self, raw)

    def resolve(self, result: Any, message_hash: Any) -> Any:
        if message_hash in self.futures:
            self.replay.awaited.append((self, message_hash))  # someone was waiting: let them re-arm
        return super().resolve(result, message_hash)

    def closed(self) -> bool:
        return self.replay.closed

    async def close(self, code: int = 1000) -> None:
        for future in self.futures.values():
            future.cancel()

    async def aiohttp_close(self) -> None:
        return None


class WireReplay:
    """The driver: routes recorded frames to the clients ccxt created, paced, then ends every stream."""

    def __init__(
        self,
        recording: Recording,
        venue: WireVenue,
        speed: float = 0.0,
        settle_s: float = 0.05,
        recorder: Any = None,
        rearm_turns: int = 200,
    ) -> None:
        if speed < 0:
            raise ValueError(f"replay.speed: {speed!r} must be >= 0 (0 = as fast as possible)")
        self.recording = recording
        self.venue = venue
        self.speed = speed
        self.settle_s = settle_s
        self.recorder = recorder  # a live.RawRecorder: record while replaying (incident re-recording)
        self.clients: list[WireClient] = []
        self.topics: dict[str, list[WireClient]] = {}
        self.clock_ms = int(recording.frames[0].ts_s * 1000)
        self._clock_s = recording.frames[0].ts_s
        if recorder is not None:
            recorder.clock = self.clock_s  # a re-recording keeps the recorded times, so it paces the same
        self.finished = False
        self.closed = False
        self.stats: Counter[str] = Counter()  # delivered, unsubscribed, control, handler_errors
        self.errors: list[str] = []  # the first handler errors, for the report
        self.delivered_by_topic: Counter[str] = Counter()
        self.used: Counter[str] = Counter()  # channel -> frames delivered to a subscribed client
        self.unused: Counter[str] = Counter()  # channel -> frames no watcher consumed (see `usage`)
        self.replayed = 0
        self.http_used: set[int] = set()  # recorded HTTP responses already served (each answers one request)
        self._sub_version = 0
        self._conn_kinds: dict[str, str | None] = {}
        self.awaited: list[tuple[WireClient, Any]] = []  # (client, message hash) resolved for a waiter
        self.rearm_turns = rearm_turns
        self._task: asyncio.Task[None] | None = None

    def milliseconds(self) -> int:
        return self.clock_ms

    def clock_s(self) -> float:
        return self._clock_s

    def on_connect(self, client: WireClient) -> None:
        client.conn_id = self.recorder.new_conn() if self.recorder is not None else f"wire.ws.{len(self.clients) + 1}"
        self.clients.append(client)
        if self.recorder is not None:
            self.recorder.connect(client.conn_id, client.url)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="wire-replay")

    def on_send(self, client: WireClient, raw: str) -> None:
        if self.recorder is not None:
            self.recorder.send(client.conn_id, client.url, raw)
        msg = _loads(raw)
        for topic in self.venue.sent_topics(msg):
            subscribers = self.topics.setdefault(topic, [])
            if client not in subscribers:
                subscribers.append(client)
        self._sub_version += 1
        ack = self.venue.ack(msg)
        if ack is not None:
            asyncio.get_running_loop().call_soon(self._answer, client, ack)

    def _answer(self, client: WireClient, ack: str) -> None:
        """The venue's ack of a subscription ccxt sent (`WireVenue.ack`), after the send, as live."""
        if self.closed:
            return
        if self.recorder is not None:
            self.recorder.recv(client.conn_id, ack)
        self.stats["acks"] += 1
        client.handle_text_or_binary_message(ack)

    def _route(self, frame: Frame, topics: list[str]) -> tuple[WireClient, str] | None:
        """The client subscribed to the frame's topic whose market kind is the recorded connection's."""
        recorded_url = self.recording.conn_urls.get(frame.conn)
        if frame.conn not in self._conn_kinds:  # once per connection: bybit may scan the frames to tell
            self._conn_kinds[frame.conn] = self.venue.conn_kind(self.recording, frame.conn)
        kind = self._conn_kinds[frame.conn]
        for topic in topics:
            for client in self.topics.get(topic, ()):
                if client.url == recorded_url:
                    return client, topic
                client_kind = _url_kind(client.url)
                # a spot frame must not reach a linear client of the same topic name (bybit), and back
                if kind is None or client_kind is None or client_kind == kind:
                    return client, topic
        return None

    def _channel(self, frame: Frame, topics: list[str]) -> str:
        """What a frame is counted under: `<connection kind>:<channel>` (`linear:orderbook.200`), `control`
        for acks and pongs, `url` under URL routing (which decodes no frame)."""
        if not topics:
            return "control"
        if self.venue.route_by_url:
            return "url"
        kind = self._conn_kinds.get(frame.conn)
        channel = self.venue.split_topic(topics[0])[0]
        return f"{kind}:{channel}" if kind else channel

    def usage(self, exchange_id: str) -> FrameUsage:
        """Frames used and unused per channel so far; frames the replay never reached (it was stopped) are
        unused under `not_replayed`."""
        unused = dict(self.unused)
        left = len(self.recording.frames) - self.replayed
        if left:
            unused["not_replayed"] = left
        return FrameUsage(exchange_id, len(self.recording.frames), dict(self.used), unused)

    def _route_by_url(self, frame: Frame) -> tuple[WireClient, str] | None:
        """The client of the recorded connection's URL; else of the same path (a session recorded through
        a proxy or a stand-in host, e.g. `ws://127.0.0.1:8080/ws` for `wss://api.hyperliquid.xyz/ws`)."""
        url = self.recording.conn_urls.get(frame.conn) or ""
        for client in self.clients:
            if client.url == url:
                return client, "*"
        path = urlsplit(url).path
        for client in self.clients:
            if urlsplit(client.url).path == path:
                return client, "*"
        return None

    async def _settle(self) -> None:
        """Wait for the consumer's subscriptions to arrive: live ones would miss frames sent before them.

        Bounded (`_MAX_SETTLE_S`): a consumer whose subscriptions name no topic this venue's rules know
        still gets its replay (every frame then counted as unsubscribed) and the end, never a hang.
        """
        deadline = time.monotonic() + _MAX_SETTLE_S
        while time.monotonic() < deadline:
            version = self._sub_version
            await asyncio.sleep(self.settle_s)
            if version == self._sub_version and self.topics:
                return

    async def _run(self) -> None:
        try:
            await self._settle()
            frames = self.recording.frames
            wall0, ts0 = time.monotonic(), frames[0].ts_s
            if self.venue.route_by_url:
                all_topics: list[list[str]] = [[] for _ in frames]  # URL routing decodes nothing
            else:
                self.venue.index_topics(self.recording)
                all_topics = self.recording.topics
            for frame, frame_topics in zip(frames, all_topics, strict=True):
                if self.closed:
                    return
                if self.speed > 0:
                    delay = (frame.ts_s - ts0) / self.speed - (time.monotonic() - wall0)
                    if delay > 0:
                        await asyncio.sleep(delay)
                self._clock_s = frame.ts_s
                self.clock_ms = int(frame.ts_s * 1000)
                self.replayed += 1
                if self.venue.route_by_url:
                    topics = ["*"]
                    routed = self._route_by_url(frame)
                else:
                    topics = frame_topics
                    routed = self._route(frame, topics) if topics else None
                channel = self._channel(frame, topics)
                if routed is None:
                    self.stats["control" if not topics else "unsubscribed"] += 1
                    self.unused[channel] += 1
                    continue
                client, topic = routed
                if self.recorder is not None:
                    self.recorder.recv(client.conn_id, frame.data)
                try:
                    client.handle_text_or_binary_message(frame.data)
                except Exception as exc:  # noqa: BLE001 - a bad frame is counted and skipped, never the end
                    self.stats["handler_errors"] += 1
                    self.unused[f"error:{channel}"] += 1
                    if len(self.errors) < 20:
                        self.errors.append(f"{frame.conn}@{frame.ts_s}: {type(exc).__name__}: {exc}"[:300])
                    continue
                self.stats["delivered"] += 1
                self.used[channel] += 1
                self.delivered_by_topic[f"{client.url} {topic}"] += 1
                await self._let_watchers_rearm()
            for _ in range(4):
                await asyncio.sleep(0)
        finally:
            self._end()

    async def _let_watchers_rearm(self) -> None:
        """Turn the loop until every watcher this frame woke is awaiting again (bounded).

        One turn wakes the `watch_*` awaiting the resolved future and one lets it re-arm; a consumer doing
        more per update (the Feed validates and yields) needs more, and live it has the time between
        frames. Without this, an unpaced replay would conflate tickers the consumer was not awaiting.
        """
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        if not self.awaited:
            return
        for _ in range(self.rearm_turns):
            if all(message_hash in client.futures for client, message_hash in self.awaited):
                break
            await asyncio.sleep(0)
        # a second consumer of the same future (tickers and bybit funding share watch_ticker) gets a turn too
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.awaited.clear()

    def _end(self) -> None:
        self.finished = True
        error = EndOfRecording(f"wire replay: recording {self.recording.path} ended ({self.stats['delivered']} frames)")
        for client in self.clients:
            client.reject(error)

    def end_error(self) -> EndOfRecording:
        return EndOfRecording(f"wire replay: recording {self.recording.path} has ended")
