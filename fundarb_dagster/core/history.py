"""Pull REST history (OHLCV, settled funding, trades) for the configured symbols into the landing zone.

    counts = pull_history(config, since_ms, until_ms, streams=("ohlcv", "funding"))

For each configured exchange: open it with the configured source kind (`sources.open_exchange`: live ccxt,
the simulator, a replay), load markets, check the configured symbols are listed, register them in the data
folder's instrument registry (kept stable across runs), then run `Feed.history` for every (symbol, stream)
concurrently. Funding is pulled only for perpetuals. Batches are landed with `landing.write_stream` as
`history-<exchange>-<seq>.parquet` files, buffered per (exchange, stream) so a file holds many symbols'
rows of one hour (not one tiny file per symbol and hour). Quarantined rows are landed as capture_events.
The registry (with the funding intervals the pull observed) is saved at the end.

Re-running the same window lands the same rows again under a new sequence number; the warehouse's raw
tables deduplicate on the natural keys, so a repeated pull is harmless.

The warehouse's own exchange I/O lives here too, so its assets stay thin: `fetch_settled_funding` (the
`funding_history` asset: settled funding of a window through the same Feed) and `load_perp_markets` (the
`funding_intervals` asset: markets for published intervals and caps).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from . import landing, schema
from .borrow import BORROW_ROW_COLUMNS, borrow_rows
from .config import FundarbConfig, check_symbols
from .instruments import InstrumentRegistry, registry_path
from .leverage_tiers import empty_tiers, tier_rows
from .sources import open_exchange
from .sources.feed import Feed

HISTORY_STREAMS = ("ohlcv", "funding", "trades")
FLUSH_ROWS = 500_000  # land a stream's buffer once it holds this many rows (bounded memory for long pulls)
PROGRESS_EVERY_S = 2.0


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


class _Lander:
    """Buffers one exchange's batches per stream and lands them in hour-partitioned files."""

    def __init__(self, data_dir: str, writer: str, registry: InstrumentRegistry) -> None:
        self.data_dir = data_dir
        self.writer = writer
        self.registry = registry
        self.buffers: dict[str, list[np.ndarray]] = defaultdict(list)
        self.buffered: dict[str, int] = defaultdict(int)
        self.landed: dict[str, int] = defaultdict(int)

    def add(self, stream: str, records: np.ndarray) -> None:
        if not len(records):
            return
        self.buffers[stream].append(records)
        self.buffered[stream] += len(records)
        if self.buffered[stream] >= FLUSH_ROWS:
            self.flush(stream)

    def flush(self, stream: str | None = None) -> None:
        for name in [stream] if stream else list(self.buffers):
            parts = self.buffers.pop(name, [])
            self.buffered[name] = 0
            if not parts:
                continue
            records = np.concatenate(parts)
            table = schema.to_arrow(name, records, self.registry.names())
            # synchronous between awaits: no other task of this writer can take the same sequence number
            seq = landing.next_seq(self.data_dir, self.writer)
            landing.write_stream(self.data_dir, name, table, writer=self.writer, seq=seq)
            self.landed[name] += len(records)


