"""The webhook emitter against a real aiohttp "bot" on 127.0.0.1, one scenario per option."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pseudowa.proxy.contract import signature
from pseudowa.proxy.contract import webhooks
from pseudowa.proxy.contract.retries import RetryPolicy
from pseudowa.proxy.contract.webhooks import BusinessAccount
from pseudowa.proxy.errors import VerifyFailed
from pseudowa.proxy.sandbox.deliveries import Delivery
from pseudowa.proxy.sandbox.deliveries import Progress
from pseudowa.proxy.sandbox.emitter import Emitter
from pseudowa.proxy.sandbox.emitter import EmitterConfig
from pseudowa.proxy.sandbox.journal import Journal
from pseudowa.storage.records import EventData
from pseudowa.storage.records import Exchange

SECRET = "test-app-secret"
TOKEN = "test-verify-token"
ACCOUNT = BusinessAccount()
FAST_RETRY = RetryPolicy(delays_s=(0, 0, 10, 10), max_age_s=25, time_scale=0.001)


# -- the receiving bot ------------------------------------------------------------------


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival


Answer = Callable[[int, bytes], Awaitable[web.StreamResponse]]


@dataclass
class Bot:
    """A bare receiver: records every POST; `answer(n, body)` decides the response."""

    answer: Answer | None = None
    echo: Callable[[str], str] = lambda challenge: challenge
    received: list[Received] = field(default_factory=list)
    verifications: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    async def post(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(body, dict(request.headers), time.monotonic()))
        if self.answer is not None:
            return await self.answer(len(self.received) - 1, body)
        return web.Response(text="ok")

    async def get(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.verifications.append(query)
        if query.get("hub.mode") != "subscribe" or query.get("hub.verify_token") != TOKEN:
            return web.Response(status=403, text="bad token")
        return web.Response(text=self.echo(query["hub.challenge"]))

    @property
    def bodies(self) -> list[bytes]:
        return [r.body for r in self.received]


Start = Callable[..., Awaitable[Bot]]


@pytest.fixture
async def start_bot() -> AsyncIterator[Start]:
    servers: list[TestServer] = []

    async def start(answer: Answer | None = None, **kw: Any) -> Bot:
        bot = Bot(answer=answer, **kw)
        app = web.Application()
        app.router.add_routes([web.post("/webhook", bot.post), web.get("/webhook", bot.get)])
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        servers.append(server)
        bot.url = str(server.make_url("/webhook"))
        return bot

    yield start
    for server in servers:
        await server.close()


Make = Callable[..., Emitter]


@pytest.fixture
async def make_emitter() -> AsyncIterator[Make]:
    emitters: list[Emitter] = []

    def make(bot: Bot, journal: Journal | None = None, **kw: Any) -> Emitter:
        kw.setdefault("app_secret", SECRET)
        kw.setdefault("verify_token", TOKEN)
        kw.setdefault("speed", 0)
        emitter = Emitter(EmitterConfig(bot_url=bot.url, **kw), journal=journal)
        emitters.append(emitter)
        return emitter

    yield make
    for emitter in emitters:
        await emitter.close()


def inbound(text: str, n: int = 0) -> bytes:
    msg = webhooks.message(
        "text",
        "16505551234",
        webhooks.text_body(text),
        wamid=f"wamid.in{n}",
        timestamp="1750000000",
    )
    return webhooks.dumps(webhooks.inbound_webhook(ACCOUNT, msg, "Ana"))


def status_body(wamid: str, value: str = "delivered") -> bytes:
    item = webhooks.status(wamid, value, "16505551234", timestamp="1750000001")
    return webhooks.dumps(webhooks.status_webhook(ACCOUNT, [item]))


def deliveries(n: int, gap_s: float = 0.0) -> list[Delivery]:
    return [Delivery(inbound(f"m{i}", i), offset_s=i * gap_s, label=f"#{i}") for i in range(n)]


def independent_sha256(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def message_texts(body: bytes) -> list[str]:
    payload = json.loads(body)
    return [
        m["text"]["body"]
        for e in payload["entry"]
        for c in e["changes"]
        for m in c["value"].get("messages", [])
    ]


def statuses(*codes: int, then: int = 200) -> Answer:
    """Answer the n-th POST with codes[n], then `then` for ever."""

    async def answer(n: int, body: bytes) -> web.StreamResponse:
        return web.Response(status=codes[n] if n < len(codes) else then, text="x")

    return answer


# -- verification -----------------------------------------------------------------------


async def test_verify_handshake_ok(start_bot: Start, make_emitter: Make) -> None:
    bot = await start_bot()
    await make_emitter(bot).verify()
    (query,) = bot.verifications
    assert query["hub.mode"] == "subscribe"
    assert query["hub.verify_token"] == TOKEN
    assert query["hub.challenge"].isdigit()


async def test_verify_json_quoted_echo_fails_clearly(start_bot: Start, make_emitter: Make) -> None:
    bot = await start_bot(echo=json.dumps)  # '"1234567890"' instead of the bare challenge
    with pytest.raises(VerifyFailed) as info:
        await make_emitter(bot).verify()
    message = str(info.value)
    challenge = bot.verifications[0]["hub.challenge"]
    assert "\n" not in message
    assert f"'\"{challenge}\"'" in message  # what the bot answered, quotes and all
    assert f"b'{challenge}'" in message  # what was expected
    assert "wrong body" in message and "200" in message


async def test_verify_wrong_token_fails_with_status(start_bot: Start, make_emitter: Make) -> None:
    bot = await start_bot()
    with pytest.raises(VerifyFailed, match="status 403"):
        await make_emitter(bot, verify_token="not-the-token").verify()


async def test_verify_unreachable_bot_fails(make_emitter: Make) -> None:
    bot = Bot(url="http://127.0.0.1:9/webhook")  # discard port: nothing listens
    with pytest.raises(VerifyFailed, match="verify handshake failed"):
        await make_emitter(bot, timeout_s=2).verify()


async def test_skip_verify_sends_no_get(start_bot: Start, make_emitter: Make) -> None:
    bot = await start_bot(echo=lambda c: "wrong")
    emitter = make_emitter(bot, skip_verify=True)
    await emitter.verify()
    emitter.add(deliveries(1))
    await emitter.run()
    assert bot.verifications == []
    assert len(bot.received) == 1


# -- signing ----------------------------------------------------------------------------


async def test_signature_is_hmac_over_exact_ascii_bytes(
    start_bot: Start, make_emitter: Make
) -> None:
    bot = await start_bot()
    emitter = make_emitter(bot)
    body = inbound("a\u00e7\u00e3o \U0001f600")
    emitter.add([Delivery(body)])
    await emitter.run()
    (got,) = bot.received
    assert got.body == body  # byte for byte
    text = got.body.decode("ascii")  # pure ASCII
    assert "a\\u00e7\\u00e3o \\ud83d\\ude00" in text
    assert got.headers["X-Hub-Signature-256"] == independent_sha256(got.body)
    legacy = "sha1=" + hmac.new(SECRET.encode(), got.body, hashlib.sha1).hexdigest()
    assert got.headers["X-Hub-Signature"] == legacy
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"] == "facebookexternalua"
    assert message_texts(got.body) == ["a\u00e7\u00e3o \U0001f600"]


async def test_signing_none_sends_no_signature(start_bot: Start, make_emitter: Make) -> None:
    bot = await start_bot()
    emitter = make_emitter(bot, signing="none")
    emitter.add(deliveries(2))
    await emitter.run()
    assert len(bot.received) == 2
    for got in bot.received:
        assert "X-Hub-Signature-256" not in got.headers
        assert "X-Hub-Signature" not in got.headers


async def test_signing_bad_sends_a_wrong_signature(start_bot: Start, make_emitter: Make) -> None:
    bot = await start_bot()
    emitter = make_emitter(bot, signing="bad")
    emitter.add(deliveries(2))
    await emitter.run()
    for got in bot.received:
        header = got.headers["X-Hub-Signature-256"]
        assert header.startswith("sha256=") and len(header) == len("sha256=") + 64
        assert header != independent_sha256(got.body)
        assert not signature.verify(SECRET, got.body, header)
        assert "X-Hub-Signature" not in got.headers  # no valid legacy fallback either


async def test_a_delivery_overrides_the_signing_for_itself(
    start_bot: Start, make_emitter: Make
) -> None:
    """A mutated cassette marks single deliveries: only they go out wrongly signed or bare."""
    bot = await start_bot()
    emitter = make_emitter(bot)  # signing="valid" for the rest
    emitter.add(
        [
            Delivery(inbound("a", 0)),
            Delivery(inbound("b", 1), signing="bad"),
            Delivery(inbound("c", 2), signing="none"),
        ]
    )
    await emitter.run()
    a, b, c = bot.received
    assert a.headers["X-Hub-Signature-256"] == independent_sha256(a.body)
    assert not signature.verify(SECRET, b.body, b.headers["X-Hub-Signature-256"])
    assert "X-Hub-Signature" not in b.headers
    assert "X-Hub-Signature-256" not in c.headers and "X-Hub-Signature" not in c.headers
    unsigned = await start_bot()
    emitter = make_emitter(unsigned, signing="none")
    emitter.add([Delivery(inbound("d", 3), signing="valid")])
    await emitter.run()
    (d,) = unsigned.received
    assert d.headers["X-Hub-Signature-256"] == independent_sha256(d.body)


# -- timing -----------------------------------------------------------------------------


async def test_speed_scales_recorded_gaps(start_bot: Start, make_emitter: Make) -> None:
    bot = await start_bot()
    emitter = make_emitter(bot, speed=10.0)
    offsets = [0.0, 1.0, 1.5, 3.0]  # scaled: 0, 0.1, 0.15, 0.3 s
    emitter.add([Delivery(inbound(f"m{i}", i), offset_s=o) for i, o in enumerate(offsets)])
    await emitter.run()
    assert [message_texts(b) for b in bot.bodies] == [[f"m{i}"] for i in range(len(offsets))]
    arrivals = [r.at for r in bot.received]
    for i in range(1, len(offsets)):
        expected_gap = (offsets[i] - offsets[i - 1]) / 10.0
        assert arrivals[i] - arrivals[i - 1] >= expected_gap - 0.02
    assert arrivals[-1] - arrivals[0] >= 0.3 - 0.02


async def test_speed_zero_ignores_recorded_gaps(start_bot: Start, make_emitter: Make) -> None:
    bot = await start_bot()
    emitter = make_emitter(bot, speed=0)
    emitter.add(deliveries(50, gap_s=3600.0))  # fifty hours of recording
    started = time.monotonic()
    await emitter.run()
    assert time.monotonic() - started < 5
    assert [message_texts(b) for b in bot.bodies] == [[f"m{i}"] for i in range(50)]


# -- faults -----------------------------------------------------------------------------


async def test_duplicate_sends_identical_copies(start_bot: Start, make_emitter: Make) -> None:
    bot = await start_bot()
    emitter = make_emitter(bot, duplicate=1.0)
    emitter.add(deliveries(4))
    await emitter.run()
    assert len(bot.received) == 8
    for original, copy in zip(bot.received[::2], bot.received[1::2]):
        assert copy.body == original.body
        assert copy.headers["X-Hub-Signature-256"] == original.headers["X-Hub-Signature-256"]
        assert original.headers["X-Hub-Signature-256"] == independent_sha256(original.body)
    assert [message_texts(b) for b in bot.bodies[::2]] == [["m0"], ["m1"], ["m2"], ["m3"]]
    assert all(o.duplicated and o.delivered for o in emitter.outcomes)
    assert sorted(a.copy for a in emitter.attempts) == [0] * 4 + [1] * 4


async def test_reorder_shuffles_within_windows(start_bot: Start, make_emitter: Make) -> None:
    bot = await start_bot()
    emitter = make_emitter(bot, reorder=5, seed=3)
    emitter.add(deliveries(20))
    await emitter.run()
    order = [int(message_texts(b)[0][1:]) for b in bot.bodies]
    assert order != list(range(20))
    assert sorted(order) == list(range(20))  # all delivered, none twice
    for window in range(4):  # nothing leaves its window of 5
        assert sorted(order[window * 5 : window * 5 + 5]) == list(range(window * 5, window * 5 + 5))
    # the same seed reorders the same way
    bot2 = await start_bot()
    again = make_emitter(bot2, reorder=5, seed=3)
    again.add(deliveries(20))
    await again.run()
    assert [int(message_texts(b)[0][1:]) for b in bot2.bodies] == order


async def test_batch_merges_into_fewer_posts(start_bot: Start, make_emitter: Make) -> None:
    bot = await start_bot()
    emitter = make_emitter(bot, batch=3)
    emitter.add(deliveries(7))
    await emitter.run()
    assert len(bot.received) == 3
    assert [len(message_texts(b)) for b in bot.bodies] == [3, 3, 1]
    assert [t for b in bot.bodies for t in message_texts(b)] == [f"m{i}" for i in range(7)]
    for got in bot.received:
        assert got.headers["X-Hub-Signature-256"] == independent_sha256(got.body)
        payload = json.loads(got.body)
        assert len(payload["entry"]) == 1  # one WABA: one entry, one change per update
    assert [len(o.parts) for o in emitter.outcomes] == [3, 3, 1]
    assert sorted(emitter.outcomes[0].wamids) == ["wamid.in0", "wamid.in1", "wamid.in2"]


async def test_batch_sends_a_body_that_is_not_json_alone(
    start_bot: Start, make_emitter: Make
) -> None:
    bot = await start_bot()
    emitter = make_emitter(bot, batch=3)
    emitter.add([Delivery(inbound("a", 0)), Delivery(b"not json"), Delivery(inbound("b", 1))])
    await emitter.run()
    assert bot.bodies[1:] == [b"not json", inbound("b", 1)]
    assert message_texts(bot.bodies[0]) == ["a"]
    assert all(o.delivered for o in emitter.outcomes)


def test_config_rejects_nonsense() -> None:
    for bad in (
        {"signing": "maybe"},
        {"speed": -1},
        {"duplicate": 2.0},
        {"batch": 0},
        {"concurrency": 0},
        {"timeout_s": 0},
    ):
        with pytest.raises(ValueError):
            EmitterConfig(bot_url="http://127.0.0.1:1/", **bad)


# -- retries ----------------------------------------------------------------------------


async def test_retries_until_200(start_bot: Start, make_emitter: Make) -> None:
    bot = await start_bot(statuses(500, 500))
    emitter = make_emitter(bot, retry=FAST_RETRY)
    emitter.add(deliveries(1))
    await emitter.run()
    (outcome,) = emitter.outcomes
    assert outcome.delivered and outcome.dropped_reason is None
    assert [(a.attempt, a.status) for a in emitter.attempts] == [(0, 500), (1, 500), (2, 200)]
    assert len(set(bot.bodies)) == 1
    assert len({r.headers["X-Hub-Signature-256"] for r in bot.received}) == 1
    # attempt 2 waited delays_s[2] scaled: 10 s * 0.001
    assert bot.received[2].at - bot.received[1].at >= 0.01 - 0.005


async def test_slow_bot_times_out_and_is_retried(start_bot: Start, make_emitter: Make) -> None:
    async def answer(n: int, body: bytes) -> web.StreamResponse:
        if n == 0:
            await asyncio.sleep(0.4)
        return web.Response(text="ok")

    bot = await start_bot(answer)
    emitter = make_emitter(bot, timeout_s=0.15, retry=FAST_RETRY)
    emitter.add(deliveries(1))
    await emitter.run()
    first, *_, last = emitter.attempts
    assert first.status is None and first.error is not None and "timeout" in first.error
    assert first.finished - first.started < 0.4
    assert last.status == 200 and last.attempt >= 1
    assert emitter.outcomes[0].delivered
    await asyncio.sleep(0.4)  # let the slow handler finish before the server closes


async def test_always_failing_bot_is_dropped_with_reason(
    start_bot: Start, make_emitter: Make
) -> None:
    bot = await start_bot(statuses(then=500))
    emitter = make_emitter(bot, retry=FAST_RETRY)
    emitter.add(deliveries(2))
    await emitter.run()  # returns: the policy gives up
    assert len(emitter.dropped) == 2
    for outcome in emitter.dropped:
        assert not outcome.delivered
        assert outcome.dropped_reason is not None
        assert "gave up after 4 attempts over 20.0 s" in outcome.dropped_reason
        assert "HTTP 500" in outcome.dropped_reason
        assert [a.attempt for a in outcome.attempts] == [0, 1, 2, 3]
    assert len(bot.received) == 8


async def test_unreachable_bot_is_retried_then_dropped(make_emitter: Make) -> None:
    emitter = make_emitter(Bot(url="http://127.0.0.1:9/webhook"), retry=FAST_RETRY, timeout_s=2)
    emitter.add(deliveries(1))
    started = time.monotonic()
    await emitter.run()
    assert time.monotonic() - started <= emitter.worst_case_s()  # what a CLI announces
    (outcome,) = emitter.dropped
    assert len(outcome.attempts) == 4
    assert all(a.status is None and a.error for a in outcome.attempts)


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (FAST_RETRY, "gave up after 4 attempts over 20.0 s (retry window 25.0 s)"),
        # Meta's own schedule, compressed: daily retries stop before the eighth day.
        (
            RetryPolicy(time_scale=1e-7),
            "gave up after 17 attempts over 6.9 days (retry window 7.0 days)",
        ),
    ],
)
async def test_a_dropped_webhook_names_an_age_inside_its_window(
    start_bot: Start, make_emitter: Make, policy: RetryPolicy, reason: str
) -> None:
    bot = await start_bot(statuses(then=500))
    emitter = make_emitter(bot, retry=policy)
    emitter.add(deliveries(1))
    await emitter.run()
    (outcome,) = emitter.dropped
    assert outcome.dropped_reason == f"{reason}; last: HTTP 500"
    assert len(bot.received) == len(policy.schedule())


async def test_progress_tells_what_is_pending_and_when_the_next_retry_comes(
    start_bot: Start, make_emitter: Make
) -> None:
    seen: list[Progress] = []
    bot = await start_bot(statuses(500, 500, 200, then=500))
    emitter = make_emitter(bot, retry=FAST_RETRY)
    emitter.on_progress = seen.append
    emitter.add(deliveries(1))
    await emitter.run()  # delivered on its third attempt
    emitter.add(deliveries(1))
    await emitter.run()  # never: dropped after four
    summary = [(p.pending, p.retrying, p.next_attempt, p.delivered, p.dropped) for p in seen]
    assert summary == [
        (1, 1, 1, 0, 0),
        (1, 1, 2, 0, 0),
        (0, 0, None, 1, 0),  # a retry that got its 200
        (1, 1, 1, 1, 0),
        (1, 1, 2, 1, 0),
        (1, 1, 3, 1, 0),
        (0, 0, None, 1, 1),
    ]
    assert seen[1].next_retry_s is not None and 0 < seen[1].next_retry_s <= 10 * 0.001
    assert seen[1].line().startswith("1 webhook pending, 1 to retry (attempt 2 in 0.0 s)")
    assert seen[-1].line() == "0 webhooks pending; 1 delivered, 1 dropped"
    assert emitter.progress() == seen[-1]  # polled between runs: the same picture


async def test_interrupted_run_resends_the_post_in_flight(
    start_bot: Start, make_emitter: Make
) -> None:
    async def answer(n: int, body: bytes) -> web.StreamResponse:
        if n == 0:
            await asyncio.sleep(0.3)
        return web.Response(text="ok")

    bot = await start_bot(answer)
    emitter = make_emitter(bot)
    emitter.add(deliveries(2))
    running = asyncio.ensure_future(emitter.run())
    while not bot.received:
        await asyncio.sleep(0.01)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await emitter.run()
    assert [message_texts(b) for b in bot.bodies] == [["m0"], ["m0"], ["m1"]]
    assert all(o.delivered for o in emitter.outcomes) and len(emitter.outcomes) == 2
    await asyncio.sleep(0.3)  # let the slow handler finish before the server closes


# -- held deliveries, live additions, concurrency ---------------------------------------


async def test_hold_until_trigger(start_bot: Start, make_emitter: Make) -> None:
    bot = await start_bot()
    emitter = make_emitter(bot, speed=10.0)
    held = Delivery(
        status_body("wamid.out1"),
        offset_s=5.0,
        label="held out1",
        hold_until="wamid.out1",
        trigger_offset_s=4.0,
    )
    never = Delivery(
        status_body("wamid.out2"),
        offset_s=6.0,
        label="held out2",
        hold_until="wamid.out2",
        trigger_offset_s=5.5,
    )
    emitter.add([Delivery(inbound("hi"), label="in"), held, never])
    await emitter.run()  # returns although two deliveries are still held
    assert [message_texts(b) for b in bot.bodies] == [["hi"]]
    assert {d.label for d in emitter.never_triggered} == {"held out1", "held out2"}

    emitter.trigger("wamid.out1")
    released_at = time.monotonic()
    await emitter.run()
    assert len(bot.received) == 2
    assert webhooks.status_ids(json.loads(bot.bodies[1])) == ["wamid.out1"]
    assert bot.received[1].at - released_at >= (5.0 - 4.0) / 10.0 - 0.02  # recorded gap, scaled
    assert [d.label for d in emitter.never_triggered] == ["held out2"]

    # a trigger that comes before its delivery is added still releases it
    emitter.trigger("wamid.out3")
    emitter.add([Delivery(status_body("wamid.out3"), hold_until="wamid.out3")])
    await emitter.run()
    assert webhooks.status_ids(json.loads(bot.bodies[-1])) == ["wamid.out3"]
    assert [d.label for d in emitter.never_triggered] == ["held out2"]


async def test_wait_idle_follows_work_added_while_running(
    start_bot: Start, make_emitter: Make
) -> None:
    emitter: Emitter

    async def answer(n: int, body: bytes) -> web.StreamResponse:
        # The "bot" answers each inbound message with a send; the sandbox then emits
        # that send's statuses through add_now while the emitter is running.
        if webhooks.status_ids(json.loads(body)):
            return web.Response(text="ok")
        emitter.add_now(0.05, status_body(f"wamid.out{n}", "sent"), f"status sent {n}")
        emitter.add_now(0.10, status_body(f"wamid.out{n}", "read"), f"status read {n}")
        return web.Response(text="ok")

    bot = await start_bot(answer)
    emitter = make_emitter(bot, speed=1.0)
    emitter.add(deliveries(2, gap_s=0.05))
    await emitter.wait_idle(quiet_s=0.2)
    kinds = ["message" if message_texts(b) else "status" for b in bot.bodies]
    assert kinds.count("message") == 2 and kinds.count("status") == 4
    assert all(o.delivered for o in emitter.outcomes)


async def test_concurrency_delivers_everything(start_bot: Start, make_emitter: Make) -> None:
    async def answer(n: int, body: bytes) -> web.StreamResponse:
        await asyncio.sleep(0.01)
        return web.Response(text="ok")

    bot = await start_bot(answer)
    emitter = make_emitter(bot, concurrency=16)
    emitter.add(deliveries(200))
    started = time.monotonic()
    await emitter.run()
    assert time.monotonic() - started < 5  # 200 x 10 ms sequentially would be 2 s at least
    assert sorted(t for b in bot.bodies for t in message_texts(b)) == sorted(
        f"m{i}" for i in range(200)
    )
    assert all(o.delivered for o in emitter.outcomes) and len(emitter.outcomes) == 200


# -- journal ----------------------------------------------------------------------------


class CapturingJournal(Journal):
    """A journal without store that also keeps the events handed to it."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Sequence[EventData]] = []

    def record(self, exchange: Exchange, events: Sequence[EventData] = ()) -> None:
        super().record(exchange, events)
        self.events.append(events)


