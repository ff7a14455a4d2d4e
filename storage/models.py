"""SQLAlchemy 2 ORM models of the cassette store.

Only `storage.store` opens sessions on them; everything else sees the
dataclasses in `storage.records`.
"""

from __future__ import annotations

from datetime import datetime
from datetime import timezone
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import BigInteger
from sqlalchemy import DateTime
from sqlalchemy import Double
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import LargeBinary
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

# Named constraints let Alembic's batch mode drop and recreate them on SQLite.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Cassette(Base):
    __tablename__ = "cassette"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    source: Mapped[str] = mapped_column(String(20), default="meta")
    notes: Mapped[str] = mapped_column(Text, default="")
    graph_api_version: Mapped[str | None] = mapped_column(String(20))
    phone_number_ids: Mapped[list[str]] = mapped_column(JSON, default=list)

    interactions: Mapped[list[Interaction]] = relationship(
        back_populates="cassette", cascade="all, delete-orphan", passive_deletes=True
    )


class Interaction(Base):
    __tablename__ = "interaction"
    __table_args__ = (UniqueConstraint("cassette_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cassette_id: Mapped[int] = mapped_column(ForeignKey("cassette.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    method: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text)
    request_headers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    request_body: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    response_body: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[float] = mapped_column(Double)
    finished_at: Mapped[float] = mapped_column(Double)
    annotations: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    cassette: Mapped[Cassette] = relationship(back_populates="interactions")


class Event(Base):
    __tablename__ = "event"
    __table_args__ = (
        Index("ix_event_cassette_wamid", "cassette_id", "wamid"),
        Index("ix_event_cassette_media", "cassette_id", "media_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cassette_id: Mapped[int] = mapped_column(ForeignKey("cassette.id", ondelete="CASCADE"))
    interaction_id: Mapped[int] = mapped_column(
        ForeignKey("interaction.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)
    category: Mapped[str] = mapped_column(String(20))
    wamid: Mapped[str | None] = mapped_column(String(255))
    type: Mapped[str | None] = mapped_column(String(40))
    sender: Mapped[str | None] = mapped_column(String(64))
    recipient: Mapped[str | None] = mapped_column(String(64))
    media_id: Mapped[str | None] = mapped_column(String(128))
    media_sha256: Mapped[str | None] = mapped_column(String(128))
    timestamp: Mapped[str | None] = mapped_column(String(32))


class MediaBlob(Base):
    """Bytes stored once, whatever number of media ids or cassettes refer to them."""

    __tablename__ = "media_blob"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    mime_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MediaChunk(Base):
    """A blob's bytes in fixed-size pieces, so large media stream in bounded memory."""

    __tablename__ = "media_chunk"

    sha256: Mapped[str] = mapped_column(
        ForeignKey("media_blob.sha256", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class MediaLink(Base):
    __tablename__ = "media_link"
    __table_args__ = (UniqueConstraint("cassette_id", "media_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cassette_id: Mapped[int] = mapped_column(ForeignKey("cassette.id", ondelete="CASCADE"))
    media_id: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(ForeignKey("media_blob.sha256"), index=True)
    mime_type: Mapped[str] = mapped_column(String(255))


class History(Base):
    """What was done to a cassette, in order: recorded, imported, mutated, copied."""

    __tablename__ = "history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cassette_id: Mapped[int] = mapped_column(
        ForeignKey("cassette.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    operation: Mapped[str] = mapped_column(String(64))
    arguments: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
