"""Errors raised by the cassette store.

    StoreError                 base: every user-facing store problem
    ├── DatabaseUnavailable    the URL is malformed, the file is not SQLite, the server refuses
    ├── SchemaError            migrating failed, or the database is newer than this pseudowa
    ├── CassetteNotFound       no cassette of that name (lists the names that do exist)
    ├── CassetteExists         a cassette of that name is already there
    └── MediaNotFound          no media blob behind a media id

Each message is one line a user can act on; the CLI prints it as is.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class StoreError(Exception):
    """Base class for cassette store errors meant for the user."""


class DatabaseUnavailable(StoreError):
    """The database URL cannot be opened as a cassette store."""


class SchemaError(StoreError):
    """The database schema cannot be brought to this version of pseudowa."""


class CassetteNotFound(StoreError):
    """No cassette has the requested name."""

    def __init__(self, name: str, existing: Iterable[str] = ()) -> None:
        self.name = name
        names = list(existing)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = ""
        if close:
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?"
        elif names:
            hint = f"; cassettes: {', '.join(sorted(names)[:8])}"
        else:
            hint = "; the store has no cassettes yet"
        super().__init__(f"no cassette named {name!r}{hint}")


class CassetteExists(StoreError):
    """A cassette with the requested name already exists."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a cassette named {name!r} already exists")


class MediaNotFound(StoreError):
    """No blob is linked to the media id (or stored under the sha256)."""

    def __init__(self, cassette: str, media_id: str) -> None:
        self.cassette = cassette
        self.media_id = media_id
        super().__init__(f"cassette {cassette!r} has no media with id {media_id!r}")
