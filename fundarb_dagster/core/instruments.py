"""The instrument registry: venues, ccxt unified symbols, stable small ids, funding-interval history.

Instruments are identified by (exchange, ccxt unified symbol): spot `BTC/USDT`, linear perpetual
`BTC/USDT:USDT`, inverse perpetual `BTC/USD:BTC`, dated future `BTC/USD:BTC-220527` (with its expiry). The
registry is built from ccxt market structures (whatever the source: a live ccxt.pro exchange, the simulator
or a recording all expose `markets`), so nothing here is venue-specific: contract size, settle currency,
inverse/linear and expiry are ccxt's.

Ids are small integers (fixed-width records carry them instead of strings). They are stable: once an
instrument has an id in a data folder's `instruments.json`, it keeps it; new instruments get the next one.
"""

from __future__ import annotations

import bisect
import fcntl
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# `1000PEPE`, `1000000MOG`, `kPEPE` (hyperliquid), `1MBABYDOGE`: a price quoted per many units.
_MULTIPLIER_PREFIX = re.compile(r"^(?P<n>1000000|100000|10000|1000|100|10|1M|k)(?P<asset>[A-Z][A-Z0-9]*)$")
_PREFIX_VALUES = {"k": 1000.0, "1M": 1_000_000.0}


def split_multiplier(base: str) -> tuple[str, float]:
    """`1000PEPE` -> ("PEPE", 1000.0); `kPEPE` -> ("PEPE", 1000.0); `BTC` -> ("BTC", 1.0)."""
    match = _MULTIPLIER_PREFIX.match(base)
    if not match:
        return base, 1.0
    prefix = match.group("n")
    return match.group("asset"), _PREFIX_VALUES.get(prefix, float(prefix) if prefix.isdigit() else 1.0)


MARKET_TYPES = ("spot", "swap", "future")


@dataclass(frozen=True)
class Instrument:
    id: int
    exchange: str  # ccxt exchange id, lowercase
    symbol: str  # ccxt unified symbol
    type: str  # MARKET_TYPES: "spot", "swap" (perpetual) or "future" (dated)
    base: str  # ccxt base, e.g. "1000PEPE"
    quote: str
    settle: str | None  # None for spot
    venue_symbol: str  # the exchange's own market id, e.g. "BTCUSDT"
    underlying: str  # the asset priced, multiplier removed: "PEPE" for "1000PEPE"
    multiplier: float  # units of underlying per unit of base: 1000 for "1000PEPE"
    # ccxt's contractSize: base units per contract for linear contracts (1 for most, 0.01 BTC on okx
    # BTC-USDT-SWAP), quote units per contract for inverse ones (100 USD for binance COIN-M BTCUSD_PERP);
    # 1 for spot
    contract_size: float
    inverse: bool = False  # settled in the base coin, contracts worth `contract_size` quote units each
    expiry_ms: int | None = None  # dated futures: expiry, epoch ms

    @property
    def is_perp(self) -> bool:
        return self.type == "swap"

    @property
    def is_future(self) -> bool:
        return self.type == "future"

    @property
    def is_contract(self) -> bool:
        return self.type != "spot"

    def base_amounts(self, contracts: Any, price: Any) -> Any:
        """Amounts as the venue counts them (contracts; base units for spot) -> base units.

        Linear: contracts x contractSize. Inverse: each contract is worth `contract_size` quote units, so
        contracts x contractSize / price (a 100-contract trade of okx UNI-USD-SWAP, 10 USD each, at 5.123
        is 195.2 UNI). Works on floats and numpy arrays alike.
        """
        if not self.is_contract:
            return contracts
        if self.inverse:
            return contracts * self.contract_size / price
        return contracts * self.contract_size


# Where an interval came from, strongest first: a source stated it (a stream's or history's structure, the
# market's info); a capture learned it by asking the venue over REST when nothing stated it; the venue's
# documented schedule (hyperliquid: hourly); inferred from the spacing or movement of settlements.
INTERVAL_SOURCES = ("reported", "learned", "schedule", "inferred")


@dataclass(frozen=True)
class IntervalSpan:
    """A funding interval in force from `valid_from_ms` (inclusive) to `valid_to_ms` (exclusive, None: open)."""

    valid_from_ms: int
    valid_to_ms: int | None
    interval_h: float
    source: str = "reported"  # INTERVAL_SOURCES


