"""Resources: the DuckDB warehouse, the landing zone, the source config. Env read here, never at import."""

from __future__ import annotations

from typing import Any


def build_resources() -> dict[str, Any]:
    return {}
