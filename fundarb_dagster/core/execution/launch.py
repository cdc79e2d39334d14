"""`fundarb trade`: everything checked, then the venues opened, the state recovered, and the loop run.

Order of things (each step refuses with one line naming the field or argument, exit 2, before any order):
the config and the trade section; the data folder; the trader's lock (`<data_dir>/.fundarb/trade/<name>.lock`:
one process per trader name; `--flatten` while one runs asks it to flatten through its kill-switch file
instead); the venues (`VENUE_FACTORIES`: sim, paper, live) and their markets; the strategy's pairs on them. Then
recovery (what it finds is said), and the loop until the duration, the end time or SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config import TRADE_VENUES, ConfigError, FundarbConfig, validate_trade
from ..process_lock import LockBusy, ProcessLock, holder_of, started_text
from ..warehouse import warehouse_target
from . import run_record
from .clocks import SteppedClock, TraderClock, VenueClock
from .gateway import Gateway
from .ledger import Ledger, landed_files
from .recovery import recover
from .targets import one_bar_panel, pair_set, pair_specs
from .trader import Trader, control_dir, flatten_file

PAPER_CATCH_UP_S = 10.0  # the end of a paper run: how long (wall) to wait for its funding streams to reach the clock
FLATTEN_WAIT_S = 120.0  # `--flatten`: how long (wall) to wait for every pair to be flat


def lock_path(data_dir: str | Path, name: str) -> Path:
    return control_dir(data_dir) / f"{name}.lock"


def _describe(holder: dict[str, Any], path: Path) -> str:
    name = path.stem
    if not holder:
        return f"trade.name: trader {name!r} is running (lock {path})"
    return (
        f"trade.name: trader {name!r} is running with pid {holder.get('pid')} on {holder.get('host')} "
        f"(started {started_text(holder)}); stop it, or `fundarb trade --flatten` to make it flatten"
    )


def journaled(data_dir: str | Path, name: str) -> bool:
    """Whether trader `name` has landed orders in this data folder (a journal its next start recovers)."""
    return bool(landed_files(data_dir, "orders", f"trader-{name}"))


def trader_holder(data_dir: str | Path, name: str) -> str | None:
    return holder_of(lock_path(data_dir, name), _describe)


@dataclass(frozen=True)
class TradeRun:
    """What `fundarb trade` was asked (the command line over the config)."""

    venue: str = "sim"
    duration_s: float | None = None  # wall seconds
    until_ms: int | None = None  # on the venue's clock
    flatten: bool = False
    reduce_only: bool = False
    dry_run: bool | None = None  # False (--send-orders) with trade.dry_run false sends live orders; else dry
    venue_socket: str = ""  # sim: a venue server's socket (the venue outlives the trader)
    stepped: bool = False  # sim in this process: the trader moves the clock (tests, benchmarks)


def check(config: FundarbConfig, run: TradeRun) -> FundarbConfig:
    """Everything checkable before a venue is touched; returns the config with the run's overrides."""
    validate_trade(config.trade)
    if run.venue not in TRADE_VENUES:
        raise ConfigError(f"--venue: {run.venue!r}; expected one of {list(TRADE_VENUES)}")
    if run.venue == "sim" and config.source != "sim":
        raise ConfigError(f"source: {config.source!r}; --venue sim trades the simulator, set source: sim")
    if run.venue == "paper" and config.source == "sim":
        raise ConfigError("source: 'sim'; --venue paper trades a market-data source (replay, wire or live)")
    if run.venue == "paper" and config.source in ("replay", "wire") and not config.replay.speed > 0:
        raise ConfigError(
            f"replay.speed: {config.replay.speed!r}; a paper venue trades in the replay's time, so it must be paced "
            "(> 0 market seconds per wall second)"
        )
    if run.venue == "live" and config.source != "live":
        raise ConfigError(f"source: {config.source!r}; --venue live trades the live exchanges, set source: live")
    if run.duration_s is not None and not run.duration_s > 0:
        raise ConfigError(f"--duration: {run.duration_s!r} must be > 0")
    if run.stepped and (run.venue != "sim" or run.venue_socket):
        raise ConfigError("--stepped: only for the simulator in this process (no --venue-socket)")
    trade = config.trade
    if run.reduce_only:
        trade = replace(trade, reduce_only=True)
    # orders reach a live venue only when both the config (trade.dry_run: false) and the run (--send-orders) say so
    trade = replace(trade, dry_run=trade.dry_run or run.dry_run is not False)
    return replace(config, trade=trade)


