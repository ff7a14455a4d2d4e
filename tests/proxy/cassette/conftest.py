"""Tapes for the cassette tests: a few webhooks built from the contract, no store."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pseudowa.proxy.cassette.seeds import USER
from pseudowa.proxy.cassette.tape import Tape
from pseudowa.proxy.contract import webhooks as wh
from pseudowa.storage.records import Exchange

ACCOUNT = wh.BusinessAccount()


class Build:
    """Webhook exchanges and their bodies, as the recorder would have stored them."""

    account = ACCOUNT

    @staticmethod
    def webhook(message_or_payload: dict[str, Any], at: float, seq: int) -> Exchange:
        payload = message_or_payload
        if "entry" not in payload:
            payload = wh.inbound_webhook(ACCOUNT, message_or_payload, "Ana")
        return Exchange(
            "webhook",
            "POST",
            "http://bot/webhook",
            request_body=wh.dumps(payload),
            response_status=200,
            started_at=at,
            finished_at=at + 0.01,
            seq=seq,
        )

    @staticmethod
    def text(body: str, wamid: str, ts: str = "1750000000") -> dict[str, Any]:
        return wh.message("text", USER, wh.text_body(body), wamid=wamid, timestamp=ts)

    @staticmethod
    def status(wamid: str, value: str, ts: str = "1750000001") -> dict[str, Any]:
        return wh.status_webhook(ACCOUNT, [wh.status(wamid, value, USER, timestamp=ts)])

    @staticmethod
    def small_tape() -> Tape:
        """hi, menu, then sent/delivered/read of a reply, one webhook each."""
        items = [
            Build.text("hi", "wamid.HI"),
            Build.text("menu", "wamid.MENU"),
            Build.status("wamid.REPLY", "sent"),
            Build.status("wamid.REPLY", "delivered"),
            Build.status("wamid.REPLY", "read"),
        ]
        return Tape("t", [Build.webhook(p, 100.0 + i, i) for i, p in enumerate(items)])

    @staticmethod
    def bodies(exchanges: list[Exchange]) -> list[dict[str, Any]]:
        return [json.loads(x.request_body) for x in exchanges]

    @staticmethod
    def messages(exchanges: list[Exchange]) -> list[dict[str, Any]]:
        return [
            m for p in Build.bodies(exchanges) for v in wh.changes(p) for m in v.get("messages", [])
        ]


@pytest.fixture
def build() -> type[Build]:
    """The builders above (annotated `Any` in the tests: a conftest is not importable)."""
    return Build
