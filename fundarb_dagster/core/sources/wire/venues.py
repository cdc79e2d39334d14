"""Venue rules of a wire replay: how each venue's frames name their subscription, which instruments and
channels a recording holds, and which ccxt calls and options replay it as it was subscribed.

Adding a venue: subclass `WireVenue`, implement its methods, register it in `VENUE_RULES` (see the docs).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from .recording import Recording, _loads


def _url_kind(url: str | None) -> str | None:
    """The market kind a public websocket URL serves: spot, linear (USDT-margined), inverse, option."""
    if not url:
        return None
    parts = urlsplit(url)
    host, path = parts.netloc.lower(), parts.path.lower()
    for kind in ("spot", "linear", "inverse", "option"):
        if path.rstrip("/").endswith("/" + kind):
            return kind
    if host.startswith(("fstream", "fstream-")) or "binancefuture" in host and "dstream" not in host:
        return "linear"
    if host.startswith("dstream"):
        return "inverse"
    if "binance" in host:
        return "spot"
    return None


_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "USDE", "USD", "EUR", "BTC", "ETH")


def _split_pair(venue_id: str) -> tuple[str, str]:
    for quote in _QUOTES:
        if venue_id.endswith(quote) and len(venue_id) > len(quote):
            return venue_id[: -len(quote)], quote
    raise ValueError(f"cannot split venue market id {venue_id!r} into base and quote")


# A recorded channel's best-bid/offer use, in order of preference when the venue's own choice (its row in
# `core/venues.py`) was not recorded: a bid/ask channel, then a book (its top), then a ticker.
_QUOTE_PREFERENCE = ("bids_asks", "order_book", "ticker")


class WireVenue:
    """How one venue's frames name their subscription, which instruments and channels a recording holds.

    Adding a venue: subclass, implement `frame_topics`, `sent_topics`, `instruments`, `split_topic`,
    `quote_mode` (and `ccxt_options` where a ccxt option picks a channel), register it in `VENUE_RULES`.
    """

    route_by_url = False

    def frame_topics(self, msg: Any) -> list[str]:
        """The subscription topics a decoded frame may belong to (first match wins); [] = control frame."""
        raise NotImplementedError

    def sent_topics(self, msg: Any) -> list[str]:
        """The topics a subscription message ccxt sent asks for."""
        raise NotImplementedError

    def instruments(self, rec: Recording) -> dict[str, dict[str, Any]]:
        """unified symbol -> {"id", "info"} for every instrument the recording's frames carry."""
        raise NotImplementedError

    def conn_kind(self, rec: Recording, conn: str) -> str | None:
        """The market kind (spot, linear, ...) a recorded connection served, if known."""
        return _url_kind(rec.conn_urls.get(conn))

    def index_topics(self, rec: Recording) -> None:
        """Each frame's subscription topics, decoded once (routing and market discovery both need them)."""
        if len(rec.topics) != len(rec.frames):
            rec.topics = [self.frame_topics(_loads(frame.data)) for frame in rec.frames]

    def split_topic(self, topic: str) -> tuple[str, str]:
        """A topic -> (channel, the venue's market id), e.g. bybit `orderbook.200.BTCUSDT` -> (`orderbook.200`,
        `BTCUSDT`): frames are counted per channel, and the channels of each instrument pick its calls."""
        raise NotImplementedError

    def quote_mode(self, channel: str) -> str | None:
        """The Feed's quote mode (`core/venues.QUOTE_CHANNELS`, `order_book:<depth>`) a recorded channel
        serves, or None when it carries no best bid/ask."""
        return None

    def ccxt_options(self, channels: set[str]) -> dict[str, Any]:
        """ccxt options that make its calls subscribe the channels recorded (binance `aggTrade`)."""
        return {}

    def book_depth(self, channel: str) -> int | None:
        """The `watch_order_book` limit that subscribes a recorded book channel, where ccxt's default channel
        would be another one (bybit `orderbook.200`, ccxt's default 50); None when the channel is not a book
        or ccxt's default subscribes it (okx `books`, binance `depth@100ms`)."""
        return None

    def carries_open_interest(self, channel: str) -> bool:
        """Whether a contract's recorded channel carries its open interest (bybit `tickers`): the open_interest
        stream then reads it there (ccxt 4.5 has no open-interest stream, and a recording no REST polls)."""
        return False

    def ack(self, msg: Any) -> str | None:
        """The venue's answer to a subscription ccxt sent, where ccxt acts on it; None where it does not.

        A recording holds the acks of its own client's subscriptions (ids ccxt did not send), or none at all
        (a session subscribed through its URL): the replay answers ccxt's own, as the venue would."""
        return None

    def recorded_channels(self, rec: Recording) -> dict[tuple[str | None, str], set[str]]:
        """(connection kind, market id upper-cased) -> the channels the recording carries or subscribed."""
        self.index_topics(rec)
        out: dict[tuple[str | None, str], set[str]] = {}
        kinds: dict[str, str | None] = {}
        seen: set[tuple[str, str]] = set()
        for frame, topics in zip(rec.frames, rec.topics, strict=True):
            if topics and (frame.conn, topics[0]) not in seen:
                seen.add((frame.conn, topics[0]))
                if frame.conn not in kinds:
                    kinds[frame.conn] = self.conn_kind(rec, frame.conn)
                channel, market_id = self.split_topic(topics[0])
                out.setdefault((kinds[frame.conn], market_id.upper()), set()).add(channel)
        for conn, raw in rec.sends:
            for topic in self.sent_topics(_loads(raw)):
                channel, market_id = self.split_topic(topic)
                out.setdefault((self.conn_kind(rec, conn), market_id.upper()), set()).add(channel)
        return out

    def quotes_for(self, market: dict[str, Any], channels: set[str], preferred: str) -> str | None:
        """The quote mode for a market from the channels recorded for it: the venue's `preferred` one if it
        was recorded, else a bid/ask channel, a book (the shallowest), a ticker; None if none was."""
        modes = sorted({m for m in (self.quote_mode(c) for c in channels) if m}, key=_depth)
        if preferred in modes:
            return preferred
        for wanted in _QUOTE_PREFERENCE:
            for mode in modes:
                if mode.partition(":")[0] == wanted:
                    return mode
        return None


