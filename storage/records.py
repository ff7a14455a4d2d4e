"""Plain data that crosses the store's boundary.

Callers never see ORM objects: they hand the store these dataclasses and get
them back, so sessions stay inside `CassetteStore`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import Protocol

Headers = list[tuple[str, str]]


def header_value(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    """The first value of header `name` (any case) in a header list, or None."""
    lowered = name.lower()
    return next((v for k, v in headers if k.lower() == lowered), None)


class Kind(enum.StrEnum):
    """Which leg of the conversation an interaction belongs to."""

    WEBHOOK = "webhook"  # Meta -> bot
    GRAPH = "graph"  # bot -> Graph API
    MEDIA = "media"  # bot -> media host


class Source(enum.StrEnum):
    """Where a cassette's traffic came from."""

    META = "meta"
    SANDBOX = "sandbox"
    IMPORTED = "imported"
    MUTATED = "mutated"
    REPLAY = "replay"  # the journal of a replay run


@dataclass(frozen=True)
class CassetteInfo:
    """A cassette's metadata with counts of what it holds."""

    name: str
    created_at: datetime
    source: str
    notes: str
    graph_api_version: str | None
    phone_number_ids: tuple[str, ...]
    interaction_count: int = 0
    event_count: int = 0
    media_count: int = 0


class EventLike(Protocol):
    """What the store reads of an event it indexes: EventData, or the contract's
    WebhookEvent as it is (storage imports nothing of ours, so it names no such class)."""

    @property
    def wamid(self) -> str | None: ...
    @property
    def category(self) -> str: ...
    @property
    def type(self) -> str | None: ...
    @property
    def sender(self) -> str | None: ...
    @property
    def recipient(self) -> str | None: ...
    @property
    def media_id(self) -> str | None: ...
    @property
    def media_sha256(self) -> str | None: ...
    @property
    def timestamp(self) -> str | None: ...
    @property
    def position(self) -> int: ...


@dataclass(frozen=True)
class EventData:
    """One message, status or error inside a webhook body, as indexed for look-up."""

    wamid: str | None
    category: str  # "message" | "status" | "error"
    type: str | None  # message type, status value, or error code
    sender: str | None = None  # `from` for messages
    recipient: str | None = None  # `recipient_id` for statuses
    media_id: str | None = None
    media_sha256: str | None = None  # as the webhook announced it (base64, Meta's form)
    timestamp: str | None = None
    position: int = 0  # order inside the webhook body


@dataclass(frozen=True)
class Event(EventData):
    """An indexed event as stored, with the interaction it came from."""

    interaction_seq: int = 0

    @classmethod
    def indexed(cls, e: EventLike, interaction_seq: int) -> Event:
        """The event as the store lists it once `e` is indexed at `interaction_seq`."""
        return cls(
            wamid=e.wamid,
            category=e.category,
            type=e.type,
            sender=e.sender,
            recipient=e.recipient,
            media_id=e.media_id,
            media_sha256=e.media_sha256,
            timestamp=e.timestamp,
            position=e.position,
            interaction_seq=interaction_seq,
        )


@dataclass(frozen=True)
class Exchange:
    """One HTTP exchange: request, then a response or an error, with wall-clock times."""

    kind: Kind | str
    method: str
    url: str
    request_headers: Headers = field(default_factory=list)
    request_body: bytes = b""
    response_status: int | None = None
    response_headers: Headers = field(default_factory=list)
    response_body: bytes = b""
    error: str | None = None
    started_at: float = 0.0  # seconds since the epoch
    finished_at: float = 0.0
    annotations: dict[str, str] = field(default_factory=dict)
    seq: int = -1  # assigned by the store: position in the cassette, from 0

    @property
    def duration(self) -> float:
        return max(0.0, self.finished_at - self.started_at)


@dataclass(frozen=True)
class MediaInfo:
    """What the store knows of a blob, without its bytes."""

    sha256: str  # lowercase hex
    mime_type: str
    size: int


@dataclass(frozen=True)
class MediaLinkInfo:
    """A media id of a cassette pointing at a blob."""

    media_id: str
    sha256: str
    mime_type: str
    size: int


@dataclass(frozen=True)
class HistoryEntry:
    """One operation applied to a cassette (recording, import, mutation)."""

    at: datetime
    operation: str
    arguments: dict[str, object]