@dataclass
class _IntervalHistory:
    starts: list[int] = field(default_factory=list)
    intervals: list[float] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def instrument_from_market(instrument_id: int, exchange: str, market: Mapping[str, Any]) -> Instrument:
    """Build an Instrument from a ccxt unified market structure (a `markets[symbol]` entry).

    Contract size, settle currency, inverse/linear and expiry are ccxt's (`contractSize`, `settle`, `inverse`,
    `expiry`); a dated future without an expiry is refused by name, since its basis to expiry needs it.
    """
    market_type = market.get("type")
    for kind in ("swap", "future", "spot"):
        if market.get(kind):
            market_type = kind
            break
    symbol = market.get("symbol")
    if market_type not in MARKET_TYPES:
        raise ValueError(f"market.type: {market_type!r} for {exchange} {symbol!r} is not one of {list(MARKET_TYPES)}")
    expiry = market.get("expiry")
    if market_type == "future" and not expiry:
        raise ValueError(f"market.expiry: {expiry!r} for the dated future {exchange} {symbol!r}; an expiry is needed")
    base = str(market["base"])
    underlying, multiplier = split_multiplier(base)
    contract_size = market.get("contractSize")
    contract = market_type != "spot"
    settle = market.get("settle") if contract else None
    inverse = market.get("inverse")
    if inverse is None and contract:
        inverse = settle is not None and settle == base  # ccxt states it; a minimal market may not
    return Instrument(
        id=instrument_id,
        exchange=exchange,
        symbol=str(market["symbol"]),
        type=market_type,
        base=base,
        quote=str(market["quote"]),
        settle=settle,
        venue_symbol=str(market.get("id") or market["symbol"]),
        underlying=underlying,
        multiplier=multiplier,
        contract_size=float(contract_size) if contract and contract_size else 1.0,
        inverse=bool(inverse) if contract else False,
        expiry_ms=int(expiry) if market_type == "future" else None,
    )


