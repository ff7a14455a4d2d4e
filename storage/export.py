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
`seq` is shown for reference (`cassette show` numbers) and ignored on import: exchanges
are renumbered from 0 in file order.

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

import base64
import binascii
import hashlib
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any

from .errors import CassetteExists
from .errors import StoreError
from .records import CassetteInfo
from .records import EventLike
from .records import Exchange
from .records import HistoryEntry
from .records import Kind
from .records import MediaLinkInfo
from .store import CassetteStore
from .store import validate_name

FORMAT = "pseudowa-cassette"
FORMAT_VERSION = 1
CASSETTE_FILE = "cassette.json"
MEDIA_DIR = "media"
BODIES_DIR = "bodies"
INLINE_BINARY_MAX = 4096  # binary bodies up to this size stay in cassette.json as base64
MAX_JSON_DEPTH = 64  # deeper JSON bodies are kept as text (the file writer recurses)
IMPORT_OPERATION = "import"  # history entries of this operation are not exported

IndexEvents = Callable[[Exchange], Sequence[EventLike]]

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

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_MEDIA_FILE_RE = re.compile(rf"^{MEDIA_DIR}/([0-9a-f]{{64}})(\.[a-z0-9]{{1,8}})?$")
_BODY_FILE_RE = re.compile(rf"^{BODIES_DIR}/([0-9a-f]{{64}})$")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_CHUNK = 1 << 20


# -- export ------------------------------------------------------------------------------


def export_cassette(store: CassetteStore, name: str, directory: Path) -> Path:
    """Write cassette `name` into `directory` (created if missing); returns cassette.json's path.

    The directory must be new, empty, or an earlier export (which is then replaced:
    media and body files it no longer needs are removed). Anything else is refused.
    """
    directory = Path(directory)
    _check_export_target(directory)
    info = store.get_cassette(name)
    history = [h for h in store.history(name) if h.operation != IMPORT_OPERATION]
    links = store.list_media(name)
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        media, media_files = _export_media(store, directory, links)
        interactions, body_files = _export_interactions(store, name, directory)
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "cassette": _obj(
                name=info.name,
                created_at=_iso(info.created_at),
                source=info.source,
                notes=info.notes,
                graph_api_version=info.graph_api_version,
                phone_number_ids=list(info.phone_number_ids),
            ),
            "history": [_history_doc(h) for h in history],
            "media": media,
            **interactions,
        }
        target = directory / CASSETTE_FILE
        _write_atomic(target, dumps_document(dict(sorted(doc.items()))))
        _remove_stale(directory / MEDIA_DIR, _MEDIA_FILE_RE, MEDIA_DIR, media_files)
        _remove_stale(directory / BODIES_DIR, _BODY_FILE_RE, BODIES_DIR, body_files)
    except BaseException as e:
        if created:  # a half-written export would block the next attempt: remove it
            shutil.rmtree(directory, ignore_errors=True)
        if isinstance(e, OSError):
            raise StoreError(f"cannot export to {directory}: {e.strerror or e}") from e
        raise
    return target


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


