"""What the emitter delivers and reports: deliveries, attempts, outcomes and progress.

Plain records, apart from the engine in `emitter.py` so that readers of a run (the
sandbox, the replay report, a front end's progress line) need not read the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Literal

from pseudowa.proxy.contract import webhooks
from pseudowa.proxy.contract.retries import human_duration


@dataclass(frozen=True)
class Delivery:
    """One webhook to deliver."""

    body: bytes  # exact bytes: recorded bodies are re-sent byte for byte
    offset_s: float = 0.0  # recorded offset from the start of the cassette
    label: str = ""  # for logs, e.g. "#3 message text wamid.X"
    hold_until: str | None = None  # a wamid: held until trigger(wamid)
    trigger_offset_s: float | None = None  # recorded offset of the send that releases it
    signing: Literal["valid", "none", "bad"] | None = None  # overrides config.signing


@dataclass
class Attempt:
    """One POST of a body to the bot."""

    delivery_id: int
    copy: int  # 0 the original, 1.. duplicates
    attempt: int  # 0 the first try, 1.. retries
    started: float  # seconds since the epoch
    finished: float
    status: int | None
    error: str | None
    body_len: int

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class Outcome:
    """What became of one POST body (a delivery, or several merged by batching)."""

    delivery_id: int
    label: str
    body: bytes
    delivered: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    dropped_reason: str | None = None
    duplicated: bool = False
    parts: tuple[int, ...] = ()  # the delivery ids merged into this body
    _wamids: list[str] | None = field(default=None, repr=False, compare=False)

    @property
    def wamids(self) -> list[str]:
        """The wamids of the messages and statuses the body carries (parsed on first use)."""
        if self._wamids is None:
            payload = webhooks.parse(self.body)
            events = webhooks.events(payload) if payload else []
            self._wamids = [e.wamid for e in events if e.wamid]
        return self._wamids


@dataclass(frozen=True)
class Progress:
    """Where the deliveries stand, for one progress line while a run waits on retries."""

    pending: int  # not yet delivered or dropped: due, waiting for their time, or in flight
    retrying: int  # of those, failed ones waiting for their next attempt
    next_retry_s: float | None  # seconds from now to the next retry; None: none waits
    next_attempt: int | None  # that retry's attempt number (1: the first retry)
    delivered: int
    dropped: int

    def line(self) -> str:
        """`2 webhooks pending, 1 to retry (attempt 3 in 0.4 s); 7 delivered, 0 dropped`."""
        retry = f", {self.retrying} to retry" if self.retrying else ""
        if self.next_retry_s is not None:
            retry += f" (attempt {self.next_attempt} in {human_duration(self.next_retry_s)})"
        noun = "webhook" if self.pending == 1 else "webhooks"
        return (
            f"{self.pending} {noun} pending{retry}; "
            f"{self.delivered} delivered, {self.dropped} dropped"
        )
