"""Cassette mutations: the pure payload logic, then each mutation replayed against the
example bot (what a user would see), then the CLI.

The replay tests follow tests/test_replay.py: a seed replayed against the real example
bot with a journal is the recording; it is mutated, replayed, and the bot's behaviour
checked. Every webhook the bot receives is validated against Meta's WebhookPayload schema.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from collections.abc import Awaitable
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner
from openapi import validate

from pseudowa.proxy.cassette import mutations as mutate
from pseudowa.proxy.cassette import seeds
from pseudowa.proxy.cli.main import cli
from pseudowa.proxy.contract import webhooks as wh
from pseudowa.proxy.sandbox.emitter import EmitterConfig
from pseudowa.proxy.sandbox.emitter import RetryPolicy
from pseudowa.proxy.examples.example_bot import BOT_KEY
from pseudowa.proxy.examples.example_bot import Bot
from pseudowa.proxy.examples.example_bot import BotConfig
from pseudowa.proxy.examples.example_bot import make_app
from pseudowa.proxy.sandbox.graph import GraphConfig
from pseudowa.proxy.cassette.mutations import MutationError
from pseudowa.proxy.cassette.mutations import Tape
from pseudowa.proxy.sandbox.replay import SIGNING_ANNOTATION
from pseudowa.proxy.sandbox.replay import Replay
from pseudowa.proxy.sandbox.replay import ReplayOptions
from pseudowa.proxy.sandbox.replay import ReplayReport
from pseudowa.proxy.sandbox.replay import plan_deliveries
from pseudowa.storage.errors import CassetteExists
from pseudowa.proxy.errors import UserError
from pseudowa.storage.errors import StoreError
from pseudowa.storage.records import Exchange
from pseudowa.storage.store import CassetteStore
from pseudowa.proxy.testing.ports import free_port

TOKEN = "pseudowa-access-token"
SECRET = "pseudowa-app-secret"
VERIFY = "pseudowa-verify-token"
USER = seeds.USER
MEDIA_ID = "1037543291543636"
ACCOUNT = wh.BusinessAccount()
RECEIVED = web.AppKey("received", list[bytes])


# -- pure: addressing ----------------------------------------------------------------------


def _webhook(message_or_payload: dict[str, Any], at: float, seq: int) -> Exchange:
    payload = message_or_payload
    if "entry" not in payload:
        payload = wh.inbound_webhook(ACCOUNT, message_or_payload, "Ana")
    return Exchange("webhook", "POST", "http://bot/webhook", request_body=wh.dumps(payload),
                    response_status=200, started_at=at, finished_at=at + 0.01, seq=seq)


def _text(body: str, wamid: str, ts: str = "1750000000") -> dict[str, Any]:
    return wh.message("text", USER, wh.text_body(body), wamid=wamid, timestamp=ts)


def _status(wamid: str, value: str, ts: str = "1750000001") -> dict[str, Any]:
    return wh.status_webhook(ACCOUNT, [wh.status(wamid, value, USER, timestamp=ts)])


def small_tape() -> Tape:
    """hi, menu, then sent/delivered/read of a reply, one webhook each."""
    items = [
        _text("hi", "wamid.HI"),
        _text("menu", "wamid.MENU"),
        _status("wamid.REPLY", "sent"),
        _status("wamid.REPLY", "delivered"),
        _status("wamid.REPLY", "read"),
    ]
    return Tape("t", [_webhook(p, 100.0 + i, i) for i, p in enumerate(items)])


def _bodies(exchanges: list[Exchange]) -> list[dict[str, Any]]:
    return [json.loads(x.request_body) for x in exchanges]


def _messages(exchanges: list[Exchange]) -> list[dict[str, Any]]:
    return [m for p in _bodies(exchanges) for v in wh.changes(p) for m in v.get("messages", [])]


@pytest.mark.parametrize("ref, index", [(1, 1), ("1", 1), ("#1", 1), (" #4 ", 4)])
def test_events_are_addressed_by_index(ref: Any, index: int) -> None:
    assert small_tape().resolve(ref).index == index


def test_a_wamid_names_its_first_event_messages_first() -> None:
    tape = small_tape()
    assert tape.resolve("wamid.MENU").index == 1
    t = tape.resolve("wamid.REPLY")
    assert (t.index, t.event.type) == (2, "sent")


def test_unknown_index_and_wamid_are_one_line_errors_naming_the_closest() -> None:
    tape = small_tape()
    with pytest.raises(MutationError, match=r"no event #9 \(it has 5: #0 to #4\)"):
        tape.resolve("#9")
    with pytest.raises(MutationError) as info:
        tape.resolve("wamid.MENUU")
    assert "did you mean wamid.MENU" in str(info.value)
    assert isinstance(info.value, UserError) and "\n" not in str(info.value)


# -- pure: message fields -------------------------------------------------------------------


def test_set_field_is_checked_against_the_message_type() -> None:
    text = _text("hi", "wamid.A")
    assert mutate.set_message_field(text, "text.body", "bye")["text"] == {"body": "bye"}
    assert text["text"]["body"] == "hi"  # a copy
    with pytest.raises(MutationError, match=r"'text.bogus' is not a field of a text message.*"
                                            r"did you mean text.body"):
        mutate.set_message_field(text, "text.bogus", "x")
    with pytest.raises(MutationError, match="'image.caption' is not a field of a text message"):
        mutate.set_message_field(text, "image.caption", "x")
    with pytest.raises(MutationError, match="text.body takes a string"):
        mutate.set_message_field(text, "text.body", 42)


def test_set_field_types_values_from_strings() -> None:
    loc = wh.message("location", USER, wh.location_body(1.0, 2.0, "Cafe"), wamid="wamid.L")
    assert mutate.set_message_field(loc, "location.latitude", "12.5")["location"]["latitude"] == 12.5
    assert mutate.set_message_field(loc, "location.longitude", -3)["location"]["longitude"] == -3
    for bad, why in (("north", "takes a number"), ("true", "takes a number"),
                     ("95", "between -90 and 90")):
        with pytest.raises(MutationError, match=why):
            mutate.set_message_field(loc, "location.latitude", bad)
    fwd = mutate.set_message_field(loc, "context.forwarded", "true")
    assert fwd["context"] == {"forwarded": True}
    with pytest.raises(MutationError, match="takes Unix seconds"):
        mutate.set_message_field(loc, "timestamp", "yesterday")
    assert mutate.set_message_field(loc, "timestamp", 1750000123)["timestamp"] == "1750000123"


def test_interactive_fields_follow_the_interactive_type() -> None:
    reply = wh.message("interactive", USER, wh.button_reply_body("yes", "Yes"), wamid="wamid.B")
    out = mutate.set_message_field(reply, "interactive.button_reply.title", "Sure")
    assert out["interactive"]["button_reply"] == {"id": "yes", "title": "Sure"}
    with pytest.raises(MutationError, match="not a field of an interactive button_reply message"):
        mutate.set_message_field(reply, "interactive.list_reply.title", "x")


def test_set_field_rewrites_every_identical_copy() -> None:
    tape = small_tape()
    dup = mutate.plan_duplicate(tape, "wamid.HI", times=1)
    tape2 = Tape("t", [x for x in dup.exchanges or []])
    change = mutate.plan_set_field(tape2, "wamid.HI", "text.body", "hello")
    assert change.exchanges is not None
    bodies = [m["text"]["body"] for m in _messages(change.exchanges)]
    assert bodies == ["hello", "hello", "menu"]
    # By index only that delivery changes.
    one = mutate.plan_set_field(tape2, "#1", "text.body", "x")
    assert [m["text"]["body"] for m in _messages(one.exchanges or [])] == ["hi", "x", "menu"]
    with pytest.raises(MutationError, match="is a status, not a message"):
        mutate.plan_set_field(tape2, "#3", "text.body", "x")


# -- pure: payload surgery ---------------------------------------------------------------


def test_removing_one_of_two_messages_rewrites_the_body() -> None:
    a = _text("a", "wamid.A")
    b = wh.message("text", "447700900123", wh.text_body("b"), wamid="wamid.B", timestamp="1")
    contacts = [wh.contact(USER, "Ana"), wh.contact("447700900123", "Bo")]
    both = wh.envelope(ACCOUNT, wh.messages_value(ACCOUNT, [a, b], contacts))
    left = mutate.remove_events(both, [1])
    assert left is not None
    value = next(iter(wh.changes(left)))
    assert [m["id"] for m in value["messages"]] == ["wamid.A"]
    assert value["contacts"] == [wh.contact(USER, "Ana")]  # Bo has no message left
    validate("WebhookPayload", left)
    assert mutate.remove_events(both, [0, 1]) is None
    assert len(both["entry"][0]["changes"][0]["value"]["messages"]) == 2  # untouched


def test_drop_removes_a_lone_webhook_and_rewrites_a_shared_one() -> None:
    tape = small_tape()
    change = mutate.plan_drop(tape, "wamid.MENU")
    assert change.exchanges is not None and len(change.exchanges) == 4
    assert [m["id"] for m in _messages(change.exchanges)] == ["wamid.HI"]
    batched = wh.merge([wh.inbound_webhook(ACCOUNT, _text("x", "wamid.X"), "Ana"),
                        _status("wamid.R", "read")])
    shared = Tape("b", [_webhook(batched, 1.0, 0)])
    out = mutate.plan_drop(shared, "wamid.X").exchanges
    assert out is not None and len(out) == 1
    assert [e.wamid for e in mutate.index_exchanges(out)] == ["wamid.R"]


def test_failed_status_carries_the_contract_error_without_pricing() -> None:
    sent = wh.status("wamid.R", "sent", USER, timestamp="1750000001", biz_opaque_callback_data="k")
    assert "conversation" in sent and "pricing" in sent
    failed = mutate.failed_status(sent, 131047)
    assert failed["status"] == "failed"
    assert "conversation" not in failed and "pricing" not in failed
    assert failed["errors"][0]["code"] == 131047
    assert failed["errors"][0]["title"] == "Re-engagement message"
    assert failed["biz_opaque_callback_data"] == "k" and failed["timestamp"] == "1750000001"
    validate("WebhookPayload", wh.status_webhook(ACCOUNT, [failed]))


def test_fail_status_by_wamid_removes_the_later_delivered_and_read() -> None:
    change = mutate.plan_fail_status(small_tape(), "wamid.REPLY")
    events = mutate.index_exchanges(change.exchanges or [])
    assert [(e.wamid, e.type) for e in events] == [
        ("wamid.HI", "text"), ("wamid.MENU", "text"), ("wamid.REPLY", "failed")]
    with pytest.raises(MutationError, match="is a message, not a status"):
        mutate.plan_fail_status(small_tape(), "#0")


def test_shift_timestamps_keeps_the_string_form() -> None:
    payload = wh.status_webhook(ACCOUNT, [wh.status("wamid.R", "sent", USER, timestamp="100")])
    assert mutate.shift_payload_timestamps(payload, 60) == 1
    st = payload["entry"][0]["changes"][0]["value"]["statuses"][0]
    assert st["timestamp"] == "160"
    assert st["conversation"]["expiration_timestamp"] == str(100 + 24 * 3600 + 60)
    with pytest.raises(MutationError, match="negative"):
        mutate.shift_payload_timestamps(payload, -1000)


def test_move_and_delay_reorder_deliveries_by_time() -> None:
    tape = small_tape()
    moved = mutate.plan_move(tape, "wamid.MENU", before="wamid.HI").exchanges or []
    assert [e.wamid for e in mutate.index_exchanges(moved)][:2] == ["wamid.MENU", "wamid.HI"]
    assert moved[0].started_at == 100.0  # it took the anchor's time
    delayed = mutate.plan_delay(tape, "wamid.HI", 1.5).exchanges or []
    assert [e.wamid for e in mutate.index_exchanges(delayed)][:3] == [
        "wamid.MENU", "wamid.HI", "wamid.REPLY"]
    assert delayed[1].started_at == 101.5
    with pytest.raises(MutationError, match="exactly one of before or after"):
        mutate.plan_move(tape, "#0")
    with pytest.raises(MutationError, match="same webhook"):
        mutate.plan_move(tape, "#0", after="#0")


def test_duplicates_are_byte_identical_and_spaced() -> None:
    change = mutate.plan_duplicate(small_tape(), "wamid.HI", times=2, gap_s=0.5)
    out = change.exchanges or []
    copies = [x for x in out if b"wamid.HI" in x.request_body]
    assert len({x.request_body for x in copies}) == 1 and len(copies) == 3
    assert [x.started_at for x in copies] == [100.0, 100.5, 101.0]
    assert [x.started_at for x in out] == sorted(x.started_at for x in out)


def test_signature_marks_reach_the_planned_delivery_only() -> None:
    change = mutate.plan_signature(small_tape(), "wamid.MENU", "bad")
    deliveries, _ = plan_deliveries(change.exchanges or [])
    assert [d.signing for d in deliveries] == [None, "bad", None, None, None]
    assert (change.exchanges or [])[1].annotations[SIGNING_ANNOTATION] == "bad"


@pytest.mark.parametrize("kind, fields", [
    ("text", {"body": "hello"}),
    ("image", {"media_id": "1", "mime_type": "image/png", "sha256": "x=", "caption": "c"}),
    ("audio", {"media_id": "1", "mime_type": "audio/ogg", "sha256": "x=", "voice": True}),
    ("document", {"media_id": "1", "mime_type": "application/pdf", "sha256": "x=",
                  "filename": "a.pdf"}),
    ("location", {"latitude": "52.5", "longitude": 13.4, "name": "Cafe", "address": "Street 1"}),
    ("button_reply", {"reply_id": "yes", "title": "Yes"}),
    ("list_reply", {"reply_id": "r1", "title": "Row", "description": "d"}),
    ("reaction", {"message_id": "wamid.X", "emoji": "\U0001F44D"}),
])
def test_added_messages_satisfy_metas_schema(kind: str, fields: dict[str, Any]) -> None:
    tape = small_tape()
    change = mutate.plan_add(tape, kind, after="wamid.HI", reply_to="wamid.BTN", **fields)
    out = change.exchanges or []
    new = out[1]  # right after hi
    payload = json.loads(new.request_body)
    validate("WebhookPayload", payload)
    (msg,) = _messages([new])
    assert msg["id"] == change.details["wamid"] and msg["from"] == USER
    assert msg["timestamp"] == str(int(new.started_at))
    assert payload["entry"][0]["changes"][0]["value"]["contacts"][0]["profile"]["name"] == "Ana"


def test_add_rejects_missing_fields_and_unknown_kinds() -> None:
    with pytest.raises(MutationError, match="needs body"):
        mutate.plan_add(small_tape(), "text")
    with pytest.raises(MutationError, match="cannot add a 'gif' message"):
        mutate.plan_add(small_tape(), "gif")
    with pytest.raises(MutationError, match="takes a number"):
        mutate.plan_add(small_tape(), "location", latitude="x", longitude=1)


def test_swapped_media_answer_has_hex_sha_and_string_size() -> None:
    body = json.dumps({"messaging_product": "whatsapp", "url": "u", "mime_type": "image/png",
                       "sha256": "00", "file_size": "12", "id": MEDIA_ID}).encode()
    out = mutate.swap_media_answer(body, MEDIA_ID, "image/jpeg", "ab" * 32, 99)
    assert out is not None
    assert json.loads(out) == {"messaging_product": "whatsapp", "url": "u",
                               "mime_type": "image/jpeg", "sha256": "ab" * 32,
                               "file_size": "99", "id": MEDIA_ID}
    assert mutate.swap_media_answer(body, "999", "image/jpeg", "ab", 1) is None


# -- replays against the example bot ---------------------------------------------------------


@web.middleware
async def validate_webhooks(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.method == "POST":
        body = await request.read()
        validate("WebhookPayload", json.loads(body))
        request.app[RECEIVED].append(body)
    return await handler(request)


@dataclass
class Harness:
    store: CassetteStore
    graph_port: int
    bot_url: str
    app: web.Application

    @property
    def bot(self) -> Bot:
        return self.app[BOT_KEY]

    @property
    def received(self) -> list[bytes]:
        return self.app[RECEIVED]

    async def replay(self, name: str, **emitter: Any) -> ReplayReport:
        options = ReplayOptions(
            emitter=EmitterConfig(bot_url=self.bot_url, **{"speed": 0.0, **emitter}),
            graph=GraphConfig(access_token=TOKEN),
            graph_port=self.graph_port,
            quiet_s=0.3,
        )
        return await Replay(self.store, name, options).run()

    async def record(self, seed: str) -> str:
        """Replay a seed against a fresh bot; the run's journal is the recording."""
        self.forget()
        report = await self.replay(seed)
        assert report.journal is not None
        self.forget()
        return report.journal

    def forget(self) -> None:
        for attr in ("seen", "replies", "statuses", "media", "duplicates", "reply_errors", "log",
                     "sent"):
            getattr(self.bot, attr).clear()
        self.bot.rejected_signatures = 0
        self.received.clear()

    def wamids(self, name: str, category: str = "message") -> list[str]:
        return [e.wamid for e in self.store.events(name, category=category) if e.wamid]

    def replies_to(self, wamid: str) -> list[dict[str, Any]]:
        return [r for r in self.bot.replies if r["context"]["message_id"] == wamid]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    store = CassetteStore.open(f"sqlite:///{tmp_path / 'mutate.db'}")
    graph_port = free_port()
    app = make_app(BotConfig(f"http://127.0.0.1:{graph_port}", TOKEN, SECRET, VERIFY))
    app.middlewares.append(validate_webhooks)
    app[RECEIVED] = []
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhook"
    yield Harness(store, graph_port, url, app)
    await runner.cleanup()
    store.close()


