"""Client order ids derived from the decision, so a restart or a retry never doubles an order.

An id is a pure function of (pair, decision, leg, purpose, attempt): re-deriving the same decision after a
crash gives the same ids, the trader finds those orders at the venue (or the venue refuses the duplicate)
instead of sending them again. The id also says, read back from any venue order, which pair, leg and purpose
it belongs to (`parse`), so fills are attributed to their pair without a local database.

Layout: 28 hex digits `pair(8) decision(16) leg(1) purpose(1) attempt(2)`, prefixed so every venue accepts
it: `fa` + 28 hex (30 characters: within okx's 32 alphanumerics and binance's/bybit's 36) or, where the venue
wants a 128-bit hex `cloid` (hyperliquid), `0x` + `fa00` + 28 hex.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

PREFIX: Final = "fa"
HEX_CLOID_VENUES: Final = frozenset({"hyperliquid"})  # client ids must be 0x + 32 hex digits
_BODY: Final = 28
MAX_ATTEMPTS: Final = 128  # orders of one (decision, leg, purpose); the orders stream keeps it in an int8


class Purpose(IntEnum):
    """Why an order was sent (a digit of its client id and the `purpose` column of the orders stream)."""

    ENTRY = 1  # towards a larger target position
    EXIT = 2  # towards a smaller one (reduce-only)
    COMPLETE = 3  # the lagging leg of a pair, after the leg timeout
    UNWIND = 4  # the leading leg back to the lagging one, after the leg timeout (reduce-only)
    REBALANCE = 5  # delta drift found by reconciliation, trimmed (reduce-only)
    FLATTEN = 6  # the kill switch


def _hex(text: str, digits: int) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()[:digits]


def pair_tag(pair: str) -> str:
    """8 hex digits naming a pair (its two legs), the same in every process."""
    return _hex(f"pair|{pair}", 8)


def decision_id(pair: str, decided_ms: int, kind: str) -> str:
    """16 hex digits naming one decision about a pair: the pair, the decision time and what it decided
    (e.g. `target:+1:0.25` or `flatten`). The same inputs after a restart give the same id."""
    return _hex(f"decision|{pair}|{int(decided_ms)}|{kind}", 16)


@dataclass(frozen=True)
class OrderKey:
    """What a client order id encodes."""

    pair_tag: str
    decision: str
    leg: int  # 0: leg A, 1: leg B
    purpose: Purpose
    attempt: int  # 0.. per (decision, leg, purpose)

    def body(self) -> str:
        if not 0 <= self.attempt < MAX_ATTEMPTS:
            raise ValueError(f"attempt: {self.attempt!r} must be in [0, {MAX_ATTEMPTS})")
        if self.leg not in (0, 1):
            raise ValueError(f"leg: {self.leg!r} must be 0 or 1")
        return f"{self.pair_tag}{self.decision}{self.leg:x}{int(self.purpose):x}{self.attempt:02x}"


def client_order_id(key: OrderKey, exchange: str) -> str:
    """The id as `exchange` accepts it (`fa...`, or `0xfa00...` where the venue wants 128-bit hex)."""
    body = key.body()
    if exchange in HEX_CLOID_VENUES:
        return f"0x{PREFIX}00{body}"
    return f"{PREFIX}{body}"


def parse(client_id: str | None) -> OrderKey | None:
    """The key of one of our ids, None for anything else (an order placed by hand, another program)."""
    if not client_id:
        return None
    text = client_id.lower()
    if text.startswith("0x"):
        text = text[2:]
        if not text.startswith(f"{PREFIX}00"):
            return None
        text = text[len(PREFIX) + 2 :]
    elif text.startswith(PREFIX):
        text = text[len(PREFIX) :]
    else:
        return None
    if len(text) != _BODY:
        return None
    try:
        int(text, 16)
        purpose = Purpose(int(text[25], 16))
    except ValueError:
        return None
    leg = int(text[24], 16)
    if leg not in (0, 1):
        return None
    return OrderKey(text[:8], text[8:24], leg, purpose, int(text[26:28], 16))
