"""Simulated WhatsApp users: what a person does on their phone, as signed webhooks now.

Each `send_*` builds the inbound message with the contract's builders, delivers it to
the bot through the sandbox (signed, verify handshake first if none was done) and
returns the message's wamid once the bot answered the POST. Media go the real way: the
bytes are registered with the fake Graph API under a fresh media id, the webhook carries
that id with the sha256 (base64, as Meta's webhooks do), and the bot fetches the
metadata, then the signed, expiring download URL.
"""

from __future__ import annotations

import asyncio
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from pseudowa.proxy.contract import webhooks
from pseudowa.proxy.contract.ids import new_wamid
from pseudowa.proxy.contract.ids import wa_id_of
from pseudowa.proxy.contract.outbound import SendRequest
from pseudowa.proxy.errors import ConfigError

if TYPE_CHECKING:
    from pseudowa.proxy.sandbox.sandbox import Sandbox

MediaSource = str | Path | bytes
# Magic numbers of the formats users send most, for bytes given without a type.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF8", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
    (b"%PDF", 0, "application/pdf"),
    (b"OggS", 0, "audio/ogg"),
    (b"ID3", 0, "audio/mpeg"),
    (b"ftyp", 4, "video/mp4"),
)
_DEFAULT_MIME = {
    "image": "image/jpeg",
    "audio": "audio/ogg",
    "video": "video/mp4",
    "document": "application/pdf",
    "sticker": "image/webp",
}


def digits(phone: str) -> str:
    """A simulated user's phone number as WhatsApp ids it (ConfigError when it has no digit)."""
    wa_id = wa_id_of(phone)
    if not wa_id:
        raise ConfigError(f"not a phone number: {phone!r}")
    return wa_id


def guess_mime(data: bytes, name: str | None, kind: str) -> str:
    """The MIME type of media bytes: from the file name, else the bytes, else the kind's."""
    if name:
        guessed, _ = mimetypes.guess_type(name)
        if guessed:
            return guessed
    for magic, offset, mime in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return mime
    return _DEFAULT_MIME[kind]