async def test_duplicate_is_answered_once_and_logged(harness: Harness) -> None:
    rec = await harness.record(seeds.text_seed(harness.store, texts=("hi",)))
    hi = harness.wamids(rec)[0]
    result = mutate.duplicate(harness.store, rec, hi, times=2, gap_s=0.05, out="dup")
    assert "delivered 2 more times, 0.05 s apart" in result.line() and "dup" in result.line()
    report = await harness.replay("dup")
    assert harness.bot.duplicates == [hi, hi]
    assert len(harness.replies_to(hi)) == 1
    assert report.ok, "\n".join(report.render())
    # The stored index agrees with what the bodies say.
    exchanges = list(harness.store.interactions("dup"))
    assert mutate.index_exchanges(exchanges) == harness.store.events("dup")


async def test_dropped_message_gets_no_reply(harness: Harness) -> None:
    rec = await harness.record(seeds.text_seed(harness.store))
    hi, menu, choice = harness.wamids(rec)
    mutate.drop(harness.store, rec, menu, out="dropped")
    assert menu not in harness.wamids("dropped")
    await harness.replay("dropped")
    assert harness.replies_to(menu) == []
    assert harness.replies_to(hi)[0]["text"]["body"] == "echo: hi"
    assert harness.replies_to(choice)[0]["text"]["body"] == "you chose opt-news"


