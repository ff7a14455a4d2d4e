"""Export: byte-identical round trips, exact bodies and times, safe export targets."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest

from pseudowa.proxy.cassette import seeds
from pseudowa.proxy.cassette.tape import index_exchange as index_events
from pseudowa.proxy.contract import webhooks as wh
from pseudowa.storage.errors import StoreError
from pseudowa.storage.export import CASSETTE_FILE
from pseudowa.storage.export import export_cassette
from pseudowa.storage.export import import_cassette
from pseudowa.storage.export.format import INLINE_BINARY_MAX
from pseudowa.storage.records import Exchange
from pseudowa.storage.store import CassetteStore

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = sorted(p.parent for p in (ROOT / "cassettes").glob(f"*/{CASSETTE_FILE}"))
T0 = 1764000000.123456
ACCOUNT = wh.BusinessAccount()
USER = "16505551234"


# -- helpers ---------------------------------------------------------------------------------


def tree(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` by relative path, with its bytes."""
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def webhook(body: bytes, at: float, **kw: Any) -> Exchange:
    return Exchange(
        "webhook",
        "POST",
        "http://127.0.0.1:8000/webhook",
        request_headers=[("Content-Type", "application/json")],
        request_body=body,
        response_status=200,
        started_at=at,
        finished_at=at + 0.0123,
        **kw,
    )


def message_body(text: str, n: int, *, ascii_only: bool = True) -> bytes:
    msg = wh.message("text", USER, wh.text_body(text), wamid=f"wamid.T{n}", timestamp="1764000000")
    payload = wh.inbound_webhook(ACCOUNT, msg, profile_name="Zoë Ümlaut")
    if ascii_only:
        return wh.dumps(payload)  # Meta's wire form: \uXXXX escapes
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


