"""The backtest's input: a "panel" of hourly prices/quotes per market plus funding settlements and
point-in-time expected funding, on one uniform time grid.

Time convention: `ts_ms[t]` is when the row's values are *known* (for an hourly OHLCV bar that is its close
time, open + 1h). A decision at `t` sees rows `<= t` only. A settlement at `f` is booked in bar `t` with
`ts_ms[t-1] < f <= ts_ms[t]`, so a position decided at `t-1` and still held at `t` is liable for it
(`entry < f <= exit`). Settlements before the first bar are dropped (no position can be liable).

Arrays are `(T, M)`: T bars, M markets. `funding_cash[t, m]` is the sum over the settlements booked in bar
`t` of `rate * reference_price`: a long unit pays it, a short unit receives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ..fees import FeeTable
from ..units import HOUR_MS
from ..venues import fees_bps, is_dated_future, maintenance_margin_rate
from .accounting import annualize


@dataclass(frozen=True)
class Market:
    """One tradable leg: a perp (funding, margin, liquidation) or a spot market (fully paid)."""

    exchange: str
    symbol: str
    underlying: str
    kind: str  # "perp" or "spot"
    taker_fee: float
    maker_fee: float
    mmr: float = 0.0  # maintenance margin rate (perps)

    @property
    def is_perp(self) -> bool:
        return self.kind == "perp"


def make_market(exchange: str, symbol: str, underlying: str, kind: str, **overrides: float) -> Market:
    """A Market with the venue's default fees and maintenance margin (`core/venues.py`), any overridable."""
    if kind not in ("perp", "spot"):
        raise ValueError(f"kind: {kind!r} for {exchange} {symbol} must be 'perp' or 'spot'")
    fees = fees_bps(exchange)  # bps; a Market holds fractions
    values = {
        "taker_fee": fees.taker(kind) / 1e4,
        "maker_fee": fees.maker(kind) / 1e4,
        "mmr": maintenance_margin_rate(exchange) if kind == "perp" else 0.0,
    }
    values.update(overrides)
    return Market(exchange, symbol, underlying, kind, **values)