def _depth(mode: str) -> tuple[str, int]:
    name, _, depth = mode.partition(":")
    return name, int(depth) if depth.isdigit() else 0


def market_kind(market: dict[str, Any]) -> str:
    """The connection kind serving a ccxt market: spot, linear or inverse (what `_url_kind` tells from URLs)."""
    if market.get("spot"):
        return "spot"
    return "inverse" if market.get("inverse") else "linear"


class BybitWire(WireVenue):
    """v5 public: `{"topic": "tickers.BTCUSDT", "type": "snapshot"|"delta", "data": ..., "ts": ...}`."""

    def frame_topics(self, msg: Any) -> list[str]:
        topic = msg.get("topic") if isinstance(msg, dict) else None
        return [topic] if isinstance(topic, str) else []

    def sent_topics(self, msg: Any) -> list[str]:
        args = msg.get("args") if isinstance(msg, dict) and msg.get("op") == "subscribe" else None
        return [a for a in args or [] if isinstance(a, str)]

    def split_topic(self, topic: str) -> tuple[str, str]:
        channel, _, market_id = topic.rpartition(".")
        return channel, market_id

    def quote_mode(self, channel: str) -> str | None:
        if channel == "tickers":
            return "ticker"
        if channel == "orderbook.1":
            return "bids_asks"  # ccxt's watch_bids_asks subscribes the 1-level book
        if channel.startswith("orderbook."):
            return f"order_book:{channel.split('.', 1)[1]}"
        return None

    def carries_open_interest(self, channel: str) -> bool:
        return channel == "tickers"  # linear/inverse tickers: openInterest, openInterestValue

    def book_depth(self, channel: str) -> int | None:
        depth = channel.removeprefix("orderbook.")
        return int(depth) if channel.startswith("orderbook.") and depth.isdigit() and depth != "1" else None

    def conn_kind(self, rec: Recording, conn: str) -> str:
        kind = _url_kind(rec.conn_urls.get(conn))
        if kind:
            return kind
        # a frame log without connect records: contract tickers carry markPrice/fundingRate, spot ones never
        for frame in rec.frames:
            if frame.conn == conn and '"topic":"tickers.' in frame.data.replace(" ", ""):
                return "linear" if "markPrice" in frame.data or "fundingRate" in frame.data else "spot"
        return "linear"

    def instruments(self, rec: Recording) -> dict[str, dict[str, Any]]:
        recorded: dict[tuple[str, str], dict[str, Any]] = {}
        for url, body in rec.http:
            if "instruments-info" in url:
                result = (_loads(body) or {}).get("result") or {}
                for item in result.get("list") or []:
                    recorded[(str(result.get("category")), item["symbol"])] = item
        kinds = {conn: self.conn_kind(rec, conn) for conn in {f.conn for f in rec.frames}}
        out: dict[str, dict[str, Any]] = {}
        for frame, topics in zip(rec.frames, rec.topics, strict=True):
            topic = (topics or [""])[0]
            if "." not in topic:
                continue
            venue_id, kind = topic.rsplit(".", 1)[1], kinds[frame.conn]
            item = recorded.get((kind, venue_id))
            if item is not None:
                base, quote = item["baseCoin"], item["quoteCoin"]
            else:
                base, quote = _split_pair(venue_id)
            settle = {"spot": None, "linear": quote, "inverse": base}.get(kind)
            symbol = f"{base}/{quote}" + (f":{settle}" if settle else "")
            out.setdefault(symbol, {"id": venue_id, "info": item or {}})
        return out


