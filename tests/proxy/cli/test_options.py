"""`--db` and open_store: the option on a command or the group, else $PSEUDOWA_DB."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from cli_helpers import one_line_error
from click.testing import CliRunner

from pseudowa.proxy.cli.main import cli
from pseudowa.proxy.cli.options import db_option
from pseudowa.proxy.cli.options import open_store
from pseudowa.storage import migrate
from pseudowa.storage.errors import DatabaseUnavailable
from pseudowa.storage.store import ENV_VAR


@click.group()
@db_option
def group(db: str | None) -> None:
    """A group like the CLI's root: its --db is the fallback of its commands."""


@group.command("where")
@db_option
@click.option("--no-upgrade", is_flag=True)
def where(db: str | None, no_upgrade: bool) -> None:
    with open_store(db, upgrade=not no_upgrade) as store:
        click.echo(f"{store.url} {store.schema_revision()}")


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def test_db_option_is_db_url_with_no_default() -> None:
    (option,) = [p for p in where.params if p.name == "db"]
    assert isinstance(option, click.Option)
    assert option.opts == ["--db"]
    assert option.metavar == "URL"
    assert option.default is None
    assert f"${ENV_VAR}" in (option.help or "")


def test_db_option_returns_the_command() -> None:
    def fn(db: str | None) -> None: ...

    assert db_option(fn) is fn


def test_open_store_uses_the_commands_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    result = CliRunner().invoke(group, ["where", "--db", _url(tmp_path / "cmd.db")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cmd.db").exists()
    assert migrate.head() in result.output  # opened with upgrade: schema at head


def test_open_store_falls_back_to_the_groups_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    result = CliRunner().invoke(group, ["--db", _url(tmp_path / "grp.db"), "where"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "grp.db").exists()


def test_the_commands_db_wins_over_the_groups(tmp_path: Path) -> None:
    args = ["--db", _url(tmp_path / "grp.db"), "where", "--db", _url(tmp_path / "cmd.db")]
    result = CliRunner().invoke(group, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cmd.db").exists()
    assert not (tmp_path / "grp.db").exists()


def test_environment_is_used_when_db_is_absent(tmp_path: Path) -> None:
    env_db = tmp_path / "env.db"
    result = CliRunner().invoke(group, ["where"], env={ENV_VAR: _url(env_db)})
    assert result.exit_code == 0, result.output
    assert env_db.exists()
    assert "env.db" in result.output


def test_db_wins_over_the_environment(tmp_path: Path) -> None:
    env = {ENV_VAR: _url(tmp_path / "env.db")}
    result = CliRunner().invoke(group, ["where", "--db", _url(tmp_path / "opt.db")], env=env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "opt.db").exists()
    assert not (tmp_path / "env.db").exists()


def test_no_upgrade_leaves_the_schema_alone(tmp_path: Path) -> None:
    result = CliRunner().invoke(group, ["where", "--no-upgrade", "--db", _url(tmp_path / "n.db")])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(" None")


def test_a_bad_url_raises_database_unavailable(tmp_path: Path) -> None:
    result = CliRunner().invoke(group, ["where", "--db", "notaurl://nowhere"])
    assert isinstance(result.exception, DatabaseUnavailable)
    assert "notaurl" in str(result.exception)


def test_the_cli_prints_a_bad_url_as_one_line() -> None:
    result = CliRunner().invoke(cli, ["cassette", "ls", "--db", "notaurl://nowhere"])
    assert result.exit_code == 1
    line = one_line_error(result)
    assert "unsupported database" in line and "sqlite:///" in line


def test_the_cli_reads_the_environment(tmp_path: Path) -> None:
    env_db = tmp_path / "from-env.db"
    result = CliRunner().invoke(cli, ["db", "upgrade"], env={ENV_VAR: _url(env_db)})
    assert result.exit_code == 0, result.output
    assert "from-env.db" in result.output
    assert env_db.exists()


@pytest.mark.parametrize(
    "args", [["cassette", "ls"], ["cassette", "show", "greeting"], ["db", "current"]]
)
@pytest.mark.parametrize("empty_file", [True, False])
def test_read_only_commands_create_no_file_folder_or_schema(
    tmp_path: Path, args: list[str], empty_file: bool
) -> None:
    path = tmp_path / "store.db" if empty_file else tmp_path / "sub" / "store.db"
    if empty_file:
        path.touch()
    result = CliRunner().invoke(cli, [*args, "--db", _url(path)])
    if args[1] == "show":
        assert "no cassette named 'greeting'" in one_line_error(result)
    else:
        assert result.exit_code == 0, result.output
        assert result.output.strip().endswith(("no cassettes", "(empty)"))
    assert sorted(p.name for p in tmp_path.iterdir()) == (["store.db"] if empty_file else [])
    if empty_file:
        assert path.read_bytes() == b""
