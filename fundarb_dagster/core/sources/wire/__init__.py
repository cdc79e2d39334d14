"""Wire replay: recorded websocket sessions played through the real ccxt.pro exchange classes.

`create_wire_exchange("bybit", "incident.jsonl.zst", speed=0)` returns an instance of a subclass of the
real `ccxt.pro.bybit` whose only change is the transport: `client(url)` hands ccxt a `WireClient` that
never dials and whose `send` records the subscription instead of writing to a socket. A driver task,
started by the first connection, feeds each recorded frame to `client.handle_text_or_binary_message(raw)`
(the entry point ccxt's live receive loop uses), so ccxt's own message handlers, caches, snapshot/delta
merging and `watch_*` futures run exactly as live, and the Feed sees the same unified structures.

Routing. Each frame goes to the client ccxt created for that frame's subscription (its topic: bybit
`tickers.BTCUSDT`, okx `tickers:BTC-USDT`, binance `btcusdt@aggTrade`), matched against the topics ccxt
sent on each client, not by URL: binance spreads subscriptions over numbered connections, okx's port
differs in old recordings, and bybit decides spot vs contract from the client's URL, so a topic two
clients share (spot and linear `tickers.BTCUSDT`) goes to the one whose URL kind (spot/linear/...)
matches the recorded connection's. Frames nobody subscribed to are skipped and counted in `stats`;
control frames (acks, pongs) are counted, never delivered: ccxt sent no real subscription to ack. Where
ccxt acts on the venue's ack (binance: its order book asks for the REST snapshot then), the replay answers
each subscription ccxt sends as the venue does (`WireVenue.ack`, counted in `stats["acks"]`).
Venues without topic rules (`VENUE_RULES`) replay sessions fundarb recorded itself with `routing="url"`:
a frame goes to the client whose URL is the recorded connection's (same ccxt, same subscriptions).

Timing. The driver waits until subscriptions stop arriving (`settle_s` of wall time with no new one),
then delivers frames in recorded order, letting the event loop turn at least twice after each (a
`watch_*` loop needs a turn to wake and one to re-arm its future, or it misses updates) and, when the
frame woke a watcher, until that watcher awaits again (at most `rearm_turns`). `speed` paces the frames by
their recorded receive times: 1 = real time, 10 = ten times faster, 0 = as fast as possible.
`milliseconds()` returns the recorded clock (the receive time of the frame being delivered).

End. When the recording is exhausted every pending and later `watch_*` call raises `EndOfRecording`,
a `sources.EndOfData` (and an `EOFError`), never a ccxt `NetworkError`, so the Feed's reconnect loop
ends the stream instead of retrying it.

Markets load offline: the markets line of a fundarb recording (the live exchange's own markets), else
minimal ccxt markets for every instrument seen in the frames (`build_market`), with the venue's recorded
instrument entry (from the session's REST bodies, when recorded) as `info`.
REST calls are answered from the session's recorded HTTP bodies when the URL matches, each recorded answer
once and in order (binance's `fapi/v1/depth?symbol=...&limit=1000` snapshots, from which ccxt builds the
book with the `@depth@100ms` diffs and its U/u/pu checks); a request asked more often than recorded ends
like the recording (`EndOfRecording`: a second snapshot after a broken sequence was never recorded), one
never recorded raises `ccxt.NotSupported` (never a network request); the REST history `has` flags are
False. ccxt's REST throttle is off (nothing reaches a venue; an unpaced replay would end before it let a
second symbol's snapshot through).

Recording formats read (plain or `.zst`, zstd JSON lines, decompressed with pyarrow):
- fundarb/cryptofeed sessions: a header line, then `{"t": "connect"|"send"|"recv"|"http"|"markets",
  "conn", "ts" (epoch s), "addr" (url), "data" (raw payload string)}` -- what `live.RawRecorder` writes;
- simple frame logs: `{"recv_ts_s", "conn", "addr", "msg": <decoded payload>}`.
"""

from __future__ import annotations

from .driver import FrameUsage, WireClient, WireReplay
from .exchange import WireExchangeMixin, create_wire_exchange, replay_stats, wire_exchange_class
from .recording import EndOfRecording, Frame, Recording, load_recording
from .venues import VENUE_RULES, BinanceWire, BybitWire, OkxWire, UrlWire, WireVenue

__all__ = [
    "VENUE_RULES",
    "BinanceWire",
    "BybitWire",
    "EndOfRecording",
    "Frame",
    "FrameUsage",
    "OkxWire",
    "Recording",
    "UrlWire",
    "WireClient",
    "WireExchangeMixin",
    "WireReplay",
    "WireVenue",
    "create_wire_exchange",
    "load_recording",
    "replay_stats",
    "wire_exchange_class",
]
