"""`CassetteStore`: the only code that opens database sessions.

Opening a store validates the URL, refuses files that are not ours, and
migrates the schema to head with the packaged Alembic revisions.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any
from typing import BinaryIO

from sqlalchemy import Engine
from sqlalchemy import create_engine
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool

from . import garbage
from . import migrate
from . import models as m
from . import rows
from .engine import describe_url
from .engine import existing_sqlite_file
from .engine import make_engine
from .engine import parse_url
from .engine import sqlite_path
from .errors import CassetteExists
from .errors import CassetteNotFound
from .errors import DatabaseUnavailable
from .errors import MediaNotFound
from .errors import StoreError
from .records import CassetteInfo
from .records import Event
from .records import EventLike
from .records import Exchange
from .records import HistoryEntry
from .records import MediaInfo
from .records import MediaLinkInfo

DEFAULT_URL = "sqlite:///cassettes/pseudowa.db"
ENV_VAR = "PSEUDOWA_DB"
CHUNK_SIZE = 1 << 20
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_PAGE = 64

ExchangeWithEvents = tuple[Exchange, Sequence[EventLike]]


def resolve_url(url: str | None = None) -> str:
    """The store URL to use: the explicit one, else $PSEUDOWA_DB, else the default."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_URL


def validate_name(name: str) -> str:
    """Cassette names become directory names on export, so keep them path-safe."""
    if not _NAME_RE.match(name):
        raise StoreError(
            f"invalid cassette name {name!r}: use letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit, at most 200 characters)"
        )
    return name


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