@dataclass(frozen=True)
class Reply:
    """One send of the bot's, as the user it addressed receives it."""

    send: SendRequest
    wamid: str  # the id the fake Graph API answered with
    recorded: bool  # answered from a recording rather than synthesized
    at: float  # seconds since the epoch

    @property
    def type(self) -> str:
        return self.send.type

    @property
    def text(self) -> str | None:
        """What the user reads: a text's body, a media caption, an interactive's body text."""
        obj = self.send.body.get(self.send.type)
        if not isinstance(obj, dict):
            return None
        if self.send.type == "text":
            return _str(obj.get("body"))
        if self.send.type == "interactive":
            body = obj.get("body")
            return _str(body.get("text")) if isinstance(body, dict) else None
        return _str(obj.get("caption"))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class User:
    """A simulated WhatsApp user of a sandbox (make one with `Sandbox.user`)."""

    def __init__(self, sandbox: Sandbox, wa_id: str, name: str) -> None:
        self.sandbox = sandbox
        self.wa_id = wa_id
        self.name = name
        self.replies: list[Reply] = []  # the bot's sends to this user, in order
        self.sent: list[str] = []  # wamids of this user's messages, in order
        self._read = 0  # replies already returned by wait_for_replies

    def __repr__(self) -> str:
        return f"User({self.wa_id!r}, name={self.name!r})"

    # -- messages ------------------------------------------------------------------------------

    async def send_text(self, text: str, *, reply_to: str | None = None) -> str:
        """Type and send `text`; `reply_to` quotes one of the bot's messages (context)."""
        return await self._send("text", webhooks.text_body(text), reply_to=reply_to)

    async def send_image(
        self, media: MediaSource, *, caption: str | None = None, mime_type: str | None = None
    ) -> str:
        """Send a photo: a file path or the bytes themselves."""
        return await self.send_media("image", media, caption=caption, mime_type=mime_type)

    async def send_document(
        self,
        media: MediaSource,
        *,
        filename: str | None = None,
        caption: str | None = None,
        mime_type: str | None = None,
    ) -> str:
        """Send a file; its name defaults to the path's."""
        if filename is None and not isinstance(media, bytes):
            filename = Path(media).name
        return await self.send_media(
            "document", media, caption=caption, filename=filename, mime_type=mime_type
        )

    async def send_audio(
        self, media: MediaSource, *, voice: bool = False, mime_type: str | None = None
    ) -> str:
        """Send audio; `voice=True` for a voice note recorded in the app."""
        return await self.send_media("audio", media, voice=voice, mime_type=mime_type)

    async def send_video(
        self, media: MediaSource, *, caption: str | None = None, mime_type: str | None = None
    ) -> str:
        return await self.send_media("video", media, caption=caption, mime_type=mime_type)

    async def send_sticker(
        self, media: MediaSource, *, animated: bool = False, mime_type: str | None = None
    ) -> str:
        return await self.send_media("sticker", media, animated=animated, mime_type=mime_type)

    async def send_media(
        self,
        kind: str,
        media: MediaSource,
        *,
        caption: str | None = None,
        filename: str | None = None,
        mime_type: str | None = None,
        voice: bool | None = None,
        animated: bool | None = None,
        reply_to: str | None = None,
    ) -> str:
        """Send media of `kind` (image, audio, video, document, sticker)."""
        if kind not in webhooks.MEDIA_TYPES:
            raise ConfigError(
                f"not a media type: {kind!r}; choose among {', '.join(webhooks.MEDIA_TYPES)}"
            )
        if isinstance(media, bytes):
            data, name = media, None
        else:
            path = Path(media)
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except OSError as e:
                raise ConfigError(f"cannot read {path}: {e.strerror or e}") from e
            name = path.name
        if not data:
            raise ConfigError("cannot send empty media: WhatsApp refuses 0-byte files")
        mime = mime_type or guess_mime(data, name, kind)
        stored = await self.sandbox.graph.add_media(data, mime)
        body = webhooks.media_body(
            kind,
            stored.media_id,
            mime,
            webhooks.sha256_b64(data),
            caption=caption,
            filename=filename,
            voice=voice,
            animated=animated,
        )
        return await self._send(kind, body, reply_to=reply_to)

    async def send_location(
        self,
        latitude: float,
        longitude: float,
        *,
        name: str | None = None,
        address: str | None = None,
    ) -> str:
        """Share a location pin."""
        return await self._send(
            "location", webhooks.location_body(latitude, longitude, name, address)
        )

    async def react(self, message_id: str, emoji: str) -> str:
        """React to a message (the bot's wamid) with `emoji`; "" removes the reaction."""
        return await self._send("reaction", webhooks.reaction_body(message_id, emoji))

    async def tap_button(self, reply_id: str, title: str, *, reply_to: str | None = None) -> str:
        """Tap a reply button of the bot's interactive message `reply_to`."""
        return await self._send(
            "interactive",
            webhooks.button_reply_body(reply_id, title),
            reply_to=reply_to or self._last_reply_wamid(),
        )

    async def choose_row(
        self,
        row_id: str,
        title: str,
        *,
        description: str | None = None,
        reply_to: str | None = None,
    ) -> str:
        """Choose a row of the bot's list message `reply_to`."""
        return await self._send(
            "interactive",
            webhooks.list_reply_body(row_id, title, description),
            reply_to=reply_to or self._last_reply_wamid(),
        )

    # -- replies ---------------------------------------------------------------------------------

    async def wait_for_replies(self, count: int = 1, timeout: float = 5.0) -> list[Reply]:
        """The next `count` replies of the bot's not yet returned by this method, waiting up
        to `timeout` seconds for them; raises TimeoutError naming what arrived."""
        if not await self.sandbox.sends_until(
            lambda: len(self.replies) - self._read >= count, timeout
        ):
            got = len(self.replies) - self._read
            raise TimeoutError(
                f"{self.name} ({self.wa_id}) got {got} of {count} replies within {timeout:g} s"
            )
        replies = self.replies[self._read : self._read + count]
        self._read += count
        return replies

    # -- internals --------------------------------------------------------------------------------

    def _last_reply_wamid(self) -> str | None:
        return self.replies[-1].wamid if self.replies else None

    async def _send(self, kind: str, body: dict[str, Any], *, reply_to: str | None = None) -> str:
        wamid = new_wamid(self.wa_id)
        context = (
            {"from": self.sandbox.config.display_phone_number, "id": reply_to} if reply_to else None
        )
        message = webhooks.message(kind, self.wa_id, body, wamid=wamid, context=context)
        payload = webhooks.inbound_webhook(
            self.sandbox.config.account, message, profile_name=self.name
        )
        self.sent.append(wamid)
        await self.sandbox.deliver(webhooks.dumps(payload), f"{kind} {wamid} from {self.wa_id}")
        return wamid
