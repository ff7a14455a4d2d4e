"""Subprocesses for tests and tools: a program run with its output kept, and echoed."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path


class Process:
    """A subprocess whose output lines are echoed (indented) and kept."""

    def __init__(self, label: str, proc: asyncio.subprocess.Process, echo: bool) -> None:
        self.label = label
        self.proc = proc
        self.lines: list[str] = []
        self.echo = echo
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(
        cls,
        label: str,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        echo: bool = True,
    ) -> Process:
        proc = await asyncio.create_subprocess_exec(
            *args,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return cls(label, proc, echo)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            text = line.decode(errors="replace").rstrip("\n")
            self.lines.append(text)
            if self.echo:
                print(f"    {self.label:<8}| {text}", flush=True)

    async def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not any(text in line for line in self.lines):
            if self._reader.done() or asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(
                    f"{self.label} did not print {text!r}:\n" + "\n".join(self.lines)
                )
            await asyncio.sleep(0.05)

    async def stop(self, timeout: float = 30.0) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await asyncio.wait_for(self._reader, timeout)
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if not self._reader.done():
            self._reader.cancel()
