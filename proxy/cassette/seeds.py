"""Seed cassettes: inbound webhooks and media as Meta would send them, with no bot traffic.

A seed holds what Meta sends (webhooks) and the media behind it; replaying it
against a bot with a journal yields a full recording (webhooks, the bot's Graph
calls, media downloads, statuses) that later replays check against. The demo and
the tests start from these.
"""

from __future__ import annotations

import struct
import time
import zlib
from typing import Any

from pseudowa.proxy.cassette.tape import PLACEHOLDER_BOT_URL
from pseudowa.proxy.cassette.tape import index_exchange
from pseudowa.proxy.contract import webhooks as wh
from pseudowa.storage.records import Exchange
from pseudowa.storage.store import CassetteStore

ACCOUNT = wh.BusinessAccount()
USER = "16505551234"


def tiny_png(seed: int = 0, side: int = 8) -> bytes:
    """A valid PNG of `side`x`side` pixels whose colours depend on `seed`."""
    rows = b"".join(
        b"\x00"
        + b"".join(
            bytes(((x * 31 + y * 17 + seed) % 256, (x + seed) % 256, (y * 7) % 256))
            for x in range(side)
        )
        for y in range(side)
    )

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def add_webhook(store: CassetteStore, name: str, message: dict[str, Any], at: float) -> None:
    """Append one inbound-message webhook as the recorder would have stored it."""
    payload = wh.inbound_webhook(ACCOUNT, message, profile_name="Sheena Nelson")
    body = wh.dumps(payload)
    x = Exchange(
        "webhook",
        "POST",
        PLACEHOLDER_BOT_URL,
        request_headers=[("Content-Type", "application/json")],
        request_body=body,
        response_status=200,
        response_body=b"",
        started_at=at,
        finished_at=at + 0.01,
    )
    store.append(name, x, index_exchange(x))


def image_seed(
    store: CassetteStore,
    name: str = "image-seed",
    *,
    media_id: str = "1037543291543636",
    image: bytes | None = None,
) -> str:
    """One image from the user; the media bytes are linked to its media id."""
    data = image or tiny_png(1)
    store.create_cassette(
        name,
        source="sandbox",
        graph_api_version="v23.0",
        phone_number_ids=[ACCOUNT.phone_number_id],
    )
    blob = store.put_media(data, "image/png")
    store.link_media(name, media_id, blob.sha256)
    msg = wh.message(
        "image",
        USER,
        wh.media_body("image", media_id, "image/png", wh.sha256_b64(data), caption="look at this"),
    )
    add_webhook(store, name, msg, time.time())
    return name


def text_seed(
    store: CassetteStore,
    name: str = "text-seed",
    texts: tuple[str, ...] = ("hi", "menu"),
    gap_s: float = 0.05,
) -> str:
    """A few texts from the user, `gap_s` apart, then a button reply to the menu."""
    store.create_cassette(
        name,
        source="sandbox",
        graph_api_version="v23.0",
        phone_number_ids=[ACCOUNT.phone_number_id],
    )
    t = time.time()
    for i, text in enumerate(texts):
        add_webhook(store, name, wh.message("text", USER, wh.text_body(text)), t + i * gap_s)
    reply = wh.message(
        "interactive",
        USER,
        wh.button_reply_body("opt-news", "News"),
        context={"from": ACCOUNT.display_phone_number, "id": "wamid.menu"},
    )
    add_webhook(store, name, reply, t + len(texts) * gap_s)
    return name
