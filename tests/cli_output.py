"""What every CLI test checks of a user mistake: one line, `Error: ...`, non-zero exit."""

from __future__ import annotations


def one_line_error(result: object) -> str:
    """The single `Error: ...` line of a failed command; fails the test otherwise."""
    out = getattr(result, "output")
    assert getattr(result, "exit_code") != 0
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert lines[0].startswith("Error: ")
    return lines[0]
