"""Landing data for the carry tests: real settled funding from the 2025-2026 fixture, with synthetic
predictions and tickers whose basis and spreads are known, written through the real landing writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fundarb_dagster.core import landing, schema

START = pd.Timestamp("2026-03-01")
HOURS = 24
VENUES = {"binance": "USDT", "bybit": "USDT", "hyperliquid": "USDC"}
ASSETS = {"BTC": 65_000.0, "ETH": 2_000.0}
# Known premiums (bps) and half-spreads (bps) per venue.
PREMIUM_BPS = {"binance": 4.0, "bybit": -3.0, "hyperliquid": 9.0}
PERP_HALF_BPS = {"binance": 0.5, "bybit": 1.0, "hyperliquid": 1.5}
SPOT_HALF_BPS = {"binance": 0.8, "bybit": 1.2, "hyperliquid": 3.0}


def instrument_names() -> dict[int, tuple[str, str]]:
    names = {}
    for venue, quote in VENUES.items():
        for asset in ASSETS:
            names[len(names)] = (venue, f"{asset}/{quote}:{quote}")
            names[len(names)] = (venue, f"{asset}/{quote}")
    return names


def ids() -> dict[tuple[str, str], int]:
    return {v: k for k, v in instrument_names().items()}


def fixture_settlements(fixtures_dir: Path, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The fixture's settled rates in [start, end) with ccxt unified symbols (BTC-USDT-PERP -> BTC/USDT:USDT)."""
    raw = pd.read_csv(fixtures_dir / "funding_2025_2026" / "funding_btc_eth_binance_bybit_hyperliquid_utc.csv")
    start_ms, end_ms = start.value // 1_000_000, end.value // 1_000_000
    raw = raw[(raw["settlement_time_ms_utc"] >= start_ms) & (raw["settlement_time_ms_utc"] < end_ms)].copy()
    parts = raw["canonical_symbol"].str.split("-", expand=True)
    raw["symbol"] = parts[0] + "/" + parts[1] + ":" + parts[1]
    return raw.rename(columns={"venue": "exchange"}).reset_index(drop=True)


def land_funding(data_dir: Path, settled: pd.DataFrame, with_intervals: bool = True) -> pd.DataFrame:
    """Land settled rows and, for each settlement, two predictions (2h and 20 min before, 80% / 95% of it).

    Returns the landed predictions (exchange, symbol, ts_ms, funding_ts_ms, funding_rate, interval_h).
    """
    key = ids()
    n = len(settled)
    rec = schema.empty("funding", n)
    ts = settled["settlement_time_ms_utc"].to_numpy(dtype=np.int64)
    rec["ts_ms"] = ts
    rec["recv_ts_ms"] = ts + 40
    rec["instrument_id"] = [key[(e, s)] for e, s in zip(settled["exchange"], settled["symbol"], strict=True)]
    rec["is_settled"] = 1
    rec["funding_ts_ms"] = ts
    rec["funding_rate"] = settled["funding_rate"].to_numpy()
    rec["interval_h"] = settled["interval_hours"].to_numpy() if with_intervals else np.nan
    rec["mark_price"] = settled["mark_price"].to_numpy()
    pred = schema.empty("funding", 2 * n)
    for j, (lead_ms, share) in enumerate(((2 * 3_600_000, 0.8), (20 * 60_000, 0.95))):
        part = slice(j * n, (j + 1) * n)
        # the prediction is about the grid time (what venues announce), the settlement lands with jitter
        grid = (ts + 1800_000) // 3_600_000 * 3_600_000
        pred["ts_ms"][part] = grid - lead_ms
        pred["recv_ts_ms"][part] = grid - lead_ms + 30
        pred["instrument_id"][part] = rec["instrument_id"]
        pred["is_settled"][part] = 0
        pred["funding_ts_ms"][part] = grid
        pred["funding_rate"][part] = rec["funding_rate"] * share
        pred["interval_h"][part] = settled["interval_hours"].to_numpy()
    names = instrument_names()
    landing.write_stream(data_dir, "funding", schema.to_arrow("funding", rec, names), "settled", 0)
    landing.write_stream(data_dir, "funding", schema.to_arrow("funding", pred, names), "predicted", 0)
    frame = pd.DataFrame({name: pred[name] for name in ("ts_ms", "funding_ts_ms", "funding_rate", "interval_h")})
    frame["exchange"] = [names[i][0] for i in pred["instrument_id"]]
    frame["symbol"] = [names[i][1] for i in pred["instrument_id"]]
    return frame


def land_tickers(data_dir: Path, start: pd.Timestamp, hours: int, step_s: int = 60, seed: int = 5) -> pd.DataFrame:
    """Tickers every `step_s` (with ms jitter) for every perp and spot, perp = spot x (1 + premium)."""
    rng = np.random.default_rng(seed)
    key = ids()
    start_ms = start.value // 1_000_000
    times = start_ms + np.arange(0, hours * 3600, step_s, dtype=np.int64) * 1000
    rows = []
    for venue, quote in VENUES.items():
        for asset, price in ASSETS.items():
            spot_mid = price * np.exp(np.cumsum(rng.normal(0, 2e-4, len(times))))
            jitter = rng.integers(0, 900, len(times))
            perp_mid = spot_mid * (1 + PREMIUM_BPS[venue] / 1e4 + rng.normal(0, 1e-5, len(times)))
            for symbol, mid, half in (
                (f"{asset}/{quote}", spot_mid, SPOT_HALF_BPS[venue]),
                (f"{asset}/{quote}:{quote}", perp_mid, PERP_HALF_BPS[venue]),
            ):
                perp = ":" in symbol
                rows.append(
                    pd.DataFrame(
                        {
                            "ts_ms": times + jitter,
                            "instrument_id": key[(venue, symbol)],
                            "exchange": venue,
                            "symbol": symbol,
                            "bid": mid * (1 - half / 1e4),
                            "ask": mid * (1 + half / 1e4),
                            "mark_price": mid * 1.00002 if perp else np.nan,
                            "index_price": spot_mid if perp else np.nan,
                        }
                    )
                )
    frame = pd.concat(rows, ignore_index=True)
    rec = schema.empty("tickers", len(frame))
    for column in ("ts_ms", "instrument_id", "bid", "ask", "mark_price", "index_price"):
        rec[column] = frame[column].to_numpy()
    rec["recv_ts_ms"] = rec["ts_ms"] + 10
    rec["bid_size"] = 1.0
    rec["ask_size"] = 1.0
    rec["last"] = (rec["bid"] + rec["ask"]) / 2
    landing.write_stream(data_dir, "tickers", schema.to_arrow("tickers", rec, instrument_names()), "tickers", 0)
    return frame
