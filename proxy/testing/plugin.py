"""pseudowa's pytest plugin (entry point `pseudowa`): a Meta-faithful WhatsApp sandbox for a
bot's own test suite, and cassette replays as a CI gate.

Fixtures
    pseudowa_config        the SandboxConfig of every sandbox (override it, at any scope)
    pseudowa_store         a throwaway cassette store for the session (--pseudowa-db URL)
    pseudowa_sandbox       a started sandbox on free ports; blocking in sync tests and
                           awaitable in async ones (proxy/testing/threaded.py)
    pseudowa_example_bot   the bundled example bot, started and connected

Marker
    @pytest.mark.pseudowa(cassette="NAME", check=True, **sandbox_options) replays NAME to
    the connected bot before the test body runs and fails the test with the check's diff;
    keyword options are SandboxConfig fields (duplicate=1.0, reorder=3, ...).

Cassettes are exported directories under --pseudowa-cassettes (default tests/cassettes),
or names in the store. --pseudowa-record decides what a test does about its cassette:
    none   replay it; a missing cassette fails the test (the default, for CI)
    once   replay it; record a missing one from the live session the test drives
    new    as once, and append the test's live session to an existing cassette
    all    always record from the live session (the old cassette is replaced)
"""

from __future__ import annotations

import enum
from collections.abc import Generator
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import pytest

from pseudowa.proxy.errors import ConfigError
from pseudowa.proxy.sandbox.config import SandboxConfig

if TYPE_CHECKING:
    # Loaded by the fixtures, not at start-up: every pytest run of a project that has
    # pseudowa installed loads this plugin, and most tests never touch a sandbox.
    from pseudowa.proxy.sandbox.replay import ReplayReport
    from pseudowa.proxy.testing.bots import ExampleBot
    from pseudowa.proxy.testing.threaded import ThreadedSandbox
    from pseudowa.storage.store import CassetteStore

DEFAULT_CASSETTES = Path("tests") / "cassettes"
MARKER = "pseudowa"


class RecordMode(enum.StrEnum):
    """What a marked test does about its cassette (pytest-recording's --record-mode)."""

    NONE = "none"
    ONCE = "once"
    NEW = "new"
    ALL = "all"


@dataclass(frozen=True)
class CassettePlan:
    """What one marked test replays or records, decided before it runs."""

    name: str
    directory: Path  # where the exported cassette is, or will be written
    mode: RecordMode
    check: bool
    replay_from: str | None  # an exported directory or a store name; None: nothing to replay
    record: bool  # keep this test's live session as the cassette once the test passed

    @property
    def missing(self) -> bool:
        return self.replay_from is None and not self.record

    def missing_reason(self, store_url: str) -> str:
        return (
            f"cassette {self.name!r} not found: no {self.directory}/cassette.json and no "
            f"such cassette in {store_url}; record it from this test's session with "
            "--pseudowa-record=once"
        )


_PLAN = pytest.StashKey[CassettePlan]()
_SANDBOX = pytest.StashKey["ThreadedSandbox"]()


# -- options and marker ---------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pseudowa", "WhatsApp Cloud API sandbox (pseudowa)")
    group.addoption(
        "--pseudowa-cassettes",
        metavar="DIR",
        default=None,
        help=f"Exported cassettes for @pytest.mark.pseudowa (default: <rootdir>/{DEFAULT_CASSETTES}).",
    )
    group.addoption(
        "--pseudowa-record",
        choices=[m.value for m in RecordMode],
        default=RecordMode.NONE.value,
        help="none: a missing cassette fails the test (default); once: record missing "
        "cassettes from the test's live session; new: also append the session to existing "
        "ones; all: always re-record.",
    )
    group.addoption(
        "--pseudowa-db",
        metavar="URL",
        default=None,
        help="Cassette store for the session (default: a throwaway SQLite file).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(cassette=None, check=True, **sandbox_options): replay the cassette to the "
        "connected bot before the test and fail it when the bot misbehaves; options are "
        "SandboxConfig fields.",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A marked test needs a sandbox even when it does not name the fixture.
    for item in items:
        if item.get_closest_marker(MARKER) is not None:
            names = getattr(item, "fixturenames", None)
            if isinstance(names, list) and "pseudowa_sandbox" not in names:
                names.append("pseudowa_sandbox")


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def pseudowa_config() -> SandboxConfig:
    """The sandbox's settings: fast and fault-free; at speed 0 Meta's 7-day retry schedule
    passes in about 3 s. Override this fixture (any scope) to change them, e.g.
    `return SandboxConfig(speed=0, duplicate=0.1, seed=1)`."""
    return SandboxConfig(speed=0, quiet_s=0.3)


@pytest.fixture(scope="session")
def pseudowa_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CassetteStore]:
    """The session's cassette store: --pseudowa-db, else a throwaway SQLite file."""
    from pseudowa.storage.store import CassetteStore

    url = request.config.getoption("pseudowa_db") or (
        f"sqlite:///{tmp_path_factory.mktemp('pseudowa') / 'store.db'}"
    )
    store = CassetteStore.open(url)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def pseudowa_sandbox(
    request: pytest.FixtureRequest, pseudowa_config: SandboxConfig, pseudowa_store: CassetteStore
) -> Iterator[ThreadedSandbox]:
    """A started sandbox on free ports; `.graph_url` is known before your bot starts."""
    from pseudowa.proxy.testing.threaded import ThreadedSandbox

    config = pseudowa_config
    plan: CassettePlan | None = None
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        plan, overrides = _plan(request, marker, pseudowa_store)
        try:
            config = config.replace(**overrides)
        except ConfigError as e:
            pytest.fail(f"@pytest.mark.{MARKER}: {e}", pytrace=False)
        request.node.stash[_PLAN] = plan
    sb = ThreadedSandbox.start(config, store=pseudowa_store)
    request.node.stash[_SANDBOX] = sb
    try:
        yield sb
    finally:
        sb.close()


