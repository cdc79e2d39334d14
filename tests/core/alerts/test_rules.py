"""Alert rules and dedup with cooldown: pure functions, frames in, alerts out."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from fundarb_dagster.core import alerts as a

T0 = datetime(2026, 1, 1, 12, 0)


def _alert(minutes: int = 0, subject: str = "BTC binance vs bybit", rule: str = "funding_spread") -> a.Alert:
    return a.Alert(rule, subject, "warning", 0.5, 0.3, T0 + timedelta(minutes=minutes), "spread high")


def test_dedupe_raises_one_alert_per_condition_within_the_cooldown():
    burst = [_alert(m) for m in (0, 10, 50, 61, 75)] + [_alert(5, subject="ETH a vs b")]
    raised, suppressed = a.dedupe(burst, {}, timedelta(hours=1))
    # BTC: 12:00 raises, 12:10 and 12:50 are in its cooldown, 13:01 re-raises (reminder), 13:15 suppressed.
    assert [(x.subject[:3], x.ts.minute) for x in raised] == [("BTC", 0), ("ETH", 5), ("BTC", 1)]
    assert suppressed == 3
    raised, suppressed = a.dedupe([_alert(30)], {("funding_spread", "BTC binance vs bybit"): T0}, timedelta(hours=1))
    assert raised == [] and suppressed == 1


def test_rules_raise_above_threshold_with_severity_by_distance():
    spreads = pd.DataFrame(
        {
            "underlying": "BTC",
            "exchange_a": "binance",
            "symbol_a": "BTC/USDT:USDT",
            "exchange_b": "hyperliquid",
            "symbol_b": "BTC/USDC:USDC",
            "ts": pd.to_datetime(["2026-01-01 10:00", "2026-01-01 11:00"]),
            "funding_spread_apr": [0.9, -0.7],
        }
    )
    alerts = a.funding_spread_rule(spreads, threshold_apr=0.3)
    assert len(alerts) == 1 and alerts[0].value == -0.7 and alerts[0].severity == "critical"
    assert a.funding_spread_rule(spreads, threshold_apr=0.8) == []
    events = pd.DataFrame(
        {
            "exchange": ["bybit", "bybit"],
            "symbol": ["BTC/USDT", "ETH/USDT"],
            "stream": ["trades", "tickers"],
            "kind": ["GAP", "GAP"],
            "start_ms": [0, 0],
            "end_ms": [120_000, 30_000],
            "reason": ["socket closed", "socket closed"],
        }
    )
    gaps = a.stream_gap_rule(events, gap_limit_s=60)
    assert [g.subject for g in gaps] == ["bybit:BTC/USDT trades"] and gaps[0].value == 120.0
    stale = a.staleness_rule(
        pd.DataFrame({"exchange": ["x"], "symbol": ["S"], "stream": ["funding"], "last_ts": [T0]}),
        now=T0 + timedelta(seconds=1000),
        stale_limit_s={"funding": 900},
    )
    assert len(stale) == 1 and stale[0].value == 1000
    checks = a.failed_check_rule(
        [
            a.CheckOutcome("funding_rates", "funding_rates_has_unique_keys", False, True, T0),
            a.CheckOutcome("basis", "x", True, False, T0),
            a.CheckOutcome("fills", "fills_has_unique_keys", False, True, T0, "no data: ...", "WARN", 0),
            a.CheckOutcome("ohlcv_1m", "ohlcv_1m_has_no_gaps", False, True, T0, "gaps", "WARN", 60),
        ]
    )
    assert [(c.subject, c.severity) for c in checks] == [
        ("funding_rates.funding_rates_has_unique_keys", "critical"),
        ("ohlcv_1m.ohlcv_1m_has_no_gaps", "warning"),  # blocking, but its failure was a WARN: nothing blocked
    ]  # the check that had no data to check raises nothing


def test_bad_severity_is_a_clear_error():
    with pytest.raises(ValueError, match="severity: 'urgent'"):
        a.Alert("r", "s", "urgent", 1.0, 0.0, T0)