class OkxWire(WireVenue):
    """v5 public: `{"arg": {"channel": "tickers", "instId": "BTC-USDT"}, "data": [...]}`."""

    @staticmethod
    def _topic(arg: Any) -> str | None:
        if not isinstance(arg, dict) or "channel" not in arg:
            return None
        return f"{arg['channel']}:{arg.get('instId') or arg.get('instFamily') or arg.get('instType') or ''}"

    def split_topic(self, topic: str) -> tuple[str, str]:
        channel, _, market_id = topic.partition(":")
        return channel, market_id

    def quote_mode(self, channel: str) -> str | None:
        return {"tickers": "ticker", "bbo-tbt": "bids_asks"}.get(channel)

    def frame_topics(self, msg: Any) -> list[str]:
        if not isinstance(msg, dict) or "data" not in msg:
            return []  # {"event": "subscribe"|"error", ...} acks
        topic = self._topic(msg.get("arg"))
        return [topic] if topic else []

    def sent_topics(self, msg: Any) -> list[str]:
        if not isinstance(msg, dict) or msg.get("op") != "subscribe":
            return []
        return [t for t in (self._topic(a) for a in msg.get("args") or []) if t]

    def instruments(self, rec: Recording) -> dict[str, dict[str, Any]]:
        recorded: dict[str, dict[str, Any]] = {}
        for url, body in rec.http:
            if "/public/instruments" in url:
                for item in (_loads(body) or {}).get("data") or []:
                    recorded[item["instId"]] = item
        out: dict[str, dict[str, Any]] = {}
        for topics in rec.topics:
            inst = topics[0].split(":", 1)[1] if topics else None  # "tickers:BTC-USDT" -> the instId
            if not inst:
                continue
            parts = inst.split("-")
            base, quote = parts[0], parts[1]
            item = recorded.get(inst, {})
            if len(parts) == 2:
                symbol = f"{base}/{quote}"
            else:
                settle = base if quote == "USD" else quote  # okx's USD contracts are coin-margined
                symbol = f"{base}/{quote}:{settle}" + ("" if parts[2] == "SWAP" else f"-{parts[2]}")
            expiry = int(item["expTime"]) if len(parts) == 3 and parts[2] != "SWAP" and item.get("expTime") else None
            spec = {"id": inst, "info": item, "contract_size": float(item.get("ctVal") or 1), "expiry_ms": expiry}
            out.setdefault(symbol, spec)
        return out


