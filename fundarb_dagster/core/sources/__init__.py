"""Market-data sources: live ccxt.pro, the simulator, recorded replays and wire replays, one interface.

Every source kind is an *exchange object* that speaks ccxt.pro: `load_markets()`, `markets`,
`milliseconds()`, `watch_trades(symbol)`, `watch_ticker(symbol)`, `watch_bids_asks([symbol])` /
`watch_order_book(symbol)` where a venue's quotes come from them, `watch_ohlcv(symbol, timeframe)`,
`watch_funding_rate(symbol)` / `watch_mark_price(symbol)` where the venue streams funding, `fetch_ohlcv`,
`fetch_trades`, `fetch_funding_rate(s)`, `fetch_funding_rate_history`, `fetch_open_interest(symbol)` and
`watch_liquidations(symbol)` where the venue has them, `close()`, and `has`. They return
ccxt's unified structures. `feed.Feed` is the one consumer: it turns those calls into validated, normalized
record batches of the `schema` dtypes, the same code for every source. So the capture job, the importer
and the demo never know where data came from.

Constructors open no sockets and start no tasks; work starts with the first awaited call.
"""

from __future__ import annotations

from typing import Any

from ..config import FundarbConfig, api_credentials
from .base import EndOfData

__all__ = ["EndOfData", "open_exchange"]


def open_exchange(config: FundarbConfig, exchange_id: str) -> Any:
    """The exchange object for one configured exchange, of the configured source kind."""
    exchange_config = next(e for e in config.exchanges if e.id == exchange_id)
    symbols = exchange_config.symbols
    if config.source == "sim":
        from .sim import SimExchange

        return SimExchange(exchange_id, config.sim, symbols=symbols)
    if config.source == "replay":
        from .replay import ReplayExchange

        return ReplayExchange.from_config(exchange_id, config.replay, symbols=symbols)
    if config.source == "wire":
        from .wire import create_wire_exchange

        return create_wire_exchange(
            exchange_id, config.replay.path, speed=config.replay.speed, options=exchange_config.options
        )
    from .live import create_live_exchange

    return create_live_exchange(exchange_id, config.live, api_credentials(exchange_id), options=exchange_config.options)
