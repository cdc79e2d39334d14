"""What a strategy returns (`PairSet`), what it is (`Strategy`), and the registry from a name to one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..panel import Panel


@dataclass
class PairSet:
    names: list[str]  # one per pair, e.g. "binance:BTC/USDT:USDT|binance:BTC/USDT"
    leg_a: np.ndarray  # (P,) market index of the leg shorted when signal > 0
    leg_b: np.ndarray  # (P,) market index of the leg bought when signal > 0
    signal: np.ndarray  # (T, P) expected edge, APR, known at t; NaN: no view (flat)
    allow_reverse: np.ndarray  # (P,) bool: may trade signal < 0 (long A, short B)
    reverse_cost_apr: np.ndarray  # (P,) carry cost of the reverse side (spot borrow), added to its thresholds
    borrow_apr: np.ndarray  # (P,) APR charged on a short spot leg's notional

    def __post_init__(self) -> None:
        self.leg_a = np.asarray(self.leg_a, dtype=np.int64)
        self.leg_b = np.asarray(self.leg_b, dtype=np.int64)
        self.signal = np.asarray(self.signal, dtype=float)
        P = len(self.names)
        for name in ("leg_a", "leg_b", "allow_reverse", "reverse_cost_apr", "borrow_apr"):
            if np.shape(getattr(self, name)) != (P,):
                raise ValueError(f"{name}: shape {np.shape(getattr(self, name))} must be ({P},)")
        if self.signal.ndim != 2 or self.signal.shape[1] != P:
            raise ValueError(f"signal: shape {self.signal.shape} must be (T, {P})")


class Strategy(Protocol):
    name: str

    def pairs(self, panel: Panel, options: dict[str, Any]) -> PairSet: ...


STRATEGIES: dict[str, Strategy] = {}


def register(cls: type) -> type:
    """Class decorator: make a strategy available by its `name` (configs and the Dagster assets use it)."""
    STRATEGIES[cls.name] = cls()
    return cls


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"strategy: unknown {name!r}; expected one of {sorted(STRATEGIES)}") from None
