"""How far before its window a history run recomputes each table, so its rows never depend on another run.

A table's first hours read the hours before them: the close carried into the first minutes (`ohlcv_1m`, up to its
fill horizon), the indicators' look-back of 1h bars, the predictions and jittered settlements of the first
settlements (`funding_rates`), the open interest of the hour before (`open_interest`). On hourly partitions the
sensors load hours in time order, so those hours are in the warehouse already. A history run (a month per
partition) may go before the run of the month before it (a backfill from the UI submits its runs together), so
such a run loads those hours itself: each table below is recomputed from this many hours before the run's
window, from the landing zone upward (a raw table's look-back covers what the tables built on it read), and the
rows of any window are the same whichever run loaded the months around it. Only a run whose asset has not
loaded the month before pays it (`defs.partitions.history_reload_h`): in time order, and when a month is run
again, the warehouse holds those hours already. What such a run writes before its window is what the run of
that month then writes again over it, from the same files; the tables built on those hours (5m/8h/1d bars,
indicators, basis) are written by that month's own run, which has not gone yet.
"""

from __future__ import annotations

from typing import Final

from .indicators import IndicatorParams, needed_lookback

# ohlcv_1m's default fill horizon (a minute without a bar carries the close of a real bar at most this far back)
FILL_HORIZON_H: Final = 24
# indicators read up to `needed_lookback` 1h bars of each series, within twice that many hours (room for gaps):
# the 1h bars of those hours, and the 1m bars below them, are recomputed (default periods: 553 bars, 1,106 h)
INDICATOR_BARS_H: Final = 2 * needed_lookback(IndicatorParams())
# the predictions of a settlement at the window's start were captured up to an interval before it (intervals
# are at most 8 h; a day is room), and settled_inputs reads settlements an hour either side (jitter)
PREDICTIONS_H: Final = 24
SETTLEMENT_JITTER_H: Final = 1
# open_interest measures an hour's change from the previous captured hour, looked for up to a day back
OPEN_INTEREST_H: Final = 24

HISTORY_LOOK_BACK_H: Final[dict[str, int]] = {
    "raw_trades": INDICATOR_BARS_H + FILL_HORIZON_H,
    "raw_ohlcv": INDICATOR_BARS_H + FILL_HORIZON_H,
    "ohlcv_1m": INDICATOR_BARS_H,  # and its carried close from the raw tables' bars of the horizon before
    "ohlcv_1h": INDICATOR_BARS_H,
    "raw_funding": PREDICTIONS_H + SETTLEMENT_JITTER_H,
    "funding_predictions": PREDICTIONS_H,
    "raw_open_interest": OPEN_INTEREST_H,
}


def history_look_back_h(table: str) -> int:
    """Hours before a history run's window that `table` is recomputed from (0: none)."""
    return HISTORY_LOOK_BACK_H.get(table, 0)
