"""`SimExchange`: the ccxt.pro face of a simulated venue, built from collaborators that each own one concern.

The clock and subscriptions (`subscriptions.py`), the market data (`market_data.py`), the book (`book.py`),
funding (`funding.py`), the fault plan (`faults.py`) and the private side (`execution.private.PrivateApi`
over `trading.SimMarket`: the account, its orders, fills, funding and liquidations) are made in the
constructor and passed what they need; this class only speaks ccxt: method names, arguments, unified
structures, errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import ccxt
import numpy as np

from ...config import SimConfig
from ...execution.private import PrivateApi, bind_private
from ...execution.protocol import PRIVATE_HAS
from ...execution.tiers import schedule_for, tier_structures
from ...units import HOUR_MS
from .book import MAX_LEVELS, SimBook
from .borrow import SimBorrow
from .draws import iso, keyed_unit
from .faults import FaultPlan
from .funding import Funding
from .market_data import MarketData
from .markets import TRADE_ID_HOUR, Chunk, Market, build_market
from .positioning import Positioning, positioning_has
from .subscriptions import Clock, Subscriptions
from .trading import SimMarket
from .venues import ASSET_INDEX, VENUES
from .world import LazyWorld, World

MAX_LIMIT = 1000
DEFAULT_BALANCE = 100_000.0  # the account's starting cash in the venue's quote currency, unless given
LATENCY_KEY = 9  # the random-stream kind of order latencies

_TIMEFRAMES = {
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "6h": 21600,
    "8h": 28800,
    "12h": 43200,
    "1d": 86400,
}


class SimExchange:
    """A simulated venue with ccxt.pro's method names and ccxt's unified structures (see the package doc)."""

    is_sim = True

    def __init__(
        self,
        exchange_id: str,
        sim: SimConfig,
        symbols: Sequence[str] | None = None,
        *,
        trades_per_s: float | None = None,
        ticker_interval_ms: int = 1000,
        funding_update_ms: int = 3000,
        ohlcv_update_ms: int = 2000,
        batch_limit: int = 1000,
        funding_channel: str = "venue",
        wall_start: float | None = None,
        book_interval_ms: int | None = None,
        balances: Mapping[str, float] | None = None,
    ) -> None:
        if exchange_id not in VENUES:
            raise ValueError(f"exchange_id: unknown sim venue {exchange_id!r}; expected one of {sorted(VENUES)}")
        trades_per_s = sim.trades_per_s if trades_per_s is None else trades_per_s
        book_interval_ms = int(sim.book_interval_s * 1000) if book_interval_ms is None else book_interval_ms
        if not (0 < trades_per_s <= 500):
            raise ValueError(f"trades_per_s: {trades_per_s!r} must be in (0, 500]")
        for name, value in (("ticker_interval_ms", ticker_interval_ms), ("funding_update_ms", funding_update_ms),
                            ("ohlcv_update_ms", ohlcv_update_ms), ("batch_limit", batch_limit),
                            ("book_interval_ms", book_interval_ms)):  # fmt: skip
            if int(value) < 1:
                raise ValueError(f"{name}: {value!r} must be >= 1")
        if funding_channel not in ("venue", "unified"):
            raise ValueError(f"funding_channel: {funding_channel!r}; expected 'venue' or 'unified'")
        if not sim.speed > 0:
            raise ValueError(f"sim.speed: {sim.speed!r} must be > 0")
        self.id = exchange_id
        self.spec = VENUES[exchange_id]
        self.sim = sim
        self.seed = int(sim.seed)
        self.speed = float(sim.speed)
        self.start_ms = sim.start_ms
        self.faults = sim.faults
        self.requested_symbols = tuple(symbols) if symbols else ()
        self.trades_per_s = float(trades_per_s)
        self.ticker_interval_ms = int(ticker_interval_ms)
        self.funding_update_ms = int(funding_update_ms)
        self.ohlcv_update_ms = int(ohlcv_update_ms)
        self.batch_limit = int(batch_limit)
        self.book_interval_ms = int(book_interval_ms)
        self.rateLimit = self.spec.rate_limit
        self.timeframes = {tf: tf for tf in _TIMEFRAMES}
        self.markets: dict[str, dict[str, Any]] = {}
        self.markets_by_id: dict[str, list[dict[str, Any]]] = {}
        self.symbols: list[str] = []
        unified = funding_channel == "unified"
        channel = self.spec.funding_channel
        mark_price = self.spec.facts.mark_price_stream
        # The collaborators, each passed what it needs (the world is built at first use, shared per process).
        self._world = LazyWorld(self.seed, self.start_ms)
        self.borrow = SimBorrow(self.spec, self.seed, self._world)
        self.has: dict[str, Any] = {
            "ws": True,
            "spot": True,
            "swap": True,
            "future": False,
            "option": False,
            "watchTrades": True,
            "watchTicker": True,
            "watchOHLCV": True,
            "watchFundingRate": channel == "funding_rate" or unified,
            "watchMarkPrice": mark_price,
            "fetchMarkets": True,
            "fetchTrades": True,
            "fetchOHLCV": True,
            "fetchTicker": True,
            "fetchFundingRate": True,
            "fetchFundingRates": True,
            "fetchFundingRateHistory": True,
            "unWatchTrades": True,
            "unWatchTicker": True,
            "unWatchOHLCV": True,
            "unWatchFundingRate": channel == "funding_rate" or unified,
            "unWatchMarkPrice": mark_price,
            "fetchOrderBook": True,
            "watchOrderBook": True,
            "unWatchOrderBook": True,
            **positioning_has(self.spec.facts),
            "fetchLeverageTiers": True,
            "fetchMarketLeverageTiers": True,
            **self.borrow.has,
            **PRIVATE_HAS,
        }
        # How this venue delivers funding on its sockets, for consumers that dispatch on it.
        self.funding_via = "funding_rate" if unified else channel
        # Its tickers carry each venue's best bid/ask (the simulator does not model which channel gives them;
        # live and wire replays read `core/venues.py` for that, proven on the recordings).
        self.quotes_via = "ticker"
        self.clock = Clock(self.start_ms, self.speed, sim.now_ms, wall_start)
        self.fault_plan = FaultPlan(sim.faults, self.seed)
        self.funding = Funding(self._world)
        self.data = MarketData(self._world, self.seed, self.trades_per_s, self.funding, self.fault_plan)
        self.positioning = Positioning(self.data, self.seed, self.spec.facts.liquidation_side)
        self.subscriptions = Subscriptions(exchange_id, self.clock, self.data, self.fault_plan, self.positioning)
        # The exact record of what was sent (see the package doc); the collaborators own the counters.
        self.emitted = self.subscriptions.emitted
        self.lost = self.subscriptions.lost
        self.conflated = self.subscriptions.conflated
        self.faults_injected = self.fault_plan.injected
        self.malformed_kinds = self.fault_plan.malformed_kinds
        self._m: dict[str, Market] = {}
        self.book = SimBook(self.data, self.seed)
        self._tiers: dict[str, list[dict[str, Any]]] = {}
        # The private side: one account on this venue, trading against the simulated market.
        self.private = PrivateApi(
            exchange_id,
            lambda: self.markets,
            self.load_markets,
            SimMarket(self._m, self.book, self.funding, self.clock),
            self.leverage_tiers,
            {self.spec.quote: DEFAULT_BALANCE} if balances is None else balances,
            latency=self._latency,
            faults=lambda symbol, seq: self.fault_plan.order_fault(self._m[symbol], seq),
        )
        bind_private(self, self.private)

    # -- clock and plumbing -----------------------------------------------------------------------
    def milliseconds(self) -> int:
        """The virtual clock (epoch ms): sim.start plus wall time elapsed since the clock started, x speed.

        With `sim.now` set the clock stands still there (history of an earlier simulated period)."""
        return self.clock.milliseconds()

    def iso8601(self, ms: int | None) -> str | None:
        return None if ms is None else iso(int(ms))

    def parse_timeframe(self, timeframe: str) -> int:
        try:
            return _TIMEFRAMES[timeframe]
        except KeyError:
            raise ccxt.BadRequest(
                f"timeframe: {timeframe!r} not supported; expected one of {list(_TIMEFRAMES)}"
            ) from None

    @property
    def world(self) -> World:
        return self._world.get()

    async def close(self) -> None:
        self.subscriptions.closed = True

    # -- markets --------------------------------------------------------------------------------------
    async def load_markets(self, reload: bool = False) -> dict[str, dict[str, Any]]:
        self.subscriptions.check_open()
        now = self.milliseconds()  # starts the clock
        if self.markets and not reload:
            return self.markets
        spec = self.spec
        markets: dict[str, dict[str, Any]] = {}
        for swap, assets in ((False, spec.spot_assets), (True, spec.perp_assets)):
            for asset in assets:
                info = self.funding.market_info(spec, ASSET_INDEX[asset], now) if swap else None
                m, market = build_market(spec, asset, swap, info)
                self._m[m.symbol] = m
                markets[market["symbol"]] = market
        self.markets = markets
        self.symbols = sorted(markets)
        self.markets_by_id = {}
        for market in markets.values():
            self.markets_by_id.setdefault(market["id"], []).append(market)
        return markets

    def market(self, symbol: str) -> dict[str, Any]:
        if symbol not in self.markets:
            raise ccxt.BadSymbol(f"symbol: {symbol!r} is not listed by sim exchange {self.id!r}")
        return self.markets[symbol]

    async def _market(self, symbol: str) -> Market:
        self.subscriptions.check_open()
        if not self.markets:
            await self.load_markets()
        self.market(symbol)
        return self._m[symbol]

    async def _require_swap(self, symbol: str) -> Market:
        m = await self._market(symbol)
        if not m.swap:
            raise ccxt.BadSymbol(f"symbol: {symbol!r} is spot on {self.id}; funding exists for perps only")
        return m

    def _perp(self, symbol: str, what: str) -> Market:
        m = self._m[symbol]
        if not m.swap:
            raise ValueError(f"symbol: {symbol!r} is spot; {what} exists for perps only")
        return m

    def _latency(self, seq: int) -> int:
        """One-way latency of the seq-th order: 0.7x to 1.3x the venue's median, keyed by seed and seq."""
        return int(self.spec.order_latency_ms * (0.7 + 0.6 * keyed_unit(self.seed, LATENCY_KEY, self.spec.index, seq)))

    def leverage_tiers(self, symbol: str) -> list[dict[str, Any]]:
        """ccxt's leverage tiers of a perp (`execution.tiers.TIER_SCHEDULES` of this venue)."""
        if symbol not in self._tiers:
            market = self.market(symbol)
            schedule = schedule_for(self.id, market["base"]) if market.get("swap") else None
            if schedule is None:
                raise ccxt.BadRequest(f"symbol: {symbol!r} is not a perp on sim {self.id}; tiers exist for perps")
            self._tiers[symbol] = tier_structures(schedule, symbol, market["settle"], market["id"])
        return self._tiers[symbol]

    # -- sim-only helpers (markets must be loaded) ----------------------------------------------------
    def settled_rate(self, symbol: str, settlement: int) -> float:
        """The settled funding rate of a perp at a settlement time."""
        return self.funding.settled_rate(self._m[symbol], settlement)

    def premium_index(self, symbol: str, since: int, until: int) -> tuple[np.ndarray, np.ndarray]:
        """The premium-index samples (minute marks in [since, until)) funding is computed from."""
        return self.funding.premium_index(self._perp(symbol, "premium index"), since, until)

    def funding_rate_at(self, symbol: str, t: int) -> dict[str, Any]:
        """The funding-rate structure `watch_funding_rate` would send at market time t."""
        return self.funding.structure(self._perp(symbol, "funding"), int(t))

    def funding_intervals(self, symbol: str) -> list[tuple[int | None, float]]:
        """[(valid_from_ms or None, interval_h)]; settlements after valid_from use interval_h."""
        m = self._m[symbol]
        return list(self.funding.spans(m.venue.index, m.a))

    def served_range(self, stream: str, symbol: str) -> tuple[int, int] | None:
        """(first subscription time, time served up to) of a subscription, None before any.

        Every event with first < t <= served-up-to was either sent (counted in `emitted`) or is counted in
        `lost`; `stream` is the counters' name (`ohlcv:<timeframe>` and `mark_price` for those calls).
        """
        return self.subscriptions.served_range(stream, symbol)

    # -- watch ------------------------------------------------------------------------------------------
    async def watch_trades(
        self, symbol: str, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[dict[str, Any]]:
        """New trades since the previous call (all of them, at most `batch_limit` per call), ascending."""
        m = await self._market(symbol)
        faults, subs = self.fault_plan, self.subscriptions
        stale = faults.stale("trades", m)
        while True:
            st, lo, hi = await subs.due(("trades", symbol), "trades", m, 1)
            good: list[dict[str, Any]] = []
            flags: list[tuple[float, float, bool, int, int]] = []
            new_cursor = hi
            last: tuple[Chunk, int] | None = None
            for chunk, hour, idx in self.data.trades_between(m, lo, hi):
                keep = idx[~faults.stale_mask(stale, chunk.ts[idx])] if stale is not None else idx
                room = self.batch_limit - len(good)
                full = keep.size >= room
                keep = keep[:room]
                if keep.size:
                    good.extend(self.data.trades(m, chunk, hour, keep))
                    last = (chunk, int(keep[-1]))
                if chunk.draws is not None:
                    for i in keep.tolist():
                        d0, d1 = chunk.draws[i, :2].tolist()
                        pair = faults.swaps_with_next(chunk, i)
                        flags.append((d0, d1, pair, int(chunk.bad_kind[i]), hour * TRADE_ID_HOUR + i))
                if full:
                    # The batch is full: the next call continues right after the last trade sent.
                    new_cursor = int(chunk.ts[keep[-1]])
                    break
            if last is not None and faults.holds_back(m, stale, lo, *last):
                # Its out-of-order partner is not due yet: send the pair together, swapped, next time.
                chunk, k = last
                good.pop()
                flags.pop()
                new_cursor = int(chunk.ts[k]) - 1
                if not good:
                    await self.clock.wait_until(int(chunk.ts[k + 1]))
                    continue
            subs.account_stale("trades", m, lo, new_cursor, 1)
            st.cursor = new_cursor
            subs.emitted[("trades", symbol)] += len(good)
            return faults.apply_to_trades(m, good, flags)

    async def _watch_state(self, stream: str, method: str, symbol: str, grid: int, build: Any) -> Any:
        """One message of a latest-state stream (ticker, funding): pending injected ones first."""
        m = await self._market(symbol)
        key = (stream, symbol) if method == stream else (method, symbol)
        st = self.subscriptions.stream(key)
        if st.pending:
            await asyncio.sleep(0)
        if st.pending:  # re-checked: another caller of the same stream (bybit tickers + funding) may have taken it
            kind, label, message = st.pending.popleft()
            self.fault_plan.record(kind, stream, symbol, label)
            return message
        st, t = await self.subscriptions.due_latest(key, stream, m, grid)
        message = build(m, t)
        self.subscriptions.emitted[(stream, symbol)] += 1
        self.fault_plan.queue_state_faults(stream, m, st.pending, st.last_msg, message, t)
        st.last_msg = message
        return message

    async def watch_ticker(self, symbol: str, params: dict | None = None) -> dict[str, Any]:
        """The latest ticker (bybit/hyperliquid perps carry their funding fields in `info`)."""
        return await self._watch_state("tickers", "tickers", symbol, self.ticker_interval_ms, self.data.ticker)

    async def watch_funding_rate(self, symbol: str, params: dict | None = None) -> dict[str, Any]:
        """The current (predicted) funding-rate structure of a perp; works on every sim venue."""
        await self._require_swap(symbol)
        return await self._watch_state("funding", "funding", symbol, self.funding_update_ms, self.funding.structure)

    async def watch_order_book(
        self, symbol: str, limit: int | None = None, params: dict | None = None
    ) -> dict[str, Any]:
        """The latest L2 book (`book.py`), top `limit` levels per side; it changes every `book_interval_ms`."""
        n = self._book_limit(limit)
        return await self._watch_state(
            "order_book", "order_book", symbol, self.book_interval_ms, lambda m, t: self.book.structure(m, t, n)
        )

    async def watch_liquidations(
        self, symbol: str, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[dict[str, Any]]:
        """New liquidation prints of a perp since the previous call (`positioning.py`), ascending."""
        if not self.has["watchLiquidations"]:
            raise ccxt.NotSupported(f"sim {self.id}: watch_liquidations is not supported, like the real venue")
        m = await self._require_swap(symbol)
        stale = self.fault_plan.stale("liquidations", m)
        while True:
            st, lo, hi = await self.subscriptions.due(("liquidations", symbol), "liquidations", m, 1)
            rows = [
                r
                for r in self.positioning.between(m, lo, hi)
                if self.fault_plan.stale_end(stale, r["timestamp"]) is None
            ]
            self.subscriptions.account_stale("liquidations", m, lo, hi, 1)
            st.cursor = hi
            if rows:
                self.subscriptions.emitted[("liquidations", symbol)] += len(rows)
                return rows

    async def watch_mark_price(self, symbol: str, params: dict | None = None) -> dict[str, Any]:
        """binance's markPrice stream: a ticker with markPrice/indexPrice and info r (rate), T (next time)."""
        if not self.has["watchMarkPrice"]:
            raise ccxt.NotSupported(f"sim {self.id}: watch_mark_price is not supported, like the real venue")
        await self._require_swap(symbol)
        return await self._watch_state(
            "funding", "mark_price", symbol, self.funding_update_ms, self.funding.mark_price_structure
        )

    async def watch_ohlcv(
        self,
        symbol: str,
        timeframe: str = "1m",
        since: int | None = None,
        limit: int | None = None,
        params: dict | None = None,
    ) -> list[list[float]]:
        """Candles updated since the previous call: closed ones (final) first, then the current one."""
        tf_ms = self.parse_timeframe(timeframe) * 1000
        m = await self._market(symbol)
        key = ("ohlcv", symbol) if timeframe == "1m" else (f"ohlcv:{timeframe}", symbol)
        st, t = await self.subscriptions.due_latest(key, "ohlcv", m, self.ohlcv_update_ms)
        bucket = t // tf_ms * tf_ms
        rows: list[list[float]] = []
        if st.ohlcv_bucket is not None and st.ohlcv_bucket < bucket:
            # The bucket we were updating closed: send its final state (as the venue's last update would).
            stale = self.fault_plan.stale("ohlcv", m)
            first = max(st.ohlcv_bucket, bucket - MAX_LIMIT * tf_ms)
            for b in range(first, bucket, tf_ms):
                if self.fault_plan.stale_end(stale, b + tf_ms - 1) is None:
                    rows.append(self.data.candle(m, tf_ms, b, b + tf_ms - 1))
        rows.append(self.data.candle(m, tf_ms, bucket, t))
        st.ohlcv_bucket = bucket
        if limit:
            rows = rows[-int(limit) :]
        self.subscriptions.emitted[("ohlcv", symbol)] += len(rows)
        # An out-of-order row re-sends a candle closed by an earlier call (one closed in this very batch would
        # only be a duplicate of its final row), so the faults see the last closed candle before this batch.
        closed_now = rows[-2] if len(rows) > 1 else None
        self.fault_plan.apply_to_candles(m, st.last_closed, rows, t)
        if closed_now is not None:
            st.last_closed = closed_now
        return rows

    # -- unwatch ----------------------------------------------------------------------------------------
    async def un_watch_trades(self, symbol: str, params: dict | None = None) -> None:
        self.subscriptions.unwatch(("trades", symbol))

    async def un_watch_ticker(self, symbol: str, params: dict | None = None) -> None:
        self.subscriptions.unwatch(("tickers", symbol))

    async def un_watch_ohlcv(self, symbol: str, timeframe: str = "1m", params: dict | None = None) -> None:
        self.subscriptions.unwatch(("ohlcv", symbol) if timeframe == "1m" else (f"ohlcv:{timeframe}", symbol))

    async def un_watch_funding_rate(self, symbol: str, params: dict | None = None) -> None:
        self.subscriptions.unwatch(("funding", symbol))

    async def un_watch_mark_price(self, symbol: str, params: dict | None = None) -> None:
        self.subscriptions.unwatch(("mark_price", symbol))

    async def un_watch_order_book(self, symbol: str, params: dict | None = None) -> None:
        self.subscriptions.unwatch(("order_book", symbol))

    async def un_watch_liquidations(self, symbol: str, params: dict | None = None) -> None:
        self.subscriptions.unwatch(("liquidations", symbol))

    # -- history ----------------------------------------------------------------------------------------
    def _range(self, since: int | None, until: int | None, now: int) -> tuple[int, int]:
        lo = self.world.origin_ms if since is None else max(int(since), self.world.origin_ms)
        hi = now if until is None else min(int(until), now)
        return lo, hi

    @staticmethod
    def _limit(limit: int | None) -> int:
        if limit is None:
            return MAX_LIMIT
        if int(limit) < 1:
            raise ccxt.BadRequest(f"limit: {limit!r} must be >= 1")
        return min(int(limit), MAX_LIMIT)

    async def fetch_trades(
        self, symbol: str, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[dict[str, Any]]:
        """Trades with since <= ts <= until (until defaults to now), ascending, at most `limit` (<= 1000).

        Without `since`: the latest `limit` trades up to now.
        """
        m = await self._market(symbol)
        await asyncio.sleep(0)
        now = self.milliseconds()
        n = self._limit(limit)
        lo, hi = self._range(since, (params or {}).get("until"), now)
        out: list[dict[str, Any]] = []
        if hi < lo:
            return out
        if since is None:
            hour = hi // HOUR_MS
            while hour * HOUR_MS + HOUR_MS > lo and len(out) < n:
                chunk = self.data.chunk(m, hour)
                j = int(np.searchsorted(chunk.ts, hi, side="right"))
                i = max(int(np.searchsorted(chunk.ts, lo, side="left")), j - (n - len(out)))
                out = self.data.trades(m, chunk, hour, np.arange(i, j)) + out
                hour -= 1
            return out
        for chunk, hour, idx in self.data.trades_between(m, lo - 1, hi):
            out.extend(self.data.trades(m, chunk, hour, idx[: n - len(out)]))
            if len(out) >= n:
                return out
        return out

    async def fetch_ohlcv(
        self,
        symbol: str,
        timeframe: str = "1m",
        since: int | None = None,
        limit: int | None = None,
        params: dict | None = None,
    ) -> list[list[float]]:
        """Candles whose open time is in [since, until], at most `limit` (<= 1000); the current one is partial.

        Without `since`: the latest `limit` candles up to now.
        """
        tf_ms = self.parse_timeframe(timeframe) * 1000
        m = await self._market(symbol)
        await asyncio.sleep(0)
        now = self.milliseconds()
        n = self._limit(limit)
        origin = self.world.origin_ms
        until = (params or {}).get("until")
        last_bucket = min(now, int(until)) // tf_ms * tf_ms if until is not None else now // tf_ms * tf_ms
        if since is None:
            first = max(last_bucket - (n - 1) * tf_ms, -(-origin // tf_ms) * tf_ms)
        else:
            first = -(-max(int(since), origin) // tf_ms) * tf_ms
        out = []
        bucket = first
        while bucket <= last_bucket and len(out) < n:
            out.append(self.data.candle(m, tf_ms, bucket, min(bucket + tf_ms - 1, now)))
            bucket += tf_ms
        return out

    async def fetch_funding_rate_history(
        self, symbol: str, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[dict[str, Any]]:
        """Settled rates with since <= fundingTime <= until (until defaults to now), ascending, <= 1000.

        Without `since`: the latest `limit` settlements. `info` carries fundingIntervalHours and markPrice.
        """
        m = await self._require_swap(symbol)
        await asyncio.sleep(0)
        now = self.milliseconds()
        n = self._limit(limit)
        lo, hi = self._range(since, (params or {}).get("until"), now)
        # The first interval must lie after the origin: premium samples exist only from there.
        lo = max(lo, self.world.origin_ms + 8 * HOUR_MS)
        if hi < lo:
            return []
        times = self.funding.settlement_times(m, lo, hi, n, latest=since is None)
        return [self.funding.history_row(m, t) for t in times]

    async def fetch_funding_rate(self, symbol: str, params: dict | None = None) -> dict[str, Any]:
        m = await self._require_swap(symbol)
        await asyncio.sleep(0)
        return self.funding.structure(m, self.milliseconds())

    async def fetch_funding_rates(
        self, symbols: Sequence[str] | None = None, params: dict | None = None
    ) -> dict[str, dict[str, Any]]:
        if not self.markets:
            await self.load_markets()
        wanted = list(symbols) if symbols else [s for s in (self.requested_symbols or self.symbols) if ":" in s]
        return {s: await self.fetch_funding_rate(s) for s in wanted}

    # -- spot-margin borrow rates -------------------------------------------------------------------------
    def _lent(self, code: str) -> str:
        if not self.borrow.lends:
            raise ccxt.NotSupported(f"sim {self.id}: no spot-margin borrowing, like the real venue")
        if code not in self.borrow.currencies:
            raise ccxt.BadRequest(f"code: {code!r} is not lent on sim {self.id}; expected one of "
                                  f"{list(self.borrow.currencies)}")  # fmt: skip
        return code

    async def fetch_borrow_rate(self, code: str, amount: float, params: dict | None = None) -> dict[str, Any]:
        """Deprecated in ccxt (its base class raises this for every venue): use fetch_cross_borrow_rate."""
        raise ccxt.NotSupported(
            f"{self.id} fetchBorrowRate is deprecated, please use fetchCrossBorrowRate or fetchIsolatedBorrowRate"
        )

    async def fetch_cross_borrow_rate(self, code: str, params: dict | None = None) -> dict[str, Any]:
        """The cross-margin borrow rate of `code` in force now (`borrow.py`)."""
        self.subscriptions.check_open()
        await asyncio.sleep(0)
        return self.borrow.structure(self._lent(code), self.milliseconds() // HOUR_MS)

    async def fetch_cross_borrow_rates(self, params: dict | None = None) -> dict[str, dict[str, Any]]:
        """Every lent currency's rate in force now, by currency code."""
        if not self.borrow.lends:
            self._lent("")
        hour = self.milliseconds() // HOUR_MS
        await asyncio.sleep(0)
        return {code: self.borrow.structure(code, hour) for code in self.borrow.currencies}

    async def fetch_borrow_rate_history(
        self, code: str, since: int | None = None, limit: int | None = None, params: dict | None = None
    ) -> list[dict[str, Any]]:
        """Hourly rates published with since <= timestamp <= until (until defaults to now), ascending, at most
        `limit` (<= 1000). Without `since`: the latest `limit`."""
        self.subscriptions.check_open()
        self._lent(code)
        await asyncio.sleep(0)
        n = self._limit(limit)
        lo, hi = self._range(since, (params or {}).get("until"), self.milliseconds())
        first, last = -(-lo // HOUR_MS), hi // HOUR_MS
        if since is None:
            first = max(first, last - n + 1)
        return [self.borrow.structure(code, h) for h in range(first, min(last, first + n - 1) + 1)]

    @staticmethod
    def _book_limit(limit: int | None) -> int:
        if limit is None:
            return MAX_LEVELS
        if int(limit) < 1:
            raise ccxt.BadRequest(f"limit: {limit!r} must be >= 1")
        return min(int(limit), MAX_LEVELS)

    async def fetch_order_book(
        self, symbol: str, limit: int | None = None, params: dict | None = None
    ) -> dict[str, Any]:
        """The L2 book now: the ticker's best bid and ask, then up to `limit` levels per side (<= 50)."""
        m = await self._market(symbol)
        await asyncio.sleep(0)
        return self.book.structure(m, self.milliseconds(), self._book_limit(limit))

    async def fetch_open_interest(self, symbol: str, params: dict | None = None) -> dict[str, Any]:
        """ccxt's open-interest structure of a perp now (`positioning.py`)."""
        m = await self._require_swap(symbol)
        await asyncio.sleep(0)
        self.subscriptions.emitted[("open_interest", symbol)] += 1
        return self.positioning.open_interest(m, self.milliseconds())

    async def fetch_ticker(self, symbol: str, params: dict | None = None) -> dict[str, Any]:
        m = await self._market(symbol)
        await asyncio.sleep(0)
        return self.data.ticker(m, self.milliseconds())