def _check_export_target(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise StoreError(f"{directory} exists and is not a directory")
    if not directory.is_dir():
        return
    marker = directory / CASSETTE_FILE
    try:
        entries = [p.name for p in directory.iterdir()]
    except OSError as e:
        raise StoreError(f"cannot read {directory}: {e.strerror or e}") from e
    if not entries:
        return
    if not marker.is_file():
        raise StoreError(
            f"{directory} is not empty and holds no {CASSETTE_FILE}: export into a new or "
            "empty directory, or over an earlier export; pseudowa left it untouched"
        )
    try:
        existing = json.loads(marker.read_bytes())
    except (OSError, ValueError, RecursionError):
        existing = None
    if not isinstance(existing, dict) or existing.get("format") != FORMAT:
        raise StoreError(
            f"{marker} is not a pseudowa cassette export; pseudowa left {directory} untouched"
        )


def _export_media(
    store: CassetteStore, directory: Path, links: Sequence[MediaLinkInfo]
) -> tuple[list[dict[str, Any]], set[str]]:
    """Media link entries (by media id) and the files written, one per blob."""
    files: dict[str, str] = {}  # sha256 -> relative path; named after its first link's mime
    entries = []
    for link in links:  # ordered by media id
        rel = files.get(link.sha256)
        if rel is None:
            rel = files[link.sha256] = _media_path(link.sha256, link.mime_type)
            (directory / MEDIA_DIR).mkdir(exist_ok=True)
            _write_blob(store, link.sha256, directory / rel)
        entries.append(
            _obj(
                media_id=link.media_id,
                sha256=link.sha256,
                mime_type=link.mime_type,
                size=link.size,
                file=rel,
            )
        )
    return entries, set(files.values())


def _media_path(sha256: str, mime_type: str) -> str:
    mime = mime_type.split(";", 1)[0].strip().lower()
    return f"{MEDIA_DIR}/{sha256}{MIME_EXTENSIONS.get(mime, '')}"


def _write_blob(store: CassetteStore, sha256: str, path: Path) -> None:
    digest = hashlib.sha256()
    with _atomic(path) as fh:
        for chunk in store.media_chunks(sha256):
            digest.update(chunk)
            fh.write(chunk)
        if digest.hexdigest() != sha256:
            raise StoreError(f"media blob {sha256} is damaged in the store: its bytes hash to "
                             f"{digest.hexdigest()}")


def _export_interactions(
    store: CassetteStore, name: str, directory: Path
) -> tuple[dict[str, Any], set[str]]:
    out: list[dict[str, Any]] = []
    body_files: set[str] = set()
    origin: float | None = None
    for x in store.interactions(name):
        if origin is None:
            origin = _finite(x.started_at, x.seq, "start")
        out.append(_interaction_doc(x, origin, directory, body_files))
    return {"time_origin": origin, "interactions": out}, body_files


def _interaction_doc(
    x: Exchange, origin: float, directory: Path, body_files: set[str]
) -> dict[str, Any]:
    started = _finite(x.started_at, x.seq, "start")
    finished = _finite(x.finished_at, x.seq, "end")
    offset = started - origin
    duration = finished - started
    doc: dict[str, Any] = {
        "seq": x.seq,
        "kind": str(x.kind),
        "method": x.method,
        "url": x.url,
        "offset_s": offset,
        "duration_s": duration,
        "request": _obj(
            headers=[[k, v] for k, v in x.request_headers],
            body=_body_doc(x.request_body, directory, body_files),
        ),
        "response": _obj(
            status=x.response_status,
            headers=[[k, v] for k, v in x.response_headers],
            body=_body_doc(x.response_body, directory, body_files),
        ),
        "error": x.error,
        "annotations": _sorted(dict(x.annotations)),
    }
    # Exact float round trip: the absolute times ride along when the sum would not give
    # them back (times far apart, or not finite-precision friendly).
    if not _same_float(origin + offset, started):
        doc["started_at"] = started
    if not _same_float(started + duration, finished):
        doc["finished_at"] = finished
    return dict(sorted(doc.items()))


def _finite(value: float, seq: int, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise StoreError(f"exchange #{seq} has a {what} time that is not a finite number")
    # -0.0 becomes 0.0: SQLite cannot keep the sign, so exports from both backends agree.
    return value + 0.0


def _same_float(a: float, b: float) -> bool:
    return a.hex() == b.hex()  # tells -0.0 from 0.0, unlike ==


def _body_doc(body: bytes, directory: Path, body_files: set[str]) -> dict[str, Any]:
    encoding, value = _json_form(body)
    if encoding is not None:
        return {"encoding": encoding, "json": value}
    try:
        return {"text": body.decode("utf-8")}
    except UnicodeDecodeError:
        pass
    if len(body) <= INLINE_BINARY_MAX:
        return {"base64": base64.b64encode(body).decode("ascii")}
    sha = hashlib.sha256(body).hexdigest()
    rel = f"{BODIES_DIR}/{sha}"
    if rel not in body_files:
        (directory / BODIES_DIR).mkdir(exist_ok=True)
        with _atomic(directory / rel) as fh:
            fh.write(body)
        body_files.add(rel)
    return {"file": rel, "size": len(body)}


def _json_form(body: bytes) -> tuple[str | None, Any]:
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


def _history_doc(h: HistoryEntry) -> dict[str, Any]:
    return _obj(at=_iso(h.at), operation=h.operation, arguments=_sorted(h.arguments))


def _iso(dt: datetime) -> str:
    aware = dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    return aware.astimezone(timezone.utc).isoformat()


def _obj(**fields: Any) -> dict[str, Any]:
    return dict(sorted(fields.items()))


def _sorted(value: Any) -> Any:
    """Free-form JSON (annotations, history arguments) with keys sorted at every level."""
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


class _atomic:
    """A file written under a temporary name and renamed into place when complete."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Not mkstemp: its files are private (0600); exports get the umask's permissions.
        self.tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
        self.fh = self.tmp.open("xb")

    def __enter__(self) -> Any:
        return self.fh

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.fh.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _write_atomic(path: Path, data: bytes) -> None:
    with _atomic(path) as fh:
        fh.write(data)


def _remove_stale(folder: Path, pattern: re.Pattern[str], prefix: str, keep: set[str]) -> None:
    """Files an earlier export left that this one does not use (only names we produce)."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        rel = f"{prefix}/{path.name}"
        if rel not in keep and pattern.match(rel) and path.is_file():
            path.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()


# -- import ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Media:
    media_id: str
    sha256: str
    mime_type: str
    size: int
    path: Path


@dataclass(frozen=True)
class _Document:
    name: str
    source: str
    notes: str
    graph_api_version: str | None
    phone_number_ids: list[str]
    created_at: datetime
    history: list[HistoryEntry]
    media: list[_Media]
    exchanges: list[Exchange]


def import_cassette(
    store: CassetteStore,
    directory: Path,
    name: str | None = None,
    *,
    replace: bool = False,
    index_events: IndexEvents | None = None,
) -> CassetteInfo:
    """Import an exported cassette from `directory` as `name` (default: the exported name).

    Everything is validated before the store is touched (format version, every field,
    every media file's sha256 against its name and the link). An existing cassette of
    that name is refused unless `replace`; then it is swapped only once the import is
    complete. `index_events` re-derives each exchange's events (see the module doc).
    Problems raise `StoreError` with one line naming the file and the field.
    """
    doc = read_export(Path(directory))
    target = validate_name(name or doc.name)
    if store.exists(target) and not replace:
        raise CassetteExists(target)
    staging = f"import-{uuid.uuid4().hex}"
    store.create_cassette(
        staging,
        source=doc.source,
        notes=doc.notes,
        graph_api_version=doc.graph_api_version,
        phone_number_ids=doc.phone_number_ids,
        created_at=doc.created_at,
    )
    try:
        for media in doc.media:
            blob = store.put_media(media.path, media.mime_type)
            if blob.sha256 != media.sha256:  # the file changed since it was checked
                raise StoreError(f"{media.path} changed while it was imported")
            store.link_media(staging, media.media_id, media.sha256, media.mime_type)
        store.append_many(staging, _with_events(doc.exchanges, index_events))
        for h in doc.history:
            store.add_history(staging, h.operation, dict(h.arguments), at=h.at)
        store.add_history(
            staging,
            IMPORT_OPERATION,
            {"from": str(directory), "format_version": FORMAT_VERSION, "name": doc.name},
        )
        if replace and store.exists(target):
            store.delete_cassette(target)
        store.rename_cassette(staging, target)
    except BaseException:
        try:
            store.delete_cassette(staging)
        except StoreError:
            pass
        raise
    return store.get_cassette(target)


def _with_events(
    exchanges: Iterable[Exchange], index_events: IndexEvents | None
) -> Iterator[tuple[Exchange, Sequence[EventLike]]]:
    for x in exchanges:
        yield x, (list(index_events(x)) if index_events is not None else [])


def read_export(directory: Path) -> _Document:
    """Parse and validate an export directory without touching any store."""
    path = directory / CASSETTE_FILE
    if not directory.is_dir():
        raise StoreError(f"{directory} is not a directory (expected an exported cassette)")
    if not path.is_file():
        raise StoreError(f"{directory} holds no {CASSETTE_FILE}: not an exported cassette")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise StoreError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as e:
        raise StoreError(f"{path} is not UTF-8 text (byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise StoreError(f"{path} is not valid JSON: {e.msg} at line {e.lineno} "
                         f"column {e.colno}") from e
    except (ValueError, RecursionError) as e:
        raise StoreError(f"{path} is not valid JSON: {e}") from e
    return _Parser(path, directory).document(data)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class _Invalid(Exception):
    """A field of cassette.json that does not hold what the format says."""


class _Parser:
    """Turns the loaded JSON into records, naming the field of the first problem."""

    def __init__(self, path: Path, directory: Path) -> None:
        self.path = path
        self.directory = directory
        self._checked: dict[Path, tuple[str, int]] = {}

    def document(self, data: Any) -> _Document:
        try:
            return self._document(data)
        except _Invalid as e:
            raise StoreError(f"{self.path}: {e}") from None

    # -- typed accessors: each raises _Invalid naming `where` ---------------------------

    @staticmethod
    def _dict(value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _Invalid(f"{where}: expected an object, got {_type(value)}")
        return value

    @staticmethod
    def _list(value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise _Invalid(f"{where}: expected an array, got {_type(value)}")
        return value

    @staticmethod
    def _str(value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise _Invalid(f"{where}: expected a string, got {_type(value)}")
        return value

    def _opt_str(self, value: Any, where: str) -> str | None:
        return None if value is None else self._str(value, where)

    @staticmethod
    def _int(value: Any, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Invalid(f"{where}: expected an integer, got {_type(value)}")
        return value

    def _opt_int(self, value: Any, where: str) -> int | None:
        return None if value is None else self._int(value, where)

    @staticmethod
    def _float(value: Any, where: str) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _Invalid(f"{where}: expected a number, got {_type(value)}")
        return float(value)

    @staticmethod
    def _field(obj: dict[str, Any], key: str, where: str) -> Any:
        if key not in obj:
            raise _Invalid(f"{where}: missing {key!r}")
        return obj[key]

    def _when(self, value: Any, where: str) -> datetime:
        text = self._str(value, where)
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise _Invalid(f"{where}: {text!r} is not an ISO 8601 date and time") from None
        return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)

    # -- the document ----------------------------------------------------------------------

    def _document(self, data: Any) -> _Document:
        top = self._dict(data, "document")
        if top.get("format") != FORMAT:
            raise _Invalid(f"not a pseudowa cassette export (format is {top.get('format')!r}, "
                           f"expected {FORMAT!r})")
        version = top.get("format_version")
        if version != FORMAT_VERSION:
            if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
                raise _Invalid(f"format version {version} is newer than this pseudowa reads "
                               f"({FORMAT_VERSION}); upgrade pseudowa")
            raise _Invalid(f"unsupported format version {version!r} (this pseudowa reads "
                           f"{FORMAT_VERSION})")
        meta = self._dict(self._field(top, "cassette", "document"), "cassette")
        name = self._str(self._field(meta, "name", "cassette"), "cassette.name")
        try:
            validate_name(name)
        except StoreError as e:
            raise _Invalid(f"cassette.name: {e}") from None
        ids = self._list(meta.get("phone_number_ids", []), "cassette.phone_number_ids")
        history = [
            self._history(item, f"history[{i}]")
            for i, item in enumerate(self._list(top.get("history", []), "history"))
        ]
        media = [
            self._media(item, f"media[{i}]")
            for i, item in enumerate(self._list(top.get("media", []), "media"))
        ]
        items = self._list(self._field(top, "interactions", "document"), "interactions")
        origin: float = 0.0
        if items:
            origin = self._float(self._field(top, "time_origin", "document"), "time_origin")
        exchanges = [self._exchange(item, i, origin) for i, item in enumerate(items)]
        return _Document(
            name=name,
            source=self._str(self._field(meta, "source", "cassette"), "cassette.source"),
            notes=self._str(meta.get("notes", ""), "cassette.notes"),
            graph_api_version=self._opt_str(
                meta.get("graph_api_version"), "cassette.graph_api_version"
            ),
            phone_number_ids=[
                self._str(v, f"cassette.phone_number_ids[{i}]") for i, v in enumerate(ids)
            ],
            created_at=self._when(self._field(meta, "created_at", "cassette"),
                                  "cassette.created_at"),
            history=history,
            media=media,
            exchanges=exchanges,
        )

    def _history(self, item: Any, where: str) -> HistoryEntry:
        obj = self._dict(item, where)
        return HistoryEntry(
            at=self._when(self._field(obj, "at", where), f"{where}.at"),
            operation=self._str(self._field(obj, "operation", where), f"{where}.operation"),
            arguments=self._dict(obj.get("arguments", {}), f"{where}.arguments"),
        )

    def _media(self, item: Any, where: str) -> _Media:
        obj = self._dict(item, where)
        sha = self._str(self._field(obj, "sha256", where), f"{where}.sha256")
        if not _SHA_RE.match(sha):
            raise _Invalid(f"{where}.sha256: {sha!r} is not a lowercase hex sha256")
        rel = self._str(self._field(obj, "file", where), f"{where}.file")
        match = _MEDIA_FILE_RE.match(rel)
        if match is None:
            raise _Invalid(f"{where}.file: {rel!r} is not of the form "
                           f"{MEDIA_DIR}/<sha256>[.ext]")
        if match.group(1) != sha:
            raise _Invalid(f"{where}.file: {rel!r} does not name sha256 {sha}")
        size = self._int(self._field(obj, "size", where), f"{where}.size")
        path = self.directory / rel
        actual_sha, actual_size = self._hash_file(path, f"{where}.file")
        if actual_sha != sha:
            raise _Invalid(f"{where}.file: the bytes of {rel} hash to {actual_sha}, "
                           "not the sha256 it is named after")
        if actual_size != size:
            raise _Invalid(f"{where}.size: {rel} has {actual_size} bytes, not {size}")
        return _Media(
            media_id=self._str(self._field(obj, "media_id", where), f"{where}.media_id"),
            sha256=sha,
            mime_type=self._str(self._field(obj, "mime_type", where), f"{where}.mime_type"),
            size=size,
            path=path,
        )

    def _hash_file(self, path: Path, where: str) -> tuple[str, int]:
        if path in self._checked:
            return self._checked[path]
        if not path.is_file():
            raise _Invalid(f"{where}: {path.relative_to(self.directory)} is missing")
        digest = hashlib.sha256()
        size = 0
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
        except OSError as e:
            raise _Invalid(f"{where}: cannot read {path.name}: {e.strerror or e}") from None
        self._checked[path] = (digest.hexdigest(), size)
        return self._checked[path]

    def _exchange(self, item: Any, index: int, origin: float) -> Exchange:
        where = f"interactions[{index}]"
        obj = self._dict(item, where)
        kind = self._str(self._field(obj, "kind", where), f"{where}.kind")
        if kind not in {k.value for k in Kind}:
            raise _Invalid(f"{where}.kind: {kind!r} is not one of "
                           f"{', '.join(k.value for k in Kind)}")
        offset = self._float(self._field(obj, "offset_s", where), f"{where}.offset_s")
        duration = self._float(self._field(obj, "duration_s", where), f"{where}.duration_s")
        started = origin + offset
        if "started_at" in obj:
            started = self._float(obj["started_at"], f"{where}.started_at")
        finished = started + duration
        if "finished_at" in obj:
            finished = self._float(obj["finished_at"], f"{where}.finished_at")
        request = self._dict(self._field(obj, "request", where), f"{where}.request")
        response = self._dict(self._field(obj, "response", where), f"{where}.response")
        annotations = self._dict(obj.get("annotations", {}), f"{where}.annotations")
        return Exchange(
            kind=kind,
            method=self._str(self._field(obj, "method", where), f"{where}.method"),
            url=self._str(self._field(obj, "url", where), f"{where}.url"),
            request_headers=self._headers(request.get("headers", []), f"{where}.request.headers"),
            request_body=self._body(request.get("body"), f"{where}.request.body"),
            response_status=self._opt_int(response.get("status"), f"{where}.response.status"),
            response_headers=self._headers(
                response.get("headers", []), f"{where}.response.headers"
            ),
            response_body=self._body(response.get("body"), f"{where}.response.body"),
            error=self._opt_str(obj.get("error"), f"{where}.error"),
            started_at=started,
            finished_at=finished,
            annotations=annotations,
        )

    def _headers(self, value: Any, where: str) -> list[tuple[str, str]]:
        out = []
        for i, pair in enumerate(self._list(value, where)):
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(isinstance(p, str) for p in pair)
            ):
                raise _Invalid(f"{where}[{i}]: expected a [name, value] pair of strings")
            out.append((pair[0], pair[1]))
        return out

    def _body(self, value: Any, where: str) -> bytes:
        if value is None:
            return b""
        obj = self._dict(value, where)
        forms = [k for k in ("json", "text", "base64", "file") if k in obj]
        if len(forms) != 1:
            raise _Invalid(f"{where}: expected exactly one of json, text, base64, file")
        form = forms[0]
        if form == "json":
            encoding = self._str(self._field(obj, "encoding", where), f"{where}.encoding")
            if encoding not in JSON_ENCODINGS:
                raise _Invalid(f"{where}.encoding: unknown JSON encoding {encoding!r}")
            encoded = encode_json(obj["json"], encoding)
            if encoded is None:
                raise _Invalid(f"{where}.json: cannot be encoded as {encoding}")
            return encoded
        if form == "text":
            try:
                return self._str(obj["text"], f"{where}.text").encode("utf-8")
            except UnicodeEncodeError:
                raise _Invalid(f"{where}.text: holds a lone surrogate (not UTF-8 text)") from None
        if form == "base64":
            text = self._str(obj["base64"], f"{where}.base64")
            try:
                return base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise _Invalid(f"{where}.base64: not valid base64") from None
        rel = self._str(obj["file"], f"{where}.file")
        match = _BODY_FILE_RE.match(rel)
        if match is None:
            raise _Invalid(f"{where}.file: {rel!r} is not of the form {BODIES_DIR}/<sha256>")
        path = self.directory / rel
        sha, size = self._hash_file(path, f"{where}.file")
        if sha != match.group(1):
            raise _Invalid(f"{where}.file: the bytes of {rel} hash to {sha}, "
                           "not the sha256 it is named after")
        if "size" in obj and self._int(obj["size"], f"{where}.size") != size:
            raise _Invalid(f"{where}.size: {rel} has {size} bytes, not {obj['size']}")
        try:
            return path.read_bytes()
        except OSError as e:
            raise _Invalid(f"{where}.file: cannot read {rel}: {e.strerror or e}") from None


def _type(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)
