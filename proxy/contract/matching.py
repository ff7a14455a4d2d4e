"""Compare Graph requests by meaning: version-free paths, JSON minus volatile fields.

Used both to find a recorded answer for a live request and by the replay check to
compare what a bot sends now with what it sent when recorded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

from .webhooks import MEDIA_TYPES

_VERSION = re.compile(r"^/v\d+(?:\.\d+)?(?=/|$)")
IGNORED = "<ignored>"
# Values that differ between runs without the bot doing anything different:
# ids of media uploaded during the run, and clocks.
DEFAULT_VOLATILE: tuple[str, ...] = (
    *(f"{kind}.id" for kind in MEDIA_TYPES),
    # ...also nested: template header parameters, interactive headers.
    *(f"*.{kind}.id" for kind in MEDIA_TYPES),
    "timestamp",
    "*.timestamp",
)


def normalize_path(url_or_path: str) -> str:
    """The path without scheme, host, query or Graph version: `/v23.0/123/messages` -> `/123/messages`."""
    path = urlsplit(url_or_path).path or "/"
    return _VERSION.sub("", path) or "/"


def graph_version(url_or_path: str) -> str | None:
    """The Graph version a path names (`v23.0`), or None."""
    match = _VERSION.match(urlsplit(url_or_path).path)
    return match.group(0).lstrip("/") if match else None


def normalize(value: Any, volatile: Sequence[str] = DEFAULT_VOLATILE, _path: str = "") -> Any:
    """A copy of a JSON value with fields matching `volatile` patterns replaced by a marker."""
    if isinstance(value, dict):
        out = {}
        for key in sorted(value):
            path = f"{_path}.{key}" if _path else str(key)
            if any(fnmatchcase(path, pattern) for pattern in volatile):
                out[key] = IGNORED
            else:
                out[key] = normalize(value[key], volatile, path)
        return out
    if isinstance(value, list):
        return [normalize(v, volatile, f"{_path}[]") for v in value]
    return value


def parse_json(body: bytes) -> Any:
    """The body as JSON, or None when it is empty or not JSON."""
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


@dataclass(frozen=True)
class RequestShape:
    """A request reduced to what matching compares."""

    method: str
    path: str
    body: Any  # normalized JSON, or None

    @classmethod
    def of(
        cls, method: str, url: str, body: bytes, volatile: Sequence[str] = DEFAULT_VOLATILE
    ) -> RequestShape:
        parsed = parse_json(body)
        return cls(method.upper(), normalize_path(url), normalize(parsed, volatile))

    def key(self) -> str:
        """A hashable, canonical form of the whole shape."""
        return json.dumps([self.method, self.path, self.body], sort_keys=True)

    def describe(self) -> str:
        return f"{self.method} {self.path} {json.dumps(self.body, sort_keys=True)[:200]}"


def diff_fields(a: Any, b: Any, _path: str = "") -> list[str]:
    """Dotted paths where two JSON values differ (missing on either side included)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            path = f"{_path}.{key}" if _path else str(key)
            if key not in a or key not in b:
                out.append(path)
            else:
                out.extend(diff_fields(a[key], b[key], path))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out.extend(diff_fields(x, y, f"{_path}[{i}]"))
        return out
    return [] if a == b else [_path or "(body)"]


def nearest(shape: RequestShape, candidates: Iterable[RequestShape], n: int = 3) -> list[tuple[RequestShape, list[str]]]:
    """The `n` candidates closest to `shape`, each with the fields that differ."""
    scored = []
    for cand in candidates:
        fields = []
        if cand.method != shape.method:
            fields.append("method")
        if cand.path != shape.path:
            fields.append("path")
        fields.extend(f"body.{f}" if f != "(body)" else "body" for f in diff_fields(cand.body, shape.body))
        scored.append((len(fields), cand.key(), cand, fields))
    scored.sort(key=lambda t: (t[0], t[1]))
    return [(cand, fields) for _, _, cand, fields in scored[:n]]