async def pull_history_async(
    config: FundarbConfig,
    since_ms: int,
    until_ms: int,
    *,
    streams: Sequence[str] = ("ohlcv", "funding"),
    progress: Callable[[str], None] | None = print,
) -> dict[str, int]:
    """The async body of `pull_history` (for callers already inside an event loop)."""
    if until_ms <= since_ms:
        raise ValueError(f"until_ms: {until_ms} must be after since_ms {since_ms}")
    for stream in streams:
        if stream not in HISTORY_STREAMS:
            raise ValueError(f"streams: {stream!r} has no REST history; expected some of {list(HISTORY_STREAMS)}")
    data_dir = config.data_dir
    path = registry_path(data_dir)
    registry = InstrumentRegistry.load(path)
    say = progress or (lambda _message: None)
    started = time.monotonic()
    say(f"history {_iso(since_ms)} .. {_iso(until_ms)}: {len(config.exchanges)} exchanges, streams {list(streams)}")

    opened: list[Any] = []
    feeds: list[tuple[Feed, list[tuple[str, str]]]] = []
    landers: dict[str, _Lander] = {}
    try:
        for exchange_config in config.exchanges:
            exchange = open_exchange(config, exchange_config.id)
            opened.append(exchange)
            markets = await exchange.load_markets()
            check_symbols(config, exchange_config.id, markets)
            registry.add_markets(exchange_config.id, markets, list(exchange_config.symbols))
            feed = Feed(
                exchange,
                registry,
                funding_poll_interval_s=config.live.funding_poll_interval_s,
                ohlcv_timeframe=config.capture.ohlcv_timeframe,
                max_backoff_s=config.live.reconnect_max_backoff_s,
            )
            jobs = [
                (stream, symbol)
                for symbol in exchange_config.symbols
                for stream in streams
                if not (stream == "funding" and ":" not in symbol)  # funding exists for perpetuals only
            ]
            feeds.append((feed, jobs))
            landers[feed.exchange_id] = _Lander(data_dir, f"history-{feed.exchange_id}", registry)
        registry.save(path)  # ids are fixed before any file names them
        done = asyncio.Event()

        async def run(feed: Feed, stream: str, symbol: str) -> None:
            lander = landers[feed.exchange_id]
            async for batch in feed.history(stream, symbol, since_ms, until_ms):
                lander.add(stream, batch.records)
                lander.add("capture_events", batch.events)

        async def report() -> None:
            while not done.is_set():
                try:
                    await asyncio.wait_for(done.wait(), timeout=PROGRESS_EVERY_S)
                except TimeoutError:
                    say(_progress_line(feeds, started))

        reporter = asyncio.ensure_future(report())
        try:
            await asyncio.gather(*(run(feed, stream, symbol) for feed, jobs in feeds for stream, symbol in jobs))
        finally:
            done.set()
            await reporter
        for lander in landers.values():
            lander.flush()
    finally:
        for exchange in opened:
            await exchange.close()
    registry.save(path)  # with the funding intervals observed

    totals: dict[str, int] = {stream: 0 for stream in streams}
    for lander in landers.values():
        for stream, rows in lander.landed.items():
            totals[stream] = totals.get(stream, 0) + rows
    for feed, jobs in feeds:
        per = {s: sum(p.rows for (st, _), p in feed.progress.items() if st == s) for s in streams}
        say(f"  {feed.exchange_id}: " + ", ".join(f"{s} {n:,} rows" for s, n in per.items()) + f" ({len(jobs)} jobs)")
    say(f"history done in {time.monotonic() - started:.1f} s: " + ", ".join(f"{s} {n:,}" for s, n in totals.items()))
    return totals


def _progress_line(feeds: list[tuple[Feed, list[tuple[str, str]]]], started: float) -> str:
    progresses = [p for feed, _ in feeds for p in feed.progress.values()]
    jobs = sum(len(j) for _, j in feeds)
    finished = sum(p.done for p in progresses)
    rows = sum(p.rows for p in progresses)
    fraction = sum(p.fraction for p in progresses) / max(jobs, 1)
    elapsed = time.monotonic() - started
    return f"  {fraction:5.1%} of the window, {finished}/{jobs} jobs done, {rows:,} rows, {elapsed:.0f} s"


def pull_history(
    config: FundarbConfig,
    since_ms: int,
    until_ms: int,
    *,
    streams: Sequence[str] = ("ohlcv", "funding"),
    progress: Callable[[str], None] | None = print,
) -> dict[str, int]:
    """Pull [since_ms, until_ms) of REST history for every configured symbol into the landing zone.

    Returns the rows landed per stream (plus `capture_events` when rows were quarantined). Prints progress
    through `progress` (None: silent).
    """
    return asyncio.run(pull_history_async(config, since_ms, until_ms, streams=streams, progress=progress))


# -- settled funding and markets for the warehouse --------------------------------------------------------
SETTLED_COLUMNS = ["exchange", "symbol", "funding_ts_ms", "funding_rate", "interval_h", "mark_price"]


@dataclass
class SettledFunding:
    """What `fetch_settled_funding` got: the rows, and what went wrong without stopping the rest."""

    rows: pd.DataFrame  # SETTLED_COLUMNS, funding_ts_ms in [start_ms, end_ms)
    quarantined: int = 0  # entries the validator rejected
    errors: dict[str, str] = field(default_factory=dict)  # "<exchange> <symbol>" -> error
    skipped: list[str] = field(default_factory=list)  # exchanges whose source has no fetchFundingRateHistory
    per_exchange: dict[str, tuple[int, int]] = field(default_factory=dict)  # exchange -> (rows, quarantined)


def perp_symbols(symbols: Sequence[str]) -> list[str]:
    """The perpetuals among ccxt unified symbols (`BTC/USDT:USDT` has a settle currency, spot has none)."""
    return [s for s in symbols if ":" in s]


