"""Cassette mutations through the store: errors before any write, the history, --out or
in place; and the one registry the public functions and the CLI come from."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from pseudowa.proxy.cassette import mutations as mutate
from pseudowa.proxy.cassette import seeds
from pseudowa.proxy.errors import MutationError
from pseudowa.storage.errors import CassetteExists
from pseudowa.storage.store import CassetteStore

MEDIA_ID = "1037543291543636"


@pytest.fixture
def store(tmp_path: Path) -> CassetteStore:
    s = CassetteStore.open(f"sqlite:///{tmp_path / 'shell.db'}")
    seeds.text_seed(s, "seed")
    seeds.image_seed(s, "img", media_id=MEDIA_ID)
    return s


def test_unknown_wamid_or_media_id_names_the_closest_and_writes_nothing(
    store: CassetteStore, tmp_path: Path
) -> None:
    hi = store.events("seed")[0].wamid
    assert hi is not None
    with pytest.raises(MutationError) as info:
        mutate.drop(store, "seed", hi[:-4] + "XYZA", out="never")
    assert f"did you mean {hi}" in str(info.value)
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG")
    with pytest.raises(
        MutationError, match=f"no media with id '1037543291543637'; did you mean {MEDIA_ID}"
    ):
        mutate.swap_media(store, "img", "1037543291543637", path, out="never")
    with pytest.raises(MutationError, match="has no event #40"):
        mutate.delay(store, "seed", 40, 1.0, out="never")
    assert not store.exists("never")


def test_history_records_each_operation(store: CassetteStore) -> None:
    hi = store.events("seed")[0].wamid
    mutate.duplicate(store, "seed", hi or 0, times=2, out="h")
    mutate.delay(store, "h", "#1", 0.25, in_place=True)
    mutate.set_field(store, "h", "#0", "text.body", "yo", in_place=True)
    history = store.history("h")
    assert [h.operation for h in history] == ["copy", "duplicate", "delay", "set"]
    assert history[1].arguments == {"event": hi, "times": 2, "gap_s": 0.0, "wamid": hi}
    assert history[2].arguments["seconds"] == 0.25 and history[2].arguments["event"] == "#1"
    assert history[3].arguments["value"] == "yo" and history[3].arguments["path"] == "text.body"
    assert all(h.at is not None for h in history)
    assert store.get_cassette("h").source == "mutated"


def test_out_copies_and_in_place_changes_the_source(store: CassetteStore) -> None:
    original = [x.request_body for x in store.interactions("seed")]
    mutate.set_field(store, "seed", "#0", "text.body", "copy", out="copy")
    assert [x.request_body for x in store.interactions("seed")] == original
    assert b'"body":"copy"' in next(store.interactions("copy")).request_body
    result = mutate.set_field(store, "seed", "#0", "text.body", "here", in_place=True)
    assert result.in_place and "(in place)" in result.line()
    assert b'"body":"here"' in next(store.interactions("seed")).request_body
    with pytest.raises(MutationError, match="not both"):
        mutate.drop(store, "seed", 0, out="x", in_place=True)
    with pytest.raises(MutationError, match="give out"):
        mutate.drop(store, "seed", 0)
    with pytest.raises(CassetteExists):
        mutate.drop(store, "seed", 0, out="copy")


# -- the registry ------------------------------------------------------------------------

PUBLIC = {
    "duplicate": "(store: 'CassetteStore', name: 'str', event: 'EventRef', times: 'int' = 1, "
    "gap_s: 'float' = 0.0, *, out: 'str | None' = None, in_place: 'bool' = False)",
    "drop": "(store: 'CassetteStore', name: 'str', event: 'EventRef', *, "
    "out: 'str | None' = None, in_place: 'bool' = False)",
    "move": "(store: 'CassetteStore', name: 'str', event: 'EventRef', *, "
    "before: 'EventRef | None' = None, after: 'EventRef | None' = None, "
    "out: 'str | None' = None, in_place: 'bool' = False)",
    "delay": "(store: 'CassetteStore', name: 'str', event: 'EventRef', seconds: 'float', *, "
    "out: 'str | None' = None, in_place: 'bool' = False)",
    "set_field": "(store: 'CassetteStore', name: 'str', event: 'EventRef', path: 'str', "
    "value: 'Any', *, out: 'str | None' = None, in_place: 'bool' = False)",
    "swap_media": "(store: 'CassetteStore', name: 'str', media_id: 'str', file: 'Path', "
    "mime_type: 'str | None' = None, *, out: 'str | None' = None, "
    "in_place: 'bool' = False)",
    "fail_status": "(store: 'CassetteStore', name: 'str', event: 'EventRef', "
    "code: 'int' = 131047, *, out: 'str | None' = None, in_place: 'bool' = False)",
    "break_signature": "(store: 'CassetteStore', name: 'str', event: 'EventRef', *, "
    "out: 'str | None' = None, in_place: 'bool' = False)",
    "remove_signature": "(store: 'CassetteStore', name: 'str', event: 'EventRef', *, "
    "out: 'str | None' = None, in_place: 'bool' = False)",
    "shift_timestamps": "(store: 'CassetteStore', name: 'str', seconds: 'float', *, "
    "out: 'str | None' = None, in_place: 'bool' = False)",
    "pseudonymize": "(store: 'CassetteStore', name: 'str', seed: 'str | int | None' = None, *, "
    "out: 'str | None' = None, in_place: 'bool' = False)",
    "add_event": "(store: 'CassetteStore', name: 'str', kind: 'str', /, *, "
    "sender: 'str | None' = None, at: 'float | None' = None, "
    "after: 'EventRef | None' = None, file: 'Path | None' = None, "
    "media_id: 'str | None' = None, mime_type: 'str | None' = None, "
    "out: 'str | None' = None, in_place: 'bool' = False, **fields: 'Any')",
}


def test_every_operation_has_its_public_function_with_a_stable_signature() -> None:
    functions = {op.function_name: op for op in mutate.OPERATIONS.values()}
    assert set(functions) == set(PUBLIC)
    for name, shown in PUBLIC.items():
        function = getattr(mutate, name)
        assert function.__name__ == name and function.__doc__ == functions[name].doc
        assert str(inspect.signature(function)) == f"{shown} -> 'MutationResult'"


def test_public_functions_bind_their_arguments_like_python_does(store: CassetteStore) -> None:
    with pytest.raises(TypeError):
        mutate.drop(store, "seed", 0, "extra", out="x")
    with pytest.raises(TypeError):
        mutate.drop(store, "seed", 0, bogus=1, out="x")
    with pytest.raises(TypeError):
        mutate.add_event(store, "seed", kind="text", body="x", out="x")  # kind is positional
    result = mutate.move(store=store, name="seed", event="#1", before="#0", out="moved")
    assert result.arguments == {"event": "#1", "before": "#0", "after": None}
    assert not store.exists("x")


def test_an_operation_is_registered_once() -> None:
    op = mutate.OPERATIONS["drop"]
    with pytest.raises(ValueError, match="registered twice"):
        mutate.operation("drop", op.plan, *op.params, doc=op.doc, help=op.help)
