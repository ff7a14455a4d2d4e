"""The webhook delivery engine: sends webhooks to the bot the way Meta does.

It performs the verify handshake (whatsapp-cloud-api.md §1), then POSTs each webhook
signed over its exact bytes (§4), keeping the recorded timing scaled by `speed`, and
retries failures with decreasing frequency until the policy gives up (§5). Faults can
be injected on purpose: duplicate deliveries, reordering, batching, missing or wrong
signatures. Every attempt is logged, kept in `attempts` and written to the journal.

Hot path: a body is signed once when it becomes a POST (retries and duplicate copies
reuse the headers); nothing is parsed unless a journal wants the events or a batch
has to be merged. Workers (as many as `concurrency`) take POSTs off a ready queue in
order; one scheduler moves deliveries and retries onto it when they fall due.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from typing import Literal

import aiohttp
from yarl import URL

from pseudowa.proxy.contract import signature
from pseudowa.proxy.contract import webhooks
from pseudowa.proxy.contract.answers import REDACTED
from pseudowa.proxy.contract.retries import RetryPolicy
from pseudowa.proxy.errors import VerifyFailed
from pseudowa.proxy.sandbox.deliveries import Attempt
from pseudowa.proxy.sandbox.deliveries import Delivery
from pseudowa.proxy.sandbox.deliveries import Outcome
from pseudowa.proxy.sandbox.deliveries import Progress
from pseudowa.proxy.sandbox.journal import Journal
from pseudowa.storage.records import Exchange
from pseudowa.storage.records import Kind

logger = logging.getLogger(__name__)


@dataclass
class EmitterConfig:
    """How to deliver: where, how signed, how fast, and which faults to inject."""

    bot_url: str
    app_secret: str = "pseudowa-app-secret"
    verify_token: str = "pseudowa-verify-token"
    skip_verify: bool = False
    signing: Literal["valid", "none", "bad"] = "valid"  # --no-sign / --bad-signature
    speed: float = 1.0  # recorded offsets are divided by this; 0 = as fast as possible
    duplicate: float = 0.0  # probability a POST is sent twice (same bytes and signature)
    reorder: int = 0  # shuffle within windows of N deliveries
    batch: int = 1  # merge up to N consecutive due deliveries into one POST
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float = 10.0  # a bot slower than this = failed attempt
    concurrency: int = 1  # POSTs in flight at once (1 keeps order)
    seed: int | None = None
    legacy_sha1: bool = True  # also send X-Hub-Signature: sha1=... as Meta does
    user_agent: str = "facebookexternalua"

    def __post_init__(self) -> None:
        if self.signing not in ("valid", "none", "bad"):
            raise ValueError(f"signing must be valid, none or bad, not {self.signing!r}")
        if self.speed < 0:
            raise ValueError("speed must be >= 0")
        if not 0.0 <= self.duplicate <= 1.0:
            raise ValueError("duplicate is a probability between 0 and 1")
        if self.reorder < 0 or self.batch < 1 or self.concurrency < 1:
            raise ValueError("reorder must be >= 0, batch and concurrency >= 1")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")


@dataclass
class _Pending:
    """A delivery waiting for its first POST."""

    delivery_id: int
    delivery: Delivery


@dataclass
class _Post:
    """A body on its way: signed once, retried with the same bytes and headers."""

    outcome: Outcome
    headers: dict[str, str]
    duplicate: bool
    next_attempt: int = 0
    age_s: float = 0.0  # unscaled, from the first try's start to the next attempt's


def _truncate(data: bytes, limit: int = 80) -> str:
    text = repr(data[:limit])
    return text + ("..." if len(data) > limit else "")


class Emitter:
    """Delivers webhooks to `config.bot_url`; see the module docstring."""

    def __init__(
        self,
        config: EmitterConfig,
        journal: Journal | None = None,
        on_attempt: Callable[[Attempt, Outcome], None] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        """`on_attempt` sees every POST; `on_progress` is told where the deliveries stand
        whenever an attempt fails (a retry is scheduled or a delivery dropped) and when a
        retry succeeds, so a front end can keep one line up to date while it waits."""
        self.config = config
        self.journal = journal
        self.on_attempt = on_attempt
        self.on_progress = on_progress
        self.outcomes: list[Outcome] = []
        self.attempts: list[Attempt] = []
        self.dropped: list[Outcome] = []
        self.never_triggered: list[Delivery] = []
        self._rng = random.Random(config.seed)
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        self._next_id = 0
        self._seq = 0
        # Times are seconds since the origin (the loop's clock when the emitter started).
        self._origin: float | None = None
        self._heap: list[tuple[float, int, _Pending | _Post]] = []
        # The retries among them, in the same order: (when, seq, attempt number).
        self._retries: list[tuple[float, int, int]] = []
        self._delivered = 0
        self._ready: deque[_Pending | _Post] = deque()
        self._ready_event = asyncio.Event()
        self._held: dict[str, list[_Pending]] = {}
        self._triggered: dict[str, float] = {}  # wamid -> when it was triggered
        self._in_flight = 0
        self._last_activity = 0.0
        self._wakeup: asyncio.Future[None] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._driver: asyncio.Task[None] | None = None  # start()'s scheduler, runs until close()
        self._progress = asyncio.Event()  # set on every _touch, for idle()
        # delivery id -> futures told the outcome once its first attempt is over
        self._first_attempt: dict[int, list[asyncio.Future[Outcome]]] = {}

    # -- scheduling (synchronous; safe to call from handlers while run() is going) ------

    def add(self, deliveries: Iterable[Delivery]) -> None:
        """Schedule deliveries at their recorded offsets (held ones wait for a trigger)."""
        timed: list[tuple[float, _Pending]] = []
        for delivery in deliveries:
            pending = _Pending(self._new_id(), delivery)
            if delivery.hold_until is None:
                timed.append((self._scaled(delivery.offset_s), pending))
            elif delivery.hold_until in self._triggered:
                timed.append(
                    (self._release_time(delivery, self._triggered[delivery.hold_until]), pending)
                )
            else:
                self._held.setdefault(delivery.hold_until, []).append(pending)
        self._schedule(timed)

    def add_now(self, delay_s: float, body: bytes, label: str) -> int:
        """Schedule `body` `delay_s` from now (scaled by speed; speed 0 means at once);
        returns its delivery id."""
        pending = _Pending(self._new_id(), Delivery(body=body, label=label))
        self._schedule([(self._now() + self._scaled(delay_s), pending)])
        return pending.delivery_id

    def deliver(self, body: bytes, label: str) -> asyncio.Future[Outcome]:
        """Send `body` now; the future gets its Outcome once the first attempt is over
        (retries, if any, go on in the background as the policy says)."""
        delivery_id = self.add_now(0.0, body, label)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._first_attempt.setdefault(delivery_id, []).append(future)
        return future

    def trigger(self, wamid: str) -> None:
        """Release the deliveries held for `wamid`, keeping their recorded gap to the send."""
        now = self._now()
        self._triggered.setdefault(wamid, now)
        released = self._held.pop(wamid, [])
        self._schedule([(self._release_time(p.delivery, now), p) for p in released])
        self._touch()

    def drop_held(self) -> list[Delivery]:
        """Forget the deliveries still held for a trigger (a replay is over); returns them."""
        dropped = [p.delivery for held in self._held.values() for p in held]
        self._held.clear()
        self.never_triggered = []
        return dropped

    def _schedule(self, timed: list[tuple[float, _Pending]]) -> None:
        if self.config.reorder > 1 and len(timed) > 1:
            timed = self._reordered(timed)
        for when, pending in timed:
            self._push(when, pending)
        self.never_triggered = [p.delivery for held in self._held.values() for p in held]
        self._touch()

    def _reordered(self, timed: list[tuple[float, _Pending]]) -> list[tuple[float, _Pending]]:
        """Shuffle within windows of N; each delivery takes the time slot of its new place."""
        n = self.config.reorder
        timed = sorted(timed, key=lambda t: t[0])  # stable: equal times keep their order
        out: list[tuple[float, _Pending]] = []
        for start in range(0, len(timed), n):
            window = timed[start : start + n]
            items = [p for _, p in window]
            self._rng.shuffle(items)
            out.extend((when, item) for (when, _), item in zip(window, items))
        return out

    def _release_time(self, delivery: Delivery, triggered_at: float) -> float:
        gap = 0.0
        if delivery.trigger_offset_s is not None:
            gap = max(0.0, delivery.offset_s - delivery.trigger_offset_s)
        return triggered_at + self._scaled(gap)

    def _scaled(self, seconds: float) -> float:
        return 0.0 if self.config.speed == 0 else seconds / self.config.speed

    def _push(self, when: float, item: _Pending | _Post) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, item))
        if isinstance(item, _Post):
            heapq.heappush(self._retries, (when, self._seq, item.next_attempt))

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _now(self) -> float:
        loop_time = asyncio.get_running_loop().time()
        if self._origin is None:
            self._origin = loop_time
        return loop_time - self._origin

    def _touch(self) -> None:
        """New work or progress: wake the scheduler and restart the quiet clock."""
        if self._origin is not None:
            self._last_activity = self._now()
        self._progress.set()
        self._kick()

    @property
    def busy(self) -> bool:
        """Something is due, waiting for its time, or being posted (held ones don't count)."""
        return bool(self._heap or self._ready or self._in_flight)

    def quiet_for(self) -> float:
        """Seconds since the last new work or progress."""
        return self._now() - self._last_activity

    def _kick(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def progress(self, _settled: int = 0) -> Progress:
        """Where the deliveries stand now (what `on_progress` is told)."""
        next_retry_s = next_attempt = None
        if self._retries:
            when, _, next_attempt = self._retries[0]
            next_retry_s = max(0.0, when - self._now())
        return Progress(
            pending=len(self._heap) + len(self._ready) + self._in_flight - _settled,
            retrying=len(self._retries),
            next_retry_s=next_retry_s,
            next_attempt=next_attempt,
            delivered=self._delivered,
            dropped=len(self.dropped),
        )

    def worst_case_s(self) -> float:
        """Wall seconds a webhook the bot never accepts keeps a run waiting, at most."""
        return self.config.retry.worst_case_s(self.config.timeout_s)

    def _report_progress(self) -> None:
        # Called by the attempt that just settled: it is no longer in flight.
        if self.on_progress is not None:
            self.on_progress(self.progress(_settled=1))

    # -- verify ---------------------------------------------------------------------------

    async def verify(self) -> None:
        """Meta's GET handshake: 200 with the challenge as the whole body, else VerifyFailed."""
        if self.config.skip_verify:
            return
        challenge = str(10**9 + secrets.randbelow(9 * 10**9))
        url = URL(self.config.bot_url).update_query(
            {
                "hub.mode": "subscribe",
                "hub.verify_token": self.config.verify_token,
                "hub.challenge": challenge,
            }
        )
        headers = {"User-Agent": self.config.user_agent}
        started = time.time()
        status: int | None = None
        body = b""
        error: str | None = None
        try:
            async with self._client().get(url, headers=headers) as resp:
                status = resp.status
                body = await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            error = _describe(e, self.config.timeout_s)
        finished = time.time()
        if self.journal is not None:
            self.journal.record(
                Exchange(
                    # The verify token is a secret of the bot's: journals never hold it.
                    kind=Kind.WEBHOOK.value,
                    method="GET",
                    url=str(url.update_query({"hub.verify_token": REDACTED})),
                    request_headers=list(headers.items()),
                    response_status=status,
                    response_body=body,
                    error=error,
                    started_at=started,
                    finished_at=finished,
                    annotations={"label": "verify"},
                )
            )
        where = f"GET {self.config.bot_url}"
        if error is not None:
            raise VerifyFailed(f"verify handshake failed: {where}: {error}")
        if status != 200 or body != challenge.encode():
            problem = f"status {status}" if status != 200 else "wrong body"
            raise VerifyFailed(
                f"verify handshake failed ({problem}): {where} answered {status} with body "
                f"{_truncate(body)}; expected 200 with exactly the challenge "
                f"{challenge.encode()!r} (plain text, no quotes or JSON)"
            )
        logger.info("verify handshake OK: %s echoed the challenge", self.config.bot_url)

    # -- running --------------------------------------------------------------------------

    def start(self) -> None:
        """Deliver in the background, as work arrives, until close() (a live sandbox)."""
        if self._driver is None:
            self._driver = asyncio.get_running_loop().create_task(self._drive(None, forever=True))

    async def idle(self, quiet_s: float) -> None:
        """With start(): return once nothing is due or in flight and nothing new arrived
        for `quiet_s` seconds."""
        if self._driver is None:
            raise RuntimeError("idle() needs a started emitter; use wait_idle() otherwise")
        while True:
            if self._driver.done():
                self._driver.result()  # a crashed scheduler surfaces here, not as a hang
                return
            self._progress.clear()
            wait = None if self.busy else quiet_s - self.quiet_for()
            if wait is not None and wait <= 0:
                return
            try:
                await asyncio.wait_for(self._progress.wait(), wait)
            except asyncio.TimeoutError:
                pass

    async def run(self) -> None:
        """Deliver everything due, retrying as the policy says; return when nothing is left
        but deliveries held for a trigger (listed in `never_triggered`)."""
        await self._drive(quiet_s=None)

    async def wait_idle(self, quiet_s: float) -> None:
        """Like run(), but only return once nothing new arrived for `quiet_s` seconds."""
        await self._drive(quiet_s=quiet_s)

    async def _drive(self, quiet_s: float | None, forever: bool = False) -> None:
        if self._workers:
            raise RuntimeError("the emitter is already running")
        loop = asyncio.get_running_loop()
        self._now()  # fixes the origin on the first run
        self._client()
        self._workers = [loop.create_task(self._worker()) for _ in range(self.config.concurrency)]
        for worker in self._workers:
            worker.add_done_callback(lambda _: self._kick())  # a crashed worker ends the wait
        self._last_activity = self._now()
        try:
            while True:
                now = self._now()
                self._promote(now)
                for worker in self._workers:
                    if worker.done():
                        worker.result()  # a bug in a worker surfaces here, not as a hang
                wait: float | None = None  # None: until kicked
                if forever and not self._heap:
                    pass  # a live emitter waits for new work, however long
                elif not self._heap and not self._ready and self._in_flight == 0:
                    if quiet_s is None:
                        break
                    wait = self._last_activity + quiet_s - now
                    if wait <= 0:
                        break
                elif self._heap:
                    wait = self._heap[0][0] - now
                await self._sleep(wait)
        finally:
            workers, self._workers = self._workers, []
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self.never_triggered = [p.delivery for held in self._held.values() for p in held]
        if self.never_triggered:
            logger.warning(
                "%d held deliveries were never triggered (the bot never made the send "
                "they follow): %s",
                len(self.never_triggered),
                ", ".join(d.label or repr(d.hold_until) for d in self.never_triggered[:5]),
            )

    async def _sleep(self, wait: float | None) -> None:
        """Until `wait` seconds pass or something kicks the scheduler."""
        loop = asyncio.get_running_loop()
        self._wakeup = loop.create_future()
        timer = None
        if wait is not None:
            timer = loop.call_later(max(0.0, wait), self._kick)
        try:
            await self._wakeup
        finally:
            self._wakeup = None
            if timer is not None:
                timer.cancel()

    def _promote(self, now: float) -> None:
        heap = self._heap
        moved = False
        now += 1e-4  # the loop may wake a hair early; don't spin for that
        while heap and heap[0][0] <= now:
            item = heapq.heappop(heap)[2]
            if isinstance(item, _Post):
                heapq.heappop(self._retries)  # the heap's first retry is theirs too
            self._ready.append(item)
            moved = True
        if moved:
            self._ready_event.set()

    async def _worker(self) -> None:
        ready = self._ready
        while True:
            if not ready:
                self._ready_event.clear()
                await self._ready_event.wait()
                continue
            item = ready.popleft()
            self._in_flight += 1
            post: _Post | None = None
            try:
                post = item if isinstance(item, _Post) else self._start(item)
                await self._attempt(post)
            except asyncio.CancelledError:
                # An interrupted run must not lose the POST it was making: a later run
                # sends it again (same bytes, same signature).
                if post is not None and not (post.outcome.delivered or post.outcome.dropped_reason):
                    ready.appendleft(post)
                raise
            finally:
                self._in_flight -= 1
                if self._in_flight == 0 and not ready:
                    self._touch()

    def _start(self, first: _Pending) -> _Post:
        """Turn due deliveries into a POST: merge a batch, sign once, roll for a duplicate."""
        parts = [first]
        if self.config.batch > 1:
            ready = self._ready
            while len(parts) < self.config.batch and ready and isinstance(ready[0], _Pending):
                parts.append(ready.popleft())  # type: ignore[arg-type]
        if len(parts) == 1:
            body, label = first.delivery.body, first.delivery.label
            parts_ids: tuple[int, ...] = (first.delivery_id,)
        else:
            body, label, parts_ids = self._merge(parts)
        outcome = Outcome(first.delivery_id, label, body, parts=parts_ids)
        self.outcomes.append(outcome)
        duplicate = self.config.duplicate > 0 and self._rng.random() < self.config.duplicate
        outcome.duplicated = duplicate
        # A per-delivery override (a mutated cassette) wins; in a batch, any part's does.
        signing = next(
            (
                p.delivery.signing
                for p in parts
                if p.delivery_id in parts_ids and p.delivery.signing
            ),
            None,
        )
        return _Post(outcome, self._headers(body, signing), duplicate)

    def _merge(self, parts: list[_Pending]) -> tuple[bytes, str, tuple[int, ...]]:
        payloads = [webhooks.parse(p.delivery.body) for p in parts]
        mergeable = [i for i, payload in enumerate(payloads) if payload is not None]
        if len(mergeable) < len(parts):
            # A body that is not a webhook (a mutated cassette) cannot be merged: it goes
            # alone, and the rest goes back to the front of the queue in order.
            for p in reversed(parts[1:]):
                self._ready.appendleft(p)
            first = parts[0]
            return first.delivery.body, first.delivery.label, (first.delivery_id,)
        body = webhooks.dumps(webhooks.merge(p for p in payloads if p is not None))
        label = " + ".join(p.delivery.label or f"#{p.delivery_id}" for p in parts)
        return body, f"batch[{len(parts)}] {label}", tuple(p.delivery_id for p in parts)

    def _headers(
        self, body: bytes, signing: Literal["valid", "none", "bad"] | None = None
    ) -> dict[str, str]:
        config = self.config
        mode = signing or config.signing
        headers = {"Content-Type": "application/json", "User-Agent": config.user_agent}
        if mode == "valid":
            headers[signature.HEADER] = signature.sign(config.app_secret, body)
            if config.legacy_sha1:
                headers[signature.LEGACY_HEADER] = signature.sign_sha1(config.app_secret, body)
        elif mode == "bad":
            headers[signature.HEADER] = signature.forge(body)
        return headers

    async def _attempt(self, post: _Post) -> None:
        outcome = post.outcome
        number = post.next_attempt
        attempt = await self._post(post, copy=0, number=number)
        if post.duplicate and number == 0:
            await self._post(post, copy=1, number=0)
        if attempt.ok:
            outcome.delivered = True
            self._delivered += 1
        if number == 0 and self._first_attempt:
            for part in outcome.parts or (outcome.delivery_id,):
                for future in self._first_attempt.pop(part, []):
                    if not future.done():
                        future.set_result(outcome)
        if attempt.ok:
            if number > 0:
                self._report_progress()
            return
        policy = self.config.retry
        post.next_attempt = number + 1
        # Meta's time: the waits unscaled, the bot's own slowness as it was.
        next_age = post.age_s + attempt.finished - attempt.started
        next_age += policy.unscaled_delay(post.next_attempt)
        if policy.gives_up(next_age):  # like Meta: no attempt starts outside the window
            last = attempt.error or f"HTTP {attempt.status}"
            outcome.dropped_reason = policy.give_up_reason(number + 1, post.age_s, last)
            self.dropped.append(outcome)
            logger.error("webhook %s dropped: %s", outcome.label, outcome.dropped_reason)
        else:
            post.age_s = next_age
            self._push(self._now() + policy.delay(post.next_attempt), post)
            self._kick()
        self._report_progress()

    async def _post(self, post: _Post, copy: int, number: int) -> Attempt:
        outcome = post.outcome
        body = outcome.body
        status: int | None = None
        error: str | None = None
        response = b""
        started = time.time()
        try:
            async with self._client().post(
                self.config.bot_url, data=body, headers=post.headers
            ) as resp:
                status = resp.status
                response = await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            error = _describe(e, self.config.timeout_s)
        finished = time.time()
        attempt = Attempt(
            outcome.delivery_id, copy, number, started, finished, status, error, len(body)
        )
        outcome.attempts.append(attempt)
        self.attempts.append(attempt)
        if status == 200:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("webhook %s attempt %d copy %d: 200", outcome.label, number, copy)
        else:
            logger.warning(
                "webhook %s attempt %d%s failed: %s",
                outcome.label,
                number,
                f" (duplicate {copy})" if copy else "",
                error or f"HTTP {status}",
            )
        if self.journal is not None:
            self._journal(post, attempt, response)
        if self.on_attempt is not None:
            self.on_attempt(attempt, outcome)
        return attempt

    def _journal(self, post: _Post, attempt: Attempt, response: bytes) -> None:
        assert self.journal is not None
        outcome = post.outcome
        payload = webhooks.parse(outcome.body)
        events = webhooks.events(payload) if payload is not None else []
        self.journal.record(
            Exchange(
                kind=Kind.WEBHOOK.value,
                method="POST",
                url=self.config.bot_url,
                request_headers=list(post.headers.items()),
                request_body=outcome.body,
                response_status=attempt.status,
                response_body=response,
                error=attempt.error,
                started_at=attempt.started,
                finished_at=attempt.finished,
                annotations={
                    "label": outcome.label,
                    "delivery_id": str(outcome.delivery_id),
                    "attempt": str(attempt.attempt),
                    "copy": str(attempt.copy),
                },
            ),
            events=events,
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.config.concurrency, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        """Stop the workers (if a run was interrupted) and close the HTTP session."""
        if self._driver is not None:
            self._driver.cancel()
            await asyncio.gather(self._driver, return_exceptions=True)
            self._driver = None
        for futures in self._first_attempt.values():
            for future in futures:
                future.cancel()
        self._first_attempt.clear()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._session is not None:
            await self._session.close()
            self._session = None


def _describe(error: BaseException, timeout_s: float) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return f"timeout after {timeout_s:g} s"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
