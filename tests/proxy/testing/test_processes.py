"""Subprocesses whose output is kept: wait for a line, stop, kill."""

from __future__ import annotations

import signal
import sys

import pytest

from pseudowa.proxy.testing.processes import Process

# Prints two lines, then waits until it is told to stop; exits 3 on SIGTERM.
SERVER = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))
print("starting", flush=True)
print("ready on 1234", flush=True)
while True:
    time.sleep(0.05)
"""


async def test_wait_for_a_line_then_stop_returns_the_exit_code() -> None:
    p = await Process.start("srv", [sys.executable, "-c", SERVER], echo=False)
    try:
        await p.wait_for("ready on", timeout=15.0)
        assert p.lines[:2] == ["starting", "ready on 1234"]
        assert await p.stop(timeout=10.0) == 3
    finally:
        await p.kill()
    assert p.proc.returncode == 3


async def test_stop_of_a_finished_process_returns_its_code() -> None:
    code = "import sys; print('bye'); sys.exit(7)"
    p = await Process.start("quick", [sys.executable, "-c", code], echo=False)
    await p.proc.wait()  # exited by itself: stop sends no signal and reports its code
    assert await p.stop(timeout=10.0) == 7
    assert p.lines == ["bye"]


async def test_stderr_and_env_are_kept() -> None:
    code = "import os, sys; print(os.environ['PSEUDOWA_T'], file=sys.stderr)"
    p = await Process.start(
        "env", [sys.executable, "-c", code], env={"PSEUDOWA_T": "from-env"}, echo=False
    )
    await p.proc.wait()
    assert await p.stop(timeout=10.0) == 0
    assert p.lines == ["from-env"]


async def test_wait_for_a_line_never_printed_fails_with_the_output() -> None:
    p = await Process.start("mute", [sys.executable, "-c", "print('only this')"], echo=False)
    with pytest.raises(RuntimeError, match="mute did not print 'ready'") as info:
        await p.wait_for("ready", timeout=10.0)
    assert "only this" in str(info.value)
    await p.kill()


async def test_wait_for_times_out_on_a_silent_process() -> None:
    p = await Process.start("slow", [sys.executable, "-c", SERVER], echo=False)
    try:
        with pytest.raises(RuntimeError, match="did not print 'never'"):
            await p.wait_for("never", timeout=0.5)
    finally:
        await p.kill()
    assert p.proc.returncode == -signal.SIGKILL


async def test_echo_prints_indented_lines_with_the_label(
    capsys: pytest.CaptureFixture[str],
) -> None:
    p = await Process.start("echoer", [sys.executable, "-c", "print('hello')"], echo=True)
    await p.proc.wait()
    assert await p.stop(timeout=10.0) == 0
    assert "echoer  | hello" in capsys.readouterr().out