def trader_markets(config: FundarbConfig) -> dict[str, tuple[str, ...]]:
    """exchange -> the symbols the trader may trade: the configured ones of its underlyings."""
    wanted = set(config.trade.underlyings)
    out: dict[str, tuple[str, ...]] = {}
    for exchange in config.exchanges:
        symbols = tuple(s for s in exchange.symbols if not wanted or s.split("/")[0] in wanted)
        if symbols:
            out[exchange.id] = symbols
    if not out:
        raise ConfigError(f"trade.underlyings: {sorted(wanted)} match no configured symbol")
    return out


VenueFactory = Callable[[FundarbConfig, TradeRun, Mapping[str, tuple[str, ...]]], Mapping[str, Any]]


def _sim_venues(config: FundarbConfig, run: TradeRun, markets: Mapping[str, tuple[str, ...]]) -> Mapping[str, Any]:
    if run.venue_socket:
        from .venue_server import connect

        return connect(run.venue_socket, tuple(markets))
    from ..sources.sim import SimExchange

    wall = time.time()  # one clock for every venue of the run
    return {e: SimExchange(e, config.sim, wall_start=wall) for e in markets}


def _paper_venues(config: FundarbConfig, run: TradeRun, markets: Mapping[str, tuple[str, ...]]) -> Mapping[str, Any]:
    from .paper import open_paper_venues

    return open_paper_venues(config, markets)


def _live_venues(config: FundarbConfig, run: TradeRun, markets: Mapping[str, tuple[str, ...]]) -> Mapping[str, Any]:
    from .live import open_live_venues

    return open_live_venues(config, markets, dry_run=config.trade.dry_run)


VENUE_FACTORIES: dict[str, VenueFactory] = {"sim": _sim_venues, "paper": _paper_venues, "live": _live_venues}


async def open_trader(config: FundarbConfig, run: TradeRun, say: Callable[[str], None] = print) -> Trader:
    """The venues opened, markets loaded, the strategy's pairs found, the trader built (not yet recovered)."""
    markets = trader_markets(config)
    venues = VENUE_FACTORIES[run.venue](config, run, markets)
    gateway = Gateway(venues)
    try:
        legs = await gateway.load(markets)
    except ValueError as exc:
        await gateway.close()
        raise ConfigError(str(exc)) from None
    for refusal in await gateway.prepare(config.trade.leverage):
        say(f"trade: {refusal}")
    options = {"underlyings": list(config.trade.underlyings) or None}
    panel = one_bar_panel(list(legs.values()), {}, {}, 0)
    specs = pair_specs(pair_set(config.trade.strategy, panel, options), panel, legs)
    if not specs:
        await gateway.close()
        raise ConfigError(f"trade.strategy: {config.trade.strategy!r} finds no pair in the configured symbols")
    clock: TraderClock = (
        SteppedClock(venues.values(), config.sim.start_ms) if run.stepped else VenueClock(gateway.clock)
    )
    ledger = Ledger(config.data_path, f"trader-{config.trade.name}")
    database = warehouse_target(config.data_path)  # FUNDARB_WAREHOUSE (a file or a lake), else the data folder's
    trader = Trader(
        config.trade, specs, gateway, ledger, clock, config.data_path, options=options, warehouse=database, say=say
    )
    record = run_record.RunRecord(
        name=config.trade.name,
        strategy=config.trade.strategy,
        venue=run.venue,
        enter_apr=config.trade.enter_apr,
        exit_apr=config.trade.exit_apr,
        leverage=config.trade.leverage,
        capital_usd=config.trade.capital_usd,
        markets=tuple(sorted(legs)),
        options={k: v for k, v in options.items() if v},
        started_ms=clock.now(),
    )
    run_record.save(config.data_path, record)
    return trader


