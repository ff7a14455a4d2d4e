"""The `pseudowa` group: its version, every command's help, and its `--db` option."""

from __future__ import annotations

import pytest
from cli_helpers import seed_greeting
from click.testing import CliRunner

from pseudowa.proxy.cli.main import cli


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert "pseudowa, version" in result.output


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["db"],
        ["db", "upgrade"],
        ["db", "current"],
        ["cassette"],
        ["cassette", "ls"],
        ["replay"],
        ["ca"],
        ["cassette", "show"],
        ["cassette", "rm"],
        ["cassette", "cp"],
        ["cassette", "mutate"],
        ["record"],
        ["demo"],
        ["example-bot"],
    ],
)
def test_every_command_has_help(runner: CliRunner, args: list[str]) -> None:
    result = runner.invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: pseudowa" in result.output


def test_db_from_environment_and_group_option(
    runner: CliRunner, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_greeting(db)
    monkeypatch.setenv("PSEUDOWA_DB", db)
    assert "greeting" in runner.invoke(cli, ["cassette", "ls"]).output
    monkeypatch.delenv("PSEUDOWA_DB")
    assert "greeting" in runner.invoke(cli, ["--db", db, "cassette", "ls"]).output
