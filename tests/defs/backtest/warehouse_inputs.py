"""Write a Panel's data into a real DuckDB file as the warehouse input tables (ohlcv_1h, basis, funding_rates,
funding_predictions, funding_intervals, instruments), with the same columns the carry and warehouse assets
produce, so that the backtest assets read them through their SQL exactly as in production."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from fundarb_dagster.core.backtest.panel import Panel
from fundarb_dagster.core.backtest.synthetic import VENUE_INTERVAL_H
from fundarb_dagster.core.units import HOUR_MS


def _ts(ms: np.ndarray) -> pd.Series:
    return pd.to_datetime(pd.Series(np.asarray(ms, dtype=np.int64)), unit="ms").astype("datetime64[us]")


def write_inputs(panel: Panel, path: Path) -> None:
    ohlcv, basis, rates, preds, intervals, instruments = [], [], [], [], [], []
    opened = panel.ts_ms - HOUR_MS  # a bar known at t opened an hour earlier
    spot_of = {(m.exchange, m.underlying): j for j, m in enumerate(panel.markets) if m.kind == "spot"}
    for j, m in enumerate(panel.markets):
        instruments.append(
            {
                "exchange": m.exchange,
                "symbol": m.symbol,
                "type": "swap" if m.is_perp else "spot",
                "underlying": m.underlying,
                "multiplier": 1.0,
            }
        )
        ohlcv.append(
            pd.DataFrame(
                {
                    "ts": _ts(opened),
                    "exchange": m.exchange,
                    "symbol": m.symbol,
                    "open": panel.mid[:, j],
                    "high": panel.ref_high[:, j],
                    "low": panel.ref_low[:, j],
                    "close": panel.mid[:, j],
                    "volume": 1.0,
                }
            )
        )
        if not m.is_perp:
            continue
        s = spot_of.get((m.exchange, m.underlying))
        basis.append(
            pd.DataFrame(
                {
                    "exchange": m.exchange,
                    "symbol": m.symbol,
                    "timeframe": "1h",
                    "ts": _ts(opened),
                    "underlying": m.underlying,
                    "spot_symbol": panel.markets[s].symbol if s is not None else None,
                    "spot_mid": panel.mid[:, s] if s is not None else np.nan,
                    "perp_mid": panel.mid[:, j],
                    "mark_price": panel.ref[:, j],
                    "index_price": panel.ref[:, j],
                    "spot_half_spread_bps": panel.half_spread[:, s] * 1e4 if s is not None else np.nan,
                    "perp_half_spread_bps": panel.half_spread[:, j] * 1e4,
                    "source": "quotes",
                }
            )
        )
        interval = float(VENUE_INTERVAL_H.get(m.exchange, 8))
        booked = np.nonzero(panel.funding_cash[:, j])[0]
        rates.append(
            pd.DataFrame(
                {
                    "exchange": m.exchange,
                    "symbol": m.symbol,
                    "funding_ts": _ts(panel.ts_ms[booked]),
                    "funding_rate": panel.funding_cash[booked, j] / panel.ref[booked, j],
                    "interval_h": 99.0,  # wrong on purpose: the backtest must take funding_intervals
                    "mark_price": panel.ref[booked, j],
                    "index_price": panel.ref[booked, j],
                }
            )
        )
        ok = np.isfinite(panel.expected_apr[:, j])
        preds.append(
            pd.DataFrame(
                {
                    "exchange": m.exchange,
                    "symbol": m.symbol,
                    "ts": _ts(panel.ts_ms[ok]),
                    "funding_ts": _ts(panel.ts_ms[ok] + HOUR_MS),
                    "predicted_rate": panel.expected_apr[ok, j] * interval / 8760.0,
                    "interval_h": interval,
                }
            )
        )
        intervals.append(
            {
                "exchange": m.exchange,
                "symbol": m.symbol,
                "valid_from": pd.Timestamp("2020-01-01"),
                "valid_to": None,
                "interval_h": interval,
            }
        )
    tables = {
        "ohlcv_1h": pd.concat(ohlcv, ignore_index=True),
        "basis": pd.concat(basis, ignore_index=True),
        "funding_rates": pd.concat(rates, ignore_index=True),
        "funding_predictions": pd.concat(preds, ignore_index=True),
        "funding_intervals": pd.DataFrame(intervals),
        "instruments": pd.DataFrame(instruments),
    }
    with duckdb.connect(str(path)) as conn:
        for name, frame in tables.items():
            conn.register("frame", frame)
            conn.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM frame")
            conn.unregister("frame")
