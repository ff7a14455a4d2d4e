"""A run's journal: every exchange of a replay, kept in memory and written to the store.

The fake Graph API and the emitter both journal from the event loop; one writer
task batches the rows into the store off the loop, so neither waits on the
database and PostgreSQL never sees two appenders race for the same sequence.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from pseudowa.storage.records import EventLike
from pseudowa.storage.records import Exchange
from pseudowa.storage.store import CassetteStore

logger = logging.getLogger(__name__)

_BATCH = 500


class Journal:
    """Collects exchanges in order; persists them to cassette `name` when a store is given."""

    def __init__(self, store: CassetteStore | None = None, name: str | None = None) -> None:
        self.store = store
        self.name = name
        self.exchanges: list[Exchange] = []
        self._queue: asyncio.Queue[tuple[Exchange, Sequence[EventLike]] | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    def record(self, exchange: Exchange, events: Sequence[EventLike] = ()) -> None:
        """Add one exchange; never blocks the loop."""
        self.exchanges.append(exchange)
        if self.store is not None and self.name is not None:
            if self._writer is None:
                self._writer = asyncio.get_running_loop().create_task(self._write())
            self._queue.put_nowait((exchange, events))

    async def _write(self) -> None:
        assert self.store is not None and self.name is not None
        done = False
        while not done:
            item = await self._queue.get()
            batch = []
            while item is not None:
                batch.append(item)
                if len(batch) >= _BATCH or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            done = item is None
            if batch and self.error is None:
                try:
                    await asyncio.to_thread(self.store.append_many, self.name, batch)
                except Exception as e:  # noqa: BLE001 - reported by close(), not lost
                    logger.error("journal write to %s failed: %s", self.name, e)
                    self.error = e

    async def close(self) -> None:
        """Flush everything recorded so far; raise if a write failed."""
        if self._writer is not None:
            self._queue.put_nowait(None)
            await self._writer
            self._writer = None
        if self.error is not None:
            raise self.error
