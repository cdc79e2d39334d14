"""Dropping a silent subscription at the source (ccxt.pro's `un_watch_*`), so the next call subscribes afresh."""

from __future__ import annotations

from typing import Any

# stream -> its un-watch call and `has` flag; tickers and funding depend on the channel they read (the mode)
_CALLS: dict[str, tuple[str, str]] = {
    "trades": ("un_watch_trades", "unWatchTrades"),
    "ohlcv": ("un_watch_ohlcv", "unWatchOHLCV"),
    "order_book": ("un_watch_order_book", "unWatchOrderBook"),
    "liquidations": ("un_watch_liquidations", "unWatchLiquidations"),
}
_TICKER_CALLS = {
    "bids_asks": ("un_watch_bids_asks", "unWatchBidsAsks"),
    "order_book": ("un_watch_order_book", "unWatchOrderBook"),
}
_FUNDING_CALLS = {
    "mark_price": ("un_watch_mark_price", "unWatchMarkPrice"),
    "ticker": ("un_watch_ticker", "unWatchTicker"),
    "funding_rate": ("un_watch_funding_rate", "unWatchFundingRate"),
}


async def unwatch(exchange: Any, stream: str, mode: str, symbol: str, timeframe: str) -> bool:
    """Call the subscription's un-watch where the exchange has it; False when that call failed (best effort:
    the re-subscription is what matters)."""
    if stream == "tickers":
        name, flag = _TICKER_CALLS.get(mode.partition(":")[0], ("un_watch_ticker", "unWatchTicker"))
    elif stream == "funding":
        name, flag = _FUNDING_CALLS.get(mode, ("", ""))
    elif mode == "poll":
        return True  # a REST poll (order books over REST) holds no subscription
    else:
        name, flag = _CALLS.get(stream, ("", ""))
    has = getattr(exchange, "has", None) or {}
    method = getattr(exchange, name, None) if name else None
    if method is None or not has.get(flag):
        return True
    args: tuple[Any, ...] = (symbol, timeframe) if stream == "ohlcv" else (symbol,)
    if name == "un_watch_bids_asks":
        args = ([symbol],)
    try:
        await method(*args)
    except Exception:  # noqa: BLE001 - best effort
        return False
    return True
