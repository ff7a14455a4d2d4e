"""The registry's vocabulary: parameters know their Python and CLI forms, operations check,
complete and prepare their values before a cassette is touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pseudowa.proxy.cassette.operations import Operation
from pseudowa.proxy.cassette.operations import Param
from pseudowa.proxy.cassette.plans import Change
from pseudowa.proxy.cassette.plans import MediaFile
from pseudowa.proxy.cassette.tape import Tape
from pseudowa.proxy.errors import MutationError


def _plan(tape: Tape, **values: Any) -> Change:
    return Change(f"planned {sorted(values)}")


def _operation(**options: Any) -> Operation:
    params = (
        Param("event", "event"),
        Param("count", "int", 2, option="--count", convert=lambda n: int(n) * 10),
        Param("file", "file", None, keyword_only=True, option="--file"),
    )
    return Operation("demo-op", "demo_op", _plan, params, "Doc.", "Help.", **options)


def test_params_show_their_python_type_and_log_their_value() -> None:
    event, count, file = _operation().params
    assert (event.annotation, file.annotation, count.annotation) == (
        "EventRef",
        "Path | None",
        "int",
    )
    assert event.logged(3) == "#3" and event.logged("wamid.X") == "wamid.X"
    assert file.logged(MediaFile(Path("/tmp/a.png"), b"")) == "/tmp/a.png"
    assert file.logged(None) is None and count.logged(5) == 5


def test_the_signature_puts_out_and_in_place_last() -> None:
    shown = str(_operation(fields=True).signature)
    assert shown == (
        "(store: 'CassetteStore', name: 'str', event: 'EventRef', count: 'int' = 2, *, "
        "file: 'Path | None' = None, out: 'str | None' = None, in_place: 'bool' = False, "
        "**fields: 'Any') -> 'MutationResult'"
    )
    positional_only = Operation(
        "o", "o", _plan, (Param("kind", "text", positional_only=True),), "Doc.", "Help."
    )
    assert str(positional_only.signature).startswith(
        "(store: 'CassetteStore', name: 'str', kind: 'str', /, *, out:"
    )


def test_prepare_completes_checks_converts_and_reads_before_anything_else(
    tmp_path: Path,
) -> None:
    seen: list[dict[str, Any]] = []
    op = _operation(check=lambda values: seen.append(dict(values)), fields=True)
    path = tmp_path / "a.bin"
    path.write_bytes(b"bytes")
    call = op.prepare({"event": 1, "file": str(path), "caption": "c"})
    assert seen == [{"event": 1, "count": 2, "file": str(path), "caption": "c"}]  # as given
    assert call.values["file"] == MediaFile(path, b"bytes") and call.values["count"] == 20
    assert call.arguments == {"event": "#1", "count": 20, "file": str(path), "caption": "c"}
    with pytest.raises(MutationError, match=r"cannot read .*missing\.bin"):
        op.prepare({"event": 1, "file": tmp_path / "missing.bin"})


def test_values_are_checked_against_the_parameters() -> None:
    with pytest.raises(TypeError, match="needs event"):
        _operation().complete({})
    with pytest.raises(TypeError, match="takes no caption"):
        _operation().complete({"event": 0, "caption": "c"})
    assert _operation(fields=True).complete({"event": 0, "caption": "c"})["caption"] == "c"
