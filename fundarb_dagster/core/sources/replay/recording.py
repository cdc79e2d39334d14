"""One exchange's recording, loaded: its series per (symbol, stream[, timeframe]) and the markets they give.

Loaded from the landing zone (`landing_reader`, with `instruments.json` beside it for the exact market
details) or from recorded files (`parsers.parse_file`; files of other symbols are not even parsed). Knows
nothing of clocks or consumers: `ReplayExchange` serves what is loaded here.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...config import ConfigError
from ...instruments import InstrumentRegistry, registry_path
from ...resample import aggregate_ohlcv
from ..markets import market_for
from .formats import detect_kind, symbol_hint
from .landing_reader import read_landing
from .parsers import ParsedFile, _sort_dedupe, parse_file

_KNOWN_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USD", "BTC", "ETH", "BNB", "EUR", "TRY")


class Recording:
    """The series of one exchange in a recording; `load()` reads them (once, the caller makes sure)."""

    def __init__(self, exchange_id: str, path: str | Path, format: str, symbols: Sequence[str] | None) -> None:  # noqa: A002
        self.id = exchange_id
        self.path = Path(path)
        self.format = format
        self.requested_symbols = tuple(symbols) if symbols else None
        self.markets: dict[str, dict[str, Any]] = {}
        self.unrecognized: list[tuple[Path, str]] = []  # files skipped while loading, with the reason
        self.rejected: dict[Path, ParsedFile] = {}  # files that had quarantined rows
        self.available: set[str] = set()  # every symbol the recording holds for this exchange (files)
        self.series: dict[tuple[Any, ...], np.ndarray] = {}
        self.start_ms = 0  # the first delivery time of any series (0 until loaded)
        self.end_ms = 0

    def load(self) -> None:
        """Read the recording: series, markets, start and end; a ConfigError when it holds nothing wanted."""
        if self.format == "landing":
            found = read_landing(self.path, self.id, self.requested_symbols)
            registry = self._landing_registry()
            for (symbol, stream), records in found.items():
                self._add(symbol, stream, records=records)
            markets_from = registry
        else:
            self._load_files()
            markets_from = None
        recorded = sorted({key[0] for key in self.series})
        self.available.update(recorded)
        wanted = list(self.requested_symbols) if self.requested_symbols else recorded
        if not set(wanted) & set(recorded):
            # A config problem, not the end of a recording: nothing would ever be replayed.
            raise ConfigError(
                f"replay.path: {str(self.path)!r} ({self.format}) holds no {self.id} data for {wanted}; "
                f"it holds {sorted(self.available) or 'nothing'}"
            )
        self.markets = {}
        for symbol in wanted:
            if symbol not in recorded:
                continue  # not listed: check_symbols names it
            market = market_for(symbol)
            if markets_from is not None and (self.id, symbol) in markets_from:
                instrument = markets_from.get(self.id, symbol)
                market = market_for(
                    symbol, instrument.venue_symbol, instrument.contract_size, expiry_ms=instrument.expiry_ms
                )
            self.markets[symbol] = market
        self._merge_mark_prices()
        starts = [float(self.delivery(k, s)[0]) for k, s in self.series.items() if len(s) and k[1] != "mark"]
        ends = [float(self.delivery(k, s)[-1]) for k, s in self.series.items() if len(s) and k[1] != "mark"]
        self.start_ms = int(min(starts)) if starts else 0
        self.end_ms = int(max(ends)) if ends else 0

    def _landing_registry(self) -> InstrumentRegistry | None:
        for folder in (self.path, self.path.parent):
            if registry_path(folder).exists():
                return InstrumentRegistry.load(registry_path(folder))
        return None

    def _load_files(self) -> None:
        files = (
            [self.path]
            if self.path.is_file()
            else sorted(p for p in self.path.rglob("*") if p.is_file() and p.suffix.lower() in (".csv", ".zip"))
        )
        for file in files:
            try:
                kind = detect_kind(file)
                named = None if kind == "funding_table" else self._resolve_symbol(file, *symbol_hint(file, kind))
                if named is not None:
                    self.available.add(named)
                    if self.requested_symbols and named not in self.requested_symbols:
                        continue  # another symbol's file: not even parsed
                parsed = parse_file(file, kind)
            except (ValueError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
                self.unrecognized.append((file, str(exc)))
                continue
            if parsed.reject_counts:
                self.rejected[file] = parsed
            for (exchange, symbol), records in parsed.parts.items():
                if exchange is not None and exchange != self.id:
                    continue
                resolved = symbol or named
                if resolved is None:
                    self.unrecognized.append((file, f"symbol: cannot tell which symbol {file.name!r} is for"))
                    continue
                self.available.add(resolved)
                if self.requested_symbols and resolved not in self.requested_symbols:
                    continue
                timeframe = parsed.timeframe_s if parsed.stream in ("ohlcv", "mark") else None
                self._add(resolved, parsed.stream, timeframe, records=records)

    def _resolve_symbol(self, path: Path, hint: str | None, market_type: str | None) -> str | None:
        """The unified symbol a file is for: its name's symbol, or its venue id matched to the configured
        symbols (a `spot/` or `futures/` folder tells BTC/USDT from BTC/USDT:USDT), else split on a known quote.
        """
        if hint is None:
            return None
        if "/" in hint:
            return hint
        candidates = [s for s in (self.requested_symbols or ()) if market_for(s)["id"] == hint]
        if market_type is not None:
            candidates = [s for s in candidates if market_for(s)["type"] == market_type]
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise ValueError(f"symbol: {path.name!r} could be {candidates}; put it under a spot/ or futures/ folder")
        for quote in _KNOWN_QUOTES:
            if hint.endswith(quote) and len(hint) > len(quote):
                base = hint[: -len(quote)]
                return f"{base}/{quote}:{quote}" if market_type == "swap" else f"{base}/{quote}"
        return None

    def _add(self, symbol: str, stream: str, timeframe_s: int | None = None, *, records: np.ndarray) -> None:
        if stream == "ohlcv" and timeframe_s is None:  # landing: split by timeframe
            for tf in np.unique(records["timeframe_s"]).tolist():
                self._add(symbol, "ohlcv", int(tf), records=records[records["timeframe_s"] == tf])
            return
        key = (symbol, stream, timeframe_s) if stream in ("ohlcv", "mark") else (symbol, stream)
        if key in self.series:
            merged = np.concatenate([self.series[key], records])
            records = merged[np.argsort(merged["ts_ms"], kind="stable")]
            if stream != "tickers":
                records, _ = _sort_dedupe("ohlcv" if stream == "mark" else stream, records)
        self.series[key] = records

    def _merge_mark_prices(self) -> None:
        """Fill funding rows' missing mark price from recorded mark candles (the open of the bar at the time)."""
        for key, funding in self.series.items():
            if key[1] != "funding" or not len(funding):
                continue
            marks = sorted((k for k in self.series if k[0] == key[0] and k[1] == "mark"), key=lambda k: k[2])
            for mark_key in marks:  # finest timeframe first
                bars = self.series[mark_key]
                missing = np.isnan(funding["mark_price"])
                if not missing.any() or not len(bars):
                    break
                idx = np.searchsorted(bars["ts_ms"], funding["ts_ms"], side="right") - 1
                inside = (idx >= 0) & (funding["ts_ms"] < bars["ts_ms"][np.maximum(idx, 0)] + mark_key[2] * 1000)
                fill = missing & inside
                funding["mark_price"][fill] = bars["open"][idx[fill]]

    @staticmethod
    def delivery(key: tuple[Any, ...], records: np.ndarray) -> np.ndarray:
        """When each record of a series is delivered: at its time, a candle when it closes."""
        if key[1] in ("ohlcv", "mark"):
            return records["ts_ms"] + int(key[2]) * 1000
        return records["ts_ms"]

    def series_of(self, key: tuple[Any, ...]) -> np.ndarray | None:
        """A recorded series, or bars of an unrecorded timeframe derived from recorded data; None if neither."""
        records = self.series.get(key)
        return records if records is not None else self._derived(key)

    def _derived(self, key: tuple[Any, ...]) -> np.ndarray | None:
        """Bars of an unrecorded timeframe from a finer recorded one that divides it, else from trades."""
        if key[1] != "ohlcv":
            return None
        symbol, _, tf = key
        finer = sorted(k[2] for k in self.series if k[0] == symbol and k[1] == "ohlcv" and tf % k[2] == 0)
        if finer:
            bars = self.series[(symbol, "ohlcv", finer[-1])]
            derived = aggregate_ohlcv(
                bars["ts_ms"], bars["open"], bars["high"], bars["low"], bars["close"], bars["volume"], tf
            )
        elif (symbol, "trades") in self.series:
            t = self.series[(symbol, "trades")]
            derived = aggregate_ohlcv(t["ts_ms"], t["price"], t["price"], t["price"], t["price"], t["amount"], tf)
        else:
            return None
        self.series[key] = derived
        return derived

    def prepare_funding_watch(self, symbol: str) -> None:
        """Stream the predicted rates when the recording has them, else the settled ones as they settle."""
        key = (symbol, "funding_watch")
        if key in self.series or (symbol, "funding") not in self.series:
            return
        funding = self.series[(symbol, "funding")]
        predicted = funding[funding["is_settled"] == 0]
        self.series[key] = predicted if len(predicted) else funding
