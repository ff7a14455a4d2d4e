"""Seed cassettes hold what Meta would send, indexed and with their media."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from openapi import validate

from pseudowa.proxy.cassette import seeds
from pseudowa.storage.store import CassetteStore


def test_image_seed_links_a_real_png_to_the_announced_media_id(tmp_path: Path) -> None:
    with CassetteStore.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        seeds.image_seed(store, "img", media_id="42")
        (event,) = store.events("img", type="image")
        data = store.read_media(store.media("img", "42").sha256)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert event.media_id == "42"
        assert event.media_sha256 == base64.b64encode(hashlib.sha256(data).digest()).decode()
        (webhook,) = store.interactions("img")
        validate("WebhookPayload", json.loads(webhook.request_body))


def test_text_seed_orders_texts_then_the_button_reply(tmp_path: Path) -> None:
    with CassetteStore.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        seeds.text_seed(store, "t", texts=("a", "b"))
        types = [e.type for e in store.events("t")]
        assert types == ["text", "text", "interactive"]
        times = [x.started_at for x in store.interactions("t")]
        assert times == sorted(times)


def test_tiny_png_depends_on_its_seed() -> None:
    assert seeds.tiny_png(1) != seeds.tiny_png(2)
    assert len(seeds.tiny_png(1)) < 1024
