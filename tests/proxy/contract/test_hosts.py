"""Meta's hosts and default Graph API version: what the recorder and replayer point at."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

from pseudowa.proxy.contract import hosts

SUBSET = Path(__file__).resolve().parents[2] / "data" / "meta-openapi-subset.json"


def test_urls_are_https_on_the_host_names() -> None:
    for url, host in ((hosts.GRAPH_URL, hosts.GRAPH_HOST), (hosts.MEDIA_URL, hosts.MEDIA_HOST)):
        parts = urlsplit(url)
        assert parts.scheme == "https"
        assert parts.hostname == host
        assert parts.port is None
        # A base URL: the bot appends /v23.0/..., so no path, query or trailing slash.
        assert parts.path == ""
        assert not parts.query


def test_hosts_are_metas() -> None:
    assert hosts.GRAPH_HOST == "graph.facebook.com"
    assert hosts.MEDIA_HOST == "lookaside.fbsbx.com"


def test_meta_hosts_are_exactly_graph_and_media() -> None:
    assert isinstance(hosts.META_HOSTS, tuple)
    assert set(hosts.META_HOSTS) == {hosts.GRAPH_HOST, hosts.MEDIA_HOST}
    assert len(hosts.META_HOSTS) == 2


def test_default_api_version_has_graph_form() -> None:
    assert re.fullmatch(r"v\d{1,2}\.\d", hosts.DEFAULT_API_VERSION)


def test_default_api_version_is_the_spec_version() -> None:
    header = json.loads(SUBSET.read_text())["x-pseudowa-subset"]
    assert header["version"] == hosts.DEFAULT_API_VERSION
    # The spec file Meta publishes names the version too.
    assert f"_{hosts.DEFAULT_API_VERSION}.yaml" in header["source"]
