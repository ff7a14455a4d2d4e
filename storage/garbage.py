"""Media blobs no cassette links: found, and deleted, in bounded queries.

A blob loses its last link when a cassette is deleted or a media id re-pointed (the store
collects those at once), or was stored with `put_media` and never linked (an import or
recording that stopped half-way): `pseudowa db gc` finds those with `unreferenced`.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import models as m
from .records import MediaInfo

# Bounded IN lists stay under SQLite's bound-parameter limit.
_BATCH = 500


@dataclass(frozen=True)
class Garbage:
    """Unreferenced blobs found (and deleted, unless it was a dry run)."""

    blobs: tuple[MediaInfo, ...]
    deleted: bool

    @property
    def count(self) -> int:
        """How many blobs."""
        return len(self.blobs)

    @property
    def size(self) -> int:
        """Their bytes in total."""
        return sum(b.size for b in self.blobs)


def unreferenced(s: Session, stored_before: datetime | None = None) -> list[MediaInfo]:
    """Blobs no media link points at, by sha256; only those stored before `stored_before`."""
    q = (
        select(m.MediaBlob)
        .where(m.MediaBlob.sha256.not_in(select(m.MediaLink.sha256)))
        .order_by(m.MediaBlob.sha256)
    )
    if stored_before is not None:
        q = q.where(m.MediaBlob.created_at < stored_before)
    return [MediaInfo(b.sha256, b.mime_type, b.size) for b in s.scalars(q)]


def delete_unlinked(s: Session, candidates: Iterable[str]) -> list[str]:
    """Delete those of `candidates` nobody links to (bytes first); returns their sha256s.

    The store calls it with the blobs that just lost a link, never with every blob: a
    blob stored with `put_media` and not linked yet (an import stores every file before
    linking any) must not go with an unrelated unlink or delete. "Nobody links" is
    checked here, in the deleting transaction, so a blob linked since it was found stays.
    """
    shas = sorted(set(candidates))
    gone: list[str] = []
    for i in range(0, len(shas), _BATCH):
        orphans: Sequence[str] = s.scalars(
            select(m.MediaBlob.sha256)
            .where(m.MediaBlob.sha256.in_(shas[i : i + _BATCH]))
            .where(m.MediaBlob.sha256.not_in(select(m.MediaLink.sha256)))
        ).all()
        if orphans:
            s.execute(delete(m.MediaChunk).where(m.MediaChunk.sha256.in_(orphans)))
            s.execute(delete(m.MediaBlob).where(m.MediaBlob.sha256.in_(orphans)))
            gone.extend(orphans)
    return gone
