"""The fundarb config file: exchanges, symbols, streams, the source kind and the capture settings.

Validated completely before anything starts: a wrong field fails with a `ConfigError` that names the
field and the value. API keys are never in the file: the live source reads `FUNDARB_<EXCHANGE>_API_KEY`
and `FUNDARB_<EXCHANGE>_SECRET` from the environment when it starts.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from .fees import DEFAULT_TIER, FeeEntry, FeeTable
from .schema import BOOK_LEVELS, DEFAULT_STREAMS, MARKET_STREAMS, PERP_STREAMS
from .venues import VENUE_FACTS, is_dated_future, simulated_venues, venue_facts

SOURCE_KINDS = ("sim", "replay", "wire", "live")
REPLAY_FORMATS = ("landing", "fixture_csv", "binance_archive")
DROP_POLICIES = ("block", "drop_newest")
LANDINGS = ("each_host", "first_host")  # capture.landing
MIN_SHUTDOWN_TIMEOUT_S = 12.0
MIN_BOOK_POLL_S, MAX_BOOK_POLL_S = 1.0, 86_400.0  # capture.order_book_rest_interval_s when on
ORDER_FAULTS = ("order_reject_rate", "order_timeout_rate", "order_never_fill_rate", "order_disconnect_rate")
# ccxt unified symbols: BASE/QUOTE for spot, BASE/QUOTE:SETTLE for perpetual swaps, BASE/QUOTE:SETTLE-YYMMDD
# for dated futures (options, which add a strike and a kind, are not traded).
_SYMBOL = re.compile(r"^[A-Za-z0-9]+/[A-Za-z0-9]+(:[A-Za-z0-9]+(-[0-9]{6})?)?$")


class ConfigError(ValueError):
    """A config value is wrong; the message names the field and the value."""


@dataclass(frozen=True)
class ExchangeConfig:
    id: str
    symbols: tuple[str, ...]
    streams: tuple[str, ...] = DEFAULT_STREAMS
    # ccxt options for the live (and wire) exchange, e.g. binance `{watchTrades: {name: aggTrade}}` to read
    # trades from `@aggTrade`; a wire replay overrides the ones that pick a channel with what it recorded
    options: Mapping[str, Any] = field(default_factory=dict)
    fee_tier: str = DEFAULT_TIER  # the account's fee tier on this venue: which `fees:` entries apply


@dataclass(frozen=True)
class FaultConfig:
    """Sim fault injection, as probabilities per message or periods in market seconds (0 = off)."""

    disconnect_every_s: float = 0.0
    # order books only: a broken venue sequence every this many market seconds (ccxt's InvalidNonce, as when
    # a venue's update id skips); the book is subscribed again at the then-current time
    sequence_every_s: float = 0.0
    stale_every_s: float = 0.0
    stale_duration_s: float = 0.0
    malformed_rate: float = 0.0
    duplicate_rate: float = 0.0
    out_of_order_rate: float = 0.0
    # Private API faults, probabilities per create_order (at most one per order; their sum is at most 1):
    # refused by the venue, placed but the answer timed out, placed but never fills, placed then the
    # connection dropped (the private streams break and lose what happens until they are watched again).
    order_reject_rate: float = 0.0
    order_timeout_rate: float = 0.0
    order_never_fill_rate: float = 0.0
    order_disconnect_rate: float = 0.0


@dataclass(frozen=True)
class SimConfig:
    seed: int = 7
    speed: float = 3600.0  # market seconds per wall second
    start: str = "2026-11-01T00:00:00Z"  # the virtual clock's start; history lies before it
    trades_per_s: float = 3.0  # market trades per market second per symbol
    book_interval_s: float = 1.0  # a new L2 book every this many market seconds (watch_order_book's cadence)
    # Pins the virtual clock (ISO time) instead of running it from `start`: REST history of a simulated
    # period that was captured earlier (the warehouse's funding_history after the demo's capture).
    now: str = ""
    faults: FaultConfig = field(default_factory=FaultConfig)

    @property
    def start_ms(self) -> int:
        return parse_utc_ms(self.start, "sim.start")

    @property
    def now_ms(self) -> int | None:
        return parse_utc_ms(self.now, "sim.now") if self.now else None


@dataclass(frozen=True)
class ReplayConfig:
    path: str = ""  # a landing folder, a fixture CSV folder, a Binance archive folder or a .jsonl(.zst)
    format: str = "landing"  # landing | fixture_csv | binance_archive
    speed: float = 0.0  # 0: as fast as possible
    start: str = ""  # ISO time to replay from (earlier records skipped); "": the recording's start
    # wire replays: the capture fails (exit 3) when a smaller share of the recording's market-data frames
    # reached a watcher (a channel nobody subscribed, frames ccxt rejected); 0 accepts any share
    min_use_ratio: float = 0.2


@dataclass(frozen=True)
class LiveConfig:
    funding_poll_interval_s: float = 60.0  # only where a venue streams no funding
    record_raw: str = ""  # folder to record raw websocket frames to (wire-replayable), "" = off
    reconnect_max_backoff_s: float = 60.0


@dataclass(frozen=True)
class CaptureConfig:
    ranks: int = 2
    flush_interval_s: float = 2.0
    ring_records: int = 65536  # per stream per watcher rank
    batch_records: int = 256
    drop_policy: str = "block"
    stats_interval_s: float = 5.0
    ohlcv_timeframe: str = "1m"
    stale_timeout_s: Mapping[str, float] = field(
        default_factory=lambda: {"trades": 60.0, "tickers": 60.0, "funding": 900.0, "ohlcv": 180.0, "order_book": 60.0}
    )
    # The order_book stream keeps the top `book_levels` levels per side (<= schema.BOOK_LEVELS) of one book
    # per `book_interval_s` (the first update at or after each multiple of it): hourly carry and per-minute
    # depth need a few books a minute, not every 100 ms update (see the README's figures).
    book_levels: int = 20
    book_interval_s: float = 10.0
    # The open_interest stream polls `fetch_open_interest` this often (exchange clock) where ccxt.pro has no
    # `watch_open_interest` (none in ccxt 4.5); a poll that repeats the last value is not kept again.
    open_interest_interval_s: float = 60.0
    # Order books over REST where no websocket book is configured: every symbol of an exchange whose streams
    # omit order_book gets a `fetch_order_book` snapshot this often (exchange clock; 0 = off). Streamed books
    # are repaired over REST after each gap whatever this says (where the venue has fetchOrderBook).
    order_book_rest_interval_s: float = 0.0
    # Records a flusher holds while storage fails; past it the rings fill (watchers wait, or drop and count).
    max_pending_records: int = 4_000_000
    # A stop (SIGTERM, SIGINT, the launcher gone) ends every rank within this; what storage would not take by
    # then goes to a recovery file the next start lands.
    shutdown_timeout_s: float = 15.0
    # Several hosts: an MPI hostfile (`host:ranks` per line, passed to mpiexec -f; "" = this host only) and
    # where the landing zone is: `each_host` (every host's flusher writes to data_dir, a shared filesystem) or
    # `first_host` (only the first host lands; the others' rank 0 forwards its rings' records over MPI).
    hostfile: str = ""
    landing: str = "each_host"


TRADE_SIGNALS = ("own", "warehouse")
TRADE_VENUES = ("sim", "paper", "live")  # `fundarb trade --venue`
# The trader's default limits: risk_report's (core.risk.RiskLimits), without the concentration shares, which a
# book of one or two pairs breaches by construction (set them when trading many pairs).
DEFAULT_TRADE_LIMITS: Mapping[str, float | None] = {
    "max_gross_usd": None,
    "max_net_usd": None,
    "max_venue_share": None,
    "max_asset_share": None,
    "max_leverage": 5.0,
    "max_margin_utilization": 0.5,
    "min_liq_distance": 0.1,
    "max_drawdown": 0.2,
}


@dataclass(frozen=True)
class TradeConfig:
    """`fundarb trade`: which pairs, how big, how fast, within which limits (see the README)."""

    name: str = "trader"  # its landing writer (`trader-<name>`), lock and kill-switch files
    strategy: str = "cash_carry"  # a backtest strategy: its pairs and signal (core.backtest.strategies)
    signal: str = "own"  # own: the strategy's signal on the funding it fetches; warehouse: `opportunities`
    underlyings: tuple[str, ...] = ()  # empty: every underlying of the configured symbols
    capital_usd: float = 100_000.0  # split evenly over the strategy's pairs (the backtest's rule 3)
    max_pairs: int = 3
    enter_apr: float = 0.10
    exit_apr: float = 0.02
    leverage: float = 3.0
    decision_interval_s: float = 3600.0  # on the venue's clock, aligned to it (hourly: the backtest's bars)
    leg_timeout_s: float = 5.0  # then a leg that did not fill is cancelled and the pair finished or unwound
    poll_interval_s: float = 0.2  # order status polling while orders are in flight
    reconcile_interval_s: float = 300.0  # positions, balances, open orders and funding against the venue
    progress_interval_s: float = 10.0  # wall seconds between progress lines
    max_repairs: int = 3  # repair rounds before every further one raises an alarm
    reduce_only: bool = False  # only exits: nothing new is opened
    dry_run: bool = True  # live venue only: orders are not sent unless this is switched off explicitly
    sandbox: bool = True  # live venue, sending: the venue's testnet (ccxt `set_sandbox_mode`) unless false
    limits: Mapping[str, float | None] = field(default_factory=lambda: dict(DEFAULT_TRADE_LIMITS))


BACKTEST_SIZINGS = ("even", "capacity")  # rule 3 of core/backtest/engine.py: see core/backtest/sizing.py


@dataclass(frozen=True)
class BacktestSection:
    """How the backtest assets size positions unless a run's config says otherwise (see the README)."""

    sizing: str = "even"  # even: capital split evenly over the pairs; capacity: capped by the books' capacity
    capacity_share: float = 0.5  # capacity: round-trip cost at most this share of the carry over the horizon
    capacity_horizon_h: float = 168.0  # capacity: hours the expected carry is earned over (opportunities' default)


