"""Reading a `POST /{phone_number_id}/media` form: fields as text, the file part spooled.

The file part is hashed while it is read and kept in memory up to `SPOOL_MAX`, then in
a temporary file, so an upload of any size costs one chunk of memory. Bodies small
enough to have been read whole (for the journal) go through the same parser.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from dataclasses import dataclass
from dataclasses import field
from typing import IO

from aiohttp import BodyPartReader
from aiohttp import MultipartReader
from aiohttp import StreamReader
from aiohttp import hdrs
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_exceptions import HttpProcessingError

from pseudowa.proxy.contract.errors import invalid_parameter

# Bytes read (and written) at a time, for uploads and downloads alike.
CHUNK_SIZE = 1 << 20
# Uploads stay in memory up to this size, then spill to a temporary file.
SPOOL_MAX = 1 << 20
# A form field longer than this is cut: only short text fields belong in Meta's form.
FIELD_MAX = 64 << 10


@dataclass
class Spooled:
    """An uploaded file part: its bytes (memory, then disk), size, sha256, part type."""

    file: IO[bytes]
    size: int
    sha256: str  # lowercase hex
    content_type: str | None


@dataclass
class UploadForm:
    """An upload's form: its text fields and its first `file` part, if any.

    The caller closes it (`close()`), which drops the spooled file.
    """

    fields: dict[str, str] = field(default_factory=dict)
    file: Spooled | None = None

    def close(self) -> None:
        """Drop the spooled file (its temporary file, when it spilled to disk)."""
        if self.file is not None:
            self.file.file.close()


async def read_upload(request: web.Request, raw: bytes | None) -> UploadForm:
    """The form of a multipart request; `raw` is its body when already read whole.

    A body aiohttp's parser rejects is the bot's mistake: it raises Meta's 400
    (`invalid_parameter`), never a server error.
    """
    try:
        reader = (
            MultipartReader(request.headers, _bytes_reader(raw))
            if raw is not None
            else await request.multipart()
        )
        return await _read_form(reader)
    except (ValueError, HttpProcessingError) as e:
        raise invalid_parameter(f"The multipart/form-data body is malformed: {e}") from e


async def _read_form(reader: MultipartReader) -> UploadForm:
    form = UploadForm()
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue  # nested multipart: not part of Meta's upload form
            if part.name == "file" and form.file is None:
                form.file = await spool(part)
            elif part.name:
                form.fields[part.name] = await _read_field(part)
    except BaseException:
        form.close()
        raise
    return form


async def spool(part: BodyPartReader) -> Spooled:
    """A file part read chunk by chunk into a spooled file, hashed on the way."""
    file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX)
    digest = hashlib.sha256()
    size = 0
    try:
        while chunk := await part.read_chunk(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
            if size > SPOOL_MAX:
                # Past the threshold the spool writes to disk: keep that off the loop.
                await asyncio.to_thread(file.write, chunk)
            else:
                file.write(chunk)
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return Spooled(file, size, digest.hexdigest(), part.headers.get(hdrs.CONTENT_TYPE))


async def _read_field(part: BodyPartReader) -> str:
    """A form field's text, bounded so a stray huge field cannot fill memory.

    A charset that is no text encoding Python knows (`charset=bogus`, `charset=hex`) is
    the bot's mistake: Meta's 400.
    """
    data = bytearray()
    while chunk := await part.read_chunk(FIELD_MAX):
        if len(data) < FIELD_MAX:
            data += chunk[: FIELD_MAX - len(data)]
    charset = part.get_charset("utf-8")
    try:
        return data.decode(charset, "replace")
    except (LookupError, UnicodeError):
        # (UnicodeError: a codec such as idna refuses the "replace" error handler.)
        raise invalid_parameter(
            f"The form field {part.name!r} has an unusable charset {charset!r}."
        ) from None


def _bytes_reader(raw: bytes) -> StreamReader:
    """A finished stream holding `raw`, so one multipart parser serves bodies read whole."""
    loop = asyncio.get_running_loop()
    # A limit above the body's size means the reader never asks the dummy protocol
    # to pause reading.
    stream = StreamReader(BaseProtocol(loop), limit=max(1 << 16, len(raw) + 1), loop=loop)
    stream.feed_data(raw)
    stream.feed_eof()
    return stream
