"""CassetteStore API, on SQLite and PostgreSQL (see the `store` fixture)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import random
import time
from collections.abc import Iterator
from datetime import datetime
from datetime import timezone
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy import select

from pseudowa.storage import models as m
from pseudowa.storage.errors import CassetteExists
from pseudowa.storage.errors import CassetteNotFound
from pseudowa.storage.errors import MediaNotFound
from pseudowa.storage.errors import StoreError
from pseudowa.storage.records import EventData
from pseudowa.storage.records import Exchange
from pseudowa.storage.records import Kind
from pseudowa.storage.store import CHUNK_SIZE
from pseudowa.storage.store import CassetteStore

T0 = 1_700_000_000.123456  # a wall-clock time with sub-second digits to keep


def exchange(i: int, kind: Kind | str = Kind.GRAPH, **fields: object) -> Exchange:
    """A realistic exchange numbered `i`; `fields` override any attribute."""
    values: dict[str, object] = dict(
        kind=kind,
        method="POST",
        url=f"https://graph.facebook.com/v21.0/1234567890/messages?i={i}",
        request_headers=[("content-type", "application/json"), ("x-i", str(i))],
        request_body=f'{{"to": "15551234567", "i": {i}}}'.encode(),
        response_status=200,
        # Repeated header names must survive in order (Set-Cookie, Via, ...).
        response_headers=[("set-cookie", "a=1"), ("set-cookie", "b=2"), ("x-fb-trace-id", "Zz")],
        response_body=f'{{"messages": [{{"id": "wamid.{i}"}}]}}'.encode(),
        started_at=T0 + i,
        finished_at=T0 + i + 0.250001,
        annotations={"note": f"exchange #{i}", "unicode": "héllo ✓"},
    )
    values.update(fields)
    return Exchange(**values)  # type: ignore[arg-type]


def webhook(i: int, *events: EventData) -> tuple[Exchange, list[EventData]]:
    """A webhook delivery carrying `events`, as the recorder appends it."""
    return exchange(i, Kind.WEBHOOK, url="https://bot.example/webhook"), list(events)


def message(
    wamid: str, sender: str, type_: str = "text", position: int = 0, **kw: str
) -> EventData:
    return EventData(
        wamid=wamid, category="message", type=type_, sender=sender, position=position,
        timestamp="1700000000", **kw,
    )  # fmt: skip


def status(wamid: str, value: str, recipient: str, position: int = 0) -> EventData:
    return EventData(
        wamid=wamid, category="status", type=value, recipient=recipient, position=position
    )


def with_seq(ex: Exchange, seq: int) -> Exchange:
    return dataclasses.replace(ex, seq=seq)


def blob_count(store: CassetteStore) -> tuple[int, int]:
    """(blobs, chunks) stored, whatever links to them."""
    with store.engine.connect() as conn:
        blobs = conn.scalar(select(func.count()).select_from(m.MediaBlob))
        chunks = conn.scalar(select(func.count()).select_from(m.MediaChunk))
    return int(blobs or 0), int(chunks or 0)


# -- cassettes -------------------------------------------------------------------------


def test_create_get_and_list_cassettes(store: CassetteStore) -> None:
    before = datetime.now(timezone.utc)
    info = store.create_cassette(
        "welcome-flow",
        source="sandbox",
        notes="first contact",
        graph_api_version="v21.0",
        phone_number_ids=["111", "222"],
    )
    store.create_cassette("aaa.first")

    assert info.name == "welcome-flow"
    got = store.get_cassette("welcome-flow")
    assert got == info
    assert (got.source, got.notes, got.graph_api_version) == ("sandbox", "first contact", "v21.0")
    assert got.phone_number_ids == ("111", "222")
    # Timestamps come back timezone-aware on both backends.
    assert got.created_at.tzinfo is not None
    assert abs((got.created_at - before).total_seconds()) < 60
    assert [c.name for c in store.list_cassettes()] == ["aaa.first", "welcome-flow"]
    assert store.exists("welcome-flow") and not store.exists("nope")


def test_list_cassettes_counts_what_each_holds(store: CassetteStore) -> None:
    store.create_cassette("a")
    store.create_cassette("b")
    store.append_many(
        "a", [exchange(0), webhook(1, message("w1", "15550001"), status("w0", "read", "1555"))]
    )
    media = store.put_media(b"img", "image/jpeg")
    store.link_media("a", "m1", media.sha256)

    counts = {
        c.name: (c.interaction_count, c.event_count, c.media_count) for c in store.list_cassettes()
    }
    assert counts == {"a": (2, 2, 1), "b": (0, 0, 0)}


def test_update_cassette_changes_only_given_fields(store: CassetteStore) -> None:
    store.create_cassette("c", notes="keep me", graph_api_version="v20.0")
    info = store.update_cassette("c", source="mutated", phone_number_ids=["2", "1", "2"])
    assert info.source == "mutated"
    assert info.notes == "keep me" and info.graph_api_version == "v20.0"
    assert info.phone_number_ids == ("1", "2")
    assert store.get_cassette("c") == info


def test_create_existing_name_raises_cassette_exists(store: CassetteStore) -> None:
    store.create_cassette("dup", notes="original")
    with pytest.raises(CassetteExists, match="'dup' already exists"):
        store.create_cassette("dup", notes="impostor")
    assert store.get_cassette("dup").notes == "original"
    assert len(store.list_cassettes()) == 1


@pytest.mark.parametrize(
    "bad",
    ["", "../etc", "a/b", "a b", "-leading-dash", ".hidden", "x" * 201, "naïve", "semi;colon"],
)
def test_invalid_names_are_rejected_everywhere(store: CassetteStore, bad: str) -> None:
    store.create_cassette("ok")
    with pytest.raises(StoreError, match="invalid cassette name"):
        store.create_cassette(bad)
    with pytest.raises(StoreError, match="invalid cassette name"):
        store.copy_cassette("ok", bad)
    with pytest.raises(StoreError, match="invalid cassette name"):
        store.rename_cassette("ok", bad)
    assert [c.name for c in store.list_cassettes()] == ["ok"]


def test_longest_valid_name_is_accepted(store: CassetteStore) -> None:
    name = "a" * 200
    store.create_cassette(name)
    assert store.get_cassette(name).name == name


def test_cassette_not_found_names_close_matches(store: CassetteStore) -> None:
    with pytest.raises(CassetteNotFound, match="no cassettes yet"):
        store.get_cassette("anything")
    for name in ("welcome-flow", "order-status", "media-upload"):
        store.create_cassette(name)

    with pytest.raises(CassetteNotFound) as caught:
        store.get_cassette("welcom-flow")
    assert "did you mean 'welcome-flow'" in str(caught.value)
    assert caught.value.name == "welcom-flow"
    # Nothing close: the message lists what exists instead.
    with pytest.raises(
        CassetteNotFound, match="cassettes: media-upload, order-status, welcome-flow"
    ):
        store.interactions("zzzzzz").__next__()
    # Every entry point that takes a name reports it the same way.
    for call in (
        lambda: store.append("welcome-flw", exchange(0)),
        lambda: store.events("welcome-flw"),
        lambda: store.history("welcome-flw"),
        lambda: store.delete_cassette("welcome-flw"),
        lambda: store.copy_cassette("welcome-flw", "x"),
        lambda: store.rename_cassette("welcome-flw", "x"),
        lambda: store.list_media("welcome-flw"),
    ):
        with pytest.raises(CassetteNotFound, match="did you mean 'welcome-flow'"):
            call()
    assert not store.exists("x")


def test_delete_cassette_removes_it_and_its_contents(store: CassetteStore) -> None:
    store.create_cassette("gone")
    store.create_cassette("stays")
    store.append_many("gone", [exchange(0), webhook(1, message("w1", "1555"))])
    store.append("stays", exchange(0))
    store.add_history("gone", "record", {})

    store.delete_cassette("gone")

    assert [c.name for c in store.list_cassettes()] == ["stays"]
    with pytest.raises(CassetteNotFound):
        store.get_cassette("gone")
    with store.engine.connect() as conn:
        for model in (m.Interaction, m.Event, m.History):
            assert conn.scalar(select(func.count()).select_from(model)) == (
                1 if model is m.Interaction else 0
            ), model.__tablename__
    # The name is free again, and the new cassette starts empty.
    assert store.create_cassette("gone").interaction_count == 0
    assert list(store.interactions("gone")) == []
    with pytest.raises(CassetteNotFound):
        store.delete_cassette("never-was")


def _populate(store: CassetteStore, name: str) -> list[Exchange]:
    store.create_cassette(name, source="meta", notes="n", graph_api_version="v21.0",
                          phone_number_ids=["111"])  # fmt: skip
    items: list[Exchange | tuple[Exchange, list[EventData]]] = [
        exchange(0, request_body=bytes(range(256))),
        webhook(
            1,
            message("wamid.A", "15550001", "image", media_id="m-1"),
            status("wamid.Z", "delivered", "15550002", position=1),
        ),  # fmt: skip
        exchange(2, Kind.MEDIA, method="GET", request_body=b"", response_body=b"\x00\xff" * 10),
        webhook(3, message("wamid.B", "15550001")),
    ]
    store.append_many(name, items)
    img = store.put_media(b"\x89PNG fake image", "image/png")
    store.link_media(name, "m-1", img.sha256)
    store.add_history(name, "record", {"target": "meta"})
    return [with_seq(i if isinstance(i, Exchange) else i[0], n) for n, i in enumerate(items)]


def test_copy_cassette_carries_interactions_events_media_and_history(
    store: CassetteStore,
) -> None:
    expected = _populate(store, "src")

    info = store.copy_cassette("src", "dst", source="mutated")

    assert info.name == "dst" and info.source == "mutated"
    assert (info.interaction_count, info.event_count, info.media_count) == (4, 3, 1)
    assert (info.graph_api_version, info.phone_number_ids, info.notes) == ("v21.0", ("111",), "n")
    assert list(store.interactions("dst")) == expected
    src_events = store.events("src")
    assert store.events("dst") == src_events
    assert [e.interaction_seq for e in src_events] == [1, 1, 3]
    assert store.list_media("dst") == store.list_media("src")
    assert store.read_media(store.media("dst", "m-1").sha256) == b"\x89PNG fake image"
    history = store.history("dst")
    assert [(h.operation, h.arguments) for h in history] == [
        ("record", {"target": "meta"}),
        ("copy", {"from": "src"}),
    ]
    # The source is untouched and independent of the copy.
    assert store.get_cassette("src").source == "meta"
    store.append("dst", exchange(99))
    store.delete_cassette("dst")
    assert list(store.interactions("src")) == expected
    assert store.read_media(store.media("src", "m-1").sha256) == b"\x89PNG fake image"


def test_copying_twice_gives_each_copy_its_own_events(store: CassetteStore) -> None:
    _populate(store, "src")
    store.copy_cassette("src", "one")
    store.copy_cassette("src", "two")
    store.copy_cassette("one", "three")
    for name in ("one", "two", "three"):
        assert store.events(name) == store.events("src"), name
    assert store.get_cassette("three").event_count == 3


def test_copy_onto_existing_name_is_refused_and_changes_nothing(store: CassetteStore) -> None:
    _populate(store, "src")
    store.create_cassette("taken", notes="mine")
    with pytest.raises(CassetteExists, match="'taken'"):
        store.copy_cassette("src", "taken")
    taken = store.get_cassette("taken")
    assert (taken.notes, taken.interaction_count, taken.event_count) == ("mine", 0, 0)


def test_rename_cassette_keeps_contents(store: CassetteStore) -> None:
    expected = _populate(store, "old")
    events = store.events("old")
    store.create_cassette("other")

    store.rename_cassette("old", "new")

    assert list(store.interactions("new")) == expected
    assert store.events("new") == events
    assert store.media("new", "m-1").mime_type == "image/png"
    assert [c.name for c in store.list_cassettes()] == ["new", "other"]
    with pytest.raises(CassetteExists, match="'other'"):
        store.rename_cassette("new", "other")
    assert store.get_cassette("other").interaction_count == 0
    with pytest.raises(CassetteNotFound):
        store.rename_cassette("old", "newer")


# -- interactions ----------------------------------------------------------------------


def test_append_keeps_order_bodies_timings_and_annotations(store: CassetteStore) -> None:
    store.create_cassette("c")
    items = [
        exchange(0, request_body=bytes(range(256)) * 3, response_body=b""),
        exchange(1, request_body=b"", response_body=b"\x00" * 1000 + b"\xff"),
        # A failed exchange: no response, an error, a zero-length duration.
        exchange(
            2,
            Kind.MEDIA,
            method="GET",
            response_status=None,
            response_headers=[],
            response_body=b"",
            error="connection reset by peer",
            finished_at=T0 + 2,
        ),  # fmt: skip
        exchange(3, "webhook", annotations={}),
    ]
    assert store.append_many("c", items[:2]) == [0, 1]
    assert store.append("c", items[2]) == 2
    assert store.append_many("c", items[3:]) == [3]

    got = list(store.interactions("c"))

    assert got == [with_seq(x, n) for n, x in enumerate(items)]
    assert [g.seq for g in got] == [0, 1, 2, 3]
    assert got[0].request_body == bytes(range(256)) * 3
    assert got[1].response_body[-1:] == b"\xff" and len(got[1].response_body) == 1001
    assert got[0].started_at == T0 and got[0].duration == pytest.approx(0.250001)
    assert got[2].response_status is None and got[2].error == "connection reset by peer"
    assert got[0].annotations == {"note": "exchange #0", "unicode": "héllo ✓"}
    assert got[0].response_headers == [("set-cookie", "a=1"), ("set-cookie", "b=2"),
                                       ("x-fb-trace-id", "Zz")]  # fmt: skip
    assert store.interaction("c", 2) == got[2]
    with pytest.raises(StoreError, match="no interaction #7"):
        store.interaction("c", 7)


def test_append_many_spanning_batches_and_pages_stays_in_order(store: CassetteStore) -> None:
    store.create_cassette("c")
    # Small batches and more rows than one read page (64) cross every boundary.
    seqs = store.append_many("c", (exchange(i) for i in range(150)), batch=7)
    assert seqs == list(range(150))
    got = [(e.seq, e.url) for e in store.interactions("c")]
    assert got == [(i, exchange(i).url) for i in range(150)]


def test_interactions_filter_by_kind_in_order(store: CassetteStore) -> None:
    store.create_cassette("c")
    kinds = [Kind.WEBHOOK, Kind.GRAPH, Kind.GRAPH, Kind.MEDIA] * 40
    store.append_many("c", [exchange(i, k) for i, k in enumerate(kinds)])

    webhooks = [e.seq for e in store.interactions("c", kinds=[Kind.WEBHOOK])]
    assert webhooks == [i for i, k in enumerate(kinds) if k is Kind.WEBHOOK]
    graph_media = [e.seq for e in store.interactions("c", kinds=["graph", "media"])]
    assert graph_media == [i for i, k in enumerate(kinds) if k is not Kind.WEBHOOK]
    assert all(e.kind == "media" for e in store.interactions("c", kinds=["media"]))
    assert list(store.interactions("c", kinds=[])) == []


def test_replace_interactions_renumbers_and_replaces_events(store: CassetteStore) -> None:
    store.create_cassette("c")
    store.append_many("c", [exchange(0), webhook(1, message("old", "1")), exchange(2)])
    store.replace_interactions("c", [webhook(10, message("new", "2")), exchange(11)])
    got = list(store.interactions("c"))
    assert [(g.seq, g.url) for g in got] == [
        (0, "https://bot.example/webhook"),
        (1, exchange(11).url),
    ]
    assert [(e.wamid, e.interaction_seq) for e in store.events("c")] == [("new", 0)]


# -- events ----------------------------------------------------------------------------


def test_events_query_by_each_field(store: CassetteStore) -> None:
    store.create_cassette("c")
    store.create_cassette("other")
    store.append_many(
        "c",
        [
            exchange(0),
            webhook(
                1,
                message("wamid.1", "15550001", "text"),
                message("wamid.2", "15550002", "image", position=1, media_id="media-9"),
            ),  # fmt: skip
            exchange(2),
            webhook(
                3,
                status("wamid.1", "delivered", "15550001"),
                status("wamid.1", "read", "15550001", position=1),
            ),  # fmt: skip
            webhook(4, EventData(wamid=None, category="error", type="131047")),
        ],
    )
    store.append("other", *webhook(0, message("wamid.1", "15550001")))

    everything = store.events("c")
    assert [(e.interaction_seq, e.position, e.category, e.type) for e in everything] == [
        (1, 0, "message", "text"),
        (1, 1, "message", "image"),
        (3, 0, "status", "delivered"),
        (3, 1, "status", "read"),
        (4, 0, "error", "131047"),
    ]
    assert [e.type for e in store.events("c", wamid="wamid.1")] == ["text", "delivered", "read"]
    assert [e.wamid for e in store.events("c", type="image")] == ["wamid.2"]
    assert [e.wamid for e in store.events("c", sender="15550002")] == ["wamid.2"]
    media = store.events("c", media_id="media-9")
    assert [(m_.wamid, m_.sender, m_.interaction_seq) for m_ in media] == [
        ("wamid.2", "15550002", 1)
    ]
    assert [e.type for e in store.events("c", category="status")] == ["delivered", "read"]
    assert [e.type for e in store.events("c", category="error")] == ["131047"]
    # Filters combine, and other cassettes' events never leak in.
    assert [e.type for e in store.events("c", wamid="wamid.1", category="status", type="read")] == [
        "read"
    ]
    assert store.events("c", wamid="wamid.404") == []
    assert len(store.events("other", wamid="wamid.1")) == 1
    assert everything[0].timestamp == "1700000000" and everything[2].recipient == "15550001"


# -- media -----------------------------------------------------------------------------


def test_same_bytes_stored_once_for_many_media_ids(store: CassetteStore) -> None:
    store.create_cassette("a")
    store.create_cassette("b")
    data = random.Random(7).randbytes(5000)

    first = store.put_media(data, "image/jpeg")
    second = store.put_media(io.BytesIO(data), "image/jpeg")

    assert first == second
    assert first.sha256 == hashlib.sha256(data).hexdigest() and first.size == 5000
    store.link_media("a", "id-1", first.sha256)
    store.link_media("a", "id-2", second.sha256)
    store.link_media("b", "id-3", first.sha256, mime_type="image/jpg")
    assert blob_count(store) == (1, 1)
    assert [(x.media_id, x.sha256, x.size) for x in store.list_media("a")] == [
        ("id-1", first.sha256, 5000),
        ("id-2", first.sha256, 5000),
    ]
    assert store.media("b", "id-3").mime_type == "image/jpg"
    assert store.read_media(store.media("a", "id-2").sha256) == data
    assert store.media_info(first.sha256) == first


def test_blobs_put_before_linking_survive_other_links(store: CassetteStore) -> None:
    # An importer stores every file first and links them afterwards: linking
    # the first must not throw away the others as unreferenced.
    store.create_cassette("c")
    one = store.put_media(b"one", "image/png")
    two = store.put_media(b"two", "image/png")
    store.link_media("c", "m1", one.sha256)
    store.link_media("c", "m2", two.sha256)
    assert store.read_media(store.media("c", "m2").sha256) == b"two"


def test_media_chunks_stream_multi_chunk_blob_byte_identical(
    store: CassetteStore, tmp_path: Path
) -> None:
    data = random.Random(3).randbytes(2 * CHUNK_SIZE + CHUNK_SIZE // 2 + 1)
    path = tmp_path / "video.mp4"
    path.write_bytes(data)

    info = store.put_media(path, "video/mp4")

    chunks = list(store.media_chunks(info.sha256))
    assert [len(c) for c in chunks] == [CHUNK_SIZE, CHUNK_SIZE, CHUNK_SIZE // 2 + 1]
    assert b"".join(chunks) == data
    assert info == store.media_info(info.sha256)
    assert info.size == len(data) and info.mime_type == "video/mp4"
    # A stream is read from where it stands, as a file handed mid-way would be.
    with path.open("rb") as fh:
        fh.seek(CHUNK_SIZE)
        tail = store.put_media(fh, "video/mp4")
    assert store.read_media(tail.sha256) == data[CHUNK_SIZE:]


def test_empty_media_round_trips(store: CassetteStore) -> None:
    store.create_cassette("c")
    info = store.put_media(b"", "text/plain")
    store.link_media("c", "empty", info.sha256)
    assert info.size == 0
    assert store.read_media(info.sha256) == b""
    assert store.media("c", "empty").size == 0


def test_deleting_cassette_collects_only_unlinked_blobs(store: CassetteStore) -> None:
    store.create_cassette("a")
    store.create_cassette("b")
    only_a = store.put_media(random.Random(1).randbytes(CHUNK_SIZE + 10), "video/mp4")
    shared = store.put_media(b"shared sticker", "image/webp")
    store.link_media("a", "x", only_a.sha256)
    store.link_media("a", "y", shared.sha256)
    store.link_media("b", "z", shared.sha256)
    assert blob_count(store) == (2, 3)

    store.delete_cassette("a")

    assert store.media_info(only_a.sha256) is None
    assert list(store.media_chunks(only_a.sha256)) == []
    assert blob_count(store) == (1, 1)
    assert store.read_media(store.media("b", "z").sha256) == b"shared sticker"


def test_unlink_and_relink_collect_the_blob_left_behind(store: CassetteStore) -> None:
    store.create_cassette("c")
    old = store.put_media(b"old", "image/png")
    new = store.put_media(b"new", "image/png")
    store.link_media("c", "m", old.sha256)
    store.link_media("c", "m", new.sha256)  # re-point: "old" is referenced no more
    assert store.media("c", "m").sha256 == new.sha256
    assert store.media_info(old.sha256) is None

    store.unlink_media("c", "m")
    assert store.media_info(new.sha256) is None and blob_count(store) == (0, 0)
    with pytest.raises(MediaNotFound, match="no media with id 'm'"):
        store.media("c", "m")
    with pytest.raises(MediaNotFound):
        store.unlink_media("c", "m")


def test_link_to_unknown_blob_is_refused(store: CassetteStore) -> None:
    store.create_cassette("c")
    with pytest.raises(StoreError, match="no media blob with sha256"):
        store.link_media("c", "m", "0" * 64)
    assert store.list_media("c") == []


# -- history ---------------------------------------------------------------------------


def test_history_entries_in_order(store: CassetteStore) -> None:
    store.create_cassette("c")
    store.create_cassette("d")
    store.add_history("c", "record", {"target": "meta", "port": 8080})
    store.add_history("d", "import", {})
    store.add_history("c", "mutate", {"rules": ["drop-status"], "seed": 1})

    history = store.history("c")

    assert [(h.operation, h.arguments) for h in history] == [
        ("record", {"target": "meta", "port": 8080}),
        ("mutate", {"rules": ["drop-status"], "seed": 1}),
    ]
    assert all(h.at.tzinfo is not None for h in history)
    assert history[0].at <= history[1].at
    assert store.history("d")[0].operation == "import"


# -- acceptance: 10,000 interactions with bodies from 0 B to 1 MiB ---------------------

ROUND_TRIP_COUNT = 10_000
MAX_BODY = 1 << 20


def _body_sizes(rng: random.Random, count: int) -> list[int]:
    """Sizes from 0 B to 1 MiB, log-uniform-ish, averaging ~16 KiB.

    Mostly small (JSON and thumbnails), a few large (media), plus both edges:
    about 330 MB for 20,000 bodies rather than the 1.5 GB of a plain
    log-uniform spread up to 1 MiB.
    """
    sizes = []
    for _ in range(count):
        r = rng.random()
        if r < 0.05:
            sizes.append(0)
        elif r < 0.97:
            sizes.append(int(math.exp(rng.uniform(0, math.log(64 * 1024)))))
        else:
            sizes.append(int(math.exp(rng.uniform(math.log(64 * 1024), math.log(MAX_BODY + 1)))))
    # Exactly 0 and exactly 1 MiB, as request and as response, first, between
    # and last (even indexes are requests, odd ones responses).
    sizes[0:4] = [0, MAX_BODY, MAX_BODY, 0]
    sizes[count // 2 : count // 2 + 2] = [MAX_BODY, MAX_BODY]
    sizes[-2:] = [MAX_BODY, 0]
    return sizes


def test_round_trip_10k_interactions_byte_identical(
    store: CassetteStore, request: pytest.FixtureRequest
) -> None:
    rng = random.Random(20240601)
    sizes = _body_sizes(rng, 2 * ROUND_TRIP_COUNT)
    assert 0 in sizes and MAX_BODY in sizes and max(sizes) == MAX_BODY
    # Random offsets into a random pool: random-looking bodies, cheap to make.
    pool = rng.randbytes(2 * MAX_BODY)
    offsets = [rng.randrange(MAX_BODY) for _ in sizes]
    expected: list[tuple[bytes, bytes]] = []

    def produce() -> Iterator[Exchange]:
        for i in range(ROUND_TRIP_COUNT):
            a, b = 2 * i, 2 * i + 1
            req = pool[offsets[a] : offsets[a] + sizes[a]]
            resp = pool[offsets[b] : offsets[b] + sizes[b]]
            expected.append((hashlib.sha256(req).digest(), hashlib.sha256(resp).digest()))
            yield exchange(i, request_body=req, response_body=resp, annotations={})

    store.create_cassette("big")
    started = time.perf_counter()
    seqs = store.append_many("big", produce())
    written = time.perf_counter()
    got_count = 0
    for n, ex in enumerate(store.interactions("big")):
        assert ex.seq == n, f"interaction #{n} came back as #{ex.seq}"
        digests = (
            hashlib.sha256(ex.request_body).digest(),
            hashlib.sha256(ex.response_body).digest(),
        )
        if digests != expected[n]:
            pytest.fail(
                f"interaction #{n}: bodies differ (sizes sent {sizes[2 * n]}/{sizes[2 * n + 1]}, "
                f"got {len(ex.request_body)}/{len(ex.response_body)})"
            )
        assert ex.url == exchange(n).url
        got_count += 1
    read = time.perf_counter()

    assert seqs == list(range(ROUND_TRIP_COUNT))
    assert got_count == ROUND_TRIP_COUNT
    assert store.get_cassette("big").interaction_count == ROUND_TRIP_COUNT
    megabytes = sum(sizes) / 1e6
    print(
        f"\n[{request.node.callspec.id}] round trip of {ROUND_TRIP_COUNT} interactions, "
        f"{megabytes:.0f} MB of bodies: write {written - started:.1f} s, "
        f"read {read - written:.1f} s"
    )
