"""Send Meta's hosts to the fake Graph API: the addon behind `pseudowa replay --proxy-port`.

A bot that cannot change its Graph base URL keeps calling https://graph.facebook.com
and downloading from https://lookaside.fbsbx.com. Run it with HTTPS_PROXY pointing at
a mitmproxy regular proxy holding this addon (and trusting mitmproxy's CA): every
request for those hosts, or for a host added with `pseudowa_redirect_hosts`, goes to
`pseudowa_redirect_target` instead, path and query unchanged. The fake then sees the
same requests as from a bot pointed at it directly.

Other hosts pass through untouched: a bot may call other services (its own database
API, a translation service) during a replay, and refusing them would break runs that
have nothing to do with WhatsApp. Where there is no network (offline CI) such calls
fail as they would without the proxy, with mitmproxy's 502.

Run it on its own with `mitmdump -s addons/redirect.py --set
pseudowa_redirect_target=http://127.0.0.1:8080 --set connection_strategy=lazy`
(lazy, so that mitmproxy never connects to Meta before the request is redirected).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

from mitmproxy import ctx
from mitmproxy import exceptions
from mitmproxy import http
from mitmproxy.addonmanager import Loader

from pseudowa.addons.classify import DEFAULT_PORTS
from pseudowa.addons.classify import parse_target
from pseudowa.proxy.contract.hosts import META_HOSTS

logger = logging.getLogger(__name__)

REDIRECTED_FROM = "pseudowa_redirected_from"  # flow.metadata key: the URL before redirection


def redirect_target(url: str) -> tuple[str, str, int]:
    """`http[s]://host[:port]` as (scheme, host, port); ValueError when unusable.

    Stricter than the recorder's upstreams: the scheme is required, and a path or query
    would be silently dropped (the redirected request keeps its own), so it is refused.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"expected http://host:port or https://host:port, not {url!r}")
    target: tuple[str, str, int] = parse_target(url)  # ValueError for an invalid port
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"takes scheme, host and port only (no path or query): {url!r}")
    return target


def _normal_host(host: str) -> str:
    return host.strip().lower().rstrip(".").strip("[]")


class Redirect:
    """Rewrites the destination of requests for Meta's hosts; counts what it redirected."""

    def __init__(self) -> None:
        self.target: tuple[str, str, int] | None = None
        self.hosts: frozenset[str] = frozenset(META_HOSTS)
        self.redirected = 0

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "pseudowa_redirect_target",
            str,
            "",
            """
            Where requests for Meta's hosts go instead, as http://host:port (the fake
            Graph API of `pseudowa replay`). Empty: nothing is redirected.
            """,
        )
        loader.add_option(
            "pseudowa_redirect_hosts",
            Sequence[str],
            [],
            f"Hosts redirected besides {' and '.join(META_HOSTS)} (any port).",
        )

    def configure(self, updated: set[str]) -> None:
        if "pseudowa_redirect_target" in updated:
            target = ctx.options.pseudowa_redirect_target
            if not target:
                self.target = None
            else:
                try:
                    self.target = redirect_target(target)
                except ValueError as e:
                    raise _options_error(f"pseudowa_redirect_target: {e}") from e
        if "pseudowa_redirect_hosts" in updated:
            extra = [_normal_host(h) for h in ctx.options.pseudowa_redirect_hosts]
            bad = next((h for h in extra if not h or "/" in h or " " in h), None)
            if bad is not None:
                raise _options_error(f"pseudowa_redirect_hosts: {bad!r} is not a host name")
            self.hosts = frozenset((*META_HOSTS, *extra))

    def redirects(self, host: str) -> bool:
        """Whether requests for `host` go to the target."""
        return self.target is not None and _normal_host(host) in self.hosts

    # `requestheaders`, not `request`: the destination must change before mitmproxy
    # opens a server connection, which it does right after this hook for a streamed body.
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self.target is None or flow.response is not None or flow.error is not None:
            return
        if not self.redirects(flow.request.host):
            return
        before = flow.request.url
        scheme, host, port = self.target
        flow.request.scheme = scheme
        flow.request.host = host  # the Host header follows (mitmproxy updates it)
        flow.request.port = port
        flow.metadata[REDIRECTED_FROM] = before
        self.redirected += 1
        logger.debug("redirected %s to %s", before, flow.request.url)


def _options_error(message: str) -> exceptions.OptionsError:
    return exceptions.OptionsError(message)  # type: ignore[no-untyped-call]  # untyped upstream
