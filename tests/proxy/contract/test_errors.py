"""Graph errors: the envelope, HTTP status and async form a bot branches on."""

from __future__ import annotations

import json
import re

import pytest

from pseudowa.proxy.contract.errors import CODES
from pseudowa.proxy.contract.errors import ERROR_DOCS_HREF
from pseudowa.proxy.contract.errors import GraphError
from pseudowa.proxy.contract.errors import bad_token
from pseudowa.proxy.contract.errors import bad_value
from pseudowa.proxy.contract.errors import invalid_parameter
from pseudowa.proxy.contract.errors import missing_parameter
from pseudowa.proxy.contract.errors import unknown_object


@pytest.mark.parametrize(
    ("code", "http_status"),
    [
        (131000, 500),
        (130429, 400),  # Graph answers rate limits with 400, not 429
        (190, 401),
        (100, 400),
        (132001, 404),
        (0, 401),
        (2, 503),
        (10, 403),
        (131005, 403),
        (131008, 400),
        (131009, 400),
        (131016, 500),
        (131047, 400),
        (131056, 400),
    ],
)
def test_http_status_follows_metas_table(code: int, http_status: int) -> None:
    assert GraphError(code).http_status == http_status


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_known_code_has_a_meta_shaped_envelope(code: int) -> None:
    err = GraphError(code)
    body = err.envelope()
    json.dumps(body)  # what the fake answers must be JSON
    error = body["error"]
    assert error["message"] == f"(#{code}) {CODES[code].title}"
    assert error["type"] == "OAuthException"
    assert error["code"] == code
    assert isinstance(error["fbtrace_id"], str) and error["fbtrace_id"]
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert error["error_data"]["details"] == CODES[code].details
    assert isinstance(error["is_transient"], bool)
    assert "error_subcode" not in error
    assert err.http_status in (400, 401, 403, 404, 500, 503)
    assert str(err) == error["message"]


def test_envelope_keeps_given_trace_id_and_details() -> None:
    err = GraphError(130429, "Too many messages for 16505551234.")
    error = err.envelope("Az8or2yhqkZfEZ-_4Qn_Bam")["error"]
    assert error == {
        "message": "(#130429) Rate limit hit",
        "type": "OAuthException",
        "code": 130429,
        "error_data": {
            "messaging_product": "whatsapp",
            "details": "Too many messages for 16505551234.",
        },
        "is_transient": True,
        "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
    }


def test_fresh_trace_id_per_envelope() -> None:
    err = GraphError(131000)
    ids = {err.envelope()["error"]["fbtrace_id"] for _ in range(100)}
    assert len(ids) == 100


def test_unknown_code_falls_back_to_400() -> None:
    err = GraphError(999_999)
    error = err.envelope()["error"]
    assert err.http_status == 400
    assert error["message"] == "(#999999) Unknown error"
    assert error["type"] == "OAuthException"
    assert "error_data" not in error  # no details to tell


def test_overrides_win() -> None:
    err = GraphError(100, "d", message="custom", http_status=418, error_subcode=7, type="T")
    error = err.envelope()["error"]
    assert err.http_status == 418
    assert (error["message"], error["type"], error["error_subcode"]) == ("custom", "T", 7)


def test_unknown_object_is_graph_method_exception_subcode_33() -> None:
    err = unknown_object("1234567890123456")
    error = err.envelope()["error"]
    assert err.http_status == 400
    assert error["code"] == 100
    assert error["error_subcode"] == 33
    assert error["type"] == "GraphMethodException"
    assert error["message"].startswith("Unsupported get request. Object with ID '1234567890123456'")


def test_status_error_is_the_async_form() -> None:
    item = GraphError(131047).status_error()
    assert item == {
        "code": 131047,
        "title": "Re-engagement message",
        "message": "Re-engagement message",  # Meta repeats the title
        "error_data": {"details": CODES[131047].details},
        "href": ERROR_DOCS_HREF,
    }
    assert item["href"] == "/documentation/business-messaging/whatsapp/support/error-codes"


def test_helpers_pick_the_right_codes() -> None:
    assert invalid_parameter("x").code == 100
    assert invalid_parameter("x").message == "(#100) Invalid parameter"
    missing = missing_parameter("to")
    assert (missing.code, missing.http_status) == (131008, 400)
    assert "to" in missing.envelope()["error"]["error_data"]["details"]
    assert bad_value("nope").code == 131009
    assert bad_value("nope").details == "nope"


def test_bad_token_is_401_oauth_exception() -> None:
    err = bad_token()
    error = err.envelope()["error"]
    assert err.http_status == 401
    assert error["code"] == 190
    assert error["type"] == "OAuthException"
    assert re.match(r"Invalid OAuth access token", error["message"])
    assert bad_token("Malformed access token").message == "Malformed access token"
