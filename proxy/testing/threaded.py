"""A Sandbox on an event loop of its own, in a background thread, for sync and async tests.

Every coroutine method keeps its name and gains a blocking form: called where no event
loop runs (a plain test function) it waits and returns the result; called inside a
coroutine (an async test) it returns an awaitable instead, so the same names work both
ways:

    def test_sync(pseudowa_sandbox):
        pseudowa_sandbox.user("16505551234").send_text("hi")          # blocks

    async def test_async(pseudowa_sandbox):
        await pseudowa_sandbox.user("16505551234").send_text("hi")    # awaits

The sandbox's servers, emitter and journal all live on the background loop; the test's
own loop (if any) is never blocked by them.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Coroutine
from typing import Any
from typing import TypeVar

from pseudowa.proxy.cassette import check
from pseudowa.proxy.sandbox.config import SandboxConfig
from pseudowa.proxy.sandbox.sandbox import Sandbox
from pseudowa.proxy.sandbox.users import User
from pseudowa.storage.store import CassetteStore

T = TypeVar("T")
THREAD_NAME = "pseudowa-sandbox"


class LoopThread:
    """An asyncio loop running in a daemon thread until stop()."""

    def __init__(self, name: str = THREAD_NAME) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        # Whatever is still pending once stopped gets to finish its clean-up.
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T | Awaitable[T]:
        """Run `coro` on the loop: its result when the caller runs no loop, else an
        awaitable of it."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return future.result()
        return asyncio.wrap_future(future)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for it, whoever calls."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        """Stop the loop and wait for the thread to end."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


class _Blocking:
    """Wraps an object of the sandbox: coroutine methods run on the loop thread."""

    def __init__(self, target: Any, runner: LoopThread) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_runner", runner)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if inspect.iscoroutinefunction(value):
            return self._wrap(value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    def _wrap(self, method: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._runner.run(method(*args, **kwargs))

        return call


class ThreadedUser(_Blocking):
    """A simulated user whose `send_*` and `wait_for_replies` also work without a loop."""

    _target: User

    def __repr__(self) -> str:
        return repr(self._target)


class ThreadedSandbox(_Blocking):
    """A started `Sandbox` driven from any thread (see the module docstring).

    `sandbox` is the Sandbox itself, for code that runs on its loop; everything else
    reads as the Sandbox does, plus assertions that explain what the user got."""

    _target: Sandbox

    def __init__(self, sandbox: Sandbox, runner: LoopThread) -> None:
        super().__init__(sandbox, runner)
        object.__setattr__(self, "last_report", None)

    @classmethod
    def start(
        cls, config: SandboxConfig | None = None, *, store: CassetteStore | None = None
    ) -> ThreadedSandbox:
        """Start a sandbox on a new loop thread (its Graph URL is bound on return)."""
        runner = LoopThread()

        async def started() -> Sandbox:
            sandbox = Sandbox(config, store=store)
            await sandbox.start()
            return sandbox

        try:
            sandbox = runner.call(started())
        except BaseException:
            runner.stop()
            raise
        return cls(sandbox, runner)

    @property
    def sandbox(self) -> Sandbox:
        return self._target

    @property
    def runner(self) -> LoopThread:
        return self._runner  # type: ignore[no-any-return]

    def user(self, phone: str, name: str | None = None) -> ThreadedUser:
        """The simulated WhatsApp user with this number (see `Sandbox.user`)."""
        return ThreadedUser(self._target.user(phone, name), self._runner)

    def replay(self, cassette: str, *, check: bool = True, journal_name: str | None = None) -> Any:
        """`Sandbox.replay`, blocking or awaitable; the report is also kept as `last_report`."""

        async def replay() -> Any:
            report = await self._target.replay(cassette, check=check, journal_name=journal_name)
            object.__setattr__(self, "last_report", report)
            return report

        return self.runner.run(replay())

    def close(self) -> None:
        """Stop the sandbox and its thread (idempotent)."""
        if self.runner.alive:
            try:
                self.runner.call(self._target.close())
            finally:
                self.runner.stop()

    # -- assertions a user reads ----------------------------------------------------------

    def assert_replied(
        self, user: ThreadedUser | User | str, contains: str | None = None, timeout: float = 5.0
    ) -> Any:
        """Wait up to `timeout` for a reply of the bot's to `user` (containing `contains`, in
        its text or anywhere in its body, when given); AssertionError lists what arrived."""
        return self.runner.call(self._assert_replied(_user_of(self, user), contains, timeout))

    async def _assert_replied(self, user: User, contains: str | None, timeout: float) -> Any:
        def matching() -> Any:
            return next(
                (
                    r
                    for r in user.replies
                    if contains is None
                    or contains in (r.text or "")
                    or contains in str(r.send.body)
                ),
                None,
            )

        if await self._target.sends_until(lambda: matching() is not None, timeout):
            return matching()
        got = [r.text or r.type for r in user.replies] or "no reply at all"
        wanted = f" containing {contains!r}" if contains is not None else ""
        raise AssertionError(
            f"the bot sent {user.name} ({user.wa_id}) no reply{wanted} within "
            f"{timeout:g} s; it got: {got}"
        )

    def assert_no_reply(self, user: ThreadedUser | User | str, quiet_s: float = 0.5) -> None:
        """Once the sandbox is quiet for `quiet_s`, the bot has sent `user` nothing."""
        target = _user_of(self, user)
        self.runner.call(self._target.idle(quiet_s))
        if target.replies:
            raise AssertionError(
                f"the bot replied to {target.name} ({target.wa_id}): "
                f"{[r.text or r.type for r in target.replies]}"
            )

    def assert_deduplicated(self, wamid: str, quiet_s: float = 0.5) -> None:
        """Once quiet, the bot answered the message `wamid` at most once, however many
        times it was delivered."""
        self.runner.call(self._target.idle(quiet_s))
        # The replay check's own judgement, over the live session's journal: a reply counts
        # for the message it quotes, else for the delivery in flight when it was made.
        exchanges = list(self._target.journal.exchanges)
        delivered = [d for d in check.deliveries(exchanges) if wamid in d.wamids]
        replies = check.replies_per_wamid(check.sends(exchanges), delivered)[wamid]
        if replies > 1:
            copies = sum(1 for d in delivered if d.status == 200)
            raise AssertionError(
                f"failed dedupe: {wamid} delivered {copies} times, the bot replied {replies} times"
            )


def _user_of(sb: ThreadedSandbox, user: ThreadedUser | User | str) -> User:
    if isinstance(user, str):
        return sb.sandbox.user(user)
    if isinstance(user, ThreadedUser):
        return user._target
    return user
