"""Request matching: the same send is recognized across versions and runs."""

from __future__ import annotations

import json

import pytest

from pseudowa.proxy.contract.matching import RequestShape
from pseudowa.proxy.contract.matching import diff_fields
from pseudowa.proxy.contract.matching import graph_version
from pseudowa.proxy.contract.matching import nearest
from pseudowa.proxy.contract.matching import normalize
from pseudowa.proxy.contract.matching import normalize_path
from pseudowa.proxy.contract.matching import parse_json


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("https://graph.facebook.com/v23.0/106540352242922/messages", "/106540352242922/messages"),
        (
            "https://graph.facebook.com/v18/106540352242922/messages?x=1#f",
            "/106540352242922/messages",
        ),
        ("https://graph.facebook.com/106540352242922/messages", "/106540352242922/messages"),
        ("http://localhost:8080/v21.0/1037543291543636?phone_number_id=1", "/1037543291543636"),
        ("/v23.0/106540352242922/media", "/106540352242922/media"),
        ("/106540352242922/media", "/106540352242922/media"),
        ("https://graph.facebook.com/v23.0", "/"),
        ("https://graph.facebook.com", "/"),
        # Only a leading version segment is stripped.
        ("/v23.0/v1/messages", "/v1/messages"),
        ("/v23.0x/messages", "/v23.0x/messages"),
    ],
)
def test_normalize_path(url: str, path: str) -> None:
    assert normalize_path(url) == path


@pytest.mark.parametrize(
    ("url", "version"),
    [
        ("https://graph.facebook.com/v23.0/1/messages", "v23.0"),
        ("/v18/1/messages", "v18"),
        ("https://graph.facebook.com/v24.0", "v24.0"),
        ("https://graph.facebook.com/1/messages", None),
        ("/1/v23.0/messages", None),
    ],
)
def test_graph_version(url: str, version: str | None) -> None:
    assert graph_version(url) == version


def test_normalize_ignores_media_ids_and_timestamps_keeps_reply_target() -> None:
    body = {
        "messaging_product": "whatsapp",
        "to": "1",
        "type": "image",
        "image": {"id": "1037543291543636", "caption": "c"},
        "context": {"message_id": "wamid.q"},
        "timestamp": "1",
        "meta": {"timestamp": 2},
    }
    out = normalize(body)
    assert out["image"] == {"caption": "c"}
    assert "timestamp" not in out
    assert out["meta"] == {}
    assert out["context"] == {"message_id": "wamid.q"}
    assert out["to"] == "1"
    assert body["image"]["id"] == "1037543291543636"  # input left alone
    for kind in ("audio", "video", "document", "sticker"):
        assert normalize({kind: {"id": "9"}}) == {kind: {}}
    # A link is what the bot chose, not an upload id: it still counts.
    assert normalize({"image": {"link": "https://x/a.jpg"}}) == {
        "image": {"link": "https://x/a.jpg"}
    }


def test_uploaded_media_ids_ignored_when_nested() -> None:
    """A template or interactive header naming media uploaded this run still matches."""

    def template(media_id: str) -> RequestShape:
        body = {
            "messaging_product": "whatsapp",
            "to": "1",
            "type": "template",
            "template": {
                "name": "order",
                "language": {"code": "en_US"},
                "components": [
                    {
                        "type": "header",
                        "parameters": [
                            {
                                "type": "document",
                                "document": {"id": media_id, "filename": "invoice.pdf"},
                            }
                        ],
                    }
                ],
            },
        }
        return RequestShape.of("POST", "/v23.0/1/messages", json.dumps(body).encode())

    def header(media_id: str) -> RequestShape:
        body = {
            "messaging_product": "whatsapp",
            "to": "1",
            "type": "interactive",
            "interactive": {
                "type": "button",
                "header": {"type": "image", "image": {"id": media_id}},
                "body": {"text": "b"},
                "action": {"buttons": []},
            },
        }
        return RequestShape.of("POST", "/v23.0/1/messages", json.dumps(body).encode())

    assert template("1111111111111111").key() == template("2222222222222222").key()
    assert header("1111111111111111").key() == header("2222222222222222").key()
    # Ids that are not media ids still count.
    assert normalize({"interactive": {"action": {"buttons": [{"reply": {"id": "yes"}}]}}}) == {
        "interactive": {"action": {"buttons": [{"reply": {"id": "yes"}}]}}
    }


def test_normalize_custom_volatile_and_lists() -> None:
    body = {"a": [{"b": 1, "c": 2}], "d": 3}
    assert normalize(body, ("a[].b",)) == {"a": [{"c": 2}], "d": 3}
    assert normalize(body, ()) == body


def test_ignored_fields_compare_equal_to_their_absence() -> None:
    """A field one client always sends and another never does matches once ignored."""
    with_preview = {"type": "text", "text": {"body": "hi", "preview_url": True}}
    without = {"type": "text", "text": {"body": "hi"}}
    for pattern in ("text.preview_url", "*.preview_url", "text.*"):
        assert normalize(with_preview, (pattern,)) == normalize(without, (pattern,)), pattern
    assert normalize(with_preview, ()) != normalize(without, ())