async def fetch_settlements(
    exchange: Any, symbols: list[str], start_ms: int, end_ms: int, history_limit: int
) -> tuple[pd.DataFrame, int, dict[str, str]]:
    """Settled funding of [start_ms, end_ms) per symbol through the Feed (paginated, retried, validated).

    Returns the rows, how many entries the validator quarantined, and an error per symbol that failed (one
    failing symbol must not lose the others). Closes the exchange.
    """
    frames: list[pd.DataFrame] = []
    quarantined = 0
    errors: dict[str, str] = {}
    try:
        markets = await exchange.load_markets()
        registry = InstrumentRegistry()
        listed = [s for s in symbols if s in markets]
        errors.update({s: "not listed by the exchange" for s in symbols if s not in markets})
        registry.add_markets(exchange.id, markets, listed)
        feed = Feed(exchange, registry, history_limit=history_limit)
        for symbol in listed:
            try:
                async for batch in feed.history("funding", symbol, start_ms, end_ms):
                    records = batch.records
                    kinds = batch.events["kind"] == int(schema.EventKind.QUARANTINED)
                    quarantined += int(batch.events["count"][kinds].sum())
                    if len(records):
                        frames.append(
                            pd.DataFrame(
                                {
                                    "exchange": exchange.id,
                                    "symbol": symbol,
                                    "funding_ts_ms": records["funding_ts_ms"],
                                    "funding_rate": records["funding_rate"],
                                    "interval_h": records["interval_h"],
                                    "mark_price": records["mark_price"],
                                }
                            )
                        )
            except Exception as exc:  # noqa: BLE001 - one failing symbol must not lose the others
                errors[symbol] = f"{type(exc).__name__}: {exc}"
    finally:
        await exchange.close()
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SETTLED_COLUMNS)
    rows = rows[(rows["funding_ts_ms"] >= start_ms) & (rows["funding_ts_ms"] < end_ms)]
    return rows, quarantined, errors


def fetch_settled_funding(config: FundarbConfig, start_ms: int, end_ms: int, page_limit: int = 1000) -> SettledFunding:
    """Settled funding of [start_ms, end_ms) for every configured perp whose exchange captures funding, from
    the configured source (`fetch_funding_rate_history`, `page_limit` entries per call)."""
    frames: list[pd.DataFrame] = []
    out = SettledFunding(pd.DataFrame(columns=SETTLED_COLUMNS))
    for exchange_config in config.exchanges:
        perps = perp_symbols(exchange_config.symbols)
        if not perps or "funding" not in exchange_config.streams:
            continue
        exchange = open_exchange(config, exchange_config.id)
        if not exchange.has.get("fetchFundingRateHistory"):
            out.skipped.append(exchange_config.id)
            asyncio.run(exchange.close())
            continue
        got, bad, failed = asyncio.run(fetch_settlements(exchange, perps, start_ms, end_ms, page_limit))
        frames.append(got)
        out.quarantined += bad
        out.errors.update({f"{exchange_config.id} {s}": e for s, e in failed.items()})
        out.per_exchange[exchange_config.id] = (len(got), bad)
    if any(len(f) for f in frames):
        out.rows = pd.concat([f for f in frames if len(f)], ignore_index=True)
    out.rows["funding_ts_ms"] = out.rows["funding_ts_ms"].astype("int64")
    return out


