"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The real recorded market data beside the repo (read-only: copy what a test writes to)."""
    if not FIXTURES.is_dir():
        raise FileNotFoundError(f"fixtures: {FIXTURES} is missing; fundarb's tests need ../shared/fixtures")
    return FIXTURES
