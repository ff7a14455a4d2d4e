"""Shared by the export tests: stores of their own, beside the two-backend `store`."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import pytest

from pseudowa.storage.store import CassetteStore


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Callable[[str], CassetteStore]]:
    """Opens a new SQLite store per label under tmp_path; all closed after the test."""
    stores: list[CassetteStore] = []

    def make(label: str) -> CassetteStore:
        store = CassetteStore.open(f"sqlite:///{tmp_path / (label + '.db')}")
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()
