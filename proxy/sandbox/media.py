"""The fake Graph API's media: look-ups, signed downloads, uploads and deletes.

A run serves three kinds of media: the cassette's media links (bytes in the cassette's
store), the bot's uploads, and media a simulated WhatsApp user sent (`add`). Bytes
live in a blob store when there is one (the graph's store, else the journal's), else
in memory. Download URLs are signed and expire like lookaside.fbsbx.com's, and blobs
are streamed chunk by chunk, so memory stays at one chunk whatever their size.

`MediaRoutes` holds the handlers; `FakeGraph` routes to them and supplies what they
share with the send routes (token check, phone numbers, request state) as a
`MediaHost`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from collections.abc import Generator
from dataclasses import dataclass
from typing import BinaryIO
from typing import Protocol
from typing import cast

from aiohttp import hdrs
from aiohttp import web

from pseudowa.proxy.contract import media_url
from pseudowa.proxy.contract.answers import media_answer
from pseudowa.proxy.contract.answers import not_downloadable
from pseudowa.proxy.contract.errors import GraphError
from pseudowa.proxy.contract.errors import bad_value
from pseudowa.proxy.contract.errors import missing_parameter
from pseudowa.proxy.contract.errors import unknown_object
from pseudowa.proxy.contract.ids import new_media_id
from pseudowa.proxy.sandbox.journal import Journal
from pseudowa.proxy.sandbox.uploads import CHUNK_SIZE
from pseudowa.proxy.sandbox.uploads import read_upload
from pseudowa.storage.errors import MediaNotFound
from pseudowa.storage.records import Kind
from pseudowa.storage.store import CassetteStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunMedia:
    """A media id this run can serve: a cassette link, an upload or a user's media."""

    media_id: str
    sha256: str  # lowercase hex
    mime_type: str
    size: int
    data: bytes | None = None  # media kept without any store keep their bytes here
    phone_number_id: str | None = None  # the number an upload was made through


class RequestNotes(Protocol):
    """What a media handler reads and notes about the request it serves."""

    kind: str  # the journal entry's kind
    annotations: dict[str, str]

    @property
    def raw_body(self) -> bytes | None:
        """The request body when it was read whole; None when it streams."""


class MediaSettings(Protocol):
    """The part of the graph's configuration the media routes read (at request time)."""

    @property
    def url_secret(self) -> bytes:
        """Signs media download URLs."""

    @property
    def media_ttl_s(self) -> float:
        """How long a download URL stays valid."""


class MediaHost(Protocol):
    """What the media routes need from the fake Graph API serving them (a `FakeGraph`).

    Every member is read when a request is served, so the host may switch its cassette
    or its journal while running.
    """

    @property
    def config(self) -> MediaSettings:
        """URL signing settings."""

    @property
    def store(self) -> CassetteStore | None:
        """The store of the cassette served (its media links), also the first blob store."""

    @property
    def cassette(self) -> str | None:
        """The cassette whose media links are served."""

    @property
    def journal(self) -> Journal | None:
        """The run's journal: its store keeps blobs without a graph store, and its
        cassette gets links to the run's new media."""

    def authorize(self, request: web.Request) -> None:
        """Raise Meta's 190 unless the request carries the access token."""

    def phone_number_id(self, request: web.Request) -> str:
        """The request's business number; Meta's unknown-object error if not one of ours."""

    def serves_number(self, phone_id: str) -> bool:
        """True when `phone_id` is a business number of this run."""

    def media_base_url(self, request: web.Request) -> str:
        """Scheme, host and port that download URLs start with."""

    def notes(self, request: web.Request) -> RequestNotes:
        """The state kept about the request being served."""

    def answer_headers(self, request: web.Request) -> dict[str, str]:
        """Meta's headers (trace id, API version) for the answer to the request."""


