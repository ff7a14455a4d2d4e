"""Which leg of the conversation a flow is: Meta's webhook, a Graph API call, a media download.

Pure: no mitmproxy. The recorder hands in what it knows of a flow (method, URL, where it
goes, the reverse listener it came through) and gets back a `Kind`, or None for traffic
that is not WhatsApp's and is not recorded.
"""

from __future__ import annotations

import functools
from collections.abc import Container
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

from pseudowa.proxy.contract.hosts import GRAPH_HOST
from pseudowa.proxy.contract.hosts import MEDIA_HOST
from pseudowa.proxy.contract.media_url import DOWNLOAD_PATH
from pseudowa.storage.records import Kind

DEFAULT_PORTS = {"http": 80, "https": 443}
_ATTACHMENTS = DOWNLOAD_PATH.rstrip("/")


@functools.lru_cache(maxsize=256)  # a listener's target is parsed for each of its flows
def parse_target(spec: str, default_scheme: str = "https") -> tuple[str, str, int]:
    """`scheme://host[:port][/path]` or `host[:port]` as (scheme, lowercase host, port)."""
    text = spec.strip()
    if "://" not in text:
        text = f"{default_scheme}://{text}"
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    try:
        host, port = parts.hostname, parts.port
    except ValueError as e:
        raise ValueError(f"invalid port in {spec!r}") from e
    if not host:
        raise ValueError(f"no host in {spec!r}")
    if port is None:
        if scheme not in DEFAULT_PORTS:
            raise ValueError(f"unsupported scheme in {spec!r}: use http:// or https://")
        port = DEFAULT_PORTS[scheme]
    return scheme, host.lower(), port


@dataclass(frozen=True)
class Routes:
    """Which upstreams make a flow a webhook, a Graph call or a media download.

    `graph` and `media` are (host, port) of upstreams: matched against the target of the
    reverse listener a flow came through, and against where a flow goes. `media_hosts`
    are matched by host alone, and only for flows that did not come through a reverse
    listener targeting a known upstream (i.e. the regular HTTP(S) proxy listener).
    """

    webhook: tuple[str, str, int] | None = None  # the bot's scheme, host, port
    graph: frozenset[tuple[str, int]] = frozenset({(GRAPH_HOST, 443)})
    media_hosts: frozenset[str] = frozenset({MEDIA_HOST})
    media: frozenset[tuple[str, int]] = frozenset({(MEDIA_HOST, 443)})

    @classmethod
    def parse(
        cls,
        webhook_upstream: str,
        graph_upstreams: Sequence[str],
        media_hosts: Sequence[str],
        media_upstreams: Sequence[str] = (),
    ) -> Routes:
        """Routes from option values; ValueError names the value that does not parse."""
        webhook = parse_target(webhook_upstream, "http") if webhook_upstream else None
        graph = frozenset(parse_target(g)[1:] for g in graph_upstreams if g.strip())
        hosts = frozenset(parse_target(h)[1] for h in media_hosts if h.strip())
        media = frozenset(parse_target(m)[1:] for m in media_upstreams if m.strip())
        return cls(webhook, graph, hosts, media)

    def by_listener(self, target: tuple[str, str, int]) -> Kind | None:
        """The kind of every flow through a reverse listener to `target` (None: unknown).

        One upstream serving both Graph and media (a fake) makes its listeners Graph
        listeners: downloads through them are still told by their URL.
        """
        if target[1:] in self.graph:
            return Kind.GRAPH
        if target[1:] in self.media:
            return Kind.MEDIA
        if self.webhook is not None and target == self.webhook:
            return Kind.WEBHOOK
        return None


def classify(
    method: str,
    url: str,
    host: str,
    port: int,
    mode_data: str,
    routes: Routes,
    known_media: Container[str] = (),
) -> Kind | None:
    """The kind of a flow, or None when it is not WhatsApp traffic to record.

    `url` is the request's (pretty) URL, `host`/`port` where it goes, `mode_data`
    the target of the reverse listener it came through ("" for other modes),
    and `known_media` the download URLs and `mid`s handed out by media look-ups.

    A download (Meta's attachment path, or a URL or `mid` a media look-up handed
    out) is media wherever it arrives. Any other flow through a reverse listener
    whose target is a known upstream is what that listener is for: media, Graph or
    webhook, whatever its host. The rest (the regular proxy listener, or a reverse
    listener to an unknown target) goes by where it goes: media hosts, then Graph
    upstreams, then media upstreams, then the webhook.
    """
    if method.upper() == "CONNECT":
        return None
    parts = urlsplit(url)
    mid = dict(parse_qsl(parts.query)).get("mid") if parts.query else None
    if (
        parts.path.startswith(_ATTACHMENTS)
        or url in known_media
        or (mid is not None and mid in known_media)
    ):
        return Kind.MEDIA
    if mode_data:
        try:
            target = parse_target(mode_data)
        except ValueError:
            pass
        else:
            kind = routes.by_listener(target)
            if kind is not None:
                return kind
    hosts = {host.lower(), (parts.hostname or "").lower()} - {""}
    if hosts & routes.media_hosts:
        return Kind.MEDIA
    destinations = {(host.lower(), port)}
    try:
        url_port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        url_port = None
    if parts.hostname and url_port:
        destinations.add((parts.hostname.lower(), url_port))
    if destinations & routes.graph:
        return Kind.GRAPH
    if destinations & routes.media:
        return Kind.MEDIA
    if routes.webhook is not None and routes.webhook[1:] in destinations:
        return Kind.WEBHOOK
    return None
