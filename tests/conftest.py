"""Shared fixtures: a store on each backend the project supports.

`store_url` runs a test once on SQLite and once on PostgreSQL, each time on a
database of its own. PostgreSQL comes from a throwaway cluster started once
per session (tests/pg.py). A machine without the server binaries fails those
tests, so CI cannot go green while silently testing one backend; set
PSEUDOWA_SKIP_PG=1 to skip them knowingly.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

# tests/ is on sys.path (pytest's rootdir-relative conftest import), so the
# helper imports by its module name.
from pg import PostgresUnavailable
from pg import create_database
from pg import drop_database
from pg import postgres_cluster

from pseudowa.storage.store import CassetteStore

# pytester runs user-style test files against the plugin (tests/proxy/testing/test_plugin.py).
pytest_plugins = ("pytester",)

BACKENDS = ["sqlite", "postgresql"]
_db_numbers = itertools.count()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a database in a PostgreSQL cluster living for the whole session."""
    stack = ExitStack()
    try:
        url = stack.enter_context(postgres_cluster())
    except PostgresUnavailable as e:
        problem = str(e)
    else:
        with stack:
            yield url
        return
    # Outside the except block, so the report shows the problem, not a chain.
    if os.environ.get("PSEUDOWA_SKIP_PG") == "1":
        pytest.skip(f"PostgreSQL tests skipped (PSEUDOWA_SKIP_PG=1): {problem}")
    pytest.fail(f"{problem}\n(set PSEUDOWA_SKIP_PG=1 to skip the PostgreSQL tests)", pytrace=False)


def _replace_db(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to a fresh, empty database, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    # Only PostgreSQL-parametrized tests start the cluster.
    cluster = request.getfixturevalue("pg_url")
    name = f"t_{next(_db_numbers)}"
    admin = _replace_db(cluster, "postgres")
    create_database(admin, name)
    try:
        yield _replace_db(cluster, name)
    finally:
        drop_database(admin, name)


@pytest.fixture
def store(store_url: str) -> Iterator[CassetteStore]:
    """An open, migrated store on a fresh database (closed after the test)."""
    s = CassetteStore.open(store_url)
    try:
        yield s
    finally:
        s.close()
