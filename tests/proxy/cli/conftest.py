"""Fixtures every CLI test uses: a CliRunner and a throwaway store URL."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()
