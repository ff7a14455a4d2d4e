"""Reading an export: `cassette.json` parsed and every field and file checked, no store touched."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..records import Exchange
from ..records import HistoryEntry
from ..records import Kind
from ..store import validate_name
from .format import BODIES_DIR
from .format import BODY_FILE_RE
from .format import CASSETTE_FILE
from .format import FORMAT
from .format import FORMAT_VERSION
from .format import JSON_ENCODINGS
from .format import MEDIA_DIR
from .format import MEDIA_FILE_RE
from .format import SHA_RE
from .format import encode_json

_CHUNK = 1 << 20
# The keys each body form may hold; anything else is refused, not ignored.
_BODY_KEYS = {
    "json": {"json", "encoding"},
    "text": {"text"},
    "base64": {"base64"},
    "file": {"file", "size"},
}


@dataclass(frozen=True)
class ExportMedia:
    """A media link of an export, its file checked against its sha256 and size."""

    media_id: str
    sha256: str
    mime_type: str
    size: int
    path: Path


@dataclass(frozen=True)
class ExportDocument:
    """An export as read: the cassette's metadata, history, media and exchanges."""

    name: str
    source: str
    notes: str
    graph_api_version: str | None
    phone_number_ids: list[str]
    created_at: datetime
    history: list[HistoryEntry]
    media: list[ExportMedia]
    exchanges: list[Exchange]


def is_export_dir(path: str) -> bool:
    """True when `path` names a directory holding an exported cassette."""
    return (Path(path) / CASSETTE_FILE).is_file()


def read_export(directory: Path) -> ExportDocument:
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
        raise StoreError(
            f"{path} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from e
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

    def document(self, data: Any) -> ExportDocument:
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

    def _document(self, data: Any) -> ExportDocument:
        top = self._dict(data, "document")
        if top.get("format") != FORMAT:
            raise _Invalid(
                f"not a pseudowa cassette export (format is {top.get('format')!r}, "
                f"expected {FORMAT!r})"
            )
        version = top.get("format_version")
        if version != FORMAT_VERSION:
            if (
                isinstance(version, int)
                and not isinstance(version, bool)
                and version > FORMAT_VERSION
            ):
                raise _Invalid(
                    f"format version {version} is newer than this pseudowa reads "
                    f"({FORMAT_VERSION}); upgrade pseudowa"
                )
            raise _Invalid(
                f"unsupported format version {version!r} (this pseudowa reads {FORMAT_VERSION})"
            )
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
        self._check_seqs(items)
        return ExportDocument(
            name=name,
            source=self._str(self._field(meta, "source", "cassette"), "cassette.source"),
            notes=self._str(meta.get("notes", ""), "cassette.notes"),
            graph_api_version=self._opt_str(
                meta.get("graph_api_version"), "cassette.graph_api_version"
            ),
            phone_number_ids=[
                self._str(v, f"cassette.phone_number_ids[{i}]") for i, v in enumerate(ids)
            ],
            created_at=self._when(
                self._field(meta, "created_at", "cassette"), "cassette.created_at"
            ),
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

    def _media(self, item: Any, where: str) -> ExportMedia:
        obj = self._dict(item, where)
        sha = self._str(self._field(obj, "sha256", where), f"{where}.sha256")
        if not SHA_RE.match(sha):
            raise _Invalid(f"{where}.sha256: {sha!r} is not a lowercase hex sha256")
        rel = self._str(self._field(obj, "file", where), f"{where}.file")
        match = MEDIA_FILE_RE.match(rel)
        if match is None:
            raise _Invalid(f"{where}.file: {rel!r} is not of the form {MEDIA_DIR}/<sha256>[.ext]")
        if match.group(1) != sha:
            raise _Invalid(f"{where}.file: {rel!r} does not name sha256 {sha}")
        size = self._int(self._field(obj, "size", where), f"{where}.size")
        path = self.directory / rel
        actual_sha, actual_size = self._hash_file(path, f"{where}.file")
        if actual_sha != sha:
            raise _Invalid(
                f"{where}.file: the bytes of {rel} hash to {actual_sha}, "
                "not the sha256 it is named after"
            )
        if actual_size != size:
            raise _Invalid(f"{where}.size: {rel} has {actual_size} bytes, not {size}")
        return ExportMedia(
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
            raise _Invalid(
                f"{where}.kind: {kind!r} is not one of {', '.join(k.value for k in Kind)}"
            )
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

    def _check_seqs(self, items: list[Any]) -> None:
        """`seq` is only shown for reference, but a wrong one means an edited file: refuse
        it rather than renumber silently."""
        first: dict[int, int] = {}
        for i, item in enumerate(items):
            if "seq" not in item:
                continue
            seq = self._int(item["seq"], f"interactions[{i}].seq")
            if seq in first:
                raise _Invalid(
                    f"interactions[{i}].seq: {seq} is already the seq of interactions[{first[seq]}]"
                )
            first[seq] = i

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
        for key in obj:
            if key not in _BODY_KEYS[form]:
                if key == "encoding":
                    # Without this a text body's encoding was ignored: the bytes would
                    # silently differ from what the editor meant.
                    raise _Invalid(f"{where}.encoding: only a json body has an encoding")
                raise _Invalid(f"{where}: unknown key {key!r} in a {form} body")
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
        match = BODY_FILE_RE.match(rel)
        if match is None:
            raise _Invalid(f"{where}.file: {rel!r} is not of the form {BODIES_DIR}/<sha256>")
        path = self.directory / rel
        sha, size = self._hash_file(path, f"{where}.file")
        if sha != match.group(1):
            raise _Invalid(
                f"{where}.file: the bytes of {rel} hash to {sha}, not the sha256 it is named after"
            )
        if "size" in obj and self._int(obj["size"], f"{where}.size") != size:
            raise _Invalid(f"{where}.size: {rel} has {size} bytes, not {obj['size']}")
        try:
            return path.read_bytes()
        except OSError as e:
            raise _Invalid(f"{where}.file: cannot read {rel}: {e.strerror or e}") from None


def _type(value: Any) -> str:
    if value is None:
        return "null"
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)