@pytest.fixture
def pseudowa_example_bot(pseudowa_sandbox: ThreadedSandbox) -> Iterator[ExampleBot]:
    """The bundled example bot, pointed at the sandbox and connected (handshake done)."""
    from pseudowa.proxy.testing.bots import ExampleBot

    bot = ExampleBot.for_sandbox(pseudowa_sandbox.sandbox)
    runner = pseudowa_sandbox.runner
    runner.call(bot.start())
    try:
        runner.call(pseudowa_sandbox.sandbox.connect_bot(bot.url))
        yield bot
    finally:
        runner.call(bot.stop())


# -- the marker's replay, and the record decision --------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    plan = item.stash.get(_PLAN, None)
    if plan is not None:
        _replay_before(item, plan)
    result = yield
    if plan is not None and plan.record:
        # Recorded while the test's bot is still up: its last statuses belong in it.
        _record(item.stash[_SANDBOX], plan)
    return result


def _replay_before(item: pytest.Item, plan: CassettePlan) -> None:
    """The marker's replay, before the test body; a failed check fails the test."""
    sb = item.stash[_SANDBOX]
    if plan.missing:
        pytest.fail(
            plan.missing_reason(sb.sandbox.store.url if sb.sandbox.store else "-"), pytrace=False
        )
    if plan.replay_from is None:
        return  # recording: the test body drives the live session
    if not sb.bot_url:
        pytest.fail(
            f"@pytest.mark.{MARKER}(cassette={plan.name!r}) has no bot to replay to: use the "
            "pseudowa_example_bot fixture, or a fixture of yours that starts your bot with "
            "pseudowa_sandbox.graph_url and calls pseudowa_sandbox.connect_bot(url)",
            pytrace=False,
        )
    report = sb.runner.call(sb.sandbox.replay(plan.replay_from, check=plan.check))
    object.__setattr__(sb, "last_report", report)
    if not report.ok:
        pytest.fail(describe_failure(plan.name, report), pytrace=False)


def describe_failure(cassette: str, report: ReplayReport) -> str:
    """What pytest shows when a marked replay fails: the cassette, each problem, the diff."""
    lines = [f"pseudowa replay of cassette {cassette!r} failed the check:"]
    lines += [f"  {line}" for line in report.problems]
    c = report.check
    lines.append(f"  bot sends: {c.run_sends} now, {c.recorded_sends} recorded")
    if report.journal:
        lines.append(f"  the run's journal is cassette {report.journal!r}")
    return "\n".join(lines)


def _plan(
    request: pytest.FixtureRequest, marker: pytest.Mark, store: CassetteStore
) -> tuple[CassettePlan, dict[str, Any]]:
    options = dict(marker.kwargs)
    name = options.pop("cassette", None) or (marker.args[0] if marker.args else None)
    if not isinstance(name, str) or not name:
        pytest.fail(f"@pytest.mark.{MARKER} needs cassette='NAME'", pytrace=False)
    check = bool(options.pop("check", True))
    from pseudowa.storage.export import is_export_dir

    config = request.config
    given = config.getoption("pseudowa_cassettes")
    root = Path(given) if given else config.rootpath / DEFAULT_CASSETTES
    directory = root / name
    mode = RecordMode(config.getoption("pseudowa_record"))
    source: str | None = None
    if is_export_dir(str(directory)):
        source = str(directory)
    elif store.exists(name):
        source = name
    if mode is RecordMode.ALL:
        plan = CassettePlan(name, directory, mode, check, None, record=True)
    elif source is not None:
        plan = CassettePlan(name, directory, mode, check, source, record=mode is RecordMode.NEW)
    else:
        plan = CassettePlan(name, directory, mode, check, None, record=mode is not RecordMode.NONE)
    return plan, options


def _record(sb: ThreadedSandbox, plan: CassettePlan) -> None:
    """Keep the test's live session as the cassette: written as an exported directory (a
    new episode is appended to an existing one with --pseudowa-record=new)."""
    import tempfile

    from pseudowa.proxy.cassette.tape import index_exchange
    from pseudowa.storage.export import export_cassette
    from pseudowa.storage.export import import_cassette
    from pseudowa.storage.export import is_export_dir
    from pseudowa.storage.store import CassetteStore

    # Statuses of the bot's last replies may still be on their way: they belong in it.
    sb.runner.call(sb.sandbox.idle())
    with tempfile.TemporaryDirectory(prefix="pseudowa-record-") as tmp:
        with CassetteStore.open(f"sqlite:///{Path(tmp) / 'record.db'}") as scratch:
            append = plan.mode is RecordMode.NEW and is_export_dir(str(plan.directory))
            if append:
                import_cassette(scratch, plan.directory, plan.name, index_events=index_exchange)
            sb.runner.call(
                sb.sandbox.save_session(
                    plan.name, store=scratch, notes=f"recorded by {plan.name}", append=append
                )
            )
            export_cassette(scratch, plan.name, plan.directory)
