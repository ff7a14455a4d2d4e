"""Records to ORM rows and back, and a cassette's rows copied inside the database.

The one place that knows which field is which column. `CassetteStore` hands these the
rows it reads and the records it is given, so callers never see ORM objects and the
store's methods keep to sessions and queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from datetime import timezone
from typing import Any
from typing import cast

from sqlalchemy import Executable
from sqlalchemy import Table
from sqlalchemy import insert
from sqlalchemy import literal
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import aliased

from . import models as m
from .records import Event
from .records import EventLike
from .records import Exchange


def aware(dt: datetime) -> datetime:
    """`dt` with its zone; SQLite hands back naive datetimes, which were written in UTC."""
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def utc(dt: datetime) -> datetime:
    """`dt` in UTC, as it is written: SQLite keeps no offset (naive times are taken as UTC)."""
    return aware(dt).astimezone(timezone.utc)


def interaction_values(cid: int, seq: int, exchange: Exchange) -> dict[str, Any]:
    """The interaction row's columns for `exchange` at `seq` of cassette `cid`."""
    return {
        "cassette_id": cid,
        "seq": seq,
        "kind": str(exchange.kind),
        "method": exchange.method,
        "url": exchange.url,
        "request_headers": [list(h) for h in exchange.request_headers],
        "request_body": exchange.request_body,
        "response_status": exchange.response_status,
        "response_headers": [list(h) for h in exchange.response_headers],
        "response_body": exchange.response_body,
        "error": exchange.error,
        "started_at": exchange.started_at,
        "finished_at": exchange.finished_at,
        "annotations": dict(exchange.annotations),
    }


def exchange_of(row: m.Interaction) -> Exchange:
    """The exchange an interaction row stores."""
    return Exchange(
        kind=row.kind,
        method=row.method,
        url=row.url,
        request_headers=[(k, v) for k, v in row.request_headers],
        request_body=bytes(row.request_body or b""),
        response_status=row.response_status,
        response_headers=[(k, v) for k, v in row.response_headers],
        response_body=bytes(row.response_body or b""),
        error=row.error,
        started_at=row.started_at,
        finished_at=row.finished_at,
        annotations=dict(row.annotations or {}),
        seq=row.seq,
    )


def event_rows(cid: int, interaction_id: int, events: Sequence[EventLike]) -> list[m.Event]:
    """Event rows indexing `events` of one interaction (any `EventLike`, read as is)."""
    return [
        m.Event(
            cassette_id=cid,
            interaction_id=interaction_id,
            position=ev.position,
            category=ev.category,
            wamid=ev.wamid,
            type=ev.type,
            sender=ev.sender,
            recipient=ev.recipient,
            media_id=ev.media_id,
            media_sha256=ev.media_sha256,
            timestamp=ev.timestamp,
        )
        for ev in events
    ]


def event_of(row: m.Event, interaction_seq: int) -> Event:
    """The stored event an event row holds, with its interaction's seq."""
    return Event.indexed(row, interaction_seq)


def copy_statements(old_id: int, new_id: int) -> list[Executable]:
    """INSERT ... SELECTs copying cassette `old_id`'s rows to cassette `new_id`.

    Run in order in one transaction: bodies never leave the database, and each copied
    event points at the copy of its interaction (matched by seq).
    """
    icols = [c.key for c in m.Interaction.__table__.columns if c.key not in ("id", "cassette_id")]
    statements: list[Executable] = [
        insert(m.Interaction).from_select(
            ["cassette_id", *icols],
            select(literal(new_id), *[m.Interaction.__table__.c[c] for c in icols]).where(
                m.Interaction.cassette_id == old_id
            ),
        )
    ]
    old_i = aliased(m.Interaction)
    new_i = aliased(m.Interaction)
    ecols = [
        c.key
        for c in m.Event.__table__.columns
        if c.key not in ("id", "cassette_id", "interaction_id")
    ]
    statements.append(
        insert(m.Event).from_select(
            ["cassette_id", "interaction_id", *ecols],
            select(literal(new_id), new_i.id, *[m.Event.__table__.c[c] for c in ecols])
            .join(old_i, old_i.id == m.Event.interaction_id)
            .join(new_i, (new_i.cassette_id == new_id) & (new_i.seq == old_i.seq))
            .where(m.Event.cassette_id == old_id),
        )
    )
    for model, cols in (
        (m.MediaLink, ["media_id", "sha256", "mime_type"]),
        (m.History, ["at", "operation", "arguments"]),
    ):
        table = model.__table__
        statements.append(
            insert(model).from_select(
                ["cassette_id", *cols],
                select(literal(new_id), *[table.c[c] for c in cols]).where(
                    table.c.cassette_id == old_id
                ),
            )
        )
    return statements


def insert_or_nothing(dialect: str, model: type[m.Base]) -> PgInsert | SqliteInsert:
    """INSERT ... ON CONFLICT DO NOTHING into `model`'s table, in the store's `dialect`.

    On the table, not the ORM entity: the ORM's bulk insert path hides whether the row
    went in, which is the whole point here.
    """
    table = cast(Table, model.__table__)
    if dialect == "postgresql":
        return pg_insert(table).on_conflict_do_nothing()
    return sqlite_insert(table).on_conflict_do_nothing()
