"""Append recorded exchanges to a cassette: one task, one worker thread, a batch per transaction.

The recorder decides what to record and when (mitmproxy's hooks); `BatchWriter` decides
how, as mitmproxy's `io.FilteredFlowWriter` does behind `addons/save.py`. Exchanges are
queued in completion order; one task appends whatever has queued up in a single
transaction, in a worker thread with its own connection, while the next ones gather. A
download's bytes are stored once, as a blob linked to its media id, and the cassette
notes the phone number ids and Graph API version it has seen.

A failed write halts the writer: nothing queued after it is attempted, every waiting
future gets an error, and `on_failed` is told (the recorder then stops mitmproxy, because
letting traffic through unrecorded is worse than stopping loudly).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import enum
import logging
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pseudowa.proxy.contract.ids import sha256_hex
from pseudowa.storage.errors import StoreError
from pseudowa.storage.records import EventLike
from pseudowa.storage.records import Exchange
from pseudowa.storage.records import Kind
from pseudowa.storage.records import Source
from pseudowa.storage.store import CassetteStore

logger = logging.getLogger(__name__)

MAX_BATCH = 256  # exchanges appended in one transaction at most
# What a recording may say its traffic came from (the other sources are made, not recorded).
RECORD_SOURCES = (Source.META, Source.SANDBOX)


class RecordMode(enum.StrEnum):
    """What recording into a cassette does with one of that name (VCR's record modes)."""

    NEW = "new"  # it must not exist yet
    APPEND = "append"  # add to it (created if missing)
    OVERWRITE = "overwrite"  # delete it first

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The modes as option values, in their documented order."""
        return tuple(mode.value for mode in cls)

    @classmethod
    def parse(cls, value: str, what: str = "mode") -> RecordMode:
        """The mode `value` names; ValueError naming `what` and the valid modes otherwise."""
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(cls.names())
            raise ValueError(f"invalid {what} {value!r}: use {choices}") from None


@dataclass
class Pending:
    """One scrubbed exchange ready to be written, with what the write needs besides the row."""

    kind: Kind
    exchange: Exchange
    events: list[EventLike]
    media: bytes | None = None  # a download's bytes: stored once as a blob
    media_id: str | None = None
    media_mime: str | None = None
    expected_sha256: str | None = None  # hex, from the media look-up
    phone_number_ids: frozenset[str] = frozenset()
    graph_version: str | None = None


class NotWritten(Exception):
    """A write queued behind one that failed (or after the writer halted): not attempted."""


@dataclass
class _Job:
    """A queued write: its number in the queue and what awaits its seq."""

    number: int
    pending: Pending
    done: asyncio.Future[int]


Written = Callable[[Pending, Exchange], None]
Failed = Callable[[Exception], None]


class BatchWriter:
    """Writes queued exchanges into one cassette of one store, in queue order, in batches.

    `on_written(pending, exchange)` is called on the event loop for every exchange
    stored (the exchange carries its seq); `on_failed(error)` once per failure that
    halted the writer. Neither is called from the worker thread.
    """

    def __init__(
        self,
        store: CassetteStore,
        cassette: str,
        *,
        on_written: Written | None = None,
        on_failed: Failed | None = None,
    ) -> None:
        self.store: CassetteStore | None = store
        self.cassette = cassette
        self.on_written = on_written
        self.on_failed = on_failed
        self._jobs: collections.deque[_Job] = collections.deque()
        self._queued = 0  # jobs ever queued; numbers them
        self._last_allowed: int | None = None  # once halted: the last job still written
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # The writer's own thread (and so the store's connection for it), kept across batches.
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        # What the cassette already notes, so that it is updated only when something is new.
        self._phone_number_ids: set[str] = set()
        self._graph_version: str | None = None

    @property
    def queued(self) -> int:
        """How many writes were ever queued (a job's number is its place in that count)."""
        return self._queued

    @property
    def running(self) -> bool:
        """Whether the writing task is alive (it starts with the first write)."""
        return self._task is not None and not self._task.done()

    def enqueue(self, pending: Pending) -> asyncio.Future[int]:
        """Queue a write; the future gets its seq, or the error that halted the writer."""
        loop = asyncio.get_running_loop()
        self._queued += 1
        job = _Job(self._queued, pending, loop.create_future())
        self._jobs.append(job)
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            if self._thread is None:
                self._thread = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="pseudowa-writer"
                )
            self._task = loop.create_task(self._loop(), name="pseudowa recorder: writer")
        assert self._wake is not None
        self._wake.set()
        return job.done

    def halt(self, last_allowed: int | None = None) -> None:
        """Write no job numbered after `last_allowed` (default: after those queued now).

        Jobs queued before the halt still go ahead; a later, lower limit wins.
        """
        limit = self._queued if last_allowed is None else last_allowed
        if self._last_allowed is None or limit < self._last_allowed:
            self._last_allowed = limit

    def detach(self) -> None:
        """The store is being closed: what is still queued fails, then the task ends."""
        self.store = None
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._task is None or self._task.done():
            self._end_thread()
        else:
            self._task.add_done_callback(lambda _: self._end_thread())

    async def close(self) -> None:
        """Let the writer finish what is queued, then end its task and thread."""
        if self._task is None:
            return
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        try:
            await self._task
        finally:
            self._task, self._wake, self._closing = None, None, False
            self._end_thread()

    def _end_thread(self) -> None:
        pool, self._thread = self._thread, None
        if pool is not None:
            pool.shutdown(wait=False)

    # -- the event loop side ----------------------------------------------------------

    async def _loop(self) -> None:
        """Write queued jobs in order, all those waiting at once, until closed and drained."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._jobs:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._jobs.popleft() for _ in range(min(len(self._jobs), MAX_BATCH))]
            if self._last_allowed is not None:
                for job in [j for j in batch if j.number > self._last_allowed]:
                    _settle(job.done, error=NotWritten())
                batch = [j for j in batch if j.number <= self._last_allowed]
                if not batch:
                    continue
            try:
                written, error = await loop.run_in_executor(
                    self._thread, self.write_batch, [job.pending for job in batch]
                )
            except BaseException as e:  # cancelled: nothing is known to be written
                for job in batch:
                    _settle(job.done, error=NotWritten())
                if isinstance(e, Exception):
                    self._failed(e)
                    continue
                raise
            for job, exchange in zip(batch, written):
                self._written(job.pending, exchange)
                _settle(job.done, exchange.seq)
            if error is not None:
                failed = batch[len(written)]
                self._failed(error, last_allowed=failed.number - 1)
                for job in batch[len(written) :]:
                    _settle(job.done, error=error if job is failed else NotWritten())

    def _written(self, pending: Pending, exchange: Exchange) -> None:
        if self.on_written is None:
            return
        try:
            self.on_written(pending, exchange)
        except Exception:
            logger.exception("on_written callback failed")

    def _failed(self, error: Exception, *, last_allowed: int | None = None) -> None:
        self.halt(last_allowed)
        if self.on_failed is not None:
            self.on_failed(error)

    # -- the worker thread side (one batch at a time) ------------------------------------

    def write_batch(self, batch: list[Pending]) -> tuple[list[Exchange], Exception | None]:
        """Append a batch in order; the exchanges written (with their seq), and the error
        that stopped it before the rest. Consecutive exchanges share one transaction; a
        download's blob is stored first, so exchanges before it are appended before it.

        Runs in the worker thread (public so tests and the benchmark can call or time it).
        """
        written: list[Exchange] = []
        run: list[Pending] = []
        try:
            store, name = self.store, self.cassette
            if store is None:
                raise StoreError("the cassette store is closed")
            for pending in batch:
                if pending.media is not None:
                    written += self._append(store, name, run)
                    run = [self._with_media(store, name, pending)]
                    written += self._append(store, name, run)
                    run = []
                else:
                    run.append(pending)
            written += self._append(store, name, run)
        except Exception as e:
            return written, e
        return written, None

    def _append(self, store: CassetteStore, name: str, run: list[Pending]) -> list[Exchange]:
        """Append a run of exchanges in one transaction."""
        if not run:
            return []
        seqs = store.append_many(name, [(p.exchange, p.events) for p in run], batch=len(run))
        self._update_cassette(store, name, run)
        return [dataclasses.replace(p.exchange, seq=seq) for p, seq in zip(run, seqs)]

    def _with_media(self, store: CassetteStore, name: str, pending: Pending) -> Pending:
        """The download's exchange once its bytes are stored (as a blob when it has an id)."""
        if pending.media_id is not None:
            exchange = self._store_media(store, name, pending)
        else:
            # No media id to link the blob to: keep the bytes with the exchange.
            exchange = dataclasses.replace(
                pending.exchange,
                response_body=pending.media or b"",
                annotations={**pending.exchange.annotations, "sha256": "unknown"},
            )
        return dataclasses.replace(pending, exchange=exchange)

    def _store_media(self, store: CassetteStore, name: str, pending: Pending) -> Exchange:
        """Store a download's bytes as a blob and say whether they are what Meta announced."""
        assert pending.media is not None and pending.media_id is not None
        blob = store.put_media(pending.media, pending.media_mime or "application/octet-stream")
        store.link_media(name, pending.media_id, blob.sha256, pending.media_mime)
        announced = (e.media_sha256 for e in store.events(name, media_id=pending.media_id))
        expected = {sha for sha in (pending.expected_sha256, *map(sha256_hex, announced)) if sha}
        if not expected:
            check = "unknown"
        elif expected == {blob.sha256}:
            check = "match"
        else:
            check = "mismatch"
            logger.warning(
                "media %s: downloaded bytes have sha256 %s, but Meta announced %s",
                pending.media_id,
                blob.sha256,
                ", ".join(sorted(expected - {blob.sha256})),
            )
        annotations = {**pending.exchange.annotations, "sha256": check}
        return dataclasses.replace(pending.exchange, response_body=b"", annotations=annotations)

    def _update_cassette(self, store: CassetteStore, name: str, run: list[Pending]) -> None:
        """Note new phone number ids and the latest Graph API version on the cassette."""
        seen: set[str] = set()
        latest = None
        for pending in run:
            seen |= pending.phone_number_ids
            latest = pending.graph_version or latest
        new_ids = seen - self._phone_number_ids
        version = latest if latest is not None and latest != self._graph_version else None
        if not new_ids and version is None:
            return
        info = store.get_cassette(name)
        ids = set(info.phone_number_ids) | self._phone_number_ids | seen
        store.update_cassette(name, phone_number_ids=sorted(ids), graph_api_version=version)
        self._phone_number_ids = ids
        if version is not None:
            self._graph_version = version


# -- the cassette --------------------------------------------------------------------------


def prepare_cassette(
    store: CassetteStore,
    name: str,
    mode: RecordMode,
    source: Source,
    arguments: Mapping[str, Any],
) -> bool:
    """Make cassette `name` ready to record into in `mode`; True when this created it.

    The session is noted in the cassette's history with `arguments` (nothing secret).
    Raises `CassetteExists` in mode new when it exists, `StoreError` when the store fails.
    """
    if mode == RecordMode.OVERWRITE and store.exists(name):
        store.delete_cassette(name)
    created = not (mode == RecordMode.APPEND and store.exists(name))
    if created:
        store.create_cassette(name, source=source)
    store.add_history(name, "record", dict(arguments))
    return created


def discard_if_empty(store: CassetteStore, name: str) -> None:
    """Delete cassette `name` if it holds nothing (its session never got to record)."""
    try:
        info = store.get_cassette(name)
        if info.interaction_count == 0 and info.media_count == 0:
            store.delete_cassette(name)
            logger.info("cassette %s deleted: mitmproxy did not start, nothing recorded", name)
    except StoreError as e:
        logger.warning("could not delete the empty cassette %s: %s", name, e)


def _settle(
    future: asyncio.Future[int], seq: int = -1, *, error: BaseException | None = None
) -> None:
    if future.done():  # its flow's hook was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(seq)
