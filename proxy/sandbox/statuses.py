"""Which status webhooks Meta sends after an accepted send, and when (pure, no I/O).

One accepted message yields `sent`, then `delivered`, then `read` (whatsapp-cloud-api.md
§3), or `sent` then `failed` when delivery fails asynchronously (e.g. 131047 outside the
customer-service window). The payloads come from the contract's builders; this module
only decides which ones, in which order, with which timestamps and delays.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from pseudowa.proxy.contract import webhooks
from pseudowa.proxy.contract.errors import GraphError
from pseudowa.proxy.contract.ids import new_conversation_id
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

    conversation_id = new_conversation_id()
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
