"""Export: a cassette of the store written as files (the format is in `format.py`)."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..records import Exchange
from ..records import HistoryEntry
from ..records import MediaLinkInfo
from ..store import CassetteStore
from .format import BODIES_DIR
from .format import BODY_FILE_RE
from .format import CASSETTE_FILE
from .format import FORMAT
from .format import FORMAT_VERSION
from .format import IMPORT_OPERATION
from .format import INLINE_BINARY_MAX
from .format import MEDIA_DIR
from .format import MEDIA_FILE_RE
from .format import dumps_document
from .format import json_form
from .format import media_path


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
        _remove_stale(directory / MEDIA_DIR, MEDIA_FILE_RE, MEDIA_DIR, media_files)
        _remove_stale(directory / BODIES_DIR, BODY_FILE_RE, BODIES_DIR, body_files)
    except BaseException as e:
        if created:  # a half-written export would block the next attempt: remove it
            shutil.rmtree(directory, ignore_errors=True)
        if isinstance(e, OSError):
            raise StoreError(f"cannot export to {directory}: {e.strerror or e}") from e
        raise
    return target


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
            rel = files[link.sha256] = media_path(link.sha256, link.mime_type)
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


def _write_blob(store: CassetteStore, sha256: str, path: Path) -> None:
    digest = hashlib.sha256()
    with _atomic(path) as fh:
        for chunk in store.media_chunks(sha256):
            digest.update(chunk)
            fh.write(chunk)
        if digest.hexdigest() != sha256:
            raise StoreError(
                f"media blob {sha256} is damaged in the store: its bytes hash to "
                f"{digest.hexdigest()}"
            )


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
    encoding, value = json_form(body)
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
