"""Replay recorded market data through the ccxt.pro interface, at a speed factor (0 = as fast as possible).

Three recordings are understood, all turned into the `schema` record dtypes first:

- the project's own landing zone (`<data_dir>/landing/<stream>/date=.../hour=.../*.parquet`, read with
  pyarrow's hive partitioning; `instruments.json` beside it gives the exact market details);
- the fixture CSV shapes (`XRP_ETH-trades.csv`: `time_ms_utc,time_utc,trade_id,side_taker,price,amount_base,
  cost_quote`; `XRP_ETH-1m.csv` / `XRP_USDT_USDT-5m-futures.csv` / `...-1h-mark.csv`:
  `time_ms_utc,time_utc,open,high,low,close,volume`; `XRP_USDT_USDT-8h-funding_rate.csv`:
  `time_ms_utc,time_utc,funding_rate,...`; the multi-venue funding table with `venue,venue_symbol,
  canonical_symbol,settlement_time_ms_utc,...,funding_rate,interval_hours,...,mark_price,...`);
- Binance public-data archives, `.csv` or the `.zip` Binance ships, with or without a header row, ms or µs
  timestamps (`klines`: `1704067200000,42283.58,42554.57,42261.02,42475.23,1271.68,1704070799999,...`;
  `trades`: `id,price,qty,quote_qty,time,is_buyer_maker[,is_best_match]`; `aggTrades`: `agg_trade_id,price,
  quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker[,is_best_match]`; `fundingRate`:
  `calc_time,funding_interval_hours,last_funding_rate`; `bookTicker`: `update_id,best_bid_price,best_bid_qty,
  best_ask_price,best_ask_qty,transaction_time,event_time`; `markPriceKlines` as klines, used as mark prices).

`parse_file` is shared with the importer (`core/importer.py`): one parser, one set of validation rules,
bad rows quarantined with a reason naming the field and the value.

`ReplayExchange` answers `load_markets` (minimal ccxt market dicts: `BTC/USDT` spot, `BTC/USDT:USDT` linear
swap), `milliseconds` (the replay clock), `watch_trades` / `watch_ticker` / `watch_ohlcv` / `watch_funding_rate` with
ccxt's unified structures in event-time order, and `fetch_ohlcv` / `fetch_trades` /
`fetch_funding_rate_history` from the whole recording (history works offline). Delivery times: a trade,
ticker or funding value at its `ts_ms`; a candle when it closes (`ts_ms + timeframe`), so a consumer never
sees a bar before it is complete. With `speed > 0` the replay clock runs at `speed` market seconds per wall
second from the first watch call; with `speed == 0` it jumps to each delivered event, and concurrent watch
calls are served in event-time order across streams (a consumer that stops calling is skipped after a short
wait, so nobody deadlocks). When a watch call's data is exhausted it raises `EndOfData`.

Modules, by concern: `formats` (the kinds of file and telling them apart), `parsers` (a file -> records,
bad rows quarantined), `landing_reader` (the landing zone -> records), `recording` (one exchange's series
loaded from either), `structures` (records -> ccxt structures) and `exchange` (`ReplayExchange`: the clock
and the watch/fetch methods). Everything is importable from this package as before the split.
"""

from __future__ import annotations

from ..base import EndOfData
from ..markets import market_for
from .exchange import ReplayExchange
from .formats import (
    FORMATS,
    KIND_STREAMS,
    KINDS,
    canonical_to_unified,
    detect_kind,
    symbol_hint,
    timeframe_name,
    timeframe_seconds,
    to_epoch_ms,
)
from .landing_reader import read_landing
from .parsers import CHUNK_ROWS, ParsedFile, Reject, fill_intervals, parse_file, parse_files
from .structures import iso8601

__all__ = [
    "CHUNK_ROWS",
    "FORMATS",
    "KINDS",
    "KIND_STREAMS",
    "EndOfData",
    "ParsedFile",
    "Reject",
    "ReplayExchange",
    "canonical_to_unified",
    "detect_kind",
    "fill_intervals",
    "iso8601",
    "market_for",
    "parse_file",
    "parse_files",
    "read_landing",
    "symbol_hint",
    "timeframe_name",
    "timeframe_seconds",
    "to_epoch_ms",
]