async def test_moved_message_is_answered_first(harness: Harness) -> None:
    rec = await harness.record(seeds.text_seed(harness.store))
    hi, menu, _ = harness.wamids(rec)
    mutate.move(harness.store, rec, menu, before=hi, out="moved")
    await harness.replay("moved")
    order = [r["context"]["message_id"] for r in harness.bot.replies]
    assert order[:2] == [menu, hi]
    assert harness.bot.replies[0]["type"] == "interactive"


async def test_delayed_message_is_delivered_later(harness: Harness) -> None:
    rec = await harness.record(seeds.text_seed(harness.store, texts=("hi", "later")))
    hi, later, _ = harness.wamids(rec)
    mutate.delay(harness.store, rec, hi, 1.0, out="delayed")
    began = time.time()
    report = await harness.replay("delayed", speed=1.0)
    first_try = {w: o.attempts[0].started for o in report.outcomes for w in o.wamids}
    assert first_try[hi] - began >= 1.0  # lower bound only: a slow machine is later still
    assert first_try[hi] > first_try[later]
    assert [r["context"]["message_id"] for r in harness.bot.replies][:1] == [later]


async def test_edited_text_is_echoed(harness: Harness) -> None:
    rec = await harness.record(seeds.text_seed(harness.store, texts=("hi",)))
    hi = harness.wamids(rec)[0]
    result = mutate.set_field(harness.store, rec, hi, "text.body", "changed", out="edited")
    assert 'set text.body = "changed"' in result.summary
    report = await harness.replay("edited")
    assert harness.replies_to(hi)[0]["text"]["body"] == "echo: changed"
    assert "differs in: text.body" in "\n".join(report.render())  # the check shows the edit


