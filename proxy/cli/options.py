"""What every command module of the CLI shares: the `--db` option, store opening, and the
group class that turns user mistakes into one line.

Kept apart from `main.py` so the command modules `main.py` imports can use them
without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import TypeVar

import click

from pseudowa.proxy.errors import UserError
from pseudowa.storage.errors import StoreError
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


def open_store(
    db: str | None, *, upgrade: bool = True, check_integrity: bool | None = None
) -> CassetteStore:
    """The store named by `--db` here, or on the group, or in the environment.

    `upgrade=False` opens it for reading (nothing is created or written);
    `check_integrity` as in `CassetteStore.open` (None: small SQLite files only).
    """
    url = db or click.get_current_context().find_root().params.get("db")
    return CassetteStore.open(url, upgrade=upgrade, check_integrity=check_integrity)


class OneLineGroup(click.Group):
    """Library errors meant for the user become one line on stderr and exit status 1.

    The root group uses it, and so does `cassette mutate`, so that group behaves the same
    when it is invoked on its own rather than under the root.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (StoreError, UserError) as e:
            raise click.ClickException(str(e)) from e