@dataclass(frozen=True)
class FundarbConfig:
    source: str = "sim"
    data_dir: str = "data"
    exchanges: tuple[ExchangeConfig, ...] = ()
    sim: SimConfig = field(default_factory=SimConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    trade: TradeConfig = field(default_factory=TradeConfig)
    backtest: BacktestSection = field(default_factory=BacktestSection)
    fees: tuple[FeeEntry, ...] = ()  # dated fee schedules by venue, tier and market kind (`core/fees.py`)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    def fee_table(self) -> FeeTable:
        """The dated fees with each configured exchange's tier."""
        return FeeTable(self.fees, {e.id: e.fee_tier for e in self.exchanges})

    def subscriptions(self) -> list[tuple[str, str, str]]:
        """Every (exchange, symbol, stream) the config asks for; funding, open interest and liquidations only for
        perps (not spot, not dated futures, which settle at expiry instead)."""
        subs = []
        for exchange in self.exchanges:
            polled = ("order_book",) if self.book_rest_interval_s(exchange.id) else ()
            for symbol in exchange.symbols:
                for stream in (*exchange.streams, *polled):
                    if stream in PERP_STREAMS and (":" not in symbol or is_dated_future(symbol)):
                        continue
                    subs.append((exchange.id, symbol, stream))
        return subs

    def book_rest_interval_s(self, exchange_id: str) -> float:
        """How often an exchange's order books are polled over REST: `capture.order_book_rest_interval_s` where
        its streams have no (websocket) order_book, else 0 (streamed)."""
        streams = next((e.streams for e in self.exchanges if e.id == exchange_id), ())
        return 0.0 if "order_book" in streams else self.capture.order_book_rest_interval_s

    def with_overrides(self, **changes: Any) -> FundarbConfig:
        """A copy with top-level fields replaced (CLI flags), validated again."""
        updated = replace(self, **changes)
        validate(updated)
        return updated


DEFAULT_ASSETS = ("BTC", "ETH", "SOL")
DEFAULT_VENUES = ("binance", "bybit", "hyperliquid")


def default_exchanges() -> tuple[ExchangeConfig, ...]:
    """The embedded default: 3 venues x 3 assets, spot and USDT perpetual (hyperliquid settles in USDC)."""
    out = []
    for venue in DEFAULT_VENUES:
        quote = VENUE_FACTS[venue].quote
        symbols = tuple(s for asset in DEFAULT_ASSETS for s in (f"{asset}/{quote}", f"{asset}/{quote}:{quote}"))
        out.append(ExchangeConfig(id=venue, symbols=symbols))
    return tuple(out)


def default_config(**overrides: Any) -> FundarbConfig:
    config = replace(FundarbConfig(exchanges=default_exchanges()), **overrides)
    validate(config)
    return config


def parse_utc_ms(value: str | int | float, field_name: str) -> int:
    """An ISO-8601 time (Z or offset, or naive = UTC) or epoch milliseconds -> epoch ms."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{field_name}: {value!r} is not an ISO-8601 time like 2026-11-01T00:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


# -- loading ------------------------------------------------------------------------------------------
def load_config(path: str | os.PathLike[str] | None = None) -> FundarbConfig:
    """Load and validate a YAML config; None gives the embedded defaults (an empty file is an error)."""
    if path is None:
        return default_config()
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"config: file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config: {str(path)!r} is a folder, not a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config: {str(path)!r} cannot be read: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config: {str(path)!r} is not valid YAML{where}: {problem}") from None
    if raw is None:
        # Taking an empty file for the defaults would capture the embedded venues into the default folder.
        raise ConfigError(f"config: {str(path)!r} is empty; leave out --config for the embedded defaults")
    return config_from_dict(raw)


def config_from_dict(raw: Mapping[str, Any]) -> FundarbConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(raw).__name__}")
    _reject_unknown(raw, FundarbConfig, "")
    default_streams = _streams(raw.get("streams", list(DEFAULT_STREAMS)), "streams")
    exchanges_raw = raw.get("exchanges")
    if exchanges_raw is None:
        exchanges = default_exchanges()
    else:
        exchanges = tuple(_exchange(e, i, default_streams) for i, e in enumerate(_as_list(exchanges_raw, "exchanges")))
    config = FundarbConfig(
        source=str(raw.get("source", "sim")),
        data_dir=str(raw.get("data_dir", "data")),
        exchanges=exchanges,
        sim=_section(raw, "sim", SimConfig),
        replay=_section(raw, "replay", ReplayConfig),
        live=_section(raw, "live", LiveConfig),
        capture=_section(raw, "capture", CaptureConfig),
        trade=_trade_section(raw.get("trade")),
        backtest=_section(raw, "backtest", BacktestSection),
        fees=_fees(raw.get("fees")),
    )
    validate(config)
    return config


def _as_list(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{name}: expected a list, got {value!r}")
    return value


def _streams(value: Any, name: str) -> tuple[str, ...]:
    streams = tuple(str(s) for s in _as_list(value, name))
    for stream in streams:
        if stream not in MARKET_STREAMS:
            raise ConfigError(f"{name}: unknown stream {stream!r}; expected some of {list(MARKET_STREAMS)}")
    return streams


def _exchange(raw: Any, index: int, default_streams: tuple[str, ...]) -> ExchangeConfig:
    where = f"exchanges[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping with id and symbols, got {raw!r}")
    unknown = set(raw) - {"id", "symbols", "streams", "options", "fee_tier"}
    if unknown:
        raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown field")
    if "id" not in raw:
        raise ConfigError(f"{where}.id: missing")
    symbols = tuple(str(s) for s in _as_list(raw.get("symbols", []), f"{where}.symbols"))
    streams = _streams(raw["streams"], f"{where}.streams") if "streams" in raw else default_streams
    options = raw.get("options") or {}
    if not isinstance(options, Mapping) or not all(isinstance(v, Mapping) for v in options.values()):
        raise ConfigError(
            f"{where}.options: expected ccxt options by method, like {{watchTrades: {{name: aggTrade}}}},"
            f" got {options!r}"
        )
    fee_tier = raw.get("fee_tier", DEFAULT_TIER)
    if not (isinstance(fee_tier, str) and fee_tier):
        raise ConfigError(f"{where}.fee_tier: {fee_tier!r} must be a tier name like vip0")
    return ExchangeConfig(id=str(raw["id"]), symbols=symbols, streams=streams, options=dict(options), fee_tier=fee_tier)


FEE_FIELDS = ("exchange", "tier", "market", "maker_bps", "taker_bps", "valid_from")
MAX_FEE_BPS = 100.0  # 1 %: a fee beyond it (either sign) is a unit mistake (fees are in bps: 5 = 0.05 %)


def _fees(raw: Any) -> tuple[FeeEntry, ...]:
    """The `fees:` list: {exchange, tier (or vip), market (spot/perp), maker_bps, taker_bps, valid_from}."""
    if raw is None:
        return ()
    out: list[FeeEntry] = []
    seen: dict[tuple[str, str, str, int], int] = {}
    for i, item in enumerate(_as_list(raw, "fees")):
        where = f"fees[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}: expected a mapping with {list(FEE_FIELDS)}, got {item!r}")
        unknown = set(item) - {*FEE_FIELDS, "vip"}
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown field; expected some of {list(FEE_FIELDS)}")
        for name in ("exchange", "market", "maker_bps", "taker_bps", "valid_from"):
            if name not in item:
                raise ConfigError(f"{where}.{name}: missing")
        exchange, market = item["exchange"], item["market"]
        if not (isinstance(exchange, str) and exchange):
            raise ConfigError(f"{where}.exchange: {exchange!r} must be a ccxt exchange id")
        if market not in ("spot", "perp", "swap"):
            raise ConfigError(f"{where}.market: {market!r}; expected 'spot' or 'perp' (or ccxt's 'swap')")
        tier = str(item["tier"]) if "tier" in item else f"vip{item['vip']}" if "vip" in item else DEFAULT_TIER
        bps = {}
        for name in ("maker_bps", "taker_bps"):
            bps[name] = _number(item[name], f"{where}.{name}", float)
            if abs(bps[name]) > MAX_FEE_BPS:
                raise ConfigError(f"{where}.{name}: {item[name]!r} bps is beyond +-{MAX_FEE_BPS:g} (5 = 0.05 %)")
        valid_from = parse_utc_ms(str(item["valid_from"]), f"{where}.valid_from")
        key = (exchange, tier, "spot" if market == "spot" else "perp", valid_from)
        if key in seen:
            raise ConfigError(f"{where}: the same exchange, tier, market and valid_from as fees[{seen[key]}]")
        seen[key] = i
        out.append(FeeEntry(exchange, tier, key[2], bps["maker_bps"], bps["taker_bps"], valid_from))
    return tuple(out)


def _reject_unknown(raw: Mapping[str, Any], cls: type, prefix: str) -> None:
    allowed = {f.name for f in fields(cls)} | ({"streams"} if cls is FundarbConfig else set())
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{prefix}{key}: unknown field; expected one of {sorted(allowed)}")


def _section(raw: Mapping[str, Any], name: str, cls: type) -> Any:
    """Build a section dataclass, coercing each value to the type of its default."""
    values = raw.get(name) or {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{name}: expected a mapping, got {values!r}")
    _reject_unknown(values, cls, f"{name}.")
    defaults = cls()
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        default = getattr(defaults, key)
        where = f"{name}.{key}"
        if isinstance(default, FaultConfig):
            kwargs[key] = _section({where: value}, where, FaultConfig) if value else FaultConfig()
            continue
        if isinstance(default, Mapping):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: expected a mapping, got {value!r}")
            kwargs[key] = {**default, **{str(k): _number(v, f"{where}.{k}", float) for k, v in value.items()}}
            continue
        if isinstance(default, bool):
            if not isinstance(value, bool):  # "false" as a string would be true: a switch must say it plainly
                raise ConfigError(f"{where}: {value!r} must be true or false")
            kwargs[key] = value
            continue
        if isinstance(default, str):
            kwargs[key] = str(value)
            continue
        kwargs[key] = _number(value, where, type(default))
    return cls(**kwargs)


def _trade_section(raw: Any) -> TradeConfig:
    """The `trade` section: scalars like any section, `underlyings` a list, `limits` numbers or null (off)."""
    values = dict(raw or {})
    underlyings = values.pop("underlyings", None)
    limits_raw = values.pop("limits", None)
    config = _section({"trade": values}, "trade", TradeConfig)
    changes: dict[str, Any] = {}
    if underlyings is not None:
        changes["underlyings"] = tuple(str(u) for u in _as_list(underlyings, "trade.underlyings"))
    if limits_raw is not None:
        if not isinstance(limits_raw, Mapping):
            raise ConfigError(f"trade.limits: expected a mapping, got {limits_raw!r}")
        limits = dict(DEFAULT_TRADE_LIMITS)
        for key, value in limits_raw.items():
            limits[str(key)] = None if value is None else _number(value, f"trade.limits.{key}", float)
        changes["limits"] = limits
    return replace(config, **changes)


def _number(value: Any, where: str, kind: type) -> Any:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if kind is int and float(value) != number:
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    if isinstance(number, float) and not math.isfinite(number):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    return number


# -- validation ---------------------------------------------------------------------------------------
def known_exchanges(source: str) -> tuple[str, ...]:
    """The exchange ids a source kind can serve: ccxt.pro's list for live and wire, the sim's venues."""
    if source == "sim":
        return simulated_venues()
    import ccxt.pro

    return tuple(ccxt.pro.exchanges)


def _check_liquidations(exchange_id: str, source: str, field_name: str) -> None:
    """A venue without a public liquidation channel in ccxt.pro cannot give the liquidations stream: said before
    anything starts (a live venue by its ccxt.pro class, a simulated one by the real venue's row it follows)."""
    if source == "sim":
        facts = venue_facts(exchange_id)
        has = facts is not None and facts.liquidation_side is not None
    else:
        import ccxt.pro

        has = bool(getattr(ccxt.pro, exchange_id)().has.get("watchLiquidations"))
    if not has:
        raise ConfigError(
            f"{field_name}: 'liquidations' on {exchange_id!r}: ccxt.pro has no watch_liquidations for it (the venue "
            "has no public liquidation channel); remove the stream for this exchange"
        )


def validate(config: FundarbConfig) -> None:
    """Everything checkable without a network. Symbols are checked against markets by `check_symbols`."""
    if config.source not in SOURCE_KINDS:
        raise ConfigError(f"source: unknown source kind {config.source!r}; expected one of {list(SOURCE_KINDS)}")
    if not config.exchanges:
        raise ConfigError("exchanges: at least one exchange is needed")
    known = known_exchanges(config.source)
    seen = set()
    for i, exchange in enumerate(config.exchanges):
        if exchange.id not in known:
            raise ConfigError(f"exchanges[{i}].id: unknown exchange {exchange.id!r} for source {config.source!r}")
        if exchange.id in seen:
            raise ConfigError(f"exchanges[{i}].id: exchange {exchange.id!r} is listed twice")
        seen.add(exchange.id)
        if "liquidations" in exchange.streams and config.source != "replay":
            _check_liquidations(exchange.id, config.source, f"exchanges[{i}].streams")
        if not exchange.symbols:
            raise ConfigError(f"exchanges[{i}].symbols: empty for exchange {exchange.id!r}")
        for symbol in exchange.symbols:
            if not _SYMBOL.match(symbol):
                raise ConfigError(
                    f"exchanges[{i}].symbols: {symbol!r} is not a ccxt unified symbol like BTC/USDT, BTC/USDT:USDT"
                    " or BTC/USD:BTC-260327"
                )
    validate_backtest(config.backtest)
    _positive(config.sim.speed, "sim.speed")
    if not config.sim.book_interval_s >= 0.001:
        raise ConfigError(f"sim.book_interval_s: {config.sim.book_interval_s!r} must be >= 0.001")
    if not 0 < config.sim.trades_per_s <= 500:
        raise ConfigError(f"sim.trades_per_s: {config.sim.trades_per_s!r} must be in (0, 500]")
    config.sim.start_ms  # noqa: B018 - parses, raising ConfigError on a bad time
    config.sim.now_ms  # noqa: B018
    for name in ("malformed_rate", "duplicate_rate", "out_of_order_rate", *ORDER_FAULTS):
        rate = getattr(config.sim.faults, name)
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(f"sim.faults.{name}: {rate!r} must be between 0 and 1")
    order_rates = sum(getattr(config.sim.faults, name) for name in ORDER_FAULTS)
    if order_rates > 1.0:
        raise ConfigError(f"sim.faults.order_*_rate: they sum to {order_rates!r}; at most one fault per order, so <= 1")
    capture = config.capture
    if capture.ranks < 2:
        raise ConfigError(f"capture.ranks: {capture.ranks!r} must be >= 2 (one watcher and one flusher)")
    for name in ("flush_interval_s", "stats_interval_s"):
        _positive(getattr(capture, name), f"capture.{name}")
    if not capture.shutdown_timeout_s >= MIN_SHUTDOWN_TIMEOUT_S:
        raise ConfigError(
            f"capture.shutdown_timeout_s: {capture.shutdown_timeout_s!r} must be >= {MIN_SHUTDOWN_TIMEOUT_S:g} "
            "(watchers need up to 8 s to stop, then the flusher lands and spills what they handed over)"
        )
    for name in ("ring_records", "batch_records", "max_pending_records"):
        if getattr(capture, name) < 1:
            raise ConfigError(f"capture.{name}: {getattr(capture, name)!r} must be >= 1")
    if capture.batch_records > capture.ring_records:
        raise ConfigError(
            f"capture.batch_records: {capture.batch_records!r} exceeds ring_records {capture.ring_records}"
        )
    if capture.landing not in LANDINGS:
        raise ConfigError(f"capture.landing: {capture.landing!r}; expected one of {list(LANDINGS)}")
    if capture.hostfile and not Path(capture.hostfile).is_file():
        raise ConfigError(
            f"capture.hostfile: {capture.hostfile!r} is not a file (an MPI hostfile, host:ranks per line)"
        )
    if capture.drop_policy not in DROP_POLICIES:
        raise ConfigError(f"capture.drop_policy: {capture.drop_policy!r}; expected one of {list(DROP_POLICIES)}")
    if not 1 <= capture.book_levels <= BOOK_LEVELS:
        raise ConfigError(f"capture.book_levels: {capture.book_levels!r} must be between 1 and {BOOK_LEVELS}")
    if not capture.book_interval_s >= 0:
        raise ConfigError(f"capture.book_interval_s: {capture.book_interval_s!r} must be >= 0 (0 = every update)")
    _positive(capture.open_interest_interval_s, "capture.open_interest_interval_s")
    rest_books = capture.order_book_rest_interval_s
    if rest_books != 0 and not MIN_BOOK_POLL_S <= rest_books <= MAX_BOOK_POLL_S:
        raise ConfigError(
            f"capture.order_book_rest_interval_s: {rest_books!r} must be 0 (off) or between {MIN_BOOK_POLL_S:g} and"
            f" {MAX_BOOK_POLL_S:g} seconds (a REST book per symbol that often: venues weigh depth calls heavily)"
        )
    if rest_books and config.source in ("wire", "replay"):
        raise ConfigError(
            f"capture.order_book_rest_interval_s: {rest_books!r} polls fetch_order_book, which a {config.source!r}"
            " source cannot answer (a recording holds no REST books to poll); set it to 0"
        )
    for stream, timeout in capture.stale_timeout_s.items():
        if stream not in MARKET_STREAMS:
            raise ConfigError(f"capture.stale_timeout_s.{stream}: unknown stream")
        _positive(timeout, f"capture.stale_timeout_s.{stream}")
    if config.source in ("replay", "wire") and not config.replay.path:
        raise ConfigError(f"replay.path: required when source is {config.source!r}")
    if config.replay.format not in REPLAY_FORMATS:
        raise ConfigError(f"replay.format: {config.replay.format!r}; expected one of {list(REPLAY_FORMATS)}")
    if config.replay.start:
        parse_utc_ms(config.replay.start, "replay.start")  # raises ConfigError on a bad time
    if not config.replay.speed >= 0:
        raise ConfigError(f"replay.speed: {config.replay.speed!r} must be >= 0 (0 = as fast as possible)")
    if not 0.0 <= config.replay.min_use_ratio <= 1.0:
        raise ConfigError(f"replay.min_use_ratio: {config.replay.min_use_ratio!r} must be between 0 and 1")
    _positive(config.live.reconnect_max_backoff_s, "live.reconnect_max_backoff_s")
    _positive(config.live.funding_poll_interval_s, "live.funding_poll_interval_s")


def validate_backtest(backtest: BacktestSection) -> None:
    """The `backtest` section (the backtest assets' defaults; a run's config is checked the same way)."""
    if backtest.sizing not in BACKTEST_SIZINGS:
        raise ConfigError(f"backtest.sizing: {backtest.sizing!r}; expected one of {list(BACKTEST_SIZINGS)}")
    if not 0 < backtest.capacity_share <= 1:
        raise ConfigError(f"backtest.capacity_share: {backtest.capacity_share!r} must be in (0, 1]")
    _positive(backtest.capacity_horizon_h, "backtest.capacity_horizon_h")


def validate_trade(trade: TradeConfig) -> None:
    """The `trade` section, checked by `fundarb trade` and `check-config` before anything starts (not by every
    loader: the strategy registry it checks against imports the backtest, about a second, which the capture
    ranks need not pay)."""
    from .backtest.strategies import STRATEGIES  # the registry: numpy, pandas; only needed here
    from .risk import RiskLimits

    if not re.fullmatch(r"[a-z0-9][a-z0-9_]{0,31}", trade.name):
        raise ConfigError(f"trade.name: {trade.name!r} must be 1-32 lowercase letters, digits or _")
    if trade.strategy not in STRATEGIES:
        raise ConfigError(f"trade.strategy: unknown {trade.strategy!r}; expected one of {sorted(STRATEGIES)}")
    if trade.signal not in TRADE_SIGNALS:
        raise ConfigError(f"trade.signal: {trade.signal!r}; expected one of {list(TRADE_SIGNALS)}")
    for name in ("capital_usd", "leverage", "decision_interval_s", "leg_timeout_s", "poll_interval_s",
                 "reconcile_interval_s", "progress_interval_s"):  # fmt: skip
        _positive(getattr(trade, name), f"trade.{name}")
    if not 0 <= trade.exit_apr < trade.enter_apr:
        raise ConfigError(
            f"trade.exit_apr: {trade.exit_apr!r} must be >= 0 and below trade.enter_apr {trade.enter_apr!r}"
        )
    if trade.max_pairs < 1:
        raise ConfigError(f"trade.max_pairs: {trade.max_pairs!r} must be >= 1")
    if trade.max_repairs < 1:
        raise ConfigError(f"trade.max_repairs: {trade.max_repairs!r} must be >= 1")
    if trade.poll_interval_s > trade.leg_timeout_s:
        raise ConfigError(
            f"trade.poll_interval_s: {trade.poll_interval_s!r} exceeds trade.leg_timeout_s {trade.leg_timeout_s!r}"
        )
    known = set(RiskLimits.__dataclass_fields__) - {"var_level", "max_var_usd", "max_es_usd"}
    for key in trade.limits:
        if key not in known:
            raise ConfigError(f"trade.limits.{key}: unknown limit; expected some of {sorted(known)}")
    try:
        RiskLimits(**dict(trade.limits))
    except ValueError as exc:
        raise ConfigError(f"trade.limits.{exc}") from None


def _positive(value: float, where: str) -> None:
    if not value > 0:
        raise ConfigError(f"{where}: {value!r} must be > 0")


def check_symbols(config: FundarbConfig, exchange_id: str, markets: Mapping[str, Any]) -> None:
    """After an exchange's markets are loaded and before subscribing: every configured symbol is listed."""
    for i, exchange in enumerate(config.exchanges):
        if exchange.id != exchange_id:
            continue
        for symbol in exchange.symbols:
            if symbol not in markets:
                raise ConfigError(f"exchanges[{i}].symbols: {symbol!r} is not listed by exchange {exchange_id!r}")


CREDENTIAL_VARIABLES = (
    ("apiKey", "API_KEY"),
    ("secret", "SECRET"),
    ("password", "PASSWORD"),
    ("walletAddress", "WALLET_ADDRESS"),
    ("privateKey", "PRIVATE_KEY"),
)


def api_credentials(exchange_id: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """ccxt credentials from FUNDARB_<EXCHANGE>_API_KEY / _SECRET / _PASSWORD (hyperliquid: _WALLET_ADDRESS /
    _PRIVATE_KEY); never from a file."""
    env = os.environ if environ is None else environ
    prefix = f"FUNDARB_{exchange_id.upper()}_"
    out = {}
    for ccxt_name, suffix in CREDENTIAL_VARIABLES:
        if env.get(prefix + suffix):
            out[ccxt_name] = env[prefix + suffix]
    return out
