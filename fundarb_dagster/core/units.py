"""Time and calendar constants, defined once and named with their unit."""

from __future__ import annotations

from typing import Final

SECOND_MS: Final = 1_000
MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
HOURS_PER_YEAR: Final = 8760.0  # simple (not compounded) annualisation, what venues quote: rate x 8760 / interval_h
