"""Jobs: `<scope>_job`."""

from __future__ import annotations

from typing import Any

JOBS: list[Any] = []
