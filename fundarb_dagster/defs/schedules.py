"""Schedules."""

from __future__ import annotations

from typing import Any

SCHEDULES: list[Any] = []