class BinanceWire(WireVenue):
    """Raw `{"e": "aggTrade", "s": "BTCUSDT", ...}` or combined `{"stream": "btcusdt@aggTrade", "data": ...}`."""

    def frame_topics(self, msg: Any) -> list[str]:
        if not isinstance(msg, dict):
            return []
        if isinstance(msg.get("stream"), str):
            return [msg["stream"]]
        event, symbol = msg.get("e"), msg.get("s")
        if not isinstance(event, str) or not isinstance(symbol, str):
            return []
        s = symbol.lower()
        if event == "kline":
            return [f"{s}@kline_{msg.get('k', {}).get('i')}"]
        if event == "24hrTicker":
            return [f"{s}@ticker"]
        if event == "markPriceUpdate":
            return [f"{s}@markPrice", f"{s}@markPrice@1s"]
        if event == "depthUpdate":
            return [f"{s}@depth", f"{s}@depth@100ms", f"{s}@depth@500ms"]
        return [f"{s}@{event}"]

    def sent_topics(self, msg: Any) -> list[str]:
        if not isinstance(msg, dict) or msg.get("method") != "SUBSCRIBE":
            return []
        return [p for p in msg.get("params") or [] if isinstance(p, str)]

    def ack(self, msg: Any) -> str | None:
        # `{"result": null, "id": <the request's id>}`: ccxt's order book asks for its REST snapshot on it
        if not isinstance(msg, dict) or msg.get("method") not in ("SUBSCRIBE", "UNSUBSCRIBE") or "id" not in msg:
            return None
        return json.dumps({"result": None, "id": msg["id"]}, separators=(",", ":"))

    def split_topic(self, topic: str) -> tuple[str, str]:
        market_id, _, channel = topic.partition("@")
        return channel, market_id

    def quote_mode(self, channel: str) -> str | None:
        if channel == "bookTicker":
            return "bids_asks"
        return "ticker" if channel in ("miniTicker", "ticker") else None

    def ccxt_options(self, channels: set[str]) -> dict[str, Any]:
        # ccxt's watch_trades subscribes `@trade` unless told `aggTrade`: follow what was recorded
        if "aggTrade" in channels and "trade" not in channels:
            return {"watchTrades": {"name": "aggTrade"}}
        return {}

    def instruments(self, rec: Recording) -> dict[str, dict[str, Any]]:
        recorded: dict[str, dict[str, Any]] = {}
        for url, body in rec.http:
            if "exchangeInfo" in url:
                for item in (_loads(body) or {}).get("symbols") or []:
                    recorded[item["symbol"]] = item
        out: dict[str, dict[str, Any]] = {}
        for frame, topics in zip(rec.frames, rec.topics, strict=True):
            topic = (topics or [""])[0]
            if "@" not in topic:
                continue
            venue_id = topic.split("@")[0].upper()
            kind = _url_kind(rec.conn_urls.get(frame.conn)) or "spot"
            item = recorded.get(venue_id)
            pair, _, suffix = venue_id.partition("_")  # COIN-M `BTCUSD_PERP`, dated `BTCUSDT_220624`
            base, quote = (item["baseAsset"], item["quoteAsset"]) if item else _split_pair(pair)
            settle = {"spot": None, "linear": quote, "inverse": base}.get(kind)
            expiry = suffix if suffix.isdigit() and settle else ""
            symbol = f"{base}/{quote}" + (f":{settle}" if settle else "") + (f"-{expiry}" if expiry else "")
            spec: dict[str, Any] = {"id": venue_id, "info": item or {}}
            if item and item.get("contractSize"):
                spec["contract_size"] = float(item["contractSize"])  # COIN-M: quote units per contract
            if expiry and item and item.get("deliveryDate"):
                spec["expiry_ms"] = int(item["deliveryDate"])
            out.setdefault(symbol, spec)
        return out


class UrlWire(WireVenue):
    """Any venue, for sessions fundarb recorded itself: a frame goes to the client with the recorded URL.

    Works because the replaying ccxt makes the same connections as the recording one did (same ccxt,
    same subscriptions); markets come from the recording's `markets` line.
    """

    route_by_url = True

    def frame_topics(self, msg: Any) -> list[str]:
        return []

    def sent_topics(self, msg: Any) -> list[str]:
        return ["*"]

    def instruments(self, rec: Recording) -> dict[str, dict[str, Any]]:
        raise ValueError(f"replay.path: {rec.path} records no markets; URL routing needs a fundarb recording")

    def split_topic(self, topic: str) -> tuple[str, str]:
        return topic, ""

    def recorded_channels(self, rec: Recording) -> dict[tuple[str | None, str], set[str]]:
        return {}  # the replaying ccxt subscribes as the recording one did: nothing to follow


VENUE_RULES: dict[str, WireVenue] = {
    "bybit": BybitWire(),
    "okx": OkxWire(),
    "binance": BinanceWire(),
    "binanceusdm": BinanceWire(),
}