@dataclass
class Panel:
    ts_ms: np.ndarray  # (T,) int64, uniform step
    markets: list[Market]
    mid: np.ndarray  # (T, M) mid (or close) price
    half_spread: np.ndarray  # (T, M) fraction of mid; NaN: no quotes (the bps model applies)
    ref: np.ndarray  # (T, M) reference price for funding and liquidation (mark/oracle); mid for spot
    ref_high: np.ndarray  # (T, M) highest reference price within the bar (liquidation checks)
    ref_low: np.ndarray  # (T, M)
    funding_cash: np.ndarray  # (T, M) sum of rate * ref over settlements booked in bar t
    expected_apr: np.ndarray  # (T, M) expected funding APR known at t (NaN: unknown, spot)
    settlements: int = 0  # how many settlements were booked (for reporting)
    meta: dict = field(default_factory=dict)
    # (T, M) taker and maker fee (fractions) of a trade at each bar where fees change with time (dated config
    # fees, `with_dated_fees`); None: each market's constant `taker_fee` / `maker_fee`
    taker_fee_t: np.ndarray | None = None
    maker_fee_t: np.ndarray | None = None
    # market index -> its leverage tiers, rows (min_notional, max_notional, mmr, maintenance_amount) ascending:
    # a perp's liquidation uses the tier its notional falls in (`with_tiers`); absent: the flat `mmr`
    tiers: dict[int, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ts_ms = np.asarray(self.ts_ms, dtype=np.int64)
        T, M = len(self.ts_ms), len(self.markets)
        for name in ("mid", "half_spread", "ref", "ref_high", "ref_low", "funding_cash", "expected_apr"):
            arr = np.asarray(getattr(self, name), dtype=float)
            if arr.shape != (T, M):
                raise ValueError(f"{name}: shape {arr.shape} does not match (T, M) = {(T, M)}")
            setattr(self, name, arr)
        if T >= 2:
            steps = np.diff(self.ts_ms)
            if (steps <= 0).any() or (steps != steps[0]).any():
                raise ValueError(f"ts_ms: the panel needs a uniform increasing grid, got steps {np.unique(steps)[:5]}")

    @property
    def bar_h(self) -> float:
        return float(self.ts_ms[1] - self.ts_ms[0]) / HOUR_MS if len(self.ts_ms) > 1 else 1.0

    @property
    def shape(self) -> tuple[int, int]:
        return self.mid.shape

    def index_of(self, exchange: str, symbol: str) -> int:
        for i, m in enumerate(self.markets):
            if m.exchange == exchange and m.symbol == symbol:
                return i
        raise KeyError(f"market: ({exchange!r}, {symbol!r}) is not in the panel")

    def slice(self, start: int, stop: int) -> Panel:
        """Bars `[start, stop)`; funding booked in bar `start` stays (it is settled within that bar)."""
        sl = slice(start, stop)
        return replace(
            self,
            ts_ms=self.ts_ms[sl],
            mid=self.mid[sl],
            half_spread=self.half_spread[sl],
            ref=self.ref[sl],
            ref_high=self.ref_high[sl],
            ref_low=self.ref_low[sl],
            funding_cash=self.funding_cash[sl],
            expected_apr=self.expected_apr[sl],
            meta=dict(self.meta),
            taker_fee_t=None if self.taker_fee_t is None else self.taker_fee_t[sl],
            maker_fee_t=None if self.maker_fee_t is None else self.maker_fee_t[sl],
            tiers=dict(self.tiers),
        )


def with_tiers(panel: Panel, tiers: pd.DataFrame) -> tuple[Panel, dict[str, str]]:
    """The panel with each perp's leverage tiers (`leverage_tiers` rows of one schedule per market: exchange,
    symbol, min_notional, max_notional, mmr, maintenance_amount), and per market which margin rule applies
    (`tiers (n)` or `flat mmr`)."""
    out: dict[int, np.ndarray] = {}
    for j, m in enumerate(panel.markets):
        rows = tiers[(tiers["exchange"] == m.exchange) & (tiers["symbol"] == m.symbol)] if len(tiers) else tiers
        if m.is_perp and len(rows):
            cols = ["min_notional", "max_notional", "mmr", "maintenance_amount"]
            out[j] = rows.sort_values("max_notional")[cols].to_numpy(dtype=float)
    sources = {f"{m.exchange} {m.symbol}": f"tiers ({len(out[j])})" if j in out else "flat mmr"
               for j, m in enumerate(panel.markets) if m.is_perp}  # fmt: skip
    return replace(panel, tiers=out), sources


def with_dated_fees(panel: Panel, table: FeeTable) -> tuple[Panel, dict[str, str]]:
    """The panel with each market's fees at each bar: a trade at bar t pays the fee the config dates in force
    at `ts_ms[t]` for the venue's tier (`core.fees`), else the market's own; and per market (`exchange
    symbol`) where its fees came from (`config`, `venue_default`, or `config+venue_default` when the first
    dated entry starts inside the window)."""
    T, M = panel.shape
    taker, maker = np.empty((T, M)), np.empty((T, M))
    sources = {}
    for j, m in enumerate(panel.markets):
        maker_bps, taker_bps, source = table.paths(m.exchange, m.kind, panel.ts_ms)
        dated = np.array(source) == "config"
        taker[:, j] = np.where(dated, taker_bps / 1e4, m.taker_fee)
        maker[:, j] = np.where(dated, maker_bps / 1e4, m.maker_fee)
        sources[f"{m.exchange} {m.symbol}"] = "+".join(sorted(set(source), key=["config", "venue_default"].index))
    return replace(panel, taker_fee_t=taker, maker_fee_t=maker), sources


# -- builders from long frames -----------------------------------------------------------------------------
def interval_at(valid_from_ms: np.ndarray, interval_h: np.ndarray, ts_ms: np.ndarray) -> np.ndarray:
    """The interval in force at each `ts_ms` from one instrument's spans (sorted by `valid_from_ms`).
    Before the first span the first known interval is used (the best evidence there is)."""
    valid_from_ms = np.asarray(valid_from_ms, dtype=np.int64)
    if len(valid_from_ms) == 0:
        return np.full(len(ts_ms), np.nan)
    pos = np.searchsorted(valid_from_ms, np.asarray(ts_ms, dtype=np.int64), side="right") - 1
    return np.asarray(interval_h, dtype=float)[np.clip(pos, 0, None)]


def attach_intervals(settlements: pd.DataFrame, intervals: pd.DataFrame) -> pd.DataFrame:
    """Set each settlement's `interval_h` from the interval history (`exchange, symbol, valid_from_ms,
    interval_h`) in force at its `funding_ts_ms`; rows of instruments without history keep theirs."""
    out = settlements.copy()
    if "interval_h" not in out:
        out["interval_h"] = np.nan
    for (exchange, symbol), spans in intervals.sort_values("valid_from_ms").groupby(["exchange", "symbol"]):
        mask = (out["exchange"] == exchange) & (out["symbol"] == symbol)
        if mask.any():
            out.loc[mask, "interval_h"] = interval_at(
                spans["valid_from_ms"].to_numpy(),
                spans["interval_h"].to_numpy(),
                out.loc[mask, "funding_ts_ms"].to_numpy(),
            )
    return out


def _pivot(frame: pd.DataFrame, column: str, ts: np.ndarray, keys: list[tuple[str, str]]) -> np.ndarray:
    out = np.full((len(ts), len(keys)), np.nan)
    if column not in frame:
        return out
    col_of = {k: i for i, k in enumerate(keys)}
    rows = np.searchsorted(ts, frame["ts_ms"].to_numpy(dtype=np.int64))
    ok = (rows < len(ts)) & (ts[np.clip(rows, 0, len(ts) - 1)] == frame["ts_ms"].to_numpy(dtype=np.int64))
    cols = np.array([col_of.get((e, s), -1) for e, s in zip(frame["exchange"], frame["symbol"], strict=True)])
    ok &= cols >= 0
    out[rows[ok], cols[ok]] = frame[column].to_numpy(dtype=float)[ok]
    return out


def _ffill(a: np.ndarray) -> np.ndarray:
    """Forward-fill NaNs along time (a stale price is the last known one; nothing from the future)."""
    idx = np.where(np.isfinite(a), np.arange(a.shape[0])[:, None], -1)
    idx = np.maximum.accumulate(idx, axis=0)
    out = a[np.clip(idx, 0, None), np.arange(a.shape[1])[None, :]]
    return np.where(idx >= 0, out, np.nan)


def funding_cash_matrix(
    ts_ms: np.ndarray, keys: list[tuple[str, str]], settlements: pd.DataFrame, ref: np.ndarray
) -> tuple[np.ndarray, int]:
    """Book each settlement (`exchange, symbol, funding_ts_ms, funding_rate[, ref_price]`) into the bar `t`
    with `ts[t-1] < funding_ts <= ts[t]`; cash per unit = rate x reference price at settlement (the recorded
    one, else the bar's reference price). Returns the matrix and the number of settlements booked."""
    cash = np.zeros((len(ts_ms), len(keys)))
    if settlements.empty:
        return cash, 0
    col_of = {k: i for i, k in enumerate(keys)}
    cols = np.array(
        [col_of.get((e, s), -1) for e, s in zip(settlements["exchange"], settlements["symbol"], strict=True)]
    )
    f = settlements["funding_ts_ms"].to_numpy(dtype=np.int64)
    rows = np.searchsorted(ts_ms, f, side="left")
    ok = (cols >= 0) & (rows >= 1) & (rows < len(ts_ms))
    price = settlements["ref_price"].to_numpy(dtype=float) if "ref_price" in settlements else np.full(len(f), np.nan)
    bar_ref = ref[np.clip(rows, 0, len(ts_ms) - 1), np.clip(cols, 0, None)]
    price = np.where(np.isfinite(price), price, bar_ref)
    rate = settlements["funding_rate"].to_numpy(dtype=float)
    ok &= np.isfinite(price) & np.isfinite(rate)
    np.add.at(cash, (rows[ok], cols[ok]), rate[ok] * price[ok])
    return cash, int(ok.sum())


def expected_apr_matrix(ts_ms: np.ndarray, keys: list[tuple[str, str]], known: pd.DataFrame) -> np.ndarray:
    """As-of expected funding APR: for each bar, the last row of `known` (`exchange, symbol, known_ts_ms,
    rate, interval_h`) with `known_ts_ms <= ts`. Predictions as captured, or settled rates at their
    settlement time: never a value before it was published."""
    out = np.full((len(ts_ms), len(keys)), np.nan)
    if known.empty:
        return out
    for j, (exchange, symbol) in enumerate(keys):
        rows = known[(known["exchange"] == exchange) & (known["symbol"] == symbol)].sort_values(
            "known_ts_ms", kind="stable"
        )
        if rows.empty:
            continue
        kt = rows["known_ts_ms"].to_numpy(dtype=np.int64)
        apr = annualize(rows["rate"].to_numpy(dtype=float), rows["interval_h"].to_numpy(dtype=float))
        pos = np.searchsorted(kt, ts_ms, side="right") - 1
        out[:, j] = np.where(pos >= 0, apr[np.clip(pos, 0, None)], np.nan)
    return out


def build_panel(
    prices: pd.DataFrame,
    markets: list[Market],
    settlements: pd.DataFrame,
    predictions: pd.DataFrame | None = None,
    step_ms: int = HOUR_MS,
) -> Panel:
    """Assemble a Panel from long frames.

    prices: `ts_ms` (when known), `exchange`, `symbol`, `mid`, optional `half_spread` (fraction), `ref`
    (mark/oracle), `ref_high`, `ref_low`. settlements: `exchange, symbol, funding_ts_ms, funding_rate,
    interval_h`, optional `ref_price`. predictions (optional): `exchange, symbol, ts_ms` (when captured),
    `predicted_rate, interval_h`. A perp without predictions uses its last settled rate as known at its
    settlement time. Prices are forward-filled (stale, never future); a missing reference is the mid.
    """
    for col in ("ts_ms", "exchange", "symbol", "mid"):
        if col not in prices:
            raise ValueError(f"prices: missing column {col!r}")
    keys = [(m.exchange, m.symbol) for m in markets]
    t0, t1 = int(prices["ts_ms"].min()), int(prices["ts_ms"].max())
    ts = np.arange(t0 - t0 % step_ms + (step_ms if t0 % step_ms else 0), t1 + 1, step_ms, dtype=np.int64)
    mid = _ffill(_pivot(prices, "mid", ts, keys))
    hs = _pivot(prices, "half_spread", ts, keys)
    ref = _ffill(_pivot(prices, "ref", ts, keys))
    ref = np.where(np.isfinite(ref), ref, mid)
    hi = _pivot(prices, "ref_high", ts, keys)
    lo = _pivot(prices, "ref_low", ts, keys)
    hi = np.where(np.isfinite(hi), np.maximum(hi, ref), ref)
    lo = np.where(np.isfinite(lo), np.minimum(lo, ref), ref)
    cash, booked = funding_cash_matrix(ts, keys, settlements, ref)
    known_parts = []
    if not settlements.empty:
        s = settlements.rename(columns={"funding_ts_ms": "known_ts_ms", "funding_rate": "rate"})
        known_parts.append(s[["exchange", "symbol", "known_ts_ms", "rate", "interval_h"]])
    predicted_keys: set[tuple[str, str]] = set()
    if predictions is not None and not predictions.empty:
        p = predictions.rename(columns={"ts_ms": "known_ts_ms", "predicted_rate": "rate"})
        predicted_keys = set(zip(p["exchange"], p["symbol"], strict=True))
        # A key's settled rates stand in until its first captured prediction (history pulled before a
        # capture), never after it.
        first = p.groupby(["exchange", "symbol"])["known_ts_ms"].min().to_dict()
        known_parts = [
            k[
                [
                    t < first.get((e, s), np.iinfo(np.int64).max)
                    for e, s, t in zip(k["exchange"], k["symbol"], k["known_ts_ms"], strict=True)
                ]
            ]
            for k in known_parts
        ]
        known_parts.append(p[["exchange", "symbol", "known_ts_ms", "rate", "interval_h"]])
    known = pd.concat(known_parts, ignore_index=True) if known_parts else pd.DataFrame()
    apr = expected_apr_matrix(ts, keys, known)
    is_perp = np.array([m.is_perp for m in markets])
    apr[:, ~is_perp] = np.nan
    cash[:, ~is_perp] = 0.0
    meta = {"predicted_markets": sorted(f"{e}:{s}" for e, s in predicted_keys)}
    return Panel(ts, list(markets), mid, hs, ref, hi, lo, cash, apr, settlements=booked, meta=meta)


def _split_symbol(symbol: str) -> tuple[str, str]:
    base = symbol.split("/", 1)[0]
    return ("perp" if ":" in symbol else "spot"), base


def panel_from_tables(
    bars: pd.DataFrame,
    quotes: pd.DataFrame,
    settlements: pd.DataFrame,
    predictions: pd.DataFrame | None = None,
    intervals: pd.DataFrame | None = None,
    instruments: pd.DataFrame | None = None,
    fee_overrides: dict[str, dict[str, float]] | None = None,
) -> Panel:
    """A Panel from the warehouse tables' rows (as the `sql/backtest/panel_*.sql` queries return them).

    bars (ohlcv_1h): `exchange, symbol, ts_ms, bar_close, bar_high, bar_low`; quotes (basis 1h): `exchange,
    symbol, ts_ms, mid, half_spread, ref`. Quotes win where both exist; the bar's high/low bound the reference
    price within the hour. Prices are per unit of the underlying (divided by the instrument's multiplier, so
    `1000PEPE` and `PEPE` legs hold equal units). Settlements take the interval in force from `intervals`
    (funding_intervals) when given. Kinds and underlyings come from `instruments`, else from the symbol
    (`X/Q:S` is a perp).
    """
    frames = [f for f in (bars, quotes) if f is not None and not f.empty]
    if not frames:
        raise ValueError("prices: no rows in ohlcv_1h or basis for the window")
    key = ["exchange", "symbol", "ts_ms"]
    prices = bars.copy() if bars is not None and not bars.empty else pd.DataFrame(columns=key)
    if quotes is not None and not quotes.empty:
        q = quotes.drop_duplicates(key, keep="last")
        prices = prices.merge(q, on=key, how="outer") if not prices.empty else q
    # dated futures pay no funding: no leg of these carry strategies (their basis is `expiry_basis`)
    prices = prices[~prices["symbol"].map(is_dated_future).astype(bool)]
    for col in ("mid", "half_spread", "ref", "bar_close", "bar_high", "bar_low"):
        if col not in prices:
            prices[col] = np.nan
    prices["mid"] = prices["mid"].fillna(prices["bar_close"])
    prices["ref_high"] = prices["bar_high"]
    prices["ref_low"] = prices["bar_low"]
    meta: dict[tuple[str, str], tuple[str, str, float]] = {}
    if instruments is not None and not instruments.empty:
        for r in instruments.itertuples(index=False):
            kind = "perp" if r.type == "swap" else "spot"
            meta[(r.exchange, r.symbol)] = (kind, str(r.underlying), float(r.multiplier or 1.0))
    markets = []
    for exchange, symbol in sorted(set(zip(prices["exchange"], prices["symbol"], strict=True))):
        kind, underlying, _mult = meta.get((exchange, symbol), (*_split_symbol(symbol), 1.0))
        markets.append(make_market(exchange, symbol, underlying, kind, **(fee_overrides or {}).get(exchange, {})))
    mult = np.array(
        [meta.get((e, s), ("", "", 1.0))[2] for e, s in zip(prices["exchange"], prices["symbol"], strict=True)]
    )
    for col in ("mid", "ref", "ref_high", "ref_low"):
        prices[col] = prices[col].to_numpy(dtype=float) / mult
    settlements = settlements.copy() if settlements is not None else pd.DataFrame()
    if not settlements.empty:
        if intervals is not None and not intervals.empty:
            settlements = attach_intervals(settlements, intervals)
        smult = np.array(
            [
                meta.get((e, s), ("", "", 1.0))[2]
                for e, s in zip(settlements["exchange"], settlements["symbol"], strict=True)
            ]
        )
        if "ref_price" in settlements:
            settlements["ref_price"] = settlements["ref_price"].to_numpy(dtype=float) / smult
    return build_panel(prices, markets, settlements, predictions)
