"""Which leg a flow is: pure classification by listener, destination and URL."""

from __future__ import annotations

import pytest

from pseudowa.addons.classify import Routes
from pseudowa.addons.classify import classify
from pseudowa.addons.classify import parse_target
from pseudowa.storage.records import Kind

BOT = "http://127.0.0.1:8000/webhook"
MEDIA_ID = "1037543291543636"
MEDIA_URL = (
    f"https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid={MEDIA_ID}"
    "&source=getMedia&ext=1749416983&hash=ARnJzQx2wYQ1u6Nf_ZPqj6c3N&_nc_cat=103"
    "&oh=01_Q5AaIGXb7v&oe=6851A2B3"
)


@pytest.mark.parametrize(
    "spec, default_scheme, expected",
    [
        ("https://graph.facebook.com", "https", ("https", "graph.facebook.com", 443)),
        ("http://127.0.0.1:8080/v23.0", "https", ("http", "127.0.0.1", 8080)),
        ("  Graph.Facebook.COM  ", "https", ("https", "graph.facebook.com", 443)),
        ("127.0.0.1:8000", "http", ("http", "127.0.0.1", 8000)),
        ("localhost", "http", ("http", "localhost", 80)),
    ],
)
def test_parse_target(spec, default_scheme, expected):
    assert parse_target(spec, default_scheme) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("http://:80/x", "no host"),
        ("https://graph.facebook.com:http", "invalid port"),
        ("ftp://127.0.0.1", "unsupported scheme"),
    ],
)
def test_parse_target_refuses(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_target(spec)


def test_default_routes_are_metas_hosts():
    routes = Routes()
    assert (
        classify(
            "POST",
            "https://graph.facebook.com/v23.0/1/messages",
            "graph.facebook.com",
            443,
            "",
            routes,
        )
        is Kind.GRAPH
    )
    assert (
        classify("GET", "https://lookaside.fbsbx.com/x", "lookaside.fbsbx.com", 443, "", routes)
        is Kind.MEDIA
    )
    assert classify("POST", BOT, "127.0.0.1", 8000, "", routes) is None


ROUTES = Routes.parse(
    BOT, ["https://graph.facebook.com", "http://127.0.0.1:8080"], ["lookaside.fbsbx.com"]
)


@pytest.mark.parametrize(
    "method, url, host, port, mode_data, expected",
    [
        (
            "POST",
            "http://127.0.0.1:8000/webhook",
            "127.0.0.1",
            8000,
            "http://127.0.0.1:8000",
            "webhook",
        ),
        (
            "GET",
            "http://127.0.0.1:8000/webhook?hub.mode=subscribe",
            "127.0.0.1",
            8000,
            "",
            "webhook",
        ),
        (
            "POST",
            "https://graph.facebook.com/v23.0/1/messages",
            "graph.facebook.com",
            443,
            "",
            "graph",
        ),
        (
            "GET",
            "https://graph.facebook.com/v23.0/1",
            "graph.facebook.com",
            443,
            "https://graph.facebook.com",
            "graph",
        ),
        ("POST", "http://127.0.0.1:8080/v23.0/1/messages", "127.0.0.1", 8080, "", "graph"),
        ("GET", MEDIA_URL, "lookaside.fbsbx.com", 443, "", "media"),
        ("GET", MEDIA_URL, "lookaside.fbsbx.com", 443, "https://lookaside.fbsbx.com", "media"),
        # The sandbox serves downloads on the Graph host: the path tells.
        (
            "GET",
            "http://127.0.0.1:8080/whatsapp_business/attachments/?mid=1&ext=2&hash=3",
            "127.0.0.1",
            8080,
            "",
            "media",
        ),
        ("GET", "https://example.com/", "example.com", 443, "", None),
        ("GET", "https://graph.facebook.com:8443/v23.0/1", "graph.facebook.com", 8443, "", None),
        ("POST", "http://127.0.0.1:8001/webhook", "127.0.0.1", 8001, "", None),
        ("CONNECT", "graph.facebook.com:443", "graph.facebook.com", 443, "", None),
    ],
)
def test_classify(method, url, host, port, mode_data, expected):
    assert classify(method, url, host, port, mode_data, ROUTES) == expected


def test_classify_knows_download_urls_handed_out_by_lookups():
    url = "http://127.0.0.1:8080/media/download/1234"
    assert classify("GET", url, "127.0.0.1", 8080, "", ROUTES) == "graph"
    assert classify("GET", url, "127.0.0.1", 8080, "", ROUTES, {url: "1234"}) == "media"
    cdn = "https://cdn.example.net/x?mid=99"
    assert classify("GET", cdn, "cdn.example.net", 443, "", ROUTES, {"99"}) == "media"


def test_classify_without_a_webhook_upstream_records_no_webhooks():
    routes = Routes.parse("", ["https://graph.facebook.com"], [])
    assert classify("POST", BOT, "127.0.0.1", 8000, "http://127.0.0.1:8000", routes) is None


# Everything on one host, as with fakes: only the listener a flow came through tells.
LOCAL = Routes.parse(
    BOT, ["http://127.0.0.1:8080"], ["lookaside.fbsbx.com"], ["http://127.0.0.1:8081"]
)
GRAPH_DATA, MEDIA_DATA, HOOK_DATA = (
    "http://127.0.0.1:8080",
    "http://127.0.0.1:8081",
    "http://127.0.0.1:8000",
)


@pytest.mark.parametrize(
    "method, url, port, mode_data, expected",
    [
        # Through the media listener: a download, whatever its path.
        ("GET", "http://127.0.0.1:8081/blob/1234?sig=abc", 8081, MEDIA_DATA, "media"),
        ("GET", "http://127.0.0.1:8081/v23.0/1234", 8081, MEDIA_DATA, "media"),
        # Through the Graph listener: Graph calls...
        ("POST", "http://127.0.0.1:8080/v23.0/1/messages", 8080, GRAPH_DATA, "graph"),
        ("GET", "http://127.0.0.1:8080/media/download/77", 8080, GRAPH_DATA, "graph"),
        # ...except downloads, which are media wherever they arrive.
        (
            "GET",
            "http://127.0.0.1:8080/whatsapp_business/attachments/?mid=5",
            8080,
            GRAPH_DATA,
            "media",
        ),
        ("GET", "http://127.0.0.1:8080/media/download/1234", 8080, GRAPH_DATA, "media"),
        (
            "GET",
            "http://127.0.0.1:8000/whatsapp_business/attachments/?mid=5",
            8000,
            HOOK_DATA,
            "media",
        ),
        # Through the webhook listener: webhooks.
        ("POST", "http://127.0.0.1:8000/webhook", 8000, HOOK_DATA, "webhook"),
        # The regular proxy listener goes by destination: host:port of the upstreams.
        ("GET", "http://127.0.0.1:8081/blob/9", 8081, "", "media"),
        ("POST", "http://127.0.0.1:8080/v23.0/1/messages", 8080, "", "graph"),
        ("POST", "http://127.0.0.1:8000/webhook", 8000, "", "webhook"),
        ("GET", MEDIA_URL, 443, "", "media"),  # media hosts: any path, any port
        ("GET", "http://127.0.0.1:8082/blob/9", 8082, "", None),
        # A reverse listener to an unknown target: by destination, as before.
        ("GET", "https://lookaside.fbsbx.com/x", 443, "https://lookaside.fbsbx.com", "media"),
    ],
)
def test_classify_by_listener(method, url, port, mode_data, expected):
    host = url.split("/")[2].split(":")[0]
    known = {"http://127.0.0.1:8080/media/download/1234": "1234"}
    assert classify(method, url, host, port, mode_data, LOCAL, known) == expected


def test_classify_by_listener_beats_media_hosts():
    # 127.0.0.1 named as a media host: still only the regular listener goes by it.
    routes = Routes.parse(BOT, ["http://127.0.0.1:8080"], ["127.0.0.1"], ["http://127.0.0.1:8081"])
    url = "http://127.0.0.1:8080/v23.0/1/messages"
    assert classify("POST", url, "127.0.0.1", 8080, GRAPH_DATA, routes) == "graph"
    assert classify("POST", BOT, "127.0.0.1", 8000, HOOK_DATA, routes) == "webhook"
    assert classify("POST", url, "127.0.0.1", 8080, "", routes) == "media"


def test_classify_upstream_shared_by_graph_and_media():
    # One fake serving both: its listeners carry Graph calls; downloads go by URL.
    routes = Routes.parse(BOT, ["http://127.0.0.1:8080"], [], ["http://127.0.0.1:8080"])
    assert (
        classify("GET", "http://127.0.0.1:8080/v23.0/1234", "127.0.0.1", 8080, GRAPH_DATA, routes)
        == "graph"
    )
    dl = "http://127.0.0.1:8080/media/download/1234"
    assert classify("GET", dl, "127.0.0.1", 8080, GRAPH_DATA, routes, {dl: "1234"}) == "media"