async def test_journal_receives_every_attempt(start_bot: Start, make_emitter: Make) -> None:
    bot = await start_bot(statuses(503))
    journal = CapturingJournal()
    emitter = make_emitter(bot, journal=journal, duplicate=1.0, retry=FAST_RETRY)
    await emitter.verify()
    emitter.add([Delivery(inbound("hi"), label="in"), Delivery(status_body("wamid.o"), label="st")])
    await emitter.run()
    await journal.close()

    verify, *posts = journal.exchanges
    assert verify.method == "GET" and verify.response_status == 200
    assert len(posts) == len(emitter.attempts) == len(bot.received)
    # in0: 503 then its duplicate, then st and its duplicate, then the retry of in0
    assert [x.response_status for x in posts] == [503, 200, 200, 200, 200]
    for x, got in zip(posts, bot.received):
        assert str(x.kind) == "webhook" and x.method == "POST" and x.url == bot.url
        assert x.request_body == got.body
        headers = dict(x.request_headers)
        assert headers["X-Hub-Signature-256"] == independent_sha256(got.body)
        assert x.started_at <= x.finished_at
        assert x.annotations["label"] in ("in", "st")
    assert [(x.annotations["attempt"], x.annotations["copy"]) for x in posts] == [
        ("0", "0"),
        ("0", "1"),
        ("0", "0"),
        ("0", "1"),
        ("1", "0"),
    ]
    post_events = journal.events[1:]
    assert [[(e.category, e.type, e.wamid) for e in ev] for ev in post_events[:3]] == [
        [("message", "text", "wamid.in0")],
        [("message", "text", "wamid.in0")],
        [("status", "delivered", "wamid.o")],
    ]