PNG = seeds.tiny_png(3)
BIG_BINARY = bytes(range(256)) * ((INLINE_BINARY_MAX // 256) + 2)  # not UTF-8, > inline max
BODIES: dict[str, bytes] = {
    "meta-ascii": message_body("héllo wörld ✓ 👋", 1),
    "utf8-raw": message_body("grüße 👋 \u2028 line sep", 2, ascii_only=False),
    "slash-escaped": (
        b'{"url":"https:\\/\\/lookaside.fbsbx.com\\/x?mid=1","mime_type":"image\\/png"}'
    ),
    "spaced": b'{"messaging_product": "whatsapp", "to": "16505551234"}',
    "pretty-with-newline": b'{\n  "a": 1\n}\n',
    "float-forms": b'{"a":1.0,"b":1e5,"c":-0}',
    "duplicate-keys": b'{"a":1,"a":2}',
    "lone-surrogate": b'{"a":"\\ud800x"}',
    "nan": b'{"a":NaN}',
    "deep": b"[" * 200 + b"]" * 200,
    "plain-text": "plain text, ünïcode".encode(),
    "small-binary": b"\xff\xfe\x00binary\x80",
    "big-binary": BIG_BINARY,
    "empty": b"",
    "bom": "\ufeff{}".encode(),
}


def build_cassette(store: CassetteStore, name: str = "synthetic") -> str:
    store.create_cassette(
        name,
        source="meta",
        notes="notes ü ✓\nsecond line",
        graph_api_version="v23.0",
        phone_number_ids=["106540352242922", "42"],
    )
    blob = store.put_media(PNG, "image/png")
    store.link_media(name, "1037543291543636", blob.sha256)
    store.link_media(name, "2000000000000002", blob.sha256, "image/x-other")  # same blob
    odd = store.put_media(b"\x00\x01 odd media", "application/x-unknown")
    store.link_media(name, "3000000000000003", odd.sha256)
    items: list[Exchange] = [
        Exchange(
            "webhook",
            "GET",
            "http://127.0.0.1:8000/webhook?hub.mode=subscribe&hub.verify_token=REDACTED"
            "&hub.challenge=12345",
            response_status=200,
            response_body=b"12345",
            started_at=T0,
            finished_at=T0 + 0.004,
            annotations={"label": "verify"},
        ),
    ]
    t = T0 + 0.1
    for i, (label, body) in enumerate(BODIES.items()):
        t += 0.0371 * (i + 1)
        items.append(webhook(body, t, annotations={"case": label, "z": "last", "a": "first"}))
        items.append(
            Exchange(
                "graph",
                "POST",
                "http://127.0.0.1:8080/v23.0/106540352242922/messages",
                request_headers=[("X-Note", "héllo"), ("X-Dup", "1"), ("X-Dup", "2")],
                request_body=body,
                response_status=200,
                response_body=body,
                response_headers=[("Content-Type", "application/json")],
                started_at=t + 0.001,
                finished_at=t + 0.002,
            )
        )
    items += [
        Exchange(
            "media",
            "GET",
            "http://127.0.0.1:8080/whatsapp_business/attachments/?mid=1",
            response_status=200,
            response_headers=[("Content-Length", str(len(PNG)))],
            started_at=t + 1,
            finished_at=t + 1.5,
            annotations={"media_id": "1037543291543636", "sha256": "match"},
        ),
        Exchange(
            "graph",
            "POST",
            "http://127.0.0.1:8080/v23.0/1/messages",
            error="connection reset",
            started_at=t + 2,
            finished_at=t + 2.25,
        ),
        # Started before the first exchange (negative offset), then times far from the
        # origin, where origin + offset would not give the float back: kept absolute.
        Exchange(
            "graph",
            "GET",
            "http://127.0.0.1:8080/v23.0/x",
            response_status=404,
            started_at=T0 - 0.5,
            finished_at=T0 - 0.25,
        ),
        Exchange(
            "graph",
            "GET",
            "http://127.0.0.1:8080/v23.0/y",
            response_status=200,
            started_at=1e-7,
            finished_at=1.0,
        ),
        Exchange(
            "graph",
            "GET",
            "http://127.0.0.1:8080/v23.0/w",
            response_status=200,
            started_at=1e16 + 2,
            finished_at=0.3,
        ),
        Exchange(
            "graph",
            "GET",
            "http://127.0.0.1:8080/v23.0/z",
            response_status=200,
            started_at=-0.0,
            finished_at=0.1 + 0.2,
        ),
    ]
    store.append_many(name, [(x, index_events(x)) for x in items])
    store.add_history(
        name,
        "record",
        {"mode": "new", "nested": {"b": 2, "a": [1, {"y": 1, "x": 2}]}},
        at=datetime(2025, 11, 24, 16, 0, 0, 123456, tzinfo=timezone.utc),
    )
    store.add_history(name, "mutate", {"op": "duplicate"})
    return name


def same_exchange(a: Exchange, b: Exchange) -> bool:
    """Every field equal, times as exact floats (the sign of a zero time is not kept)."""
    fields = (
        "kind",
        "method",
        "url",
        "request_headers",
        "request_body",
        "response_status",
        "response_headers",
        "response_body",
        "error",
        "annotations",
        "seq",
        "started_at",
        "finished_at",
    )
    return all(getattr(a, f) == getattr(b, f) for f in fields)


# -- round trips -------------------------------------------------------------------------------


def test_round_trip_is_byte_identical(store: CassetteStore, tmp_path: Path) -> None:
    """Export, import (replacing the original), export: the same files (SQLite and PostgreSQL)."""
    name = build_cassette(store)
    before = list(store.interactions(name))
    events_before = store.events(name)
    export_cassette(store, name, tmp_path / "one")
    info = import_cassette(store, tmp_path / "one", replace=True, index_events=index_events)
    assert info.name == name
    export_cassette(store, name, tmp_path / "two")
    assert tree(tmp_path / "one") == tree(tmp_path / "two")
    after = list(store.interactions(name))
    assert len(after) == len(before)
    assert all(same_exchange(a, b) for a, b in zip(before, after))
    assert store.events(name) == events_before
    assert store.read_media(store.media(name, "1037543291543636").sha256) == PNG
    assert store.media(name, "2000000000000002").mime_type == "image/x-other"


def test_import_into_another_store_keeps_everything(
    store: CassetteStore, fresh: Callable[[str], CassetteStore], tmp_path: Path
) -> None:
    name = build_cassette(store)
    export_cassette(store, name, tmp_path / "one")
    other = fresh("other")
    info = import_cassette(other, tmp_path / "one", index_events=index_events)
    original = store.get_cassette(name)
    assert replace(info, event_count=0) == replace(original, event_count=0)
    assert info.event_count == original.event_count > 0
    assert all(
        same_exchange(a, b)
        for a, b in zip(store.interactions(name), other.interactions(name), strict=True)
    )
    assert other.list_media(name) == store.list_media(name)
    # The history comes along with its times; the import itself is noted last (not exported).
    history = other.history(name)
    assert [h.operation for h in history] == ["record", "mutate", "import"]
    assert history[:2] == store.history(name)
    assert history[2].arguments["from"] == str(tmp_path / "one")
    export_cassette(other, name, tmp_path / "two")
    assert tree(tmp_path / "one") == tree(tmp_path / "two")


def test_bodies_are_embedded_readably_and_exactly(store: CassetteStore, tmp_path: Path) -> None:
    name = build_cassette(store)
    doc = json.loads((export_cassette(store, name, tmp_path / "out")).read_bytes())
    by_case = {
        x["annotations"]["case"]: x["request"]["body"]
        for x in doc["interactions"]
        if "case" in x["annotations"]
    }
    assert by_case["meta-ascii"]["encoding"] == "compact-ascii"
    msg = by_case["meta-ascii"]["json"]["entry"][0]["changes"][0]["value"]["messages"][0]
    assert msg["text"]["body"] == "héllo wörld ✓ 👋"  # readable, not \u-escaped
    assert by_case["utf8-raw"]["encoding"] == "compact-utf8"
    assert by_case["slash-escaped"]["encoding"] == "compact-ascii-slash"
    assert by_case["spaced"]["encoding"] == "spaced-ascii"
    assert by_case["lone-surrogate"]["encoding"] == "compact-ascii"
    for case in (
        "pretty-with-newline",
        "float-forms",
        "duplicate-keys",
        "nan",
        "deep",
        "plain-text",
        "empty",
        "bom",
    ):
        assert set(by_case[case]) == {"text"}, case
    assert by_case["empty"] == {"text": ""}
    assert base64.b64decode(by_case["small-binary"]["base64"]) == BODIES["small-binary"]
    big = by_case["big-binary"]
    sha = hashlib.sha256(BIG_BINARY).hexdigest()
    assert big == {"file": f"bodies/{sha}", "size": len(BIG_BINARY)}
    assert (tmp_path / "out" / big["file"]).read_bytes() == BIG_BINARY
    # The file: UTF-8, key-sorted at our levels, indent 2, trailing newline, strict JSON.
    raw = (tmp_path / "out" / CASSETTE_FILE).read_bytes()
    json.loads(raw.decode("utf-8"), parse_constant=lambda c: pytest.fail(f"{c} in the file"))
    assert raw.endswith(b"}\n")
    assert list(doc) == sorted(doc)
    assert all(list(x) == sorted(x) for x in doc["interactions"])
    assert doc["cassette"]["phone_number_ids"] == ["106540352242922", "42"]
    assert '  "format_version": 1,\n' in raw.decode()
    # Media: one file per blob, named by sha256 with an extension from the mime type.
    files = sorted(p.name for p in (tmp_path / "out" / "media").iterdir())
    png_sha = hashlib.sha256(PNG).hexdigest()
    odd_sha = hashlib.sha256(b"\x00\x01 odd media").hexdigest()
    assert files == sorted([f"{png_sha}.png", odd_sha])
    assert [m["media_id"] for m in doc["media"]] == sorted(m["media_id"] for m in doc["media"])


def test_times_round_trip_exactly(store: CassetteStore, tmp_path: Path) -> None:
    name = build_cassette(store)
    doc = json.loads(export_cassette(store, name, tmp_path / "out").read_bytes())
    assert doc["time_origin"] == T0
    first = doc["interactions"][0]
    assert first["offset_s"] == 0.0 and "started_at" not in first
    far = [x for x in doc["interactions"] if x["url"].endswith("/y")][0]
    assert far["started_at"] == 1e-7 and "finished_at" not in far
    late = [x for x in doc["interactions"] if x["url"].endswith("/w")][0]
    assert late["finished_at"] == 0.3
    negative = [x for x in doc["interactions"] if x["url"].endswith("/x")][0]
    assert negative["offset_s"] == -0.5 and "started_at" not in negative


def test_empty_cassette_round_trips(fresh: Callable[[str], CassetteStore], tmp_path: Path) -> None:
    a = fresh("a")
    a.create_cassette("empty")
    export_cassette(a, "empty", tmp_path / "one")
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == [CASSETTE_FILE]
    doc = json.loads((tmp_path / "one" / CASSETTE_FILE).read_bytes())
    assert doc["interactions"] == [] and doc["time_origin"] is None and doc["media"] == []
    b = fresh("b")
    assert import_cassette(b, tmp_path / "one").interaction_count == 0
    export_cassette(b, "empty", tmp_path / "two")
    assert tree(tmp_path / "one") == tree(tmp_path / "two")


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_every_sample_round_trips(
    sample: Path, fresh: Callable[[str], CassetteStore], tmp_path: Path
) -> None:
    store = fresh("samples")
    info = import_cassette(store, sample, index_events=index_events)
    assert info.name == sample.name and info.event_count > 0
    export_cassette(store, info.name, tmp_path / sample.name)
    assert tree(tmp_path / sample.name) == tree(sample)


def test_samples_exist() -> None:
    assert [p.name for p in SAMPLES] == ["failed-send", "image-round-trip", "text-button"]


# -- export targets -------------------------------------------------------------------------


def test_export_over_an_earlier_export_removes_stale_files(
    fresh: Callable[[str], CassetteStore], tmp_path: Path
) -> None:
    store = fresh("s")
    seeds.image_seed(store, "one")
    seeds.image_seed(store, "two", image=seeds.tiny_png(9))
    out = tmp_path / "out"
    export_cassette(store, "one", out)
    (out / "notes.md").write_text("mine")  # not ours: kept
    export_cassette(store, "two", out)
    [media] = list((out / "media").iterdir())
    assert media.name == hashlib.sha256(seeds.tiny_png(9)).hexdigest() + ".png"
    assert (out / "notes.md").read_text() == "mine"
    assert not list(out.glob(".*.tmp"))


def test_export_refuses_a_foreign_directory(
    fresh: Callable[[str], CassetteStore], tmp_path: Path
) -> None:
    store = fresh("s")
    seeds.image_seed(store, "one")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep")
    with pytest.raises(StoreError, match="not empty and holds no cassette.json"):
        export_cassette(store, "one", foreign)
    assert [p.name for p in foreign.iterdir()] == ["precious.txt"]
    (foreign / CASSETTE_FILE).write_text('{"something": "else"}')
    with pytest.raises(StoreError, match="not a pseudowa cassette export"):
        export_cassette(store, "one", foreign)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        export_cassette(store, "one", a_file)
    with pytest.raises(StoreError, match="no cassette named"):
        export_cassette(store, "nope", tmp_path / "new")


def test_failed_export_leaves_no_half_written_directory(
    fresh: Callable[[str], CassetteStore], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = fresh("s")
    seeds.image_seed(store, "img")

    def damaged(_sha: str) -> Any:
        yield b"not the bytes"

    monkeypatch.setattr(store, "media_chunks", damaged)
    with pytest.raises(StoreError, match="is damaged in the store"):
        export_cassette(store, "img", tmp_path / "new" / "img")
    assert not (tmp_path / "new" / "img").exists()
    monkeypatch.undo()
    export_cassette(store, "img", tmp_path / "new" / "img")  # a retry is not blocked
    assert (tmp_path / "new" / "img" / CASSETTE_FILE).is_file()