def test_documented_defaults_compare_equal_to_their_absence() -> None:
    pywa = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "1",
        "type": "text",
        "text": {"body": "hi", "preview_url": False},
    }
    other = {"messaging_product": "whatsapp", "to": "1", "type": "text", "text": {"body": "hi"}}
    assert normalize(pywa) == normalize(other)
    # A value other than the default still counts.
    assert normalize({**pywa, "recipient_type": "group"}) != normalize(other)
    assert normalize({**pywa, "text": {"body": "hi", "preview_url": True}}) != normalize(other)
    assert normalize({**other, "text": {"body": "hi", "preview_url": 0}}) != normalize(other)


def send(
    version: str, media_id: str, reply_to: str = "wamid.q", caption: str = "c"
) -> RequestShape:
    body = {
        "messaging_product": "whatsapp",
        "to": "16505551234",
        "type": "image",
        "image": {"id": media_id, "caption": caption},
        "context": {"message_id": reply_to},
    }
    return RequestShape.of(
        "post", f"https://graph.facebook.com/{version}/106/messages", json.dumps(body).encode()
    )


def test_same_send_has_same_key_across_versions_and_uploads() -> None:
    a = send("v18.0", "1111111111111111")
    b = send("v23.0", "2222222222222222")
    assert a.method == "POST"
    assert a.path == "/106/messages"
    assert a == b
    assert a.key() == b.key()
    assert len({a.key(), b.key()}) == 1


def test_key_is_independent_of_json_key_order_and_spacing() -> None:
    one = RequestShape.of("POST", "/v23.0/1/messages", b'{"a": 1, "b": {"c": 2, "d": 3}}')
    two = RequestShape.of("POST", "/1/messages", b'{"b":{"d":3,"c":2},"a":1}')
    assert one.key() == two.key()


def test_different_sends_have_different_keys() -> None:
    base = send("v23.0", "1")
    assert base.key() != send("v23.0", "1", reply_to="wamid.other").key()
    assert base.key() != send("v23.0", "1", caption="other").key()
    assert base.key() != RequestShape.of("GET", "/v23.0/106/messages", b"").key()


def test_non_json_bodies_shape_to_none() -> None:
    assert RequestShape.of("GET", "/v23.0/123", b"").body is None
    assert RequestShape.of("POST", "/v23.0/1/media", b"--boundary\r\n\xff").body is None
    assert parse_json(b"[" * 100_000) is None
    assert parse_json(b'{"a": 1}') == {"a": 1}


def test_diff_fields_lists_dotted_paths() -> None:
    a = {
        "to": "1",
        "text": {"body": "hi", "preview_url": False},
        "components": [{"type": "body"}, {"type": "x"}],
        "list": [1, 2],
        "gone": 1,
    }
    b = {
        "to": "2",
        "text": {"body": "hi", "preview_url": True},
        "components": [{"type": "body"}, {"type": "y"}],
        "list": [1, 2, 3],
        "new": 1,
    }
    assert diff_fields(a, b) == [
        "components[1].type",
        "gone",
        "list",
        "new",
        "text.preview_url",
        "to",
    ]
    assert diff_fields(a, a) == []
    assert diff_fields({"a": 1}, [1]) == ["(body)"]
    assert diff_fields(None, None) == []


def test_describe_is_readable_and_bounded() -> None:
    text = send("v23.0", "1").describe()
    assert text.startswith("POST /106/messages {")
    long = RequestShape.of("POST", "/1/messages", json.dumps({"x": "y" * 1000}).encode())
    assert len(long.describe()) < 300


def test_nearest_orders_by_fewest_differences() -> None:
    live = send("v23.0", "1", caption="hello")
    exact = send("v18.0", "2", caption="hello")
    one_off = send("v23.0", "1", caption="other")
    two_off = send("v23.0", "1", caption="other", reply_to="wamid.z")
    other_path = RequestShape("POST", "/106/media", exact.body)
    wrong_method = RequestShape("GET", "/106/messages", None)
    candidates = [wrong_method, two_off, other_path, one_off, exact]
    found = nearest(live, candidates, n=5)
    assert [len(fields) for _, fields in found] == [0, 1, 1, 2, 2]
    assert found[0] == (exact, [])
    assert dict((c.key(), f) for c, f in found[1:3]) == {
        one_off.key(): ["body.image.caption"],
        other_path.key(): ["path"],
    }
    assert dict((c.key(), f) for c, f in found[3:]) == {
        two_off.key(): ["body.context.message_id", "body.image.caption"],
        wrong_method.key(): ["method", "body"],
    }
    # Ties break the same way whatever order the candidates come in.
    assert nearest(live, candidates[::-1], n=5) == found
    assert len(nearest(live, [two_off, one_off, exact])) == 3
    assert nearest(live, []) == []
