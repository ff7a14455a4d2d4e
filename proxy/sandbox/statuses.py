"""Which status webhooks Meta sends after an accepted send, and when; and the relay that
hands them to the emitter.

One accepted message yields `sent`, then `delivered`, then `read` (whatsapp-cloud-api.md
§3), or `sent` then `failed` when delivery fails asynchronously (e.g. 131047 outside the
customer-service window). The payloads come from the contract's builders; the planning
functions only decide which ones, in which order, with which timestamps and delays (pure,
no I/O); `StatusRelay` is the thin shell that schedules them.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import Protocol

from pseudowa.proxy.contract import webhooks
from pseudowa.proxy.contract.errors import GraphError
from pseudowa.proxy.contract.ids import new_conversation_id
from pseudowa.proxy.contract.outbound import SendRequest
from pseudowa.proxy.contract.webhooks import BusinessAccount

DEFAULT_STATUSES = webhooks.STATUS_ORDER  # ("sent", "delivered", "read")
KNOWN = (*webhooks.STATUS_ORDER, "failed")

Payload = dict[str, Any]


def plan_statuses(
    send_wa_id: str,
    wamid: str,
    *,
    statuses: Sequence[str] = DEFAULT_STATUSES,
    category: str = "service",
    fail: GraphError | None = None,
    account: BusinessAccount,
    api_version: str | None,
    biz_opaque_callback_data: str | None,
    now: float,
    step_s: float = 1.0,
    conversation_id: str | None = None,
) -> list[tuple[float, Payload]]:
    """The status webhooks for one accepted send, each with its delay after the send.

    Only the statuses listed are produced, always in Meta's order (sent < delivered <
    read); the k-th one is due `k * step_s` seconds after the send (k from 1) and its
    timestamp is `now` plus that delay, as a string, strictly increasing. With `fail`
    (or "failed" listed) the message fails instead: `sent` if listed, then `failed`
    carrying `fail.status_error()`.

    One conversation id is shared by the statuses of the message (the builder drops
    `conversation` from v24.0 on). `pricing` rides on `sent` and on `delivered`, or on
    `read` when `delivered` is not produced (Meta prices one of the two, never both).
    """
    unknown = [s for s in statuses if s not in KNOWN]
    if unknown:
        raise ValueError(f"unknown status {unknown[0]!r}; expected one of {', '.join(KNOWN)}")
    if fail is None and "failed" in statuses:
        fail = GraphError(131026)
    if fail is not None:
        chosen = ["sent"] if "sent" in statuses else []
        chosen.append("failed")
    else:
        chosen = [s for s in webhooks.STATUS_ORDER if s in statuses]
    priced_after_sent = "delivered" if "delivered" in chosen else "read"

    conversation_id = conversation_id or new_conversation_id()
    plan: list[tuple[float, Payload]] = []
    last_ts = -1
    for k, value in enumerate(chosen, start=1):
        delay = k * step_s
        ts = max(math.floor(now + delay), last_ts + 1)
        last_ts = ts
        item = webhooks.status(
            wamid,
            value,
            send_wa_id,
            timestamp=str(ts),
            category=category,
            conversation_id=conversation_id,
            with_pricing=value == priced_after_sent,
            error=fail if value == "failed" else None,
            biz_opaque_callback_data=biz_opaque_callback_data,
            api_version=api_version,
        )
        plan.append((delay, webhooks.status_webhook(account, [item])))
    return plan


def choose_failure(rate: float, code: int, rng: random.Random) -> GraphError | None:
    """`GraphError(code)` with probability `rate`, else None.

    Draws exactly one number per call, so a seeded run fails the same sends every time.
    """
    draw = rng.random()
    return GraphError(code) if draw < rate else None


class StatusEmitter(Protocol):
    """What the relay needs of the emitter: schedule a body, release held deliveries."""

    def add_now(self, delay_s: float, body: bytes, label: str) -> int: ...

    def trigger(self, wamid: str) -> None: ...


class StatusRelay:
    """Meta's status webhooks for the bot's accepted sends, handed to the emitter.

    A send answered from a recording whose statuses the cassette holds (`held`) releases
    those recorded statuses instead (the emitter keeps them until this send happens);
    every other send gets synthesized statuses as `plan_statuses` decides, failed with
    probability `fail_rate` (one seeded draw per send, so a seed fails the same sends).
    """

    def __init__(
        self,
        emitter: StatusEmitter,
        *,
        account: BusinessAccount,
        statuses: Sequence[str] = DEFAULT_STATUSES,
        fail_rate: float = 0.0,
        fail_code: int = 131026,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        conversation_ids: Callable[[str], str] | None = None,
    ) -> None:
        """`clock` gives the time statuses are stamped from, `conversation_ids` the
        conversation id of a message's statuses from its wamid (default: random): both
        exist so a recording can be made byte-for-byte reproducible."""
        self.emitter = emitter
        self.account = account
        self.statuses = tuple(statuses)
        self.fail_rate = fail_rate
        self.fail_code = fail_code
        self.held: set[str] = set()  # wamids whose recorded statuses wait for the send
        self.superseded: set[str] = set()  # held wamids reported failed instead
        self.api_version: str | None = None  # of the cassette being replayed, if any
        self.emitted = 0
        self.fail_next: GraphError | None = None  # the next synthesized send fails with this
        self.clock = clock
        self.conversation_ids = conversation_ids
        self._rng = random.Random(seed)

    def on_send(self, send: SendRequest, wamid: str, recorded: bool) -> None:
        """Statuses for one accepted send (the fake Graph API's listener calls this)."""
        # One draw per send, recorded ones too: fail_rate applies to every send.
        fail = choose_failure(self.fail_rate, self.fail_code, self._rng)
        if recorded and wamid in self.held:
            if fail is None:
                self.emitter.trigger(wamid)
                return
            self.superseded.add(wamid)  # its recorded statuses stay held, then dropped
        elif self.fail_next is not None:
            fail, self.fail_next = self.fail_next, None
        plan = plan_statuses(
            send.wa_id,
            wamid,
            statuses=self.statuses,
            category=send.category,
            fail=fail,
            account=self.account,
            api_version=self.api_version,
            biz_opaque_callback_data=send.biz_opaque_callback_data,
            now=self.clock(),
            conversation_id=self.conversation_ids(wamid) if self.conversation_ids else None,
        )
        for delay, payload in plan:
            value = payload["entry"][0]["changes"][0]["value"]["statuses"][0]["status"]
            self.emitter.add_now(delay, webhooks.dumps(payload), f"status {value} {wamid}")
            self.emitted += 1