def _each_perp_exchange(
    config: FundarbConfig, work: Callable[[Any, list[str]], Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """`await work(exchange, perps)` on each configured exchange with perps (opened from the configured source,
    closed after): the results per exchange, and an error per exchange where it failed (one skips one)."""
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for exchange_config in config.exchanges:
        perps = perp_symbols(exchange_config.symbols)
        if not perps:
            continue
        try:
            exchange = open_exchange(config, exchange_config.id)

            async def run(ex: Any = exchange, symbols: list[str] = perps) -> Any:
                try:
                    await ex.load_markets()
                    return await work(ex, symbols)
                finally:
                    await ex.close()

            results[exchange_config.id] = asyncio.run(run())
        except Exception as exc:  # noqa: BLE001
            errors[exchange_config.id] = f"{type(exc).__name__}: {exc}"
    return results, errors


def load_perp_markets(config: FundarbConfig) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The ccxt market of every configured perp, per exchange, from the configured source; and an error per
    exchange whose markets could not be loaded (market info is optional evidence: one failure skips one)."""

    async def markets(ex: Any, perps: list[str]) -> dict[str, Any]:
        return {s: ex.markets[s] for s in perps if ex.markets.get(s)}

    return _each_perp_exchange(config, markets)


def fetch_leverage_tiers(config: FundarbConfig) -> tuple[pd.DataFrame, dict[str, str], int | None]:
    """Every configured perp's leverage tiers now (`fetch_leverage_tiers`, ccxt's structures -> rows of
    `leverage_tiers.tier_rows`), an error per exchange that has none or failed (one failure skips one), and
    the source's clock when they were fetched (the sim's virtual time; wall time live)."""

    async def tiers(ex: Any, perps: list[str]) -> tuple[dict[str, Any], int]:
        if not (getattr(ex, "has", None) or {}).get("fetchLeverageTiers"):
            raise NotImplementedError(f"{ex.id}: no fetch_leverage_tiers on this source")
        served = await ex.fetch_leverage_tiers(perps)  # a venue may answer for every market it lists
        return {s: rows for s, rows in served.items() if s in perps}, int(ex.milliseconds())

    fetched, errors = _each_perp_exchange(config, tiers)
    frames = [tier_rows(exchange, s, rows) for exchange, (by_symbol, _) in fetched.items()
              for s, rows in by_symbol.items() if rows]  # fmt: skip
    now_ms = max((now for _, now in fetched.values()), default=None)
    columns = [c for c in empty_tiers().columns if not c.startswith("valid_")]
    return (pd.concat(frames, ignore_index=True) if frames else empty_tiers()[columns]), errors, now_ms


# -- spot borrow rates ------------------------------------------------------------------------------------
@dataclass
class BorrowHistory:
    """What `fetch_borrow_history` got: the rows (`borrow.BORROW_ROW_COLUMNS`) and what went wrong."""

    rows: pd.DataFrame
    errors: dict[str, str] = field(default_factory=dict)  # "<exchange> <currency>" or "<exchange>" -> error
    skipped: list[str] = field(default_factory=list)  # exchanges whose source has no fetchBorrowRateHistory
    per_exchange: dict[str, int] = field(default_factory=dict)  # exchange -> rows


def borrowed_currencies(symbols: Sequence[str]) -> list[str]:
    """The currencies a reverse carry borrows: the bases of the configured spot symbols (`BTC/USDT` -> BTC)."""
    return sorted({s.split("/")[0] for s in symbols if ":" not in s and "/" in s})


async def fetch_borrow_pages(exchange: Any, code: str, start_ms: int, end_ms: int, page_limit: int) -> list[dict]:
    """`fetch_borrow_rate_history` of [start_ms, end_ms) page by page (each page from after the last entry)."""
    out: list[dict] = []
    since = start_ms
    while since < end_ms:
        page = await exchange.fetch_borrow_rate_history(code, since, page_limit, {"until": end_ms - 1})
        page = [e for e in page if e.get("timestamp") is not None and since <= e["timestamp"] < end_ms]
        if not page:
            break
        out.extend(page)
        since = max(int(e["timestamp"]) for e in page) + 1
    return out


def fetch_borrow_history(config: FundarbConfig, start_ms: int, end_ms: int, page_limit: int = 500) -> BorrowHistory:
    """Spot borrow rates of [start_ms, end_ms) for the bases of every configured spot symbol, from the
    configured source's `fetch_borrow_rate_history` where its `has` says it exists (sim venues that lend, live
    venues whose ccxt class has it; a replay has no borrow recordings): skipped elsewhere, and one failing
    currency skips only itself."""
    frames: list[pd.DataFrame] = []
    out = BorrowHistory(pd.DataFrame(columns=BORROW_ROW_COLUMNS))
    for exchange_config in config.exchanges:
        codes = borrowed_currencies(exchange_config.symbols)
        if not codes:
            continue
        exchange = open_exchange(config, exchange_config.id)
        if not (getattr(exchange, "has", None) or {}).get("fetchBorrowRateHistory"):
            out.skipped.append(exchange_config.id)
            asyncio.run(exchange.close())
            continue

        async def run(ex: Any = exchange, wanted: list[str] = codes) -> tuple[list[pd.DataFrame], dict[str, str]]:
            got, failed = [], {}
            try:
                await ex.load_markets()
                for code in wanted:
                    try:
                        got.append(borrow_rows(ex.id, await fetch_borrow_pages(ex, code, start_ms, end_ms, page_limit)))
                    except Exception as exc:  # noqa: BLE001 - one failing currency must not lose the others
                        failed[code] = f"{type(exc).__name__}: {exc}"
            finally:
                await ex.close()
            return got, failed

        got, failed = asyncio.run(run())
        frames += [f for f in got if len(f)]
        out.errors.update({f"{exchange_config.id} {c}": e for c, e in failed.items()})
        out.per_exchange[exchange_config.id] = sum(len(f) for f in got)
    if frames:
        out.rows = pd.concat(frames, ignore_index=True)
    return out
