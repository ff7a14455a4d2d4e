"""Subprocesses for tests and tools: a program run with its output kept (and echoed)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path


class Process:
    """A subprocess whose output lines are kept as they come, and echoed if asked.

    stderr joins stdout by default (one transcript); with `merge_stderr=False` it is kept
    apart in `stderr`, for tests that assert a program wrote nothing there."""

    def __init__(self, label: str, proc: asyncio.subprocess.Process, echo: bool) -> None:
        self.label = label
        self.proc = proc
        self.lines: list[str] = []
        self.stderr = b""
        self.echo = echo
        self._changed = asyncio.Event()
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
        merge_stderr: bool = True,
    ) -> Process:
        """Start `args` with `env` added to this process's environment."""
        proc = await asyncio.create_subprocess_exec(
            *args,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        )
        return cls(label, proc, echo)

    @property
    def output(self) -> str:
        """Everything printed so far, one line per line."""
        return "\n".join(self.lines)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        err = None
        if self.proc.stderr is not None:
            err = asyncio.get_running_loop().create_task(self.proc.stderr.read())
        while line := await self.proc.stdout.readline():
            text = line.decode(errors="replace").rstrip("\n")
            self.lines.append(text)
            self._changed.set()
            if self.echo:
                print(f"    {self.label:<8}| {text}", flush=True)
        if err is not None:
            self.stderr = await err
        self._changed.set()

    async def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The first line matching the regular expression `pattern`, waiting for it to be
        printed; RuntimeError with the output when the program ends or time runs out."""
        regex = re.compile(pattern)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = 0
        while True:
            for line in self.lines[seen:]:
                if m := regex.search(line):
                    return m
            seen = len(self.lines)
            left = deadline - loop.time()
            if self._reader.done() or left <= 0:
                raise RuntimeError(
                    f"{self.label} did not print {pattern!r}:\n{self.output}\n"
                    f"{self.stderr.decode(errors='replace')}".rstrip()
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass

    async def wait(self, timeout: float = 30.0) -> int:
        """The exit code once the program ended by itself and its output is read."""
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await asyncio.wait_for(self._reader, timeout)
        return code

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as a service manager (or Ctrl-C) would; then the exit code."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await self.wait(timeout)

    async def kill(self) -> None:
        """SIGKILL, for clean-up after a failure."""
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if not self._reader.done():
            self._reader.cancel()