async def test_swapped_media_is_downloaded_with_its_new_sha256(
    harness: Harness, tmp_path: Path
) -> None:
    rec = await harness.record(seeds.image_seed(harness.store, media_id=MEDIA_ID))
    new = seeds.tiny_png(9, side=20)
    path = tmp_path / "other.png"
    path.write_bytes(new)
    old_sha = harness.store.media(rec, MEDIA_ID).sha256
    result = mutate.swap_media(harness.store, rec, MEDIA_ID, path, out="swapped")
    new_hex = hashlib.sha256(new).hexdigest()
    assert f"now {len(new)} B image/png" in result.summary
    # Link, webhook (base64), recorded Graph answer (hex) and download all follow.
    assert harness.store.media("swapped", MEDIA_ID).sha256 == new_hex
    assert harness.store.media(rec, MEDIA_ID).sha256 == old_sha  # the source is untouched
    (event,) = harness.store.events("swapped", media_id=MEDIA_ID)
    assert event.media_sha256 == base64.b64encode(hashlib.sha256(new).digest()).decode()
    answers = [json.loads(x.response_body) for x in harness.store.interactions("swapped", ["graph"])
               if x.method == "GET" and MEDIA_ID in x.url]
    assert answers and all(a["sha256"] == new_hex and a["file_size"] == str(len(new))
                           for a in answers)
    (download,) = harness.store.interactions("swapped", ["media"])
    assert download.annotations["sha256"] == new_hex

    await harness.replay("swapped")
    (fetched,) = harness.bot.media
    assert fetched.sha256_ok and fetched.size == len(new) and fetched.sha256_hex == new_hex
    assert harness.bot.replies[0]["text"]["body"] == f"got your image ({len(new)} bytes, sha256 ok)"