class MediaRoutes:
    """The media handlers of a fake Graph API, and the media this run added."""

    def __init__(self, host: MediaHost) -> None:
        self.host = host
        self.uploads: dict[str, RunMedia] = {}  # what the bot uploaded
        self.received: dict[str, RunMedia] = {}  # what simulated users sent (`add`)
        self.deleted: set[str] = set()  # cassette media the bot deleted in this run
        self._stored_in: dict[str, CassetteStore] = {}  # where a run media's blob is

    def reset(self) -> None:
        """Forget the deletes, for a new cassette; the run's own media stay."""
        self.deleted.clear()

    async def find(self, media_id: str) -> RunMedia | None:
        """The media `media_id` names in this run, unless deleted or unknown."""
        if media_id in self.deleted:
            return None
        media = self.uploads.get(media_id) or self.received.get(media_id)
        if media is not None:
            return media
        store, cassette = self.host.store, self.host.cassette
        if store is None or cassette is None:
            return None
        try:
            link = await asyncio.to_thread(store.media, cassette, media_id)
        except MediaNotFound:
            return None
        return RunMedia(link.media_id, link.sha256, link.mime_type, link.size)

    async def add(self, data: bytes, mime_type: str) -> RunMedia:
        """Keep `data` under a fresh media id, as media a WhatsApp user sent the bot."""
        sha256 = hashlib.sha256(data).hexdigest()
        return await self._keep(self.received, data, sha256, len(data), mime_type, None)

    # -- handlers ----------------------------------------------------------------------------

    async def info(self, request: web.Request) -> web.StreamResponse:
        """`GET /{media_id}`: the media's metadata and a signed download URL."""
        host = self.host
        host.authorize(request)
        media_id = request.match_info["media_id"]
        media = await self.find(media_id)
        phone_id = request.query.get("phone_number_id")
        if media is None or (phone_id is not None and not self._belongs(media, phone_id)):
            raise unknown_object(media_id)
        config = host.config
        signed = media_url.sign(config.url_secret, media_id, config.media_ttl_s)
        url = f"{host.media_base_url(request)}{media_url.DOWNLOAD_PATH}?{signed.query()}"
        answer = media_answer(media.media_id, url, media.mime_type, media.sha256, media.size)
        return web.json_response(answer)

    async def download(self, request: web.Request) -> web.StreamResponse:
        """A signed download URL (lookaside's `/whatsapp_business/attachments/`)."""
        host = self.host
        host.notes(request).kind = Kind.MEDIA.value
        host.authorize(request)
        q, secret = request.query, host.config.url_secret
        media_id = media_url.check(secret, q.get("mid"), q.get("ext"), q.get("hash"))
        if media_id is None:
            raise not_downloadable("The media URL is invalid or expired; look the id up again.")
        media = await self.find(media_id)
        if media is None:
            raise not_downloadable(f"Media {media_id} no longer exists.")
        return await self._stream(request, media)

    async def download_by_id(self, request: web.Request) -> web.StreamResponse:
        """The seed's simple contract: `GET /media/download/{media_id}`, no signature."""
        self.host.notes(request).kind = Kind.MEDIA.value
        self.host.authorize(request)
        media_id = request.match_info["media_id"]
        media = await self.find(media_id)
        if media is None:
            raise not_downloadable(f"Media {media_id} does not exist.")
        return await self._stream(request, media)

    async def upload(self, request: web.Request) -> web.StreamResponse:
        """`POST /{phone_number_id}/media`: keep the file part, answer its new media id."""
        host = self.host
        host.authorize(request)
        phone_id = host.phone_number_id(request)
        if not request.content_type.startswith("multipart/"):
            raise GraphError(131008, "The parameter file is required; send multipart/form-data.")
        form = await read_upload(request, host.notes(request).raw_body)
        try:
            product = form.fields.get("messaging_product")
            if product is None:
                raise missing_parameter("messaging_product")
            if product != "whatsapp":
                raise bad_value("The parameter messaging_product must be 'whatsapp'.")
            spooled = form.file
            if spooled is None:
                raise missing_parameter("file")
            if spooled.size == 0:
                raise GraphError(131053, "The uploaded file is empty.")
            mime = form.fields.get("type") or spooled.content_type or "application/octet-stream"
            file = cast(BinaryIO, spooled.file)
            media = await self._keep(
                self.uploads, file, spooled.sha256, spooled.size, mime, phone_id
            )
        finally:
            form.close()
        return web.json_response({"id": media.media_id})

    async def delete(self, request: web.Request) -> web.StreamResponse:
        """`DELETE /{media_id}`: the id is gone for the rest of the run."""
        self.host.authorize(request)
        media_id = request.match_info["media_id"]
        if self._forget(media_id):
            self.deleted.add(media_id)
            return web.json_response({"success": True})
        if await self.find(media_id) is None:
            raise unknown_object(media_id)
        # A cassette's media id disappears for the rest of the run, as it would at Meta.
        self.deleted.add(media_id)
        return web.json_response({"success": True})

    # -- helpers -------------------------------------------------------------------------------

    def _belongs(self, media: RunMedia, phone_id: str) -> bool:
        """Meta: with `phone_number_id`, the look-up succeeds only for that number's media."""
        if media.phone_number_id is not None:
            return media.phone_number_id == phone_id
        return self.host.serves_number(phone_id)

    def _forget(self, media_id: str) -> bool:
        """Drop one of the run's own media; False when `media_id` is none of them."""
        media = self.uploads.pop(media_id, None) or self.received.pop(media_id, None)
        self._stored_in.pop(media_id, None)
        return media is not None

    def _blob_store(self) -> CassetteStore | None:
        host = self.host
        if host.store is not None:
            return host.store
        return host.journal.store if host.journal is not None else None

    async def _keep(
        self,
        into: dict[str, RunMedia],
        source: bytes | BinaryIO,
        sha256: str,
        size: int,
        mime: str,
        phone_id: str | None,
    ) -> RunMedia:
        """Store bytes (in the blob store, or memory without one) under a fresh media id."""
        media_id = new_media_id()
        store = self._blob_store()
        data: bytes | None = None
        if store is None:
            data = source if isinstance(source, bytes) else await asyncio.to_thread(source.read)
        else:
            await asyncio.to_thread(store.put_media, source, mime)
            # Remembered: the graph may switch to a cassette of another store later on.
            self._stored_in[media_id] = store
        media = RunMedia(media_id, sha256, mime, size, data, phone_id)
        into[media_id] = media
        if store is not None:
            await self._link_to_run(store, source, media)
        return media

    async def _link_to_run(
        self, store: CassetteStore, source: bytes | BinaryIO, media: RunMedia
    ) -> None:
        """Link new media to the run's cassette, so the journaled run can serve it later."""
        journal = self.host.journal
        if journal is None or journal.store is None or journal.name is None:
            return
        try:
            target = journal.store
            if target is not store:
                # The run's store is another database: it needs its own copy of the bytes.
                if not isinstance(source, bytes):
                    source.seek(0)
                await asyncio.to_thread(target.put_media, source, media.mime_type)
            await asyncio.to_thread(
                target.link_media, journal.name, media.media_id, media.sha256, media.mime_type
            )
        except Exception as e:
            # The bot's request itself succeeded; the failure surfaces at journal.close().
            logger.error("could not link media %s to run %s: %s", media.media_id, journal.name, e)
            if journal.error is None:
                journal.error = e

    async def read(self, media: RunMedia) -> bytes:
        """All the bytes of one of the run's media (to save a session as a cassette)."""
        return b"".join([chunk async for chunk in self._chunks(media)])

    async def _stream(self, request: web.Request, media: RunMedia) -> web.StreamResponse:
        """Send the blob chunk by chunk: memory stays at one chunk whatever its size."""
        notes = self.host.notes(request)
        notes.annotations["sha256"] = media.sha256
        response = web.StreamResponse(status=200)
        response.headers.update(self.host.answer_headers(request))
        response.headers[hdrs.CONTENT_TYPE] = media.mime_type
        response.headers[hdrs.CONTENT_LENGTH] = str(media.size)
        await response.prepare(request)
        try:
            async for chunk in self._chunks(media):
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            # The bot hung up mid-download; nothing left to answer, only to journal.
            notes.annotations["error"] = "client disconnected during download"
        return response

    async def _chunks(self, media: RunMedia) -> AsyncIterator[bytes]:
        if media.data is not None:
            view = memoryview(media.data)
            for i in range(0, len(view), CHUNK_SIZE):
                yield bytes(view[i : i + CHUNK_SIZE])
            return
        store = self._stored_in.get(media.media_id) or self._blob_store()
        if store is None:
            return
        chunks = store.media_chunks(media.sha256)
        try:
            # One database read per chunk, each in a worker thread.
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                yield chunk
        finally:
            # A generator: closing it now ends its database session even when the bot
            # hung up mid-download.
            if isinstance(chunks, Generator):
                chunks.close()
