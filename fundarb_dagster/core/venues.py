"""What fundarb knows about each venue, one declarative row per venue, read by every source and model.

A `VenueFacts` row holds the facts that are true of the venue whatever reads them: the ccxt ids that reach
it and the market kinds loaded live, the channel it streams funding on, the channel its best bid/ask come
from (per market kind), which websocket channel gives trades, quotes, candles and funding and what it does
not give (`channels`: the README's table is rendered from it), how it spells market ids, its base-tier fees
(bps), maintenance margin rate, the price funding is paid on, a documented funding schedule where the
venue's structures state none, and whether the simulator models it. Generic code (the `Feed`, the live
source, backtest defaults, opportunity costs, config validation) reads the row; it never compares exchange
ids. The simulator keeps its own world parameters
(premium regimes, caps, spreads) beside these facts in `sources/sim/venues.py`.

    facts = venue_facts("binanceusdm")      # the binance row: any of its ccxt ids finds it
    facts.funding_channel                   # "mark_price"
    facts.quote_channel("spot")             # "bids_asks": bookTicker, its ticker carries no bid/ask
    facts.fees_bps.taker("perp")            # 5.0

Adding a venue is adding its row here (plus a normaliser only if its funding channel is new).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

# How a venue streams funding on its websockets; the Feed calls the matching ccxt.pro method.
FUNDING_CHANNELS: Final = ("mark_price", "ticker", "funding_rate")
FUNDING_PRICES: Final = ("mark", "oracle")
LIQUIDATION_SIDES: Final = ("order", "position")
# Where a venue's best bid/ask come from, the Feed's call for the `tickers` stream: `watch_ticker`,
# `watch_bids_asks` (a best bid/offer channel), or the top of `watch_order_book`.
QUOTE_CHANNELS: Final = ("ticker", "bids_asks", "order_book")
# What the README's per-venue table says of each: which channel gives it, and what is known to be missing.
CHANNEL_TOPICS: Final = ("trades", "quotes", "candles", "funding", "unavailable")

UNIFIED_SYMBOL: Final = re.compile(r"^(?P<base>[^/]+)/(?P<quote>[^:]+)(?::(?P<settle>[^-]+)(?:-(?P<expiry>\d{6}))?)?$")


def split_symbol(symbol: str) -> tuple[str, str, str | None, str | None]:
    """`BTC/USDT:USDT-240329` -> ("BTC", "USDT", "USDT", "240329"); a clear error when it is not unified."""
    m = UNIFIED_SYMBOL.match(symbol)
    if m is None:
        raise ValueError(f"symbol: {symbol!r} is not a ccxt unified symbol like BTC/USDT or BTC/USDT:USDT")
    return m["base"], m["quote"], m["settle"], m["expiry"]


def is_dated_future(symbol: str) -> bool:
    """`BTC/USD:BTC-220527` (ccxt's dated future: settle, then the expiry as YYMMDD) -> True."""
    m = UNIFIED_SYMBOL.match(symbol)
    return m is not None and m["expiry"] is not None


@dataclass(frozen=True)
class Fees:
    """Base-tier (VIP 0) fees in bps (fraction x 1e4) by market kind, as published by the venue in 2025-2026."""

    spot_taker: float
    spot_maker: float
    perp_taker: float
    perp_maker: float

    def taker(self, kind: str) -> float:
        """Taker fee (bps) of a market kind: `spot`, or `perp` / `swap` (the same thing, two vocabularies)."""
        return self.spot_taker if _kind(kind) == "spot" else self.perp_taker

    def maker(self, kind: str) -> float:
        return self.spot_maker if _kind(kind) == "spot" else self.perp_maker


def _kind(kind: str) -> str:
    if kind not in ("spot", "perp", "swap"):
        raise ValueError(f"kind: {kind!r}; expected 'spot', 'perp' or 'swap'")
    return "spot" if kind == "spot" else "perp"


# -- market-id formats: how the venue's own payloads spell a unified symbol --------------------------------
def concatenated_id(base: str, quote: str, settle: str | None, expiry: str | None) -> str:
    """bybit and most venues: `BTCUSDT` (spot and linear perp alike), dated futures `BTCUSDT-260327`."""
    return f"{base}{quote}-{expiry}" if expiry else f"{base}{quote}"


def binance_id(base: str, quote: str, settle: str | None, expiry: str | None) -> str:
    """binance: `BTCUSDT`, coin-margined perp `BTCUSD_PERP`, dated futures `BTCUSDT_260327`."""
    if expiry:
        return f"{base}{quote}_{expiry}"
    return f"{base}{quote}_PERP" if settle is not None and settle == base else f"{base}{quote}"


def okx_id(base: str, quote: str, settle: str | None, expiry: str | None) -> str:
    """okx: spot `BTC-USDT`, perp `BTC-USDT-SWAP`, dated futures `BTC-USDT-260327`."""
    if settle is None:
        return f"{base}-{quote}"
    return f"{base}-{quote}-{expiry}" if expiry else f"{base}-{quote}-SWAP"


def hyperliquid_id(base: str, quote: str, settle: str | None, expiry: str | None) -> str:
    """hyperliquid: perps by coin (`BTC`), spot pairs `BASE/QUOTE` (ccxt keeps the venue's `@index` in info)."""
    return base if settle is not None else f"{base}/{quote}"


MarketIdFormat = Callable[[str, str, "str | None", "str | None"], str]


@dataclass(frozen=True)
class VenueFacts:
    """One venue's facts (see the module doc)."""

    id: str  # the venue's ccxt id, the `exchange` column
    market_types: Mapping[str, tuple[str, ...]]  # every ccxt id reaching the venue -> market kinds loaded live
    quote: str  # what its linear perps fundarb trades are quoted and settled in
    funding_channel: str  # FUNDING_CHANNELS: where its websockets carry funding
    mark_price_stream: bool  # ccxt.pro `watchMarkPrice` exists for it
    market_id: MarketIdFormat  # (base, quote, settle, expiry) -> the venue's market id
    fees_bps: Fees
    maintenance_margin_rate: float  # fraction of notional, base tier, linear perps
    funding_price: str = "mark"  # FUNDING_PRICES: the price a settlement is paid on
    # Hours over which the venue's funding pays, once, a premium of the same size: None = each funding interval
    # (binance, bybit, okx: `F = P + clamp(I - P)` per interval, whatever its length); hyperliquid computes an
    # 8-hour rate and pays 1/8 of it every hour, so 8. What `core.basis` annualises a basis with.
    premium_period_h: float | None = None
    simulated: bool = False  # the simulator (`sources/sim`) models it
    # market kind ("spot", "contract") -> QUOTE_CHANNELS: where best bid/ask come from
    quotes: Mapping[str, str] = field(default_factory=lambda: {"spot": "ticker", "contract": "ticker"})
    channels: Mapping[str, str] = field(default_factory=dict)  # CHANNEL_TOPICS -> the venue's channel, for people
    ws_candle_volume_in_contracts: bool = False  # its websocket candles of contracts count contracts, not base
    funding_schedule_h: float | None = None  # a documented fixed interval, where no structure states one
    # What ccxt's `side` of the venue's public liquidation prints means: "order" (the liquidation order's side:
    # sell = a long was liquidated; binance forceOrder, okx), "position" (the liquidated position's: bybit's
    # allLiquidation sends Buy when a long was liquidated); None: no public liquidation channel in ccxt.pro.
    liquidation_side: str | None = None

    @property
    def ccxt_ids(self) -> tuple[str, ...]:
        return tuple(self.market_types)

    def quote_channel(self, kind: str) -> str:
        """QUOTE_CHANNELS entry for a market kind: `spot`, or `contract` (swaps and dated futures)."""
        if kind not in ("spot", "contract"):
            raise ValueError(f"kind: {kind!r}; expected 'spot' or 'contract'")
        return self.quotes[kind]


VENUE_FACTS: Final[dict[str, VenueFacts]] = {
    f.id: f
    for f in (
        VenueFacts(
            id="binance",
            # the one ccxt.pro.binance instance routes perps to USD-M by market type; usdm/coinm are perps only
            market_types={
                "binance": ("spot", "linear", "inverse"),
                "binanceusdm": ("linear",),
                "binancecoinm": ("inverse",),
            },
            quote="USDT",
            funding_channel="mark_price",
            mark_price_stream=True,
            market_id=binance_id,
            fees_bps=Fees(spot_taker=10.0, spot_maker=10.0, perp_taker=5.0, perp_maker=2.0),
            maintenance_margin_rate=0.004,
            simulated=True,
            # miniTicker (ccxt's watch_ticker) carries no bid/ask: quotes come from bookTicker everywhere
            quotes={"spot": "bids_asks", "contract": "bids_asks"},
            channels={
                "trades": "`<id>@trade`; `@aggTrade` with the option `{watchTrades: {name: aggTrade}}`",
                "quotes": "`<id>@bookTicker` (`watch_bids_asks`), spot, USD-M and COIN-M",
                "candles": "`<id>@kline_<tf>`; COIN-M volumes count contracts (converted at the close)",
                "funding": "`<id>@markPrice@1s` (`watch_mark_price`): rate `r`, next settlement `T`, mark, index",
                "unavailable": "last price on quote rows (bookTicker has none); mark/index there (in funding rows)",
            },
            ws_candle_volume_in_contracts=True,
            liquidation_side="order",
        ),
        VenueFacts(
            id="bybit",
            market_types={"bybit": ("spot", "linear", "inverse")},  # not options: bybit lists them per coin
            quote="USDT",
            funding_channel="ticker",
            mark_price_stream=False,
            market_id=concatenated_id,
            fees_bps=Fees(spot_taker=10.0, spot_maker=10.0, perp_taker=5.5, perp_maker=2.0),
            maintenance_margin_rate=0.005,
            simulated=True,
            # spot tickers carry last and 24h figures only: spot quotes come from orderbook.1
            quotes={"spot": "bids_asks", "contract": "ticker"},
            channels={
                "trades": "`publicTrade.<id>`",
                "quotes": "spot `orderbook.1.<id>` (`watch_bids_asks`); contracts `tickers.<id>` (bid1/ask1)",
                "candles": "`kline.<tf>.<id>`",
                "funding": "inside `tickers.<id>`: fundingRate, nextFundingTime, fundingIntervalHour",
                "unavailable": "spot mark/index; spot bid/ask on `tickers` (hence orderbook.1)",
            },
            liquidation_side="position",
        ),
        VenueFacts(
            id="okx",
            market_types={kind: ("spot", "swap", "future") for kind in ("okx", "myokx", "okxus")},
            quote="USDT",
            funding_channel="funding_rate",
            mark_price_stream=True,
            market_id=okx_id,
            fees_bps=Fees(spot_taker=10.0, spot_maker=8.0, perp_taker=5.0, perp_maker=2.0),
            maintenance_margin_rate=0.004,
            simulated=True,
            channels={
                "trades": "`trades` (instId)",
                "quotes": "`tickers` (bidPx/askPx), spot, swaps and dated futures",
                "candles": "`candle<tf>` (volume: volCcy, base units)",
                "funding": "`funding-rate` (`watch_funding_rate`): rate, fundingTime, nextFundingTime",
                "unavailable": "mark/index on ticker rows (the mark-price channel is not captured)",
            },
            liquidation_side="order",
        ),
        VenueFacts(
            id="hyperliquid",
            market_types={"hyperliquid": ("spot", "swap")},
            quote="USDC",
            funding_channel="ticker",
            mark_price_stream=False,
            market_id=hyperliquid_id,
            fees_bps=Fees(spot_taker=7.0, spot_maker=4.0, perp_taker=4.5, perp_maker=1.5),
            maintenance_margin_rate=0.0125,
            funding_price="oracle",  # funding is paid on the oracle price
            premium_period_h=8.0,  # an 8-hour rate, paid 1/8 every hour
            simulated=True,
            # perp contexts carry impact prices as bid/ask; spot contexts carry none, so spot reads l2Book
            quotes={"spot": "order_book", "contract": "ticker"},
            channels={
                "trades": "`trades` (coin)",
                "quotes": "perps `activeAssetCtx` (impactPxs); spot the top of `l2Book`",
                "candles": "`candle` (coin, interval)",
                "funding": "inside `activeAssetCtx`: funding, markPx, oraclePx; hourly by the documented schedule",
                "unavailable": "the perps' top of book on ticker rows (impact prices stand in); a settlement time",
            },
            funding_schedule_h=1.0,  # documented: funding is paid every hour, on the hour
        ),
    )
}

# What a venue without a row costs: fees a little above the big venues', a middling margin rate.
DEFAULT_FEES_BPS: Final = Fees(spot_taker=10.0, spot_maker=10.0, perp_taker=6.0, perp_maker=2.0)
DEFAULT_MAINTENANCE_MARGIN_RATE: Final = 0.005

_BY_CCXT_ID: Final[dict[str, VenueFacts]] = {i: f for f in VENUE_FACTS.values() for i in f.ccxt_ids}


def venue_facts(exchange_id: str) -> VenueFacts | None:
    """The row of the venue a ccxt id reaches (`binanceusdm` -> binance), None for a venue without one."""
    return _BY_CCXT_ID.get(exchange_id)


def simulated_venues() -> tuple[str, ...]:
    """The venues the simulator models, in row order."""
    return tuple(f.id for f in VENUE_FACTS.values() if f.simulated)


def market_types(exchange_id: str) -> tuple[str, ...] | None:
    """The market kinds to load live for a ccxt id (ccxt's `fetchMarkets.types`); None: ccxt's default."""
    facts = venue_facts(exchange_id)
    return None if facts is None else facts.market_types[exchange_id]


def venue_market_id(exchange_id: str, symbol: str) -> str:
    """The venue's market id for a unified symbol, as the venue's own REST/websocket payloads spell it."""
    facts = venue_facts(exchange_id)
    spell = concatenated_id if facts is None else facts.market_id
    return spell(*split_symbol(symbol))


def fees_bps(exchange_id: str) -> Fees:
    """Base-tier fees (bps) of a ccxt id's venue, else `DEFAULT_FEES_BPS`."""
    facts = venue_facts(exchange_id)
    return DEFAULT_FEES_BPS if facts is None else facts.fees_bps


def maintenance_margin_rate(exchange_id: str) -> float:
    facts = venue_facts(exchange_id)
    return DEFAULT_MAINTENANCE_MARGIN_RATE if facts is None else facts.maintenance_margin_rate


def channel_table() -> str:
    """The README's table: per venue, which channel gives trades, quotes, candles, funding, and what is not
    available, rendered from the rows (a test holds the README to it)."""
    lines = ["| venue | " + " | ".join(CHANNEL_TOPICS) + " |", "|---" * (len(CHANNEL_TOPICS) + 1) + "|"]
    for facts in VENUE_FACTS.values():
        lines.append(f"| {facts.id} | " + " | ".join(facts.channels.get(t, "") for t in CHANNEL_TOPICS) + " |")
    return "\n".join(lines)