async def test_failed_status_reaches_the_bot_with_its_code(harness: Harness) -> None:
    rec = await harness.record(seeds.text_seed(harness.store, texts=("hi",)))
    reply = harness.wamids(rec, "status")[0]
    result = mutate.fail_status(harness.store, rec, reply, out="failed")
    assert "#131047 Re-engagement message" in result.summary
    await harness.replay("failed")
    about_reply = [s for s in harness.bot.statuses if s["id"] == reply]
    assert about_reply == [{"id": reply, "status": "failed", "errors": [131047]}]


async def test_added_messages_are_answered(harness: Harness, tmp_path: Path) -> None:
    rec = await harness.record(seeds.text_seed(harness.store, texts=("hi",)))
    hi = harness.wamids(rec)[0]
    picture = tmp_path / "pic.png"
    picture.write_bytes(seeds.tiny_png(4, side=10))
    text = mutate.add_event(harness.store, rec, "text", sender=USER, after=hi, body="added",
                            out="added")
    image = mutate.add_event(harness.store, "added", "image", file=picture, caption="see",
                             in_place=True)
    place = mutate.add_event(harness.store, "added", "location", latitude=52.5, longitude=13.4,
                             name="Cafe", in_place=True)
    media_id = image.details["media_id"]
    assert harness.store.media("added", media_id).size == picture.stat().st_size
    report = await harness.replay("added")
    assert harness.replies_to(text.details["wamid"])[0]["text"]["body"] == "echo: added"
    size = picture.stat().st_size
    assert harness.replies_to(image.details["wamid"])[0]["text"]["body"] == \
        f"got your image ({size} bytes, sha256 ok)"
    assert harness.replies_to(place.details["wamid"])[0]["text"]["body"] == "nice place"
    assert report.check.run_sends == report.check.recorded_sends + 3


