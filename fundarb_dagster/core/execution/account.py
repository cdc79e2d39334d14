"""One venue account: balances, isolated-margin perp positions, leverage, funding received or paid, liquidations.

The wallet holds cash per currency; an isolated position's margin is part of its settle currency's cash and
not free. A perp fill opens or adds at the leverage in force (margin = notional / leverage), or reduces
(realised PnL into cash, margin released pro rata), or both (a flip). A spot fill moves quote against base.
Fees leave the cash of the quote (settle) currency. Funding at a settlement pays
`-side x base amount x reference price x rate` (longs pay a positive rate) into the cash and into the
position's isolated margin, as binance and bybit book it. A position whose equity (`margin + side x base x
(mark - entry)`) falls to its maintenance margin (tier mmr and maintenance amount, `tiers.py`) is
liquidated at the mark: its whole margin is lost (the rest of its equity goes to the venue's insurance fund).

The account is plain state, told what happened (`fill`, `settle_funding`, `liquidate`) by the matching engine
and the market driver; it checks an order before it is accepted (`check_order`) and raises the venue's own
error (`rules.venue_error`). Balances, positions, funding history and liquidations come out as ccxt's
unified structures.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from . import tiers as tiering
from .rules import venue_error
from .structures import UNIFIED, iso

DEFAULT_LEVERAGE: Final = 10.0  # a market's leverage until set_leverage (capped by its top tier)

TierSource = Callable[[str], Sequence[Mapping[str, Any]]]  # symbol -> ccxt leverage tiers, ascending


@dataclass
class Position:
    """An isolated one-way position of a linear perp; `contracts` is signed (+ long, - short)."""

    symbol: str
    settle: str
    contract_size: float
    contracts: float = 0.0
    entry_price: float = 0.0
    margin: float = 0.0
    realized_pnl: float = 0.0
    funding: float = 0.0
    updated_ms: int = 0

    @property
    def sign(self) -> int:
        return 1 if self.contracts > 0 else -1

    @property
    def base(self) -> float:
        """The position's size in base units (contracts x contract size), unsigned."""
        return abs(self.contracts) * self.contract_size

    def equity(self, mark: float) -> float:
        return self.margin + self.sign * self.base * (mark - self.entry_price)


