"""Records to ORM rows and back, without a database."""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from datetime import timezone

from pseudowa.storage import models as m
from pseudowa.storage import rows
from pseudowa.storage.records import Event
from pseudowa.storage.records import EventData
from pseudowa.storage.records import Exchange
from pseudowa.storage.records import Kind
from pseudowa.storage.records import MediaInfo
from pseudowa.storage.store import CassetteStore


def test_exchange_survives_the_row_form() -> None:
    sent = Exchange(
        kind=Kind.GRAPH,
        method="POST",
        url="https://graph.facebook.com/v21.0/1/messages",
        request_headers=[("set-cookie", "a"), ("set-cookie", "b")],
        request_body=b'{"to": "1"}',
        response_status=200,
        response_headers=[("content-type", "application/json")],
        response_body=b"{}",
        error=None,
        started_at=1.5,
        finished_at=2.25,
        annotations={"note": "héllo"},
    )
    values = rows.interaction_values(7, 3, sent)
    assert (values["cassette_id"], values["seq"], values["kind"]) == (7, 3, "graph")
    assert values["request_headers"] == [["set-cookie", "a"], ["set-cookie", "b"]]

    back = rows.exchange_of(m.Interaction(**values))

    assert back == Exchange(**{**sent.__dict__, "kind": "graph", "seq": 3})


def test_event_rows_read_any_event_like_and_come_back_as_stored_events() -> None:
    event = EventData(
        wamid="wamid.1", category="message", type="image", sender="1555", media_id="m",
        media_sha256="b64=", timestamp="1700000000", position=2,
    )  # fmt: skip
    [row] = rows.event_rows(7, 11, [event])
    assert (row.cassette_id, row.interaction_id, row.position) == (7, 11, 2)
    assert rows.event_of(row, 4) == Event.indexed(event, 4)


def test_times_are_aware_and_written_in_utc() -> None:
    naive = datetime(2025, 11, 24, 16, 0)
    assert rows.aware(naive) == naive.replace(tzinfo=timezone.utc)
    later = datetime(2025, 11, 24, 18, 0, tzinfo=timezone(timedelta(hours=2)))
    assert rows.utc(later) == datetime(2025, 11, 24, 16, 0, tzinfo=timezone.utc)
    assert rows.utc(later).tzinfo == timezone.utc


def test_copy_statements_cover_every_table_a_cassette_owns() -> None:
    targets = [s.table.name for s in rows.copy_statements(1, 2)]  # type: ignore[attr-defined]
    assert targets == ["interaction", "event", "media_link", "history"]


def test_insert_or_nothing_keeps_the_first_row(store: CassetteStore) -> None:
    with store.engine.begin() as conn:
        for mime in ("image/png", "image/jpeg"):
            conn.execute(
                rows.insert_or_nothing(store.engine.dialect.name, m.MediaBlob).values(
                    sha256="ab" * 32, mime_type=mime, size=3, created_at=m.utcnow()
                )
            )
    assert store.media_info("ab" * 32) == MediaInfo("ab" * 32, "image/png", 3)
