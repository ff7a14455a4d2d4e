"""`pseudowa demo` tells the whole story and passes its own check."""

from __future__ import annotations

from pseudowa.proxy.demo import run_demo


async def test_demo_transcript_shows_each_step() -> None:
    lines: list[str] = []
    assert await run_demo(lines.append)
    text = "\n".join(lines)
    assert "verified handshake" in text
    assert "webhook signed OK" in text
    assert "sha256 matches" in text
    assert "reply sent wamid." in text
    assert "status wamid." in text and " read" in text
    assert "duplicate wamid." in text and "ignored" in text
    assert "check: OK" in text
    assert lines[-1] == "demo: OK"
