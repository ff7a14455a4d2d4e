"""Import: an export read and checked, then written into the store as a new cassette."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from ..errors import CassetteExists
from ..errors import StoreError
from ..records import CassetteInfo
from ..records import EventLike
from ..records import Exchange
from ..store import CassetteStore
from ..store import validate_name
from .format import FORMAT_VERSION
from .format import IMPORT_OPERATION
from .reader import ExportDocument
from .reader import read_export

# Re-derives the events of one exchange (the recorder's indexer); see `format.py`.
IndexEvents = Callable[[Exchange], Sequence[EventLike]]


def import_cassette(
    store: CassetteStore,
    directory: Path,
    name: str | None = None,
    *,
    replace: bool = False,
    index_events: IndexEvents | None = None,
) -> CassetteInfo:
    """Import an exported cassette from `directory` as `name` (default: the exported name).

    Everything is validated before the store is touched (format version, every field,
    every media file's sha256 against its name and the link). An existing cassette of
    that name is refused unless `replace`; then it is swapped only once the import is
    complete. `index_events` re-derives each exchange's events (see `format.py`).
    Problems raise `StoreError` with one line naming the file and the field.
    """
    doc = read_export(Path(directory))
    return import_document(store, doc, directory, name, replace=replace, index_events=index_events)


def import_document(
    store: CassetteStore,
    doc: ExportDocument,
    directory: Path,
    name: str | None = None,
    *,
    replace: bool = False,
    index_events: IndexEvents | None = None,
) -> CassetteInfo:
    """`import_cassette` of an export already read by `read_export` from `directory`.

    For callers that check the directory before they open (or create) a store.
    """
    target = validate_name(name or doc.name)
    if store.exists(target) and not replace:
        raise CassetteExists(target)
    staging = f"import-{uuid.uuid4().hex}"
    store.create_cassette(
        staging,
        source=doc.source,
        notes=doc.notes,
        graph_api_version=doc.graph_api_version,
        phone_number_ids=doc.phone_number_ids,
        created_at=doc.created_at,
    )
    try:
        for media in doc.media:
            blob = store.put_media(media.path, media.mime_type)
            if blob.sha256 != media.sha256:  # the file changed since it was checked
                raise StoreError(f"{media.path} changed while it was imported")
            store.link_media(staging, media.media_id, media.sha256, media.mime_type)
        store.append_many(staging, _with_events(doc.exchanges, index_events))
        for h in doc.history:
            store.add_history(staging, h.operation, dict(h.arguments), at=h.at)
        store.add_history(
            staging,
            IMPORT_OPERATION,
            {"from": str(directory), "format_version": FORMAT_VERSION, "name": doc.name},
        )
        if replace and store.exists(target):
            store.delete_cassette(target)
        store.rename_cassette(staging, target)
    except BaseException:
        try:
            store.delete_cassette(staging)
        except StoreError:
            pass
        raise
    return store.get_cassette(target)


def _with_events(
    exchanges: Iterable[Exchange], index_events: IndexEvents | None
) -> Iterator[tuple[Exchange, Sequence[EventLike]]]:
    for x in exchanges:
        yield x, (list(index_events(x)) if index_events is not None else [])


@contextmanager
def temporary_import(
    directory: Path, index_events: IndexEvents | None = None
) -> Iterator[tuple[CassetteStore, str]]:
    """The exported cassette in `directory`, imported into a throwaway SQLite store.

    Yields the store and the cassette's name; the store (and anything written to it,
    such as a journal) is deleted on exit. `index_events` as for `import_cassette`.
    """
    with tempfile.TemporaryDirectory(prefix="pseudowa-replay-") as tmp:
        with CassetteStore.open(f"sqlite:///{Path(tmp) / 'replay.db'}") as store:
            info = import_cassette(store, directory, index_events=index_events)
            yield store, info.name
