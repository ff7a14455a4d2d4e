"""A store shared by a team: several processes and connections writing at the same instant.

Real processes (not threads) for media and cassettes, since the race is between database
sessions of different programs; they start each round together on a file barrier.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from pseudowa.storage.records import Exchange
from pseudowa.storage.store import CassetteStore

ROUNDS = 6
BLOB_SIZE = (1 << 20) + 300_000  # two chunks: the blob row exists before its bytes do

_WORKER = """
import json, pathlib, sys, time
from pseudowa.storage.store import CassetteStore

url, me, rounds, size, sync = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), pathlib.Path(sys.argv[5])

def barrier(step):
    (sync / f"ready-{me}-{step}").touch()
    while not (sync / f"go-{step}").exists():
        time.sleep(0.0002)

errors = []
barrier("open")
try:
    store = CassetteStore.open(url)
except Exception as e:
    print(json.dumps([f"open: {type(e).__name__}: {e}"]))
    sys.exit(0)
with store:
    for r in range(rounds):
        barrier(str(r))
        try:
            blob = store.put_media(bytes([r]) * size, "image/png")
            store.create_cassette(f"{me}-{r}")
            store.link_media(f"{me}-{r}", "m", blob.sha256)
        except Exception as e:
            errors.append(f"round {r}: {type(e).__name__}: {e}")
print(json.dumps(errors))
"""


def _release(sync: Path, names: list[str], step: str, deadline: float) -> None:
    """Wait until every worker reached `step`, then let them all go at once."""
    while not all((sync / f"ready-{n}-{step}").exists() for n in names):
        if time.monotonic() > deadline:
            break  # a worker stopped early (its output says why): release the other
        time.sleep(0.001)
    (sync / f"go-{step}").touch()


def test_two_processes_store_the_same_new_blobs_and_create_cassettes_at_once(
    store_url: str, tmp_path: Path
) -> None:
    names = ["alice", "bob"]
    sync = tmp_path / "sync"
    sync.mkdir()
    args = [str(ROUNDS), str(BLOB_SIZE), str(sync)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, store_url, n, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in names
    ]
    deadline = time.monotonic() + 60
    try:
        # The first open of a fresh store migrates it: both processes do so at once.
        for step in ["open", *map(str, range(ROUNDS))]:
            _release(sync, names, step, deadline)
        outputs = [w.communicate(timeout=120) for w in workers]
    finally:
        for w in workers:
            w.kill()
    for (out, err), w in zip(outputs, workers):
        assert w.returncode == 0, err
        assert json.loads(out) == [], err

    with CassetteStore.open(store_url) as store:
        assert sorted(c.name for c in store.list_cassettes()) == sorted(
            f"{n}-{r}" for n in names for r in range(ROUNDS)
        )
        for r in range(ROUNDS):
            (alice, bob) = (store.media(f"{n}-{r}", "m") for n in names)
            assert alice.sha256 == bob.sha256 and alice.size == BLOB_SIZE
            assert store.read_media(alice.sha256) == bytes([r]) * BLOB_SIZE
        with store.engine.connect() as conn:
            blobs = conn.exec_driver_sql("SELECT count(*) FROM media_blob").scalar()
        assert blobs == ROUNDS


THREADS = 32
APPENDS_PER_THREAD = 12


def _writer(store: CassetteStore, cassette: str, thread: int, errors: list[str]) -> None:
    try:
        for i in range(APPENDS_PER_THREAD):
            url = f"http://graph/{cassette}/{thread}/{i}"
            if i % 3 == 0:
                store.append(cassette, Exchange("graph", "POST", url, request_body=b"x" * 500))
            else:
                # Two at once, the way the recorder flushes a batch.
                store.append_many(
                    cassette,
                    [
                        Exchange("graph", "POST", f"{url}/{k}", request_body=b"y" * 500)
                        for k in (0, 1)
                    ],
                )
    except Exception as e:  # reported by the test, with the thread that hit it
        errors.append(f"{cassette}/{thread}: {type(e).__name__}: {e}")


def test_two_writers_of_32_connections_append_to_their_cassettes_losing_nothing(
    store_url: str,
) -> None:
    with CassetteStore.open(store_url) as setup:
        for name in ("recording", "journal"):
            setup.create_cassette(name)
    # Two programs: each its own store (engine and pool), 32 threads appending at once.
    stores = {name: CassetteStore.open(store_url) for name in ("recording", "journal")}
    errors: list[str] = []
    threads = [
        threading.Thread(target=_writer, args=(store, name, t, errors))
        for name, store in stores.items()
        for t in range(THREADS)
    ]
    started = time.monotonic()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(1.0, 120 - (time.monotonic() - started)))
        assert not any(t.is_alive() for t in threads), "appends still running after 120 s"
    finally:
        for store in stores.values():
            store.close()
    assert errors == []

    # Per thread: 4 single appends and 8 pairs.
    expected = THREADS * (
        APPENDS_PER_THREAD // 3 + 2 * (APPENDS_PER_THREAD - APPENDS_PER_THREAD // 3)
    )
    with CassetteStore.open(store_url) as store:
        for name in ("recording", "journal"):
            stored = list(store.interactions(name))
            assert [x.seq for x in stored] == list(range(expected))
            assert len({x.url for x in stored}) == expected
            assert all(f"/{name}/" in x.url for x in stored)
