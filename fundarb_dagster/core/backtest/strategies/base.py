"""What a strategy returns (`PairSet`), what it is (`Strategy`), and the registry from a name to one."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    # (P,) or (T, P): carry cost of the reverse side (spot borrow) known at t, added to its thresholds (inf: the
    # reverse side may not be held at t)
    reverse_cost_apr: np.ndarray
    # (P,) or (T, P): APR charged on a short spot leg's notional over the bar ending at t (point in time: the
    # rate in force at the bar's start)
    borrow_apr: np.ndarray
    borrow_source: list[str] = field(default_factory=list)  # per pair: captured, configured, captured+configured...
    # (T, P): the notional per leg the pair's captured books carry at t (`sizing.capacity_caps`; NaN: no book);
    # None: no caps (sizing `even`)
    size_cap: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.leg_a = np.asarray(self.leg_a, dtype=np.int64)
        self.leg_b = np.asarray(self.leg_b, dtype=np.int64)
        self.signal = np.asarray(self.signal, dtype=float)
        P = len(self.names)
        for name in ("leg_a", "leg_b", "allow_reverse"):
            if np.shape(getattr(self, name)) != (P,):
                raise ValueError(f"{name}: shape {np.shape(getattr(self, name))} must be ({P},)")
        if self.signal.ndim != 2 or self.signal.shape[1] != P:
            raise ValueError(f"signal: shape {self.signal.shape} must be (T, {P})")
        for name in ("reverse_cost_apr", "borrow_apr"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=float))
            if np.shape(getattr(self, name)) not in ((P,), self.signal.shape):
                raise ValueError(f"{name}: shape {np.shape(getattr(self, name))} must be ({P},) or {self.signal.shape}")
        if self.size_cap is not None:
            self.size_cap = np.asarray(self.size_cap, dtype=float)
            if self.size_cap.shape != self.signal.shape:
                raise ValueError(f"size_cap: shape {self.size_cap.shape} must be {self.signal.shape}")

    def bars(self, start: int, stop: int) -> PairSet:
        """The pairs on bars `[start, stop)` (every per-bar array cut the same way)."""

        def cut(a: np.ndarray) -> np.ndarray:
            return a[start:stop] if a.ndim == 2 else a

        return replace(self, signal=self.signal[start:stop], reverse_cost_apr=cut(self.reverse_cost_apr),
                       borrow_apr=cut(self.borrow_apr),
                       size_cap=None if self.size_cap is None else self.size_cap[start:stop])  # fmt: skip


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