@pytest.mark.parametrize("operation", [mutate.break_signature, mutate.remove_signature])
async def test_signature_mutations_are_rejected_for_that_delivery_only(
    harness: Harness, operation: Callable[..., mutate.MutationResult]
) -> None:
    rec = await harness.record(seeds.text_seed(harness.store, texts=("hi", "other")))
    hi, other, choice = harness.wamids(rec)
    operation(harness.store, rec, hi, out="unsigned")
    report = await harness.replay("unsigned", retry=RetryPolicy(time_scale=1e-6))
    assert harness.bot.rejected_signatures > 1  # Meta-style retries, all rejected
    assert report.check.not_ok and all(d.status == 401 for d in report.check.not_ok)
    assert all(hi in d.label for d in report.check.not_ok)
    assert harness.replies_to(hi) == []
    assert harness.replies_to(other) and harness.replies_to(choice)


async def test_shifted_timestamps_reach_the_bot(harness: Harness) -> None:
    rec = await harness.record(seeds.text_seed(harness.store, texts=("hi",)))
    before = {e.wamid: int(e.timestamp or 0) for e in harness.store.events(rec)}
    result = mutate.shift_timestamps(harness.store, rec, -3600, out="shifted")
    assert "by -3600 s" in result.summary
    await harness.replay("shifted")
    got = {}
    for body in harness.received:
        for value in wh.changes(json.loads(body)):
            for item in value.get("messages", []):
                got[item["id"]] = item["timestamp"]
    assert got and all(ts == str(before[w] - 3600) for w, ts in got.items())


