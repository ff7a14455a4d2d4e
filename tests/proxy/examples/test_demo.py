"""`pseudowa demo` tells the whole story and passes its own check."""

from __future__ import annotations

from pathlib import Path

import pytest

from pseudowa.proxy.examples.demo import run_demo

SAMPLE = Path(__file__).resolve().parents[3] / "cassettes" / "image-round-trip"


@pytest.mark.parametrize("sample", [SAMPLE, None], ids=["shipped-sample", "recorded-first"])
async def test_demo_transcript_shows_each_step(sample: Path | None) -> None:
    lines: list[str] = []
    assert await run_demo(lines.append, sample=sample)
    assert ("image sample" in lines[0]) == (sample is not None)
    text = "\n".join(lines)
    assert "verified handshake" in text
    assert "webhook signed OK" in text
    assert "sha256 matches" in text
    assert "reply sent wamid." in text
    assert "status wamid." in text and " read" in text
    assert "duplicate wamid." in text and "ignored" in text
    assert "check: OK" in text
    assert lines[-1] == "demo: OK"
