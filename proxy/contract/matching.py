"""Compare Graph requests by meaning: version-free paths, JSON minus volatile fields.

Used both to find a recorded answer for a live request and by the replay check to
compare what a bot sends now with what it sent when recorded.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import translate
from typing import Any
from urllib.parse import urlsplit

from .webhooks import MEDIA_TYPES

_VERSION = re.compile(r"^/v\d+(?:\.\d+)?(?=/|$)")
# What RequestShape.key() serialises with: json.dumps(..., sort_keys=True), built once.
_KEY_ENCODER = json.JSONEncoder(sort_keys=True)
# Values that differ between runs without the bot doing anything different:
# ids of media uploaded during the run, and clocks.
DEFAULT_VOLATILE: tuple[str, ...] = (
    *(f"{kind}.id" for kind in MEDIA_TYPES),
    # ...also nested: template header parameters, interactive headers.
    *(f"*.{kind}.id" for kind in MEDIA_TYPES),
    "timestamp",
    "*.timestamp",
)
# Send fields whose documented default (whatsapp-cloud-api.md §6.1) means the same as their
# absence: pywa always sends `preview_url: false`, other clients leave it out.
DOCUMENTED_DEFAULTS: dict[str, Any] = {
    "recipient_type": "individual",
    "text.preview_url": False,
}


def normalize_path(url_or_path: str) -> str:
    """The path without scheme, host, query or Graph version: `/v23.0/123/messages` -> `/123/messages`."""
    path = urlsplit(url_or_path).path or "/"
    return _VERSION.sub("", path) or "/"


def graph_version(url_or_path: str) -> str | None:
    """The Graph version a path names (`v23.0`), or None."""
    match = _VERSION.match(urlsplit(url_or_path).path)
    return match.group(0).lstrip("/") if match else None


class _VolatileMatcher:
    """Tells whether a dotted path matches any of a set of `fnmatch` patterns.

    Matching is on the path of every field of every request the fake answers: testing
    the ~10 default patterns one `fnmatchcase` call at a time cost more than all the
    rest of a send. The patterns are compiled into one regex (fnmatch's own
    translation, so the semantics are fnmatchcase's) and the verdict is remembered
    per path, since a bot sends the same few shapes over and over.
    """

    # A bound on the remembered paths: field names are the bot's choice.
    MAX_PATHS = 4096

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self._regex = re.compile("|".join(translate(p) for p in patterns)) if patterns else None
        self._verdicts: dict[str, bool] = {}

    def __call__(self, path: str) -> bool:
        verdict = self._verdicts.get(path)
        if verdict is None:
            verdict = self._regex is not None and self._regex.match(path) is not None
            if len(self._verdicts) >= self.MAX_PATHS:
                self._verdicts.clear()
            self._verdicts[path] = verdict
        return verdict


@functools.lru_cache(maxsize=64)
def _volatile_matcher(patterns: tuple[str, ...]) -> _VolatileMatcher:
    return _VolatileMatcher(patterns)


def normalize(value: Any, volatile: Sequence[str] = DEFAULT_VOLATILE, _path: str = "") -> Any:
    """A copy of a JSON value without the fields matching `volatile` patterns, nor those
    equal to their documented default.

    Both are left out rather than masked: a field present on one side only (a client that
    always sends `preview_url`, a recording made with one that never does) then compares
    equal to its absence.
    """
    return _normalize(value, _volatile_matcher(tuple(volatile)), _path)


def _normalize(value: Any, is_volatile: _VolatileMatcher, _path: str) -> Any:
    if isinstance(value, dict):
        out = {}
        for key in sorted(value):
            path = f"{_path}.{key}" if _path else str(key)
            child = value[key]
            if is_volatile(path):
                continue
            if path in DOCUMENTED_DEFAULTS and _same_json(child, DOCUMENTED_DEFAULTS[path]):
                continue
            if isinstance(child, (dict, list)):
                out[key] = _normalize(child, is_volatile, path)
            else:
                out[key] = child  # a scalar: no copy, no call
        return out
    if isinstance(value, list):
        path = f"{_path}[]"
        return [_normalize(v, is_volatile, path) for v in value]
    return value


def _same_json(a: Any, b: Any) -> bool:
    # JSON's false is not 0: `True == 1` must not make a 1 look like a default true.
    return type(a) is type(b) and a == b


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
        return cls.of_parsed(method, url, parse_json(body), volatile)

    @classmethod
    def of_parsed(
        cls, method: str, url: str, parsed: Any, volatile: Sequence[str] = DEFAULT_VOLATILE
    ) -> RequestShape:
        """`of` for a body already parsed as JSON (None when it is not JSON): no second parse."""
        return cls(method.upper(), normalize_path(url), normalize(parsed, volatile))

    def key(self) -> str:
        """A hashable, canonical form of the whole shape."""
        # json.dumps(..., sort_keys=True) would build a new encoder on every call.
        return _KEY_ENCODER.encode([self.method, self.path, self.body])

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


def nearest(
    shape: RequestShape, candidates: Iterable[RequestShape], n: int = 3
) -> list[tuple[RequestShape, list[str]]]:
    """The `n` candidates closest to `shape`, each with the fields that differ."""
    scored = []
    for cand in candidates:
        fields = []
        if cand.method != shape.method:
            fields.append("method")
        if cand.path != shape.path:
            fields.append("path")
        fields.extend(
            f"body.{f}" if f != "(body)" else "body" for f in diff_fields(cand.body, shape.body)
        )
        scored.append((len(fields), cand.key(), cand, fields))
    scored.sort(key=lambda t: (t[0], t[1]))
    return [(cand, fields) for _, _, cand, fields in scored[:n]]
