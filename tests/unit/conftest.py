"""Fixtures shared by the unit tests."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh store on a SQLite file of its own."""
    s = Store(f"sqlite:///{tmp_path / 'unit.db'}")
    await s.open()
    yield s
    await s.close()
