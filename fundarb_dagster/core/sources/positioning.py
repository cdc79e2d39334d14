"""What the Feed takes from a perp's positioning: its open interest and its public liquidation prints.

- `open_interest`: ccxt's open-interest structure, from `watch_open_interest` where ccxt.pro has it for the
  venue (none in ccxt 4.5), else `fetch_open_interest` polled every `open_interest_interval_s` of the
  exchange clock. A poll that repeats the last value (same time, same figures: bybit's REST value moves every
  5 minutes) is not kept again, only counted (`open_interest:unchanged`); a value older than the last kept is
  out of order, like any latest-state stream. Where a source states that the venue's ticker carries it
  (`open_interest_via(symbol) == "ticker"`: a wire replay of bybit's `tickers`, which carry `openInterest`
  and `openInterestValue`), it is read from `watch_ticker`'s merged `info` with the exchange's own
  `parse_open_interest`, and kept each time the venue's figure changes (its value moves with the mark price
  on every ticker: that alone is not a new open interest).
- `liquidations`: ccxt's liquidation structures from `watch_liquidations`; a venue without it (hyperliquid:
  no public liquidation channel) is refused by the config and, if asked anyway, by the Feed with
  `ccxt.NotSupported` naming the venue. Prints are identified by a hash of what they say (venues give no id):
  a repeat is a DUPLICATE (`dup:liquidation`), a late one is kept and reported (`ts:late`), like trades.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ccxt
import numpy as np

from .. import schema
from ..instruments import Instrument
from ..venues import venue_facts
from . import normalize
from .validation import Validator, concat_events


def open_interest_mode(exchange: Any, symbol: str) -> str:
    """`ticker` where the source states the symbol's ticker carries it (`open_interest_via`), `watch` where the
    exchange object streams open interest (`has['watchOpenInterest']`), else `poll`."""
    stated = getattr(exchange, "open_interest_via", None)
    if callable(stated) and stated(symbol) == "ticker":
        return "ticker"
    has = getattr(exchange, "has", None) or {}
    return "watch" if has.get("watchOpenInterest") and hasattr(exchange, "watch_open_interest") else "poll"


def open_interest_from_ticker(exchange: Any, ticker: Any) -> dict[str, Any] | None:
    """ccxt's open-interest structure from a ticker whose `info` carries the venue's figures (bybit `tickers`:
    `openInterest`, base units for linear and USD for inverse, and `openInterestValue`), parsed by the
    exchange's own `parse_open_interest` at the ticker's time; None when the ticker carries none."""
    info = ticker.get("info") if isinstance(ticker, dict) else None
    if not isinstance(info, dict) or info.get("openInterest") in (None, ""):
        return None
    market = exchange.market(ticker["symbol"])
    figures = {"openInterest": info["openInterest"], "timestamp": ticker.get("timestamp")}
    structure = exchange.parse_open_interest(figures, market)
    if structure.get("openInterestValue") is None:
        structure["openInterestValue"] = exchange.safe_number(info, "openInterestValue")
    return structure


def liquidation_side_meaning(exchange: Any) -> str | None:
    """What ccxt's `side` of the exchange's liquidation prints means (`VenueFacts.liquidation_side`); a source
    may state it (`liquidation_side`: a simulated venue follows the real one's row)."""
    stated = getattr(exchange, "liquidation_side", None)
    if stated in ("order", "position"):
        return str(stated)
    facts = venue_facts(str(exchange.id))
    return facts.liquidation_side if facts is not None else None


def require_liquidations(exchange: Any) -> None:
    """`ccxt.NotSupported` naming the venue when the exchange object has no `watch_liquidations`."""
    has = getattr(exchange, "has", None) or {}
    if not has.get("watchLiquidations") or not hasattr(exchange, "watch_liquidations"):
        raise ccxt.NotSupported(
            f"liquidations: {exchange.id} has no watch_liquidations in ccxt.pro (no public liquidation channel); "
            "remove the liquidations stream for this exchange"
        )


@dataclass
class OpenInterestState:
    """One open_interest subscription: how it is fed and the last value kept."""

    mode: str  # watch | poll | ticker
    last_key: tuple[float, ...] | None = None
    next_poll_ms: int | None = None

    def take(
        self, raw: Any, instrument: Instrument, recv: int, validator: Validator, counts: Counter[str]
    ) -> tuple[np.ndarray, np.ndarray, int | None]:
        """One structure -> (the record, or nothing when it repeats the last; events; its time or None)."""
        if raw is None and self.mode == "ticker":  # a ticker without open interest: nothing to take
            return schema.empty("open_interest"), schema.empty("capture_events"), None
        items, screened = validator.screen("open_interest", [raw], instrument.id, recv)
        if not items:
            return schema.empty("open_interest"), screened, None
        record = normalize.open_interest_to_record(items[0], instrument, recv)
        # a ticker's open interest is new when the venue's figure changes (its value follows the mark price)
        figures = ("contracts", "value") if self.mode == "ticker" else ("ts_ms", "contracts", "value")
        figures = figures[:1] if self.mode == "ticker" and not instrument.inverse else figures
        key = tuple(-1.0 if v != v else float(v) for v in (record[f][0] for f in figures))
        if key == self.last_key:
            counts["open_interest:unchanged"] += 1
            return record[:0], screened, int(record["ts_ms"][0])
        accepted, checked = validator.check("open_interest", record, recv)
        if len(accepted):
            self.last_key = key
        return accepted, concat_events([screened, checked]), int(record["ts_ms"][0])


def take_liquidations(
    raw: Any, instrument: Instrument, recv: int, validator: Validator, side_means: str | None
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """A `watch_liquidations` result (a list of structures) -> (accepted records, events, first time or None)."""
    items = list(raw) if isinstance(raw, Sequence) else [raw]
    items, screened = validator.screen("liquidations", items, instrument.id, recv)
    records = normalize.liquidations_to_records(items, instrument, recv, side_means)
    valid = records["ts_ms"][records["ts_ms"] > 0]
    accepted, checked = validator.check("liquidations", records, recv)
    return accepted, concat_events([screened, checked]), int(valid.min()) if len(valid) else None