async def test_pseudonymized_cassette_holds_no_real_number_and_replays_clean(
    harness: Harness,
) -> None:
    rec = await harness.record(seeds.image_seed(harness.store, media_id=MEDIA_ID))
    assert any(USER.encode() in x.request_body for x in harness.store.interactions(rec))
    result = mutate.pseudonymize(harness.store, rec, out="pseudo")
    assert "pseudonymized 1 phone number" in result.summary
    for x in harness.store.interactions("pseudo"):
        assert USER.encode() not in x.request_body + x.response_body, x
        assert "Sheena" not in x.request_body.decode("latin-1")
    assert USER not in {e.sender for e in harness.store.events("pseudo")}
    report = await harness.replay("pseudo")
    (reply,) = harness.bot.replies
    assert reply["to"] != USER and reply["to"].startswith("1555")
    # Recorded sends, answers and held statuses were rewritten consistently.
    assert report.ok, "\n".join(report.render())
    assert [s["status"] for s in harness.bot.statuses] == ["sent", "delivered", "read"]


# -- store shell: errors, history, in place --------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> CassetteStore:
    s = CassetteStore.open(f"sqlite:///{tmp_path / 'shell.db'}")
    seeds.text_seed(s, "seed")
    seeds.image_seed(s, "img", media_id=MEDIA_ID)
    return s


def test_unknown_wamid_or_media_id_names_the_closest_and_writes_nothing(
    store: CassetteStore, tmp_path: Path
) -> None:
    hi = store.events("seed")[0].wamid
    assert hi is not None
    with pytest.raises(MutationError) as info:
        mutate.drop(store, "seed", hi[:-4] + "XYZA", out="never")
    assert f"did you mean {hi}" in str(info.value)
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG")
    with pytest.raises(MutationError, match=f"no media with id '1037543291543637'; "
                                            f"did you mean {MEDIA_ID}"):
        mutate.swap_media(store, "img", "1037543291543637", path, out="never")
    with pytest.raises(MutationError, match="has no event #40"):
        mutate.delay(store, "seed", 40, 1.0, out="never")
    assert not store.exists("never")


def test_history_records_each_operation(store: CassetteStore) -> None:
    hi = store.events("seed")[0].wamid
    mutate.duplicate(store, "seed", hi or 0, times=2, out="h")
    mutate.delay(store, "h", "#1", 0.25, in_place=True)
    mutate.set_field(store, "h", "#0", "text.body", "yo", in_place=True)
    history = store.history("h")
    assert [h.operation for h in history] == ["copy", "duplicate", "delay", "set"]
    assert history[1].arguments == {"event": hi, "times": 2, "gap_s": 0.0, "wamid": hi}
    assert history[2].arguments["seconds"] == 0.25 and history[2].arguments["event"] == "#1"
    assert history[3].arguments["value"] == "yo" and history[3].arguments["path"] == "text.body"
    assert all(h.at is not None for h in history)
    assert store.get_cassette("h").source == "mutated"


