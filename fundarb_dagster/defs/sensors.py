"""Sensors: `<trigger>_sensor`, each with a cursor and deterministic run keys."""

from __future__ import annotations

from typing import Any

SENSORS: list[Any] = []
