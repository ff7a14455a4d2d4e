"""Export a cassette to a reviewable directory, and import it back, byte for byte.

Layout of an exported cassette::

    <dir>/cassette.json        everything but media bytes: stable, key-sorted, indent 2, UTF-8
    <dir>/media/<sha256>.<ext> each media blob once, named by its sha256 (extension from its
                               mime type, none when unknown)
    <dir>/bodies/<sha256>      binary exchange bodies larger than INLINE_BINARY_MAX

`cassette.json` holds a format marker and version, the cassette's metadata, its history
(without `import` entries: those are local provenance), its media links, and its
exchanges in order. Each exchange keeps its bodies exactly:

    {"json": <value>, "encoding": "<name>"}   when re-encoding <value> the named way
                                              (JSON_ENCODINGS) gives back the exact bytes
    {"text": "..."}                           other valid UTF-8 (the empty body included)
    {"base64": "..."}                         other bytes, up to INLINE_BINARY_MAX
    {"file": "bodies/<sha256>", "size": N}    larger binary bodies

so webhook bodies replay byte-identical (their signatures are computed over the bytes).
Times: `time_origin` is the absolute start of the first exchange (seconds since the
epoch); each exchange has `offset_s` from it and `duration_s`. JSON numbers are written
with `repr`, which round-trips a float exactly, and the export checks that
`time_origin + offset_s` (and `start + duration_s`) gives back the stored float; when
floating-point addition would not, the exchange also carries the absolute `started_at`
(`finished_at`), which then wins on import. A time of -0.0 is written as 0.0 (SQLite
cannot keep the sign, so exports from SQLite and PostgreSQL agree). Each exchange's
`seq` is shown for reference (`cassette show` numbers); on import it may be left out, but
when present it must be an integer and unique (a wrong one means a hand edit gone astray),
and exchanges are renumbered from 0 in file order. A body object holds only the keys of
its form (`encoding` only beside `json`, `size` only beside `file`).

Media: a blob's own mime type is not written, only its links' (the file's extension
comes from the link with the smallest media id); on import the blob takes that mime type
when the store does not hold it yet.

Events are not exported: they are derived data. `import_cassette` re-indexes webhook
bodies through its `index_events` hook; the storage layer cannot parse WhatsApp
payloads itself (it imports nothing of ours), so the CLI passes the recorder's indexer.
Without the hook the imported cassette has no events.

Export, import, export gives byte-identical files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

FORMAT = "pseudowa-cassette"
FORMAT_VERSION = 1
CASSETTE_FILE = "cassette.json"
MEDIA_DIR = "media"
BODIES_DIR = "bodies"
INLINE_BINARY_MAX = 4096  # binary bodies up to this size stay in cassette.json as base64
MAX_JSON_DEPTH = 64  # deeper JSON bodies are kept as text (the file writer recurses)
IMPORT_OPERATION = "import"  # history entries of this operation are not exported

# Ways a JSON body may have been serialised, tried in this order; the first one that
# reproduces the exact bytes is recorded with the body. "compact-ascii" is Meta's
# webhook form (and `webhooks.dumps`), "spaced-ascii" is Python's json.dumps default
# (aiohttp), "-slash" variants escape "/" as Graph's PHP heritage does.
JSON_ENCODINGS: dict[str, tuple[tuple[str, str], bool, bool]] = {
    # name: (separators, ensure_ascii, escape "/")
    "compact-ascii": ((",", ":"), True, False),
    "compact-ascii-slash": ((",", ":"), True, True),
    "compact-utf8": ((",", ":"), False, False),
    "compact-utf8-slash": ((",", ":"), False, True),
    "spaced-ascii": ((", ", ": "), True, False),
    "spaced-ascii-slash": ((", ", ": "), True, True),
    "spaced-utf8": ((", ", ": "), False, False),
    "spaced-utf8-slash": ((", ", ": "), False, True),
}

# A fixed table, not the platform's mimetypes database: file names must not depend on
# the machine that exported.
MIME_EXTENSIONS = {
    "application/json": ".json",
    "application/pdf": ".pdf",
    "audio/aac": ".aac",
    "audio/amr": ".amr",
    "audio/mp4": ".m4a",
    "audio/mpeg": ".mp3",
    "audio/ogg": ".ogg",
    "image/gif": ".gif",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "text/plain": ".txt",
    "video/3gpp": ".3gp",
    "video/mp4": ".mp4",
}

SHA_RE = re.compile(r"^[0-9a-f]{64}$")
MEDIA_FILE_RE = re.compile(rf"^{MEDIA_DIR}/([0-9a-f]{{64}})(\.[a-z0-9]{{1,8}})?$")
BODY_FILE_RE = re.compile(rf"^{BODIES_DIR}/([0-9a-f]{{64}})$")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def dumps_document(doc: Any) -> bytes:
    """The file form: indent 2, UTF-8, trailing newline; keys in the order given.

    Key order is the caller's (our own objects are built sorted) because an embedded
    JSON body must keep its own key order to re-encode to the same bytes. An array of
    scalars (a header pair, phone ids) goes on one line. Lone surrogates (from
    `\\udXXX` escapes in a body) are written as escapes.
    """
    lines: list[str] = []
    _write_value(doc, "", lines)
    text = _SURROGATE_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", "".join(lines))
    return (text + "\n").encode("utf-8")


def _scalar(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _write_value(value: Any, pad: str, out: list[str]) -> None:
    if isinstance(value, dict) and value:
        inner = pad + "  "
        out.append("{\n")
        for i, (key, item) in enumerate(value.items()):
            out.append(f"{inner}{_scalar(str(key))}: ")
            _write_value(item, inner, out)
            out.append(",\n" if i < len(value) - 1 else "\n")
        out.append(pad + "}")
    elif isinstance(value, list) and value:
        if not any(isinstance(v, (dict, list)) for v in value):
            out.append("[" + ", ".join(_scalar(v) for v in value) + "]")
            return
        inner = pad + "  "
        out.append("[\n")
        for i, item in enumerate(value):
            out.append(inner)
            _write_value(item, inner, out)
            out.append(",\n" if i < len(value) - 1 else "\n")
        out.append(pad + "]")
    elif isinstance(value, (dict, list)):
        out.append("{}" if isinstance(value, dict) else "[]")
    else:
        out.append(_scalar(value))


def json_form(body: bytes) -> tuple[str | None, Any]:
    """The encoding name and parsed value when `body` is JSON re-encodable byte for byte."""
    if not body or body[:1] not in (b"{", b"["):
        return None, None
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, None
    if _depth(value) > MAX_JSON_DEPTH:
        return None, None
    for name in JSON_ENCODINGS:
        if encode_json(value, name) == body:
            return name, value
    return None, None


def _depth(value: Any) -> int:
    """How deeply containers nest in `value` (iterative: bodies may be hostile)."""
    deepest = 0
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict):
            items: Iterable[Any] = item.values()
        elif isinstance(item, list):
            items = item
        else:
            continue
        deepest = max(deepest, level)
        todo.extend((v, level + 1) for v in items)
    return deepest


def encode_json(value: Any, encoding: str) -> bytes | None:
    """`value` serialised the way `encoding` names (JSON_ENCODINGS); None if impossible."""
    separators, ascii_only, escape_slash = JSON_ENCODINGS[encoding]
    try:
        text = json.dumps(value, separators=separators, ensure_ascii=ascii_only, allow_nan=False)
        if escape_slash:
            text = text.replace("/", "\\/")  # "/" only ever occurs inside strings
        return text.encode("utf-8")
    except (ValueError, UnicodeEncodeError, RecursionError):
        return None


def media_path(sha256: str, mime_type: str) -> str:
    mime = mime_type.split(";", 1)[0].strip().lower()
    return f"{MEDIA_DIR}/{sha256}{MIME_EXTENSIONS.get(mime, '')}"
