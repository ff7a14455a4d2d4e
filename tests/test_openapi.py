"""The committed OpenAPI subset is Meta's, and `validate` judges payloads like Meta's schemas do."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import openapi
import pytest
from openapi import validate

from pseudowa.proxy.contract import webhooks as wh
from pseudowa.proxy.contract.errors import GraphError
from pseudowa.proxy.contract.errors import unknown_object
from pseudowa.proxy.contract.ids import new_wamid

ACCOUNT = wh.BusinessAccount()
USER = "16505551234"
needs_spec = pytest.mark.skipif(
    not openapi.SHARED_SPEC.exists(), reason=f"Meta's full spec not found at {openapi.SHARED_SPEC}"
)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return openapi.load_spec()


def meta_webhook_examples(spec: dict[str, Any]) -> dict[str, Any]:
    """Meta's own examples for `POST /whatsapp/webhooks`, minus group events.

    The group examples contradict their own schema (string timestamps where `Groups`
    says integer, numeric `input`/`wa_id`, a `field` outside the enum); pseudowa emits
    no group webhooks, so those are left alone rather than patched.
    """
    examples = spec["paths"]["/whatsapp/webhooks"]["post"]["requestBody"]["content"][
        "application/json"
    ]["examples"]
    return {name: ex["value"] for name, ex in examples.items() if not name.startswith("Group")}


# -- the subset --------------------------------------------------------------------------


@needs_spec
def test_subset_is_a_fresh_extraction_of_the_shared_spec(spec: dict[str, Any]) -> None:
    fresh = openapi.dump_subset(openapi.extract_subset(spec))
    assert openapi.SUBSET_PATH.read_text(encoding="utf-8") == fresh, (
        "tests/data/meta-openapi-subset.json is stale: run .venv/bin/python tests/openapi.py"
    )


def test_subset_names_its_source_and_licence() -> None:
    subset = openapi.load_subset()
    header = subset["x-pseudowa-subset"]
    assert header["copyright"] == "Copyright (c) Meta Platforms, Inc. and affiliates."
    assert "MIT" in header["license"] and "facebook/openapi" in header["source"]
    assert set(openapi.ROOTS) <= set(subset["components"]["schemas"])
    licence = (openapi.SUBSET_PATH.parent / "META-OPENAPI-LICENSE").read_text()
    assert "MIT License" in licence and "Meta Platforms, Inc. and affiliates" in licence


def test_extraction_follows_refs_and_discriminator_mappings() -> None:
    spec = {
        "components": {
            "schemas": {
                "A": {"properties": {"b": {"$ref": "#/components/schemas/B"}}},
                "B": {
                    "discriminator": {
                        "propertyName": "t",
                        "mapping": {"c": "#/components/schemas/C"},
                    }
                },
                "C": {"items": [{"$ref": "#/components/schemas/A"}]},
                "Unused": {},
            }
        }
    }
    assert set(openapi.extract_subset(spec, ["A"])["components"]["schemas"]) == {"A", "B", "C"}
    with pytest.raises(KeyError):
        openapi.extract_subset(spec, ["Missing"])


@needs_spec
def test_meta_webhook_examples_validate(spec: dict[str, Any]) -> None:
    examples = meta_webhook_examples(spec)
    assert len(examples) >= 10
    for name, payload in examples.items():
        try:
            validate("WebhookPayload", payload)
        except jsonschema.ValidationError as e:  # pragma: no cover - the message is the point
            pytest.fail(f"Meta's example {name!r} rejected: {e.message} at {list(e.absolute_path)}")


@needs_spec
def test_unpatched_schemas_reject_meta_own_text_example(spec: dict[str, Any]) -> None:
    """Why openapi._patched exists; if Meta fixes the spec, this fails: drop the patches."""
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    document = {"components": openapi.load_subset()["components"]}
    registry = Registry().with_resource("urn:raw", DRAFT202012.create_resource(document))
    raw = jsonschema.Draft202012Validator(
        {"$ref": "urn:raw#/components/schemas/WebhookPayload"}, registry=registry
    )
    assert not raw.is_valid(meta_webhook_examples(spec)["Text Message"])


# -- contract payloads pass --------------------------------------------------------------


def inbound_examples() -> list[dict[str, Any]]:
    ctx = {"from": ACCOUNT.display_phone_number, "id": new_wamid(USER)}
    sha = wh.sha256_b64(b"media bytes")
    return [
        wh.message("text", USER, wh.text_body("Does it come in another color? äöå")),
        wh.message(
            "image",
            USER,
            wh.media_body(
                "image",
                "1003383421387256",
                "image/jpeg",
                sha,
                caption="Taj Mahal",
                url="https://lookaside.fbsbx.com/x",
            ),
        ),
        wh.message(
            "audio",
            USER,
            wh.media_body("audio", "1908647269898587", "audio/ogg; codecs=opus", sha, voice=True),
        ),
        wh.message("video", USER, wh.media_body("video", "1", "video/mp4", sha)),
        wh.message(
            "document",
            USER,
            wh.media_body("document", "2", "application/pdf", sha, filename="a.pdf", caption="doc"),
        ),
        wh.message(
            "sticker", USER, wh.media_body("sticker", "3", "image/webp", sha, animated=True)
        ),
        wh.message("location", USER, wh.location_body(37.44, -122.16, "Philz", "101 Forest Ave")),
        wh.message("reaction", USER, wh.reaction_body(ctx["id"], "👍")),
        wh.message("interactive", USER, wh.button_reply_body("yes", "Yes"), context=ctx),
        wh.message("interactive", USER, wh.list_reply_body("r1", "Row 1", "d"), context=ctx),
    ]


@pytest.mark.parametrize("msg", inbound_examples(), ids=lambda m: f"{m['type']}")
def test_inbound_webhooks_from_contract_builders_validate(msg: dict[str, Any]) -> None:
    validate("WebhookPayload", wh.inbound_webhook(ACCOUNT, msg))
    validate("IncomingMessage", msg)


@pytest.mark.parametrize("value", ["sent", "delivered", "read", "failed"])
def test_status_webhooks_from_contract_builders_validate(value: str) -> None:
    item = wh.status(
        new_wamid(USER),
        value,
        USER,
        with_pricing=True,
        error=GraphError(131047) if value == "failed" else None,
    )
    validate("Statuses", item)
    validate("WebhookPayload", wh.status_webhook(ACCOUNT, [item]))


def test_batched_webhook_validates() -> None:
    batch = wh.merge(
        [
            wh.inbound_webhook(ACCOUNT, wh.message("text", USER, wh.text_body("a"))),
            wh.status_webhook(ACCOUNT, [wh.status(new_wamid(USER), "sent", USER)]),
        ]
    )
    validate("WebhookPayload", batch)


def test_change_value_branches_are_exclusive_for_valid_payloads() -> None:
    """Change.value stays a oneOf: every valid value matches exactly one branch."""
    branches = [
        "IncomingMessageValueGeneral",
        "IncomingMessageValueSystem",
        "StatusMessageValue",
        "GroupValue",
    ]
    values = [wh.inbound_webhook(ACCOUNT, m) for m in inbound_examples()]
    values.append(
        wh.inbound_webhook(
            ACCOUNT,
            wh.message(
                "system",
                USER,
                {
                    "body": "User changed number",
                    "wa_id": "12195555358",
                    "type": "user_changed_number",
                },
            ),
        )
    )
    values.append(wh.status_webhook(ACCOUNT, [wh.status(new_wamid(USER), "read", USER)]))
    for payload in values:
        for value in wh.changes(payload):
            matching = [b for b in branches if openapi.validator(b).is_valid(value)]
            assert len(matching) == 1, (value, matching)


def test_graph_error_envelopes_validate() -> None:
    validate("GraphAPIError", GraphError(131000).envelope())
    validate("GraphAPIError", GraphError(130429).envelope())
    validate("GraphAPIError", unknown_object("123").envelope())


def test_send_and_mark_read_responses_validate() -> None:
    validate(
        "MessageResponsePayload",
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": "+16505551234", "wa_id": USER}],
            "messages": [{"id": new_wamid(USER), "message_status": "accepted"}],
        },
    )
    validate("MarkMessageResponsePayload", {"success": True})


# -- broken payloads fail ----------------------------------------------------------------


def text_webhook() -> dict[str, Any]:
    return wh.inbound_webhook(ACCOUNT, wh.message("text", USER, wh.text_body("hi")))


def test_missing_entry_is_rejected() -> None:
    payload = text_webhook()
    del payload["entry"]
    with pytest.raises(jsonschema.ValidationError, match="'entry' is a required property"):
        validate("WebhookPayload", payload)


def test_integer_status_timestamp_is_rejected() -> None:
    item = wh.status(new_wamid(USER), "delivered", USER)
    item["timestamp"] = int(item["timestamp"])
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'string'"):
        validate("Statuses", item)
    with pytest.raises(jsonschema.ValidationError):
        validate("WebhookPayload", wh.status_webhook(ACCOUNT, [item]))


def test_integer_message_timestamp_is_rejected() -> None:
    payload = text_webhook()
    msg = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    msg["timestamp"] = int(msg["timestamp"])
    with pytest.raises(jsonschema.ValidationError):
        validate("WebhookPayload", payload)


def test_error_without_code_is_rejected() -> None:
    envelope = GraphError(131000).envelope()
    del envelope["error"]["code"]
    with pytest.raises(jsonschema.ValidationError, match="'code' is a required property"):
        validate("GraphAPIError", envelope)


def test_inbound_message_checks_still_bite() -> None:
    """The patches loosen only what Meta got wrong; real mistakes still fail."""
    base = wh.message("text", USER, wh.text_body("hi"))
    for broken in (
        {k: v for k, v in base.items() if k != "from"},  # no sender
        {**base, "text": {"body": "hi", "oops": 1}},  # text is closed
        {**base, "type": "telepathy"},  # no such type
    ):
        with pytest.raises(jsonschema.ValidationError):
            validate("IncomingMessage", broken)
    button = wh.message("interactive", USER, wh.button_reply_body("yes", "Yes"))  # no context
    with pytest.raises(jsonschema.ValidationError):
        validate("IncomingMessage", button)
    wrong = copy.deepcopy(text_webhook())
    wrong["entry"][0]["changes"][0]["value"]["contacts"] = [{"wa_id": USER}]  # no profile
    with pytest.raises(jsonschema.ValidationError):
        validate("WebhookPayload", wrong)


def test_unknown_schema_name_is_an_error() -> None:
    with pytest.raises(KeyError):
        validate("NoSuchSchema", {})