class InstrumentRegistry:
    """Instruments by (exchange, symbol) and by id, plus each perp's funding-interval history."""

    def __init__(self, ids: Mapping[tuple[str, str], int] | None = None) -> None:
        self._ids: dict[tuple[str, str], int] = dict(ids or {})
        self._by_key: dict[tuple[str, str], Instrument] = {}
        self._by_id: dict[int, Instrument] = {}
        self._intervals: dict[tuple[str, str], _IntervalHistory] = {}

    # -- instruments --------------------------------------------------------------------------------
    def add_market(self, exchange: str, market: Mapping[str, Any]) -> Instrument:
        """Register a ccxt market; keeps the instrument's id if it already had one.

        Registering the same symbol again takes the market's facts as they are now (contract size, inverse,
        expiry: a market loaded from the venue corrects one built offline), under the same id.
        """
        key = (exchange, str(market["symbol"]))
        known = self._by_key.get(key)
        if known is not None:
            fresh = instrument_from_market(known.id, exchange, market)
            if fresh != known:
                self._by_key[key] = self._by_id[known.id] = fresh
            return fresh
        instrument_id = self._ids.get(key)
        if instrument_id is None:
            instrument_id = max(self._ids.values(), default=-1) + 1
            self._ids[key] = instrument_id
        instrument = instrument_from_market(instrument_id, exchange, market)
        self._by_key[key] = instrument
        self._by_id[instrument_id] = instrument
        return instrument

    def add_markets(self, exchange: str, markets: Mapping[str, Mapping[str, Any]], symbols: list[str]) -> None:
        """Register the listed symbols of an exchange's loaded markets; an unlisted symbol is an error."""
        for symbol in symbols:
            if symbol not in markets:
                raise KeyError(f"symbol: {symbol!r} is not listed by exchange {exchange!r}")
            self.add_market(exchange, markets[symbol])

    def get(self, exchange: str, symbol: str) -> Instrument:
        try:
            return self._by_key[(exchange, symbol)]
        except KeyError:
            raise KeyError(f"instrument: ({exchange!r}, {symbol!r}) is not registered") from None

    def by_id(self, instrument_id: int) -> Instrument:
        try:
            return self._by_id[int(instrument_id)]
        except KeyError:
            raise KeyError(f"instrument_id: {instrument_id} is not registered") from None

    def id_of(self, exchange: str, symbol: str) -> int:
        return self.get(exchange, symbol).id

    def names(self) -> dict[int, tuple[str, str]]:
        """instrument_id -> (exchange, symbol), what the landing writer needs."""
        return {i.id: (i.exchange, i.symbol) for i in self._by_id.values()}

    def __iter__(self) -> Iterator[Instrument]:
        return iter(sorted(self._by_id.values(), key=lambda i: i.id))

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    # -- funding intervals --------------------------------------------------------------------------
    def observe_interval(
        self, exchange: str, symbol: str, ts_ms: int, interval_h: float, source: str = "reported"
    ) -> bool:
        """Record the funding interval seen at `ts_ms` and where it came from (INTERVAL_SOURCES); returns True
        when it changed.

        Observations may arrive out of order (history backfills after live data): each is placed at its
        time, and only changes of value start a new span. A span keeps the strongest source that saw it (a
        stream stating the interval a schedule gave turns the span `reported`).
        """
        if not (interval_h > 0):
            raise ValueError(f"interval_h: {interval_h!r} for {exchange} {symbol} must be > 0")
        if source not in INTERVAL_SOURCES:
            raise ValueError(f"source: {source!r}; expected one of {list(INTERVAL_SOURCES)}")
        history = self._intervals.setdefault((exchange, symbol), _IntervalHistory())
        pos = bisect.bisect_right(history.starts, ts_ms)
        if pos > 0 and history.intervals[pos - 1] == interval_h:
            history.sources[pos - 1] = _stronger(history.sources[pos - 1], source)
            return False
        if pos < len(history.starts) and history.intervals[pos] == interval_h:
            history.starts[pos] = ts_ms  # the same interval was already known from later: extend it back
            history.sources[pos] = _stronger(history.sources[pos], source)
            return False
        history.starts.insert(pos, ts_ms)
        history.intervals.insert(pos, float(interval_h))
        history.sources.insert(pos, source)
        return True

    def interval_at(self, exchange: str, symbol: str, ts_ms: int) -> float | None:
        """The interval in force at `ts_ms`, None when nothing was observed (never a venue default)."""
        history = self._intervals.get((exchange, symbol))
        if not history or not history.starts:
            return None
        pos = bisect.bisect_right(history.starts, ts_ms) - 1
        # Before the first observation the first known interval is the best evidence there is.
        return history.intervals[max(pos, 0)]

    def interval_history(self, exchange: str, symbol: str) -> list[IntervalSpan]:
        history = self._intervals.get((exchange, symbol))
        if not history:
            return []
        ends: list[int | None] = [*history.starts[1:], None]
        return [
            IntervalSpan(s, e, i, src)
            for s, e, i, src in zip(history.starts, ends, history.intervals, history.sources, strict=True)
        ]

    # -- persistence --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "ids": [[exchange, symbol, i] for (exchange, symbol), i in sorted(self._ids.items(), key=lambda x: x[1])],
            "instruments": [asdict(i) for i in self],
            "intervals": {
                f"{exchange}|{symbol}": [
                    [s.valid_from_ms, s.interval_h, s.source] for s in self.interval_history(exchange, symbol)
                ]
                for (exchange, symbol) in sorted(self._intervals)
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InstrumentRegistry:
        registry = cls({(e, s): int(i) for e, s, i in data.get("ids", [])})
        for raw in data.get("instruments", []):
            instrument = Instrument(**raw)
            registry._by_key[(instrument.exchange, instrument.symbol)] = instrument
            registry._by_id[instrument.id] = instrument
        for key, spans in data.get("intervals", {}).items():
            exchange, symbol = key.split("|", 1)
            for start, interval_h, *source in spans:  # [start, interval] before sources were kept
                registry.observe_interval(exchange, symbol, int(start), float(interval_h), *source)
        return registry

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically: the id map is what keeps ids stable, it must never be half-written."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, target)

    def persist_intervals(self, path: str | os.PathLike[str]) -> int:
        """Merge this registry's interval history into the registry saved at `path` (its ids and instruments
        kept), under a lock: capture ranks that learned intervals while running end at the same time.
        Returns the spans merged."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        merged = 0
        with open(target.with_name(f".{target.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            saved = InstrumentRegistry.load(target)
            for exchange, symbol in sorted(self._intervals):
                for span in self.interval_history(exchange, symbol):
                    saved.observe_interval(exchange, symbol, span.valid_from_ms, span.interval_h, span.source)
                    merged += 1
            if merged:
                saved.save(target)
        return merged

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> InstrumentRegistry:
        """Load a saved registry, or an empty one when the file does not exist yet."""
        target = Path(path)
        if not target.exists():
            return cls()
        return cls.from_dict(json.loads(target.read_text()))


def registry_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / "instruments.json"


def _stronger(a: str, b: str) -> str:
    return a if INTERVAL_SOURCES.index(a) <= INTERVAL_SOURCES.index(b) else b
