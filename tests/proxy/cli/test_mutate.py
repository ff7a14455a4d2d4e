"""`pseudowa cassette mutate`: one line per operation, one-line mistakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from pseudowa.proxy.cassette import seeds
from pseudowa.proxy.cassette.mutations import OPERATIONS
from pseudowa.proxy.cassette.tape import SIGNING_ANNOTATION
from pseudowa.proxy.cli.main import cli
from pseudowa.storage.store import CassetteStore


def _one_line_error(result: Any) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return str(lines[0])


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with CassetteStore.open(url) as s:
        seeds.text_seed(s, "seed")
    return url


def _mutate(db: str, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--db", db, "cassette", "mutate", *args])


def test_cli_duplicate_and_add_print_one_line(db: str) -> None:
    result = _mutate(
        db, "seed", "--out", "twice", "duplicate", "#0", "--times", "2", "--gap", "0.5"
    )
    assert result.exit_code == 0, result.output
    (line,) = result.output.splitlines()
    assert "delivered 2 more times, 0.5 s apart" in line
    assert line.endswith("wrote new cassette twice (from seed)")
    result = _mutate(
        db,
        "twice",
        "--in-place",
        "add",
        "location",
        "--lat",
        "1.5",
        "--long",
        "2",
        "--name",
        "Cafe",
        "--after",
        "#0",
    )
    assert result.exit_code == 0, result.output
    assert "added location message wamid." in result.output and "(in place)" in result.output
    result = _mutate(db, "twice", "--in-place", "add", "text", "--body", "late")
    assert result.exit_code == 0, result.output
    with CassetteStore.open(db) as s:
        events = s.events("twice")
        # hi, the location right after it, menu, the button reply, hi's copies, the new text
        assert [e.type for e in events] == [
            "text",
            "location",
            "text",
            "interactive",
            "text",
            "text",
            "text",
        ]
        assert [h.operation for h in s.history("twice")] == ["copy", "duplicate", "add", "add"]


def test_cli_set_and_signature(db: str) -> None:
    result = _mutate(db, "seed", "--out", "s", "set", "1", "text.body", "new text")
    assert result.exit_code == 0, result.output
    assert 'set text.body = "new text"' in result.output
    result = _mutate(db, "s", "--in-place", "break-signature", "#2")
    assert result.exit_code == 0 and "with a wrong signature" in result.output
    with CassetteStore.open(db) as s:
        marks = [x.annotations.get(SIGNING_ANNOTATION) for x in s.interactions("s")]
    assert marks == [None, None, "bad"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["seed", "--out", "x", "set", "#0", "text.bogus", "v"], "'text.bogus' is not a field"),
        (["seed", "--out", "x", "drop", "wamid.nope"], "no event with wamid 'wamid.nope'"),
        (["seed", "drop", "#0"], "give --out NEW"),
        (["seed", "--out", "x", "--in-place", "drop", "#0"], "not both"),
        (["nosuch", "--out", "x", "drop", "#0"], "no cassette named 'nosuch'"),
        (["seed", "--out", "seed", "drop", "#0"], "already exists"),
        (["seed", "--out", "x", "move", "#0"], "exactly one of --before"),
        (["seed", "--out", "x", "fail-status", "#0"], "is a message, not a status"),
        (["seed", "--out", "x", "add", "image", "--body", "x"], "No such option"),
    ],
)
def test_cli_mistakes_are_one_line(db: str, args: list[str], expected: str) -> None:
    result = _mutate(db, *args)
    if expected == "No such option":  # click's own usage errors keep click's format
        assert result.exit_code == 2 and expected in result.output
        return
    assert expected in _one_line_error(result)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["drop", "-1"], "No such option '-1'"),
        (["duplicate", "#0", "--times", "abc"], "Invalid value for '--times'"),
        (["swap-media", "1234", "/nonexistent/a.png"], "File '/nonexistent/a.png' does not"),
    ],
)
def test_usage_errors_are_clicks_usage_block_with_exit_2(
    db: str, args: list[str], expected: str
) -> None:
    """The README's convention: click's usage errors exit 2 with its usage block (library
    mistakes are one line and exit 1, above); either way nothing is written."""
    result = _mutate(db, "seed", "--out", "x", *args)
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"Usage: pseudowa cassette mutate NAME {args[0]} [OPTIONS]")
    assert lines[1].startswith(f"Try 'pseudowa cassette mutate NAME {args[0]} --help'")
    assert lines[-1].startswith("Error: ") and expected in lines[-1]
    assert "Traceback" not in result.output
    with CassetteStore.open(db) as store:
        assert not store.exists("x")


def test_readme_states_both_exit_conventions() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    assert "**exit 1, one line**" in readme and "**exit 2, click's usage block**" in readme


def test_every_operation_is_a_subcommand_with_its_variants() -> None:
    root = click.Context(cli)
    group = cli.get_command(root, "cassette").get_command(root, "mutate")  # type: ignore[union-attr]
    assert set(group.list_commands(root)) == set(OPERATIONS)
    for op in OPERATIONS.values():
        command = group.get_command(root, op.name)
        if op.variants:
            assert set(command.list_commands(root)) == {v.command for v in op.variants}
        else:
            assert [p.name for p in command.params] == [p.name for p in op.params]


def _help_commands() -> list[list[str]]:
    """Every operation, and every variant of one, as `mutate ... --help` words."""
    words: list[list[str]] = []
    for op in OPERATIONS.values():
        words.append([op.name])
        words.extend([op.name, v.command] for v in op.variants)
    return words


@pytest.mark.parametrize("words", _help_commands(), ids=" ".join)
@pytest.mark.parametrize("name", [[], ["seed", "--out", "x"]], ids=["bare", "with NAME"])
def test_every_operation_help_is_its_own(words: list[str], name: list[str]) -> None:
    """`cassette mutate set --help` shows set's usage and help, not the group's."""
    result = CliRunner().invoke(cli, ["cassette", "mutate", *name, *words, "--help"])
    assert result.exit_code == 0, result.output
    usage = result.output.splitlines()[0]
    assert usage.startswith(f"Usage: pseudowa cassette mutate NAME {' '.join(words)} "), usage
    op = OPERATIONS[words[0]]
    own = op.help if len(words) == 1 else next(v.help for v in op.variants if v.command == words[1])
    first_words = " ".join(own.split()[:3])
    assert first_words in " ".join(result.output.split())
    assert "Craft edge cases" not in result.output  # the group's help
