"""Unreferenced media blobs: found, spared while young, deleted on request, on both backends."""

from __future__ import annotations

from datetime import timedelta

from pseudowa.storage.store import CassetteStore


def _blob_count(store: CassetteStore) -> tuple[int, int]:
    with store.engine.connect() as conn:
        blobs = conn.exec_driver_sql("SELECT count(*) FROM media_blob").scalar()
        chunks = conn.exec_driver_sql("SELECT count(*) FROM media_chunk").scalar()
    return int(blobs or 0), int(chunks or 0)


def test_blobs_never_linked_are_found_and_collected(store: CassetteStore) -> None:
    store.create_cassette("kept")
    linked = store.put_media(b"linked image", "image/png")
    store.link_media("kept", "1", linked.sha256)
    stray = store.put_media(b"s" * ((1 << 20) + 10), "video/mp4")  # two chunks
    other = store.put_media(b"never linked", "image/jpeg")

    found = store.unreferenced_blobs()
    assert [b.sha256 for b in found] == sorted([stray.sha256, other.sha256])

    dry = store.collect_garbage()  # a dry run by default
    assert (dry.count, dry.size, dry.deleted) == (2, stray.size + other.size, False)
    assert _blob_count(store) == (3, 4)

    done = store.collect_garbage(dry_run=False)
    assert (done.count, done.size, done.deleted) == (2, stray.size + other.size, True)
    assert _blob_count(store) == (1, 1)
    assert store.read_media(linked.sha256) == b"linked image"
    assert store.unreferenced_blobs() == []
    assert store.collect_garbage(dry_run=False).count == 0


def test_young_blobs_are_spared(store: CassetteStore) -> None:
    store.put_media(b"being imported", "image/png")
    assert store.unreferenced_blobs(min_age=timedelta(hours=1)) == []
    assert store.collect_garbage(dry_run=False, min_age=timedelta(hours=1)).count == 0
    assert _blob_count(store) == (1, 1)
    assert store.collect_garbage(dry_run=False).count == 1


def test_a_blob_linked_from_any_cassette_stays(store: CassetteStore) -> None:
    shared = store.put_media(b"shared", "image/png")
    for name in ("a", "b"):
        store.create_cassette(name)
        store.link_media(name, "m", shared.sha256)
    store.unlink_media("a", "m")
    assert store.collect_garbage(dry_run=False).count == 0
    assert store.read_media(shared.sha256) == b"shared"
