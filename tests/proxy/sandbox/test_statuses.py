"""The status webhooks planned for an accepted send: Meta's shapes, order and timing."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from openapi import validate

from pseudowa.proxy.contract.errors import GraphError
from pseudowa.proxy.contract.webhooks import BusinessAccount
from pseudowa.proxy.sandbox.statuses import choose_failure
from pseudowa.proxy.sandbox.statuses import plan_statuses

ACCOUNT = BusinessAccount()
WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJCOTY3NDc0NDFDRUI3NTA0Q0UA"
USER = "16505551234"
NOW = 1_750_000_000.25


def plan(**kw: Any) -> list[tuple[float, dict[str, Any]]]:
    args: dict[str, Any] = {
        "account": ACCOUNT,
        "api_version": "v23.0",
        "biz_opaque_callback_data": None,
        "now": NOW,
    }
    args.update(kw)
    return plan_statuses(USER, WAMID, **args)


def the_status(payload: dict[str, Any]) -> dict[str, Any]:
    """The single status item of a status webhook, checking the envelope on the way."""
    assert payload["object"] == "whatsapp_business_account"
    (entry,) = payload["entry"]
    assert entry["id"] == ACCOUNT.waba_id
    (change,) = entry["changes"]
    assert change["field"] == "messages"
    value = change["value"]
    assert value["messaging_product"] == "whatsapp"
    assert value["metadata"] == ACCOUNT.metadata()
    assert "contacts" not in value and "messages" not in value
    (item,) = value["statuses"]
    return item


def test_sent_delivered_read_in_order_with_increasing_string_timestamps() -> None:
    planned = plan()
    items = [the_status(p) for _, p in planned]
    assert [i["status"] for i in items] == ["sent", "delivered", "read"]
    assert all(i["id"] == WAMID and i["recipient_id"] == USER for i in items)
    stamps = [i["timestamp"] for i in items]
    assert all(isinstance(t, str) and t.isdigit() for t in stamps)
    assert [int(t) for t in stamps] == sorted({int(t) for t in stamps})  # strictly increasing
    assert int(stamps[0]) >= int(NOW)
    delays = [d for d, _ in planned]
    assert delays == sorted(delays) and delays[0] > 0
    assert "biz_opaque_callback_data" not in items[0]


def test_delays_follow_step() -> None:
    assert [d for d, _ in plan(step_s=0.5)] == [0.5, 1.0, 1.5]


def test_conversation_shared_on_v23_with_expiration_on_sent_only() -> None:
    items = [the_status(p) for _, p in plan(category="utility")]
    conversations = [i["conversation"] for i in items]
    assert len({c["id"] for c in conversations}) == 1
    assert all(c["origin"] == {"type": "utility"} for c in conversations)
    assert "expiration_timestamp" in conversations[0]
    assert isinstance(conversations[0]["expiration_timestamp"], str)
    assert all("expiration_timestamp" not in c for c in conversations[1:])


@pytest.mark.parametrize("version", ["v24.0", "v25.0"])
def test_conversation_omitted_from_v24(version: str) -> None:
    items = [the_status(p) for _, p in plan(api_version=version)]
    assert all("conversation" not in i for i in items)
    assert "pricing" in items[0]


def test_pricing_on_sent_and_delivered_only() -> None:
    items = [the_status(p) for _, p in plan(category="marketing")]
    assert ["pricing" in i for i in items] == [True, True, False]
    assert items[0]["pricing"] == {
        "billable": True,
        "pricing_model": "PMP",
        "type": "regular",
        "category": "marketing",
    }
    service = the_status(plan()[0][1])["pricing"]
    assert service["category"] == "service" and service["type"] == "free_customer_service"


def test_pricing_moves_to_read_when_delivered_is_skipped() -> None:
    # Meta skips `delivered` when delivered and read happen together; pricing then rides on read.
    items = [the_status(p) for _, p in plan(statuses=("sent", "read"))]
    assert [(i["status"], "pricing" in i) for i in items] == [("sent", True), ("read", True)]


@pytest.mark.parametrize(
    "subset, expected",
    [
        (("sent",), ["sent"]),
        (("delivered",), ["delivered"]),
        (("read", "sent"), ["sent", "read"]),  # always Meta's order
        (("sent", "delivered"), ["sent", "delivered"]),
        ((), []),
    ],
)
def test_subset_selection(subset: tuple[str, ...], expected: list[str]) -> None:
    assert [the_status(p)["status"] for _, p in plan(statuses=subset)] == expected


def test_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="played"):
        plan(statuses=("sent", "played"))


def test_failure_is_sent_then_failed_with_the_error() -> None:
    items = [the_status(p) for _, p in plan(fail=GraphError(131047))]
    assert [i["status"] for i in items] == ["sent", "failed"]
    failed = items[1]
    assert "conversation" not in failed and "pricing" not in failed
    (error,) = failed["errors"]
    assert error == GraphError(131047).status_error()
    assert error["code"] == 131047
    assert error["title"] == error["message"]
    assert int(failed["timestamp"]) > int(items[0]["timestamp"])


def test_failure_without_sent_is_failed_only() -> None:
    items = [
        the_status(p) for _, p in plan(statuses=("delivered", "read"), fail=GraphError(131026))
    ]
    assert [i["status"] for i in items] == ["failed"]
    assert items[0]["errors"][0]["code"] == 131026


def test_biz_opaque_callback_data_is_echoed_on_every_status() -> None:
    for fail in (None, GraphError(131047)):
        items = [the_status(p) for _, p in plan(biz_opaque_callback_data="order-42", fail=fail)]
        assert items and all(i["biz_opaque_callback_data"] == "order-42" for i in items)


@pytest.mark.parametrize("version", ["v23.0", "v24.0", None])
@pytest.mark.parametrize(
    "fail", [None, GraphError(131047), GraphError(131026)], ids=["ok", "131047", "131026"]
)
def test_every_payload_matches_meta_openapi(version: str | None, fail: GraphError | None) -> None:
    planned = plan(api_version=version, fail=fail, biz_opaque_callback_data="x", category="utility")
    assert planned
    for _, payload in planned:
        validate("WebhookPayload", payload)


def test_choose_failure_rates_and_determinism() -> None:
    rng = random.Random(1)
    assert all(choose_failure(0.0, 131047, rng) is None for _ in range(200))
    always = [choose_failure(1.0, 131047, rng) for _ in range(50)]
    assert all(isinstance(e, GraphError) and e.code == 131047 for e in always)

    def picks(seed: int) -> list[bool]:
        r = random.Random(seed)
        return [choose_failure(0.3, 131026, r) is not None for _ in range(1000)]

    assert picks(7) == picks(7)
    assert 200 < sum(picks(7)) < 400


class _Emitter:
    def __init__(self) -> None:
        self.scheduled: list[tuple[float, bytes, str]] = []
        self.triggered: list[str] = []

    def add_now(self, delay_s: float, body: bytes, label: str) -> int:
        self.scheduled.append((delay_s, body, label))
        return len(self.scheduled)

    def trigger(self, wamid: str) -> None:
        self.triggered.append(wamid)


def _text_send(to: str = "16505551234") -> Any:
    from pseudowa.proxy.contract.outbound import parse_send

    return parse_send(
        b'{"messaging_product":"whatsapp","to":"%s","type":"text",'
        b'"text":{"body":"hi"}}' % to.encode()
    )


def test_relay_releases_recorded_statuses_and_synthesizes_the_rest() -> None:
    from pseudowa.proxy.sandbox.statuses import StatusRelay

    emitter = _Emitter()
    relay = StatusRelay(emitter, account=ACCOUNT)
    relay.held = {"wamid.recorded"}
    relay.on_send(_text_send(), "wamid.recorded", recorded=True)
    assert emitter.triggered == ["wamid.recorded"] and emitter.scheduled == []
    relay.on_send(_text_send(), "wamid.new", recorded=False)
    assert [label for _, _, label in emitter.scheduled] == [
        "status sent wamid.new",
        "status delivered wamid.new",
        "status read wamid.new",
    ]
    assert relay.emitted == 3
    for _, body, _ in emitter.scheduled:
        validate("WebhookPayload", json.loads(body))


def test_relay_is_reproducible_and_fails_the_next_send_on_request() -> None:
    from pseudowa.proxy.contract.errors import GraphError
    from pseudowa.proxy.sandbox.statuses import StatusRelay

    emitter = _Emitter()
    relay = StatusRelay(
        emitter,
        account=ACCOUNT,
        clock=lambda: 1_764_000_000,
        conversation_ids=lambda wamid: "c" * 32,
    )
    relay.api_version = "v23.0"
    relay.fail_next = GraphError(131047)
    relay.on_send(_text_send(), "wamid.a", recorded=False)
    relay.on_send(_text_send(), "wamid.b", recorded=False)
    values = [
        json.loads(body)["entry"][0]["changes"][0]["value"]["statuses"][0]
        for _, body, _ in emitter.scheduled
    ]
    assert [v["status"] for v in values] == ["sent", "failed", "sent", "delivered", "read"]
    assert values[1]["errors"][0]["code"] == 131047
    assert values[0]["timestamp"] == "1764000001"
    assert {v["conversation"]["id"] for v in values if "conversation" in v} == {"c" * 32}
