"""The tape: events addressed by index or wamid, with one-line errors naming the closest."""

from __future__ import annotations

from typing import Any

import pytest

from pseudowa.proxy.errors import MutationError
from pseudowa.proxy.errors import UserError


@pytest.mark.parametrize("ref, index", [(1, 1), ("1", 1), ("#1", 1), (" #4 ", 4)])
def test_events_are_addressed_by_index(ref: Any, index: int, build: Any) -> None:
    assert build.small_tape().resolve(ref).index == index


def test_a_wamid_names_its_first_event_messages_first(build: Any) -> None:
    tape = build.small_tape()
    assert tape.resolve("wamid.MENU").index == 1
    t = tape.resolve("wamid.REPLY")
    assert (t.index, t.event.type) == (2, "sent")


def test_unknown_index_and_wamid_are_one_line_errors_naming_the_closest(build: Any) -> None:
    tape = build.small_tape()
    with pytest.raises(MutationError, match=r"no event #9 \(it has 5: #0 to #4\)"):
        tape.resolve("#9")
    with pytest.raises(MutationError) as info:
        tape.resolve("wamid.MENUU")
    assert "did you mean wamid.MENU" in str(info.value)
    assert isinstance(info.value, UserError) and "\n" not in str(info.value)
