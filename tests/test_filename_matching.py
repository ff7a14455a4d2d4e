"""Every module has its test file and every test file has its module (mitmproxy's rule).

tests/ mirrors the source tree so a reader finds a module's tests without searching:
proxy/sandbox/graph.py is tested in tests/proxy/sandbox/test_graph.py and
storage/export/reader.py in tests/storage/export/test_reader.py. A module may have several
test files, named test_<module>_<topic>.py (test_mutations_replay.py tests mutations.py), and a
package may be tested as a whole by test_<package>.py next to its folder.

Exempt: __init__.py and __main__.py, migrations/ (Alembic revisions, tested through
storage/migrate.py), the files directly in tests/ (end-to-end checks of the project:
packaging, README, samples, OpenAPI, layers, this file), and proxy/examples/pytest_suite/,
which is itself a test suite (shipped for users to copy; tests/proxy/testing/test_plugin.py
runs it).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from pathlib import PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
SOURCE_FOLDERS = ("proxy", "addons", "storage")
EXEMPT = {"__init__.py", "__main__.py"}
TEST_SUITES = ("proxy/examples/pytest_suite/",)


def mismatches(sources: Iterable[str], tests: Iterable[str]) -> tuple[list[str], list[str]]:
    """(missing test files, orphan test files) for repository-relative POSIX paths.

    sources are the .py files under the source folders; tests the test_*.py files under
    tests/<source folder>/.
    """
    # folder -> names a test file there may be about: its modules and its subpackages
    subjects: dict[PurePosixPath, set[str]] = {}
    expected: set[str] = set()
    for source in map(PurePosixPath, sources):
        if source.name == "__init__.py":
            subjects.setdefault(source.parent.parent, set()).add(source.parent.name)
        if source.name in EXEMPT:
            continue
        subjects.setdefault(source.parent, set()).add(source.stem)
        expected.add(str("tests" / source.parent / f"test_{source.name}"))
    present = set(tests)
    orphans = []
    for test in sorted(present):
        path = PurePosixPath(test)
        topic = path.stem.removeprefix("test_")
        names = subjects.get(path.parent.relative_to("tests"), set())
        if not any(topic == name or topic.startswith(f"{name}_") for name in names):
            orphans.append(test)
    return sorted(expected - present), orphans


def _repo_files() -> tuple[list[str], list[str]]:
    sources = [
        path.relative_to(ROOT).as_posix()
        for folder in SOURCE_FOLDERS
        for path in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in path.parts
        and not path.relative_to(ROOT).as_posix().startswith(TEST_SUITES)
    ]
    tests = [
        path.relative_to(ROOT).as_posix()
        for folder in SOURCE_FOLDERS
        for path in (ROOT / "tests" / folder).rglob("test_*.py")
        if "__pycache__" not in path.parts
    ]
    return sources, tests


def test_every_module_has_a_test_file_and_every_test_file_a_module() -> None:
    missing, orphans = mismatches(*_repo_files())
    assert not missing and not orphans, (
        "\nmodules without their test file (create these):\n  "
        + ("\n  ".join(missing) or "none")
        + "\ntest files without their module (rename or move these):\n  "
        + ("\n  ".join(orphans) or "none")
    )


def test_matching_self_test() -> None:
    """The matcher reports what it should, so a green run means the tree really matches."""
    sources = [
        "proxy/__init__.py",
        "proxy/errors.py",
        "proxy/cli/__init__.py",
        "proxy/cli/__main__.py",
        "proxy/cassette/mutations.py",
        "proxy/sandbox/graph.py",
        "storage/export/__init__.py",
        "storage/export/reader.py",
    ]
    tests = [
        "tests/proxy/test_errors.py",
        "tests/proxy/cassette/test_mutations.py",
        "tests/proxy/cassette/test_mutations_replay.py",
        "tests/proxy/cassette/test_mutate.py",
        "tests/storage/test_export.py",
        "tests/storage/export/test_reader.py",
        "tests/storage/export/test_writer.py",
        "tests/proxy/test_main.py",
    ]
    assert mismatches(sources, tests) == (
        ["tests/proxy/sandbox/test_graph.py"],
        [
            "tests/proxy/cassette/test_mutate.py",
            "tests/proxy/test_main.py",
            "tests/storage/export/test_writer.py",
        ],
    )