async def trade(
    config: FundarbConfig, run: TradeRun, say: Callable[[str], None] = print, stop: asyncio.Event | None = None
) -> int:
    """The whole command (see the module doc); returns the exit code."""
    config = check(config, run)
    name = config.trade.name
    lock = ProcessLock(lock_path(config.data_path, name), _describe)
    try:
        lock.acquire(venue=run.venue)
    except LockBusy as exc:
        if not run.flatten:
            raise ConfigError(str(exc)) from None
        path = flatten_file(config.data_path, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        say(f"trade: trader {name!r} is running; asked it to flatten ({path})")
        return 0
    stop = stop or asyncio.Event()
    try:
        if run.venue == "paper" and journaled(config.data_path, name):
            raise ConfigError(
                f"trade.name: {name!r} already has a journal in {config.data_path}; a paper account lives only as "
                "long as its process, so a new paper run needs a new trade.name"
            )
        trader = await open_trader(config, run, say)
        try:
            return await _run(trader, run, stop, say)
        finally:
            await trader.gateway.close()
    finally:
        lock.release()


async def _flatten(trader: Trader, stop: asyncio.Event) -> bool:
    """Flatten every pair (reduce-only from then on) and run until flat, stopped or `FLATTEN_WAIT_S` (wall)."""
    trader.flatten()
    deadline = time.monotonic() + FLATTEN_WAIT_S
    done = trader.counters.decisions  # flat after a decision made in flatten mode

    def finished() -> bool:
        return stop.is_set() or time.monotonic() > deadline or (trader.counters.decisions > done and trader.flat())

    await trader.run(stop=finished)
    trader.progress(trader.clock.now(), force=True)
    return trader.flat()


async def _settle_paper(trader: Trader, say: Callable[[str], None]) -> None:
    """The last settlements a paper account held a position through are paid once its funding streams pass them
    (paper.PaperMarket): wait for the streams to catch up with the clock (bounded: a replay's source may have
    ended), settle what is left on the last rates streamed, then land what the venue booked."""
    from .paper import PaperExchange

    now = trader.clock.now()
    venues = {e: venue for e, venue in trader.gateway.exchanges.items() if isinstance(venue, PaperExchange)}
    # all at once: the wait is bounded by PAPER_CATCH_UP_S, not by that much per venue
    caught_up = await asyncio.gather(*(venue.end(now, PAPER_CATCH_UP_S) for venue in venues.values()))
    late = [exchange_id for exchange_id, done in zip(venues, caught_up, strict=True) if not done]
    if late:
        say(
            f"trade: the funding streams of {late} did not reach the end of the run (their source ended, or lags "
            f"over {PAPER_CATCH_UP_S:g} s): its last settlements are paid on the last rates streamed"
        )
    await trader.reconcile(trader.clock.now())
    trader.ledger.flush()


async def _run(trader: Trader, run: TradeRun, stop: asyncio.Event, say: Callable[[str], None]) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread: the caller sets `stop`
            loop.add_signal_handler(sig, stop.set)
    for line in await recover(trader):
        say(f"trade: recovered {line}")
    if run.flatten:
        flat = await _flatten(trader, stop)
        say(f"trade: {'flat' if flat else 'NOT flat'} after --flatten")
        return 0 if flat else 1
    wall_end = time.monotonic() + run.duration_s if run.duration_s else None
    await trader.run(
        until_ms=run.until_ms, stop=lambda: stop.is_set() or (wall_end is not None and time.monotonic() > wall_end)
    )
    if run.venue == "paper" and not stop.is_set():
        # A paper account ends with its process: its pairs are closed at the end of the run, or the warehouse
        # would hold them forever and the reconciliation would wait for funding no venue will ever pay.
        if not trader.flat():
            flat = await _flatten(trader, stop)
            say(
                f"trade: the paper account ends with this run: {'flat' if flat else 'NOT flat'} after closing its pairs"
            )
            if not flat:
                return 1
        await _settle_paper(trader, say)
    trader.progress(trader.clock.now(), force=True)
    unhedged = trader.unhedged()
    if unhedged:
        say(f"trade: stopped with unhedged pairs {unhedged}; the next start finishes or unwinds them")
    return 0
