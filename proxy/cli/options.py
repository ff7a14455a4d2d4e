"""The `--db` option and store opening shared by every command module of the CLI.

Kept apart from `cli.py` so command modules that `cli.py` imports can use them
without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import TypeVar

import click

from pseudowa.storage.store import DEFAULT_URL
from pseudowa.storage.store import ENV_VAR
from pseudowa.storage.store import CassetteStore

F = TypeVar("F", bound=Callable[..., Any])


def db_option(fn: F) -> F:
    """`--db URL` on any command that opens the store (also `$PSEUDOWA_DB`)."""
    return click.option(
        "--db",
        "db",
        metavar="URL",
        default=None,
        help=f"Store URL (SQLAlchemy form). Default: ${ENV_VAR}, else {DEFAULT_URL}.",
    )(fn)


def open_store(db: str | None, *, upgrade: bool = True) -> CassetteStore:
    """The store named by `--db` here, or on the group, or in the environment."""
    url = db or click.get_current_context().find_root().params.get("db")
    return CassetteStore.open(url, upgrade=upgrade)
