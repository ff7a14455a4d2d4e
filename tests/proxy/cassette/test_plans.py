"""Mutation plans, pure over a tape: what each one changes, and what it refuses."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from openapi import validate

from pseudowa.proxy.cassette.plans import CassetteMedia
from pseudowa.proxy.cassette.plans import MediaFile
from pseudowa.proxy.cassette.plans import plan_add
from pseudowa.proxy.cassette.plans import plan_add_event
from pseudowa.proxy.cassette.plans import plan_delay
from pseudowa.proxy.cassette.plans import plan_drop
from pseudowa.proxy.cassette.plans import plan_duplicate
from pseudowa.proxy.cassette.plans import plan_fail_status
from pseudowa.proxy.cassette.plans import plan_move
from pseudowa.proxy.cassette.plans import plan_set_field
from pseudowa.proxy.cassette.plans import plan_signature
from pseudowa.proxy.cassette.plans import plan_swap_media_file
from pseudowa.proxy.cassette.seeds import USER
from pseudowa.proxy.cassette.tape import SIGNING_ANNOTATION
from pseudowa.proxy.cassette.tape import Tape
from pseudowa.proxy.cassette.tape import index_exchanges
from pseudowa.proxy.contract import webhooks as wh
from pseudowa.proxy.errors import MutationError
from pseudowa.proxy.sandbox.replay import plan_deliveries
from pseudowa.storage.records import MediaLinkInfo


def test_set_field_rewrites_every_identical_copy(build: Any) -> None:
    tape = build.small_tape()
    dup = plan_duplicate(tape, "wamid.HI", times=1)
    tape2 = Tape("t", [x for x in dup.exchanges or []])
    change = plan_set_field(tape2, "wamid.HI", "text.body", "hello")
    assert change.exchanges is not None
    bodies = [m["text"]["body"] for m in build.messages(change.exchanges)]
    assert bodies == ["hello", "hello", "menu"]
    # By index only that delivery changes.
    one = plan_set_field(tape2, "#1", "text.body", "x")
    assert [m["text"]["body"] for m in build.messages(one.exchanges or [])] == ["hi", "x", "menu"]
    with pytest.raises(MutationError, match="is a status, not a message"):
        plan_set_field(tape2, "#3", "text.body", "x")


def test_drop_removes_a_lone_webhook_and_rewrites_a_shared_one(build: Any) -> None:
    tape = build.small_tape()
    change = plan_drop(tape, "wamid.MENU")
    assert change.exchanges is not None and len(change.exchanges) == 4
    assert [m["id"] for m in build.messages(change.exchanges)] == ["wamid.HI"]
    batched = wh.merge(
        [
            wh.inbound_webhook(build.account, build.text("x", "wamid.X"), "Ana"),
            build.status("wamid.R", "read"),
        ]
    )
    shared = Tape("b", [build.webhook(batched, 1.0, 0)])
    out = plan_drop(shared, "wamid.X").exchanges
    assert out is not None and len(out) == 1
    assert [e.wamid for e in index_exchanges(out)] == ["wamid.R"]


def test_fail_status_by_wamid_removes_the_later_delivered_and_read(build: Any) -> None:
    change = plan_fail_status(build.small_tape(), "wamid.REPLY")
    events = index_exchanges(change.exchanges or [])
    assert [(e.wamid, e.type) for e in events] == [
        ("wamid.HI", "text"),
        ("wamid.MENU", "text"),
        ("wamid.REPLY", "failed"),
    ]
    with pytest.raises(MutationError, match="is a message, not a status"):
        plan_fail_status(build.small_tape(), "#0")


def test_move_and_delay_reorder_deliveries_by_time(build: Any) -> None:
    tape = build.small_tape()
    moved = plan_move(tape, "wamid.MENU", before="wamid.HI").exchanges or []
    assert [e.wamid for e in index_exchanges(moved)][:2] == ["wamid.MENU", "wamid.HI"]
    assert moved[0].started_at == 100.0  # it took the anchor's time
    delayed = plan_delay(tape, "wamid.HI", 1.5).exchanges or []
    assert [e.wamid for e in index_exchanges(delayed)][:3] == [
        "wamid.MENU",
        "wamid.HI",
        "wamid.REPLY",
    ]
    assert delayed[1].started_at == 101.5
    with pytest.raises(MutationError, match="exactly one of before or after"):
        plan_move(tape, "#0")
    with pytest.raises(MutationError, match="same webhook"):
        plan_move(tape, "#0", after="#0")


def test_duplicates_are_byte_identical_and_spaced(build: Any) -> None:
    change = plan_duplicate(build.small_tape(), "wamid.HI", times=2, gap_s=0.5)
    out = change.exchanges or []
    copies = [x for x in out if b"wamid.HI" in x.request_body]
    assert len({x.request_body for x in copies}) == 1 and len(copies) == 3
    assert [x.started_at for x in copies] == [100.0, 100.5, 101.0]
    assert [x.started_at for x in out] == sorted(x.started_at for x in out)


def test_signature_marks_reach_the_planned_delivery_only(build: Any) -> None:
    change = plan_signature(build.small_tape(), "wamid.MENU", "bad")
    deliveries, _ = plan_deliveries(change.exchanges or [])
    assert [d.signing for d in deliveries] == [None, "bad", None, None, None]
    assert (change.exchanges or [])[1].annotations[SIGNING_ANNOTATION] == "bad"


@pytest.mark.parametrize(
    "kind, fields",
    [
        ("text", {"body": "hello"}),
        ("image", {"media_id": "1", "mime_type": "image/png", "sha256": "x=", "caption": "c"}),
        ("audio", {"media_id": "1", "mime_type": "audio/ogg", "sha256": "x=", "voice": True}),
        (
            "document",
            {"media_id": "1", "mime_type": "application/pdf", "sha256": "x=", "filename": "a.pdf"},
        ),
        (
            "location",
            {"latitude": "52.5", "longitude": 13.4, "name": "Cafe", "address": "Street 1"},
        ),
        ("button_reply", {"reply_id": "yes", "title": "Yes"}),
        ("list_reply", {"reply_id": "r1", "title": "Row", "description": "d"}),
        ("reaction", {"message_id": "wamid.X", "emoji": "\U0001f44d"}),
    ],
)
def test_added_messages_satisfy_metas_schema(kind: str, fields: dict[str, Any], build: Any) -> None:
    tape = build.small_tape()
    change = plan_add(tape, kind, after="wamid.HI", reply_to="wamid.BTN", **fields)
    out = change.exchanges or []
    new = out[1]  # right after hi
    payload = json.loads(new.request_body)
    validate("WebhookPayload", payload)
    (msg,) = build.messages([new])
    assert msg["id"] == change.details["wamid"] and msg["from"] == USER
    assert msg["timestamp"] == str(int(new.started_at))
    assert payload["entry"][0]["changes"][0]["value"]["contacts"][0]["profile"]["name"] == "Ana"


def test_add_rejects_missing_fields_and_unknown_kinds(build: Any) -> None:
    with pytest.raises(MutationError, match="needs body"):
        plan_add(build.small_tape(), "text")
    with pytest.raises(MutationError, match="cannot add a 'gif' message"):
        plan_add(build.small_tape(), "gif")
    with pytest.raises(MutationError, match="takes a number"):
        plan_add(build.small_tape(), "location", latitude="x", longitude=1)


def test_media_plans_take_the_cassettes_media_as_arguments(build: Any) -> None:
    tape = build.small_tape()
    link = MediaLinkInfo("1037543291543636", "ab" * 32, "image/png", 12)
    media = CassetteMedia(["1037543291543636"], lambda media_id: link)
    unnamed = MediaFile(Path("picture"), b"new bytes")
    change = plan_swap_media_file(tape, media, "1037543291543636", unnamed)
    assert change.media == [("1037543291543636", b"new bytes", "image/png")]  # the old type
    with pytest.raises(
        MutationError, match="no media with id '1037543291543637'; did you mean 1037543291543636"
    ):
        plan_swap_media_file(tape, media, "1037543291543637", unnamed)
    with pytest.raises(MutationError, match="cannot tell the MIME type of picture"):
        plan_swap_media_file(tape, CassetteMedia(["1037543291543636"]), "1037543291543636", unnamed)
    reused = plan_add_event(tape, media, "image", media_id="1037543291543636")
    (msg,) = build.messages([x for x in reused.exchanges or [] if b"image" in x.request_body])
    assert msg["image"] == {
        "id": "1037543291543636",
        "mime_type": "image/png",
        "sha256": base64.b64encode(bytes.fromhex("ab" * 32)).decode(),
    }
    assert reused.media == []
    added = plan_add_event(
        tape, CassetteMedia(), "document", file=MediaFile(Path("a.pdf"), b"%PDF"), filename="a.pdf"
    )
    ((media_id, data, mime),) = added.media
    assert (data, mime) == (b"%PDF", "application/pdf")
    assert added.details["media_id"] == media_id