def test_out_copies_and_in_place_changes_the_source(store: CassetteStore) -> None:
    original = [x.request_body for x in store.interactions("seed")]
    mutate.set_field(store, "seed", "#0", "text.body", "copy", out="copy")
    assert [x.request_body for x in store.interactions("seed")] == original
    assert b'"body":"copy"' in next(store.interactions("copy")).request_body
    result = mutate.set_field(store, "seed", "#0", "text.body", "here", in_place=True)
    assert result.in_place and "(in place)" in result.line()
    assert b'"body":"here"' in next(store.interactions("seed")).request_body
    with pytest.raises(MutationError, match="not both"):
        mutate.drop(store, "seed", 0, out="x", in_place=True)
    with pytest.raises(MutationError, match="give out"):
        mutate.drop(store, "seed", 0)
    with pytest.raises(CassetteExists):
        mutate.drop(store, "seed", 0, out="copy")


# -- CLI ---------------------------------------------------------------------------------


def _one_line_error(result: Any) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return str(lines[0])


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with CassetteStore.open(url) as s:
        seeds.text_seed(s, "seed")
    return url


def _mutate(db: str, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--db", db, "cassette", "mutate", *args])


def test_cli_duplicate_and_add_print_one_line(db: str) -> None:
    result = _mutate(db, "seed", "--out", "twice", "duplicate", "#0", "--times", "2", "--gap", "0.5")
    assert result.exit_code == 0, result.output
    (line,) = result.output.splitlines()
    assert "delivered 2 more times, 0.5 s apart" in line
    assert line.endswith("wrote new cassette twice (from seed)")
    result = _mutate(db, "twice", "--in-place", "add", "location", "--lat", "1.5", "--long", "2",
                     "--name", "Cafe", "--after", "#0")
    assert result.exit_code == 0, result.output
    assert "added location message wamid." in result.output and "(in place)" in result.output
    result = _mutate(db, "twice", "--in-place", "add", "text", "--body", "late")
    assert result.exit_code == 0, result.output
    with CassetteStore.open(db) as s:
        events = s.events("twice")
        # hi, the location right after it, menu, the button reply, hi's copies, the new text
        assert [e.type for e in events] == ["text", "location", "text", "interactive", "text",
                                            "text", "text"]
        assert [h.operation for h in s.history("twice")] == ["copy", "duplicate", "add", "add"]


def test_cli_set_and_signature(db: str) -> None:
    result = _mutate(db, "seed", "--out", "s", "set", "1", "text.body", "new text")
    assert result.exit_code == 0, result.output
    assert 'set text.body = "new text"' in result.output
    result = _mutate(db, "s", "--in-place", "break-signature", "#2")
    assert result.exit_code == 0 and "with a wrong signature" in result.output
    with CassetteStore.open(db) as s:
        marks = [x.annotations.get(SIGNING_ANNOTATION) for x in s.interactions("s")]
    assert marks == [None, None, "bad"]


@pytest.mark.parametrize("args, expected", [
    (["seed", "--out", "x", "set", "#0", "text.bogus", "v"], "'text.bogus' is not a field"),
    (["seed", "--out", "x", "drop", "wamid.nope"], "no event with wamid 'wamid.nope'"),
    (["seed", "drop", "#0"], "give --out NEW"),
    (["seed", "--out", "x", "--in-place", "drop", "#0"], "not both"),
    (["nosuch", "--out", "x", "drop", "#0"], "no cassette named 'nosuch'"),
    (["seed", "--out", "seed", "drop", "#0"], "already exists"),
    (["seed", "--out", "x", "move", "#0"], "exactly one of --before"),
    (["seed", "--out", "x", "fail-status", "#0"], "is a message, not a status"),
    (["seed", "--out", "x", "add", "image", "--body", "x"], "No such option"),
])
def test_cli_mistakes_are_one_line(db: str, args: list[str], expected: str) -> None:
    result = _mutate(db, *args)
    if expected == "No such option":  # click's own usage errors keep click's format
        assert result.exit_code == 2 and expected in result.output
        return
    assert expected in _one_line_error(result)