class CassetteStore:
    """Cassettes, their interactions, indexed events and media blobs in one database."""

    def __init__(self, engine: Engine, *, shown_url: URL | None = None) -> None:
        self.engine = engine
        self._shown_url = shown_url or engine.url
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # -- lifecycle -----------------------------------------------------------------

    @classmethod
    def open(
        cls, url: str | None = None, *, upgrade: bool = True, check_integrity: bool | None = None
    ) -> CassetteStore:
        """Open the store at `url` (default: $PSEUDOWA_DB or sqlite:///cassettes/pseudowa.db).

        With `upgrade` the schema is created or migrated to head first; without it the
        store is only read: a missing or empty SQLite file is not created, and a
        database without our schema reads as empty. `check_integrity`: run SQLite's
        quick check on an existing file (None: if it is small). Raises
        `DatabaseUnavailable` for a bad URL, a file that is not SQLite or is damaged,
        another application's database or a server that refuses; `SchemaError` for
        a database written by a newer pseudowa.
        """
        parsed = parse_url(resolve_url(url))
        existing = existing_sqlite_file(
            parsed, create_folder=upgrade, check_integrity=check_integrity
        )
        if existing is not None:
            # Refused before our engine connects: its WAL pragma would already
            # rewrite the header of another application's file.
            migrate.check_tables(set(existing.tables), str(existing.path), whole_file=True)
        elif not upgrade and sqlite_path(parsed) is not None:
            # Connecting would create the file (and WAL mode would write its header).
            return cls._blank(parsed)
        engine = make_engine(parsed)
        try:
            cls._check_reachable(engine)
            migrate.check_ownership(engine)
            revision = migrate.current(engine)
            migrate.check_not_newer(revision, describe_url(parsed))
            if upgrade:
                migrate.upgrade(parsed, engine)
            elif revision is None:
                engine.dispose()
                return cls._blank(parsed)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    @classmethod
    def _blank(cls, url: URL) -> CassetteStore:
        """An empty store in memory standing in for `url`, which has no schema to read."""
        engine = create_engine("sqlite://", poolclass=StaticPool)
        # The models' tables, not the migrations: there is no version table, so the
        # store reports no schema, as the database it stands for has none.
        m.Base.metadata.create_all(engine)
        return cls(engine, shown_url=url)

    @staticmethod
    def _check_reachable(engine: Engine) -> None:
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except DBAPIError as e:
            where = describe_url(engine.url)
            raise DatabaseUnavailable(f"cannot open database {where}: {_first_line(e)}") from e

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> CassetteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The store's URL with any password hidden."""
        return describe_url(self._shown_url)

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (None when never migrated)."""
        return migrate.current(self.engine)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        try:
            with self._sessions.begin() as session:
                yield session
        except StoreError:
            raise
        except IntegrityError:
            raise
        except SQLAlchemyError as e:
            raise StoreError(f"database error on {self.url}: {_first_line(e)}") from e

    # -- cassettes -----------------------------------------------------------------

    def _cassette_row(self, session: Session, name: str) -> m.Cassette:
        row = session.scalar(select(m.Cassette).where(m.Cassette.name == name))
        if row is None:
            raise CassetteNotFound(name, session.scalars(select(m.Cassette.name)).all())
        return row

    def _cassette_id(self, session: Session, name: str) -> int:
        return self._cassette_row(session, name).id

    def _info(self, session: Session, row: m.Cassette) -> CassetteInfo:
        def count(model: Any) -> int:
            return (
                session.scalar(
                    select(func.count()).select_from(model).where(model.cassette_id == row.id)
                )
                or 0
            )

        return CassetteInfo(
            name=row.name,
            created_at=rows.aware(row.created_at),
            source=row.source,
            notes=row.notes,
            graph_api_version=row.graph_api_version,
            phone_number_ids=tuple(row.phone_number_ids or ()),
            interaction_count=count(m.Interaction),
            event_count=count(m.Event),
            media_count=count(m.MediaLink),
        )

    def create_cassette(
        self,
        name: str,
        *,
        source: str = "meta",
        notes: str = "",
        graph_api_version: str | None = None,
        phone_number_ids: Sequence[str] = (),
        created_at: datetime | None = None,
    ) -> CassetteInfo:
        """Create an empty cassette; `CassetteExists` if the name is taken.

        `created_at` (default: now) lets an import keep the original creation time.
        """
        validate_name(name)
        try:
            with self._session() as s:
                row = m.Cassette(
                    name=name,
                    source=str(source),
                    notes=notes,
                    graph_api_version=graph_api_version,
                    phone_number_ids=list(phone_number_ids),
                )
                if created_at is not None:
                    row.created_at = rows.utc(created_at)
                s.add(row)
                s.flush()
                return self._info(s, row)
        except IntegrityError as e:
            raise CassetteExists(name) from e

    def update_cassette(
        self,
        name: str,
        *,
        source: str | None = None,
        notes: str | None = None,
        graph_api_version: str | None = None,
        phone_number_ids: Sequence[str] | None = None,
    ) -> CassetteInfo:
        """Change a cassette's metadata; arguments left as None are kept."""
        with self._session() as s:
            row = self._cassette_row(s, name)
            if source is not None:
                row.source = str(source)
            if notes is not None:
                row.notes = notes
            if graph_api_version is not None:
                row.graph_api_version = graph_api_version
            if phone_number_ids is not None:
                row.phone_number_ids = sorted(set(phone_number_ids))
            s.flush()
            return self._info(s, row)

    def list_cassettes(self) -> list[CassetteInfo]:
        """All cassettes, by name."""
        with self._session() as s:
            found = s.scalars(select(m.Cassette).order_by(m.Cassette.name)).all()
            return [self._info(s, r) for r in found]

    def get_cassette(self, name: str) -> CassetteInfo:
        """One cassette's metadata; `CassetteNotFound` names the closest existing ones."""
        with self._session() as s:
            return self._info(s, self._cassette_row(s, name))

    def exists(self, name: str) -> bool:
        with self._session() as s:
            return s.scalar(select(m.Cassette.id).where(m.Cassette.name == name)) is not None

    def delete_cassette(self, name: str) -> None:
        """Delete a cassette with everything it owns; blobs nobody links to go too."""
        with self._session() as s:
            cid = self._cassette_id(s, name)
            unlinked = s.scalars(
                select(m.MediaLink.sha256).where(m.MediaLink.cassette_id == cid).distinct()
            ).all()
            # Explicit deletes rather than relying on ON DELETE CASCADE alone, so a
            # connection without foreign keys enforced cannot leave orphans.
            for model in (m.Event, m.MediaLink, m.History, m.Interaction):
                s.execute(delete(model).where(model.cassette_id == cid))
            s.execute(delete(m.Cassette).where(m.Cassette.id == cid))
            garbage.delete_unlinked(s, unlinked)

    def unreferenced_blobs(self, *, min_age: timedelta = timedelta(0)) -> list[MediaInfo]:
        """Blobs no cassette links, stored at least `min_age` ago, by sha256."""
        with self._session() as s:
            return garbage.unreferenced(s, m.utcnow() - min_age)

    def collect_garbage(
        self, *, dry_run: bool = True, min_age: timedelta = timedelta(0)
    ) -> garbage.Garbage:
        """Delete the blobs no cassette links (only list them with `dry_run`).

        `min_age` spares blobs stored more recently: an import or a recording in
        progress stores media before it links them.
        """
        with self._session() as s:
            found = garbage.unreferenced(s, m.utcnow() - min_age)
            if dry_run:
                return garbage.Garbage(tuple(found), deleted=False)
            gone = set(garbage.delete_unlinked(s, [b.sha256 for b in found]))
            return garbage.Garbage(tuple(b for b in found if b.sha256 in gone), deleted=True)

    def copy_cassette(self, src: str, dst: str, *, source: str | None = None) -> CassetteInfo:
        """Copy cassette `src` to a new cassette `dst`, in the database, without loading bodies."""
        validate_name(dst)
        try:
            with self._session() as s:
                old = self._cassette_row(s, src)
                new = m.Cassette(
                    name=dst,
                    source=source or old.source,
                    notes=old.notes,
                    graph_api_version=old.graph_api_version,
                    phone_number_ids=list(old.phone_number_ids or ()),
                )
                s.add(new)
                s.flush()
                for statement in rows.copy_statements(old.id, new.id):
                    s.execute(statement)
                s.add(m.History(cassette_id=new.id, operation="copy", arguments={"from": src}))
                s.flush()
                return self._info(s, new)
        except IntegrityError as e:
            raise CassetteExists(dst) from e

    # -- interactions ------------------------------------------------------------------

    def append(self, name: str, exchange: Exchange, events: Sequence[EventLike] = ()) -> int:
        """Append one exchange (and the events its webhook body holds); returns its seq."""
        return self.append_many(name, [(exchange, events)])[0]

    def append_many(
        self, name: str, items: Iterable[Exchange | ExchangeWithEvents], *, batch: int = 200
    ) -> list[int]:
        """Append exchanges in order, committing every `batch`; returns their seqs."""
        seqs: list[int] = []
        pending: list[ExchangeWithEvents] = []
        for item in items:
            pending.append(item if isinstance(item, tuple) else (item, ()))
            if len(pending) >= batch:
                seqs.extend(self._append_batch(name, pending))
                pending = []
        if pending:
            seqs.extend(self._append_batch(name, pending))
        return seqs

    def _lock_cassette(self, s: Session, name: str) -> int:
        """The cassette's id, locked until the session commits: its appends take turns.

        PostgreSQL locks the cassette's row only, so other cassettes' writers go on;
        SQLite has one writer at a time anyway, taken here before the first read
        (a deferred transaction that read first could not write after another's commit).
        """
        if self.engine.dialect.name == "sqlite":
            s.connection().exec_driver_sql("BEGIN IMMEDIATE")
        cid = s.scalar(select(m.Cassette.id).where(m.Cassette.name == name).with_for_update())
        if cid is None:
            raise CassetteNotFound(name, s.scalars(select(m.Cassette.name)).all())
        return cid

    def _append_batch(self, name: str, items: Sequence[ExchangeWithEvents]) -> list[int]:
        with self._session() as s:
            cid = self._lock_cassette(s, name)
            # Read under the lock: a recorder appends from many connections at once,
            # and two reading the same highest seq would both write the next one.
            last = s.scalar(
                select(func.max(m.Interaction.seq)).where(m.Interaction.cassette_id == cid)
            )
            seq = -1 if last is None else last
            seqs = []
            plain: list[dict[str, Any]] = []
            for exchange, events in items:
                seq += 1
                values = rows.interaction_values(cid, seq, exchange)
                if events:
                    # Events need their interaction's id: the ORM way, one row.
                    row = m.Interaction(**values)
                    s.add(row)
                    s.flush()
                    s.add_all(rows.event_rows(cid, row.id, events))
                else:
                    plain.append(values)
                seqs.append(seq)
            if plain:
                # One executemany: the recorder and journals append thousands of
                # event-less exchanges a second, and the ORM unit of work per row
                # costs several times the insert itself.
                s.execute(insert(m.Interaction), plain)
            return seqs

    def interactions(self, name: str, kinds: Iterable[str] | None = None) -> Iterator[Exchange]:
        """Iterate a cassette's exchanges in order, a page at a time (bounded memory)."""
        kind_list = [str(k) for k in kinds] if kinds is not None else None
        with self._session() as s:
            cid = self._cassette_id(s, name)
        after = -1
        while True:
            with self._session() as s:
                q = (
                    select(m.Interaction)
                    .where(m.Interaction.cassette_id == cid, m.Interaction.seq > after)
                    .order_by(m.Interaction.seq)
                    .limit(_PAGE)
                )
                if kind_list is not None:
                    q = q.where(m.Interaction.kind.in_(kind_list))
                page = [rows.exchange_of(r) for r in s.scalars(q)]
            if not page:
                return
            yield from page
            after = page[-1].seq

    def interaction(self, name: str, seq: int) -> Exchange:
        """One exchange by its position in the cassette."""
        with self._session() as s:
            cid = self._cassette_id(s, name)
            row = s.scalar(
                select(m.Interaction).where(
                    m.Interaction.cassette_id == cid, m.Interaction.seq == seq
                )
            )
            if row is None:
                raise StoreError(f"cassette {name!r} has no interaction #{seq}")
            return rows.exchange_of(row)

    def replace_interactions(
        self, name: str, items: Iterable[Exchange | ExchangeWithEvents]
    ) -> None:
        """Swap a cassette's exchanges and events for new ones, renumbered from 0."""
        with self._session() as s:
            cid = self._cassette_id(s, name)
            s.execute(delete(m.Event).where(m.Event.cassette_id == cid))
            s.execute(delete(m.Interaction).where(m.Interaction.cassette_id == cid))
        self.append_many(name, items)

    # -- events ------------------------------------------------------------------------

    def events(
        self,
        name: str,
        *,
        wamid: str | None = None,
        type: str | None = None,
        sender: str | None = None,
        media_id: str | None = None,
        category: str | None = None,
    ) -> list[Event]:
        """Indexed events of a cassette, in delivery order, filtered by any of the fields."""
        with self._session() as s:
            cid = self._cassette_id(s, name)
            q = (
                select(m.Event, m.Interaction.seq)
                .join(m.Interaction, m.Interaction.id == m.Event.interaction_id)
                .where(m.Event.cassette_id == cid)
                .order_by(m.Interaction.seq, m.Event.position)
            )
            for column, value in (
                (m.Event.wamid, wamid),
                (m.Event.type, type),
                (m.Event.sender, sender),
                (m.Event.media_id, media_id),
                (m.Event.category, category),
            ):
                if value is not None:
                    q = q.where(column == value)
            return [rows.event_of(e, seq) for e, seq in s.execute(q)]

    # -- media -------------------------------------------------------------------------

    def put_media(self, data: bytes | BinaryIO | Path, mime_type: str) -> MediaInfo:
        """Store bytes once per sha256 and return the blob's info (existing or new)."""
        if isinstance(data, Path):
            with data.open("rb") as fh:
                return self.put_media(fh, mime_type)
        stream: BinaryIO = io.BytesIO(data) if isinstance(data, bytes) else data
        start = stream.tell()
        digest = hashlib.sha256()
        size = 0
        while chunk := stream.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
        sha = digest.hexdigest()
        with self._session() as s:
            # Insert-or-nothing as the transaction's first statement, never read then
            # insert: two processes storing the same new bytes at once would both read
            # "absent" and the second insert would fail. This one waits for the other's
            # transaction instead (PostgreSQL: the row lock; SQLite: the write lock).
            claimed = s.scalar(
                rows.insert_or_nothing(self.engine.dialect.name, m.MediaBlob)
                .values(sha256=sha, mime_type=mime_type, size=size, created_at=m.utcnow())
                .returning(m.MediaBlob.__table__.c.sha256)
            )
            if claimed is None:
                existing = s.get(m.MediaBlob, sha)
                assert existing is not None  # committed by the other writer
                return MediaInfo(sha, existing.mime_type, existing.size)
            stream.seek(start)
            seq = 0
            while chunk := stream.read(CHUNK_SIZE):
                s.add(m.MediaChunk(sha256=sha, seq=seq, data=chunk))
                s.flush()
                s.expunge_all()
                seq += 1
        return MediaInfo(sha, mime_type, size)

    def media_info(self, sha256: str) -> MediaInfo | None:
        with self._session() as s:
            row = s.get(m.MediaBlob, sha256)
            return None if row is None else MediaInfo(row.sha256, row.mime_type, row.size)

    def link_media(
        self, name: str, media_id: str, sha256: str, mime_type: str | None = None
    ) -> MediaLinkInfo:
        """Point `media_id` of a cassette at a stored blob (re-pointing an existing link)."""
        with self._session() as s:
            cid = self._cassette_id(s, name)
            blob = s.get(m.MediaBlob, sha256)
            if blob is None:
                raise StoreError(f"no media blob with sha256 {sha256}")
            mime = mime_type or blob.mime_type
            link = s.scalar(
                select(m.MediaLink).where(
                    m.MediaLink.cassette_id == cid, m.MediaLink.media_id == media_id
                )
            )
            previous: list[str] = []
            if link is None:
                s.add(
                    m.MediaLink(cassette_id=cid, media_id=media_id, sha256=sha256, mime_type=mime)
                )
            else:
                previous = [link.sha256]
                link.sha256, link.mime_type = sha256, mime
            s.flush()
            garbage.delete_unlinked(s, previous)
            return MediaLinkInfo(media_id, sha256, mime, blob.size)

    def unlink_media(self, name: str, media_id: str) -> None:
        """Forget a media id (the blob goes too when nothing else links to it)."""
        with self._session() as s:
            cid = self._cassette_id(s, name)
            link = s.scalar(
                select(m.MediaLink).where(
                    m.MediaLink.cassette_id == cid, m.MediaLink.media_id == media_id
                )
            )
            if link is None:
                raise MediaNotFound(name, media_id)
            sha = link.sha256
            s.delete(link)
            s.flush()
            garbage.delete_unlinked(s, [sha])

    def media(self, name: str, media_id: str) -> MediaLinkInfo:
        """What a cassette's media id points at; `MediaNotFound` if nothing."""
        with self._session() as s:
            cid = self._cassette_id(s, name)
            row = s.execute(
                select(m.MediaLink, m.MediaBlob.size)
                .join(m.MediaBlob, m.MediaBlob.sha256 == m.MediaLink.sha256)
                .where(m.MediaLink.cassette_id == cid, m.MediaLink.media_id == media_id)
            ).first()
            if row is None:
                raise MediaNotFound(name, media_id)
            link, size = row
            return MediaLinkInfo(link.media_id, link.sha256, link.mime_type, size)

    def list_media(self, name: str) -> list[MediaLinkInfo]:
        with self._session() as s:
            cid = self._cassette_id(s, name)
            links = s.execute(
                select(m.MediaLink, m.MediaBlob.size)
                .join(m.MediaBlob, m.MediaBlob.sha256 == m.MediaLink.sha256)
                .where(m.MediaLink.cassette_id == cid)
                .order_by(m.MediaLink.media_id)
            ).all()
            return [
                MediaLinkInfo(link.media_id, link.sha256, link.mime_type, size)
                for link, size in links
            ]

    def media_chunks(self, sha256: str) -> Iterator[bytes]:
        """A blob's bytes, one chunk per query, so memory stays at one chunk."""
        seq = 0
        while True:
            with self._session() as s:
                data = s.scalar(
                    select(m.MediaChunk.data).where(
                        m.MediaChunk.sha256 == sha256, m.MediaChunk.seq == seq
                    )
                )
            if data is None:
                return
            yield bytes(data)
            seq += 1

    def read_media(self, sha256: str) -> bytes:
        """A blob's bytes in one piece (small media; use `media_chunks` for large)."""
        return b"".join(self.media_chunks(sha256))

    # -- history -----------------------------------------------------------------------

    def add_history(
        self, name: str, operation: str, arguments: dict[str, Any], *, at: datetime | None = None
    ) -> None:
        """Record an operation applied to the cassette (mutation, import, recording).

        `at` (default: now) lets an import keep the original time of an entry.
        """
        with self._session() as s:
            cid = self._cassette_id(s, name)
            row = m.History(cassette_id=cid, operation=operation, arguments=arguments)
            if at is not None:
                row.at = rows.utc(at)
            s.add(row)

    def history(self, name: str) -> list[HistoryEntry]:
        with self._session() as s:
            cid = self._cassette_id(s, name)
            entries = s.scalars(
                select(m.History).where(m.History.cassette_id == cid).order_by(m.History.id)
            ).all()
            return [HistoryEntry(rows.aware(r.at), r.operation, dict(r.arguments)) for r in entries]

    def rename_cassette(self, name: str, new_name: str) -> None:
        validate_name(new_name)
        try:
            with self._session() as s:
                cid = self._cassette_id(s, name)
                s.execute(update(m.Cassette).where(m.Cassette.id == cid).values(name=new_name))
        except IntegrityError as e:
            raise CassetteExists(new_name) from e