class Account:
    """Balances, positions and ledgers of one venue account (see the module doc)."""

    def __init__(self, venue: str, balances: Mapping[str, float], tiers: TierSource) -> None:
        self.venue = venue
        self.cash: dict[str, float] = {code: float(v) for code, v in balances.items()}
        self.tiers = tiers
        self.positions: dict[str, Position] = {}
        self.leverages: dict[str, float] = {}
        self.reserved: dict[str, tuple[str, float]] = {}  # order id -> (currency, amount) held for it
        self.funding_history: list[dict[str, Any]] = []
        self.held: dict[str, list[tuple[int, float]]] = {}  # symbol -> (time, signed contracts after), ascending
        self.liquidations: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    # -- leverage and free balance -----------------------------------------------------------------------
    def leverage(self, symbol: str) -> float:
        return self.leverages.get(symbol, min(DEFAULT_LEVERAGE, tiering.max_leverage(self.tiers(symbol))))

    def set_leverage(self, market: Mapping[str, Any], leverage: float) -> None:
        symbol = market["symbol"]
        tiers = self.tiers(symbol)
        pos = self.positions.get(symbol)
        notional = pos.base * pos.entry_price if pos is not None and pos.contracts else 0.0
        if not 1 <= leverage <= tiering.max_leverage(tiers) or notional > tiering.max_notional_at(tiers, leverage):
            raise venue_error(self.venue, "leverage", leverage=f"{leverage:g}")
        self.leverages[symbol] = float(leverage)

    def free(self, code: str) -> float:
        """Cash not held as a position's margin or for a resting order."""
        held = sum(p.margin for p in self.positions.values() if p.settle == code and p.contracts)
        held += sum(amount for c, amount in self.reserved.values() if c == code)
        return self.cash.get(code, 0.0) - held

    def reserve(self, order_id: str, code: str, amount: float) -> None:
        self.reserved[order_id] = (code, amount)

    def release(self, order_id: str) -> None:
        self.reserved.pop(order_id, None)

    # -- before an order is accepted ----------------------------------------------------------------------
    def check_order(
        self, market: Mapping[str, Any], side: str, contracts: float, price: float, reduce_only: bool, fee_rate: float
    ) -> tuple[str, float]:
        """Refuse an order the account cannot carry (the venue's error); returns what to hold for it while it
        rests: (currency, amount)."""
        spot = bool(market.get("spot"))
        if spot:
            base, quote = market["base"], market["quote"]
            if side == "buy":
                need = contracts * price * (1 + fee_rate)
                if need > self.free(quote) + 1e-9:
                    raise venue_error(self.venue, "insufficient_margin", spot=True)
                return quote, need
            if contracts > self.free(base) + 1e-12:
                raise venue_error(self.venue, "insufficient_margin", spot=True)
            return base, contracts
        symbol = market["symbol"]
        pos = self.positions.get(symbol)
        current = pos.contracts if pos is not None else 0.0
        delta = contracts if side == "buy" else -contracts
        if reduce_only:  # it must face a position; past the position's size it fills only the position
            if current == 0 or current * delta > 0:
                raise venue_error(self.venue, "reduce_only")
            return market["settle"], 0.0
        size = float(market.get("contractSize") or 1.0)
        after = abs(current + delta) * size * price
        # the part that opens or adds: all of it in the position's direction, past the position when against it
        opening = abs(delta) if current * delta >= 0 else max(0.0, abs(delta) - abs(current))
        leverage = self.leverage(symbol)
        if opening and after > tiering.max_notional_at(self.tiers(symbol), leverage):
            raise venue_error(self.venue, "position_limit")
        margin = opening * size * price / leverage
        need = margin + contracts * size * price * fee_rate
        if need > self.free(market["settle"]) + 1e-9:
            raise venue_error(self.venue, "insufficient_margin")
        return market["settle"], margin

    # -- what happened ------------------------------------------------------------------------------------
    def fill(
        self, market: Mapping[str, Any], side: str, contracts: float, price: float, fee_cost: float, t: int
    ) -> float:
        """Book a fill; returns the PnL it realised (0 for spot and for opening)."""
        if market.get("spot"):
            base, quote = market["base"], market["quote"]
            sign = 1.0 if side == "buy" else -1.0
            self.cash[base] = self.cash.get(base, 0.0) + sign * contracts
            self.cash[quote] = self.cash.get(quote, 0.0) - sign * contracts * price - fee_cost
            return 0.0
        symbol, settle = market["symbol"], market["settle"]
        size = float(market.get("contractSize") or 1.0)
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position(symbol, settle, size)
        delta = contracts if side == "buy" else -contracts
        realized = 0.0
        if pos.contracts and pos.contracts * delta < 0:  # reduces (and maybe flips)
            closing = min(abs(delta), abs(pos.contracts))
            realized = closing * size * (price - pos.entry_price) * pos.sign
            released = pos.margin * closing / abs(pos.contracts)
            pos.contracts += closing if delta > 0 else -closing
            pos.margin = pos.margin - released if abs(pos.contracts) > 1e-12 else 0.0
            if abs(pos.contracts) <= 1e-12:
                pos.contracts = 0.0
            pos.realized_pnl += realized
            delta += -closing if delta > 0 else closing
        if abs(delta) > 1e-12:  # opens or adds
            total = abs(pos.contracts) + abs(delta)
            pos.entry_price = (abs(pos.contracts) * pos.entry_price + abs(delta) * price) / total
            pos.margin += abs(delta) * size * price / self.leverage(symbol)
            pos.contracts += delta
        self.cash[settle] = self.cash.get(settle, 0.0) + realized - fee_cost
        pos.updated_ms = t
        self._record(symbol, t, pos.contracts)
        return realized

    def contracts_at(self, symbol: str, t: int) -> float:
        """The signed contracts held just before t (a settlement at t is paid before a fill at t)."""
        held = self.held.get(symbol, [])
        i = bisect.bisect_left(held, (t,)) - 1
        return held[i][1] if i >= 0 else 0.0

    def settle_funding(self, market: Mapping[str, Any], t: int, rate: float, reference: float) -> dict[str, Any] | None:
        """Pay or receive funding at a settlement on the position held then; returns the funding-history row
        (None without a position). Into the cash, and into the isolated margin of a position still open."""
        pos = self.positions.get(market["symbol"])
        contracts = self.contracts_at(market["symbol"], t)
        if pos is None or not contracts:
            return None
        sign, base = (1 if contracts > 0 else -1), abs(contracts) * pos.contract_size
        amount = -sign * base * reference * rate
        self.cash[pos.settle] = self.cash.get(pos.settle, 0.0) + amount
        if pos.contracts * contracts > 0:
            pos.margin += amount
        pos.funding += amount
        pos.updated_ms = max(pos.updated_ms, t)
        row = {
            "info": {
                "symbol": market["id"],
                "incomeType": "FUNDING_FEE",
                "income": repr(amount),
                "asset": pos.settle,
                "time": t,
                "tranId": str(next(self._ids)),
                "fundingRate": repr(rate),
                "referencePrice": repr(reference),
                "positionAmt": repr(sign * base),
            },
            "symbol": market["symbol"],
            "code": pos.settle,
            "timestamp": t,
            "datetime": iso(t),
            "id": None,
            "amount": amount,
        }
        row["id"] = row["info"]["tranId"]
        self.funding_history.append(row)
        return row

    def liquidation_price(self, symbol: str, mark: float) -> float | None:
        pos = self.positions.get(symbol)
        if pos is None or not pos.contracts:
            return None
        return tiering.liquidation_price(self.tiers(symbol), pos.sign, pos.base, pos.entry_price, pos.margin, mark)

    def first_liquidation(self, symbol: str, marks: np.ndarray) -> int | None:
        """Index of the first mark at which the position's equity is at or below its maintenance margin."""
        pos = self.positions.get(symbol)
        if pos is None or not pos.contracts or marks.size == 0:
            return None
        tiers = self.tiers(symbol)
        caps = np.array([float(t["maxNotional"]) for t in tiers])
        mmr = np.array([float(t["maintenanceMarginRate"]) for t in tiers])
        cum = np.array(tiering.maintenance_amounts(list(zip(caps.tolist(), mmr.tolist(), strict=True))))
        notional = pos.base * marks
        k = np.minimum(np.searchsorted(caps, notional, side="left"), caps.size - 1)
        maintenance = notional * mmr[k] - cum[k]
        equity = pos.margin + pos.sign * pos.base * (marks - pos.entry_price)
        hits = np.flatnonzero(equity <= maintenance)
        return int(hits[0]) if hits.size else None

    def liquidate(self, market: Mapping[str, Any], t: int, mark: float) -> tuple[float, str, float]:
        """Close a position at the mark, its whole margin lost; returns (contracts closed, side of the closing
        trade, loss) and records ccxt's liquidation structure."""
        pos = self.positions[market["symbol"]]
        contracts, side, loss = abs(pos.contracts), ("sell" if pos.contracts > 0 else "buy"), pos.margin
        self.liquidations.append(
            UNIFIED.safe_liquidation(
                {
                    "info": {"symbol": market["id"], "price": repr(mark), "side": side, "lostMargin": repr(loss)},
                    "symbol": market["symbol"],
                    "contracts": contracts,
                    "price": mark,
                    "side": "long" if pos.contracts > 0 else "short",
                    "timestamp": t,
                    "datetime": iso(t),
                },
                market,
            )
        )
        self.cash[pos.settle] = self.cash.get(pos.settle, 0.0) - loss
        pos.realized_pnl -= loss
        pos.contracts, pos.margin, pos.updated_ms = 0.0, 0.0, t
        self._record(pos.symbol, t, 0.0)
        return contracts, side, loss

    def _record(self, symbol: str, t: int, contracts: float) -> None:
        self.held.setdefault(symbol, []).append((t, contracts))

    # -- ccxt structures ----------------------------------------------------------------------------------
    def balance(self, marks: Mapping[str, float], t: int) -> dict[str, Any]:
        """ccxt's balance: total = cash + unrealised PnL, free = cash not held, used = the rest."""
        upnl: dict[str, float] = {}
        for symbol, pos in self.positions.items():
            if pos.contracts and symbol in marks:
                upnl[pos.settle] = upnl.get(pos.settle, 0.0) + pos.sign * pos.base * (marks[symbol] - pos.entry_price)
        out: dict[str, Any] = {"info": {"cash": dict(self.cash)}, "timestamp": t, "datetime": iso(t)}
        for code, cash in self.cash.items():
            total = cash + upnl.get(code, 0.0)
            free = self.free(code)
            out[code] = {"free": free, "used": total - free, "total": total}
        return UNIFIED.safe_balance(out)

    def position(self, market: Mapping[str, Any], mark: float | None, t: int) -> dict[str, Any] | None:
        """ccxt's position structure of a market (None when flat)."""
        pos = self.positions.get(market["symbol"])
        if pos is None or not pos.contracts:
            return None
        tiers = self.tiers(pos.symbol)
        mark = pos.entry_price if mark is None else mark
        notional = pos.base * mark
        tier, cum = tiering.tier_at(tiers, notional)
        maintenance = notional * float(tier["maintenanceMarginRate"]) - cum
        upnl = pos.sign * pos.base * (mark - pos.entry_price)
        leverage = self.leverage(pos.symbol)
        structure = {
            "info": {
                "symbol": market["id"],
                "positionAmt": repr(pos.sign * pos.base),
                "isolatedMargin": repr(pos.margin),
            },
            "id": None,
            "symbol": pos.symbol,
            "timestamp": t,
            "datetime": iso(t),
            "lastUpdateTimestamp": pos.updated_ms,
            "isolated": True,
            "hedged": False,
            "side": "long" if pos.contracts > 0 else "short",
            "contracts": abs(pos.contracts),
            "contractSize": pos.contract_size,
            "entryPrice": pos.entry_price,
            "markPrice": mark,
            "lastPrice": None,
            "notional": notional,
            "leverage": leverage,
            "collateral": pos.margin,  # the isolated wallet, without the unrealised PnL (ccxt's binance field)
            "initialMargin": pos.base * pos.entry_price / leverage,
            "initialMarginPercentage": 1.0 / leverage,
            "maintenanceMargin": maintenance,
            "maintenanceMarginPercentage": float(tier["maintenanceMarginRate"]),
            "unrealizedPnl": upnl,
            "realizedPnl": pos.realized_pnl,
            "positionMargin": pos.margin,
            "liquidationPrice": self.liquidation_price(pos.symbol, mark),
            "marginMode": "isolated",
            "marginRatio": maintenance / (pos.margin + upnl) if pos.margin + upnl > 0 else None,
            "percentage": upnl / pos.margin * 100 if pos.margin > 0 else None,
            "stopLossPrice": None,
            "takeProfitPrice": None,
            "exitPrice": None,
        }
        return UNIFIED.safe_position(structure)
