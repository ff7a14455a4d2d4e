"""Each mutation replayed against the example bot: what a user would see.

The replay tests follow tests/proxy/sandbox/test_replay.py: a seed replayed against the
real example bot with a journal is the recording; it is mutated, replayed, and the bot's
behaviour checked. Every webhook the bot receives is validated against Meta's
WebhookPayload schema.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from collections.abc import Callable
from pathlib import Path

import pytest
from bot_harness import Harness
from bot_harness import running_harness

from pseudowa.proxy.cassette import mutations as mutate
from pseudowa.proxy.cassette import seeds
from pseudowa.proxy.cassette.tape import index_exchanges
from pseudowa.proxy.contract import webhooks as wh

USER = seeds.USER
MEDIA_ID = "1037543291543636"


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_harness(tmp_path / "mutate.db") as h:
        yield h


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
    assert index_exchanges(exchanges) == harness.store.events("dup")


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
    answers = [
        json.loads(x.response_body)
        for x in harness.store.interactions("swapped", ["graph"])
        if x.method == "GET" and MEDIA_ID in x.url
    ]
    assert answers and all(
        a["sha256"] == new_hex and a["file_size"] == str(len(new)) for a in answers
    )
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
    text = mutate.add_event(
        harness.store, rec, "text", sender=USER, after=hi, body="added", out="added"
    )
    image = mutate.add_event(
        harness.store, "added", "image", file=picture, caption="see", in_place=True
    )
    place = mutate.add_event(
        harness.store,
        "added",
        "location",
        latitude=52.5,
        longitude=13.4,
        name="Cafe",
        in_place=True,
    )
    media_id = image.details["media_id"]
    assert harness.store.media("added", media_id).size == picture.stat().st_size
    report = await harness.replay("added")
    assert harness.replies_to(text.details["wamid"])[0]["text"]["body"] == "echo: added"
    size = picture.stat().st_size
    assert (
        harness.replies_to(image.details["wamid"])[0]["text"]["body"]
        == f"got your image ({size} bytes, sha256 ok)"
    )
    assert harness.replies_to(place.details["wamid"])[0]["text"]["body"] == "nice place"
    assert report.check.run_sends == report.check.recorded_sends + 3


@pytest.mark.parametrize("operation", [mutate.break_signature, mutate.remove_signature])
async def test_signature_mutations_are_rejected_for_that_delivery_only(
    harness: Harness, operation: Callable[..., mutate.MutationResult]
) -> None:
    rec = await harness.record(seeds.text_seed(harness.store, texts=("hi", "other")))
    hi, other, choice = harness.wamids(rec)
    operation(harness.store, rec, hi, out="unsigned")
    report = await harness.replay("unsigned", retry_time_scale=1e-6)
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
