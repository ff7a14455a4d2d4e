"""The `pseudowa` CLI: commands work, and user mistakes are one line and a non-zero exit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_helpers import one_line_error as _one_line_error
from cli_helpers import seed_greeting as _seed
from click.testing import CliRunner

from pseudowa.proxy.cli.main import cli
from pseudowa.storage.store import CassetteStore


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
    ],
)
def test_every_command_has_help(runner: CliRunner, args: list[str]) -> None:
    result = runner.invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: pseudowa" in result.output


def test_db_upgrade_then_current(runner: CliRunner, db: str) -> None:
    result = runner.invoke(cli, ["db", "upgrade", "--db", db])
    assert result.exit_code == 0, result.output
    assert "(head)" in result.output
    result = runner.invoke(cli, ["db", "current", "--db", db])
    assert result.exit_code == 0
    assert "up to date" in result.output


def test_db_current_does_not_create_schema(runner: CliRunner, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = runner.invoke(cli, ["db", "current", "--db", db])
    assert result.exit_code == 0
    assert "no schema" in result.output


def test_db_from_environment_and_group_option(
    runner: CliRunner, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(db)
    monkeypatch.setenv("PSEUDOWA_DB", db)
    assert "greeting" in runner.invoke(cli, ["cassette", "ls"]).output
    monkeypatch.delenv("PSEUDOWA_DB")
    assert "greeting" in runner.invoke(cli, ["--db", db, "cassette", "ls"]).output


def test_default_store_is_under_cassettes(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PSEUDOWA_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, ["cassette", "ls"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cassettes" / "pseudowa.db").read_bytes().startswith(b"SQLite format 3")


def test_ls_and_show(runner: CliRunner, db: str) -> None:
    _seed(db)
    ls = runner.invoke(cli, ["cassette", "ls", "--db", db])
    assert ls.exit_code == 0
    assert "greeting" in ls.output and "sandbox" in ls.output
    show = runner.invoke(cli, ["cassette", "show", "greeting", "--db", db])
    assert show.exit_code == 0, show.output
    assert re.search(r"webhook\s+POST\s+http://bot/webhook\s+-> 200 \(250 ms\)", show.output)
    assert "wamid.A" in show.output
    assert "1234  image/png" in show.output
    doc = json.loads(
        runner.invoke(cli, ["cassette", "show", "greeting", "--db", db, "--json"]).output
    )
    assert doc["exchanges"][0]["duration_s"] == 0.25
    assert doc["events"][0]["from"] == "16505551234"
    as_list = json.loads(runner.invoke(cli, ["cassette", "ls", "--db", db, "--json"]).output)
    assert as_list[0]["interactions"] == 1 and as_list[0]["media"] == 1


def test_cp_then_rm(runner: CliRunner, db: str) -> None:
    _seed(db)
    cp = runner.invoke(cli, ["cassette", "cp", "greeting", "copy", "--db", db])
    assert cp.exit_code == 0, cp.output
    rm = runner.invoke(cli, ["cassette", "rm", "greeting", "--db", db])
    assert rm.exit_code == 0
    with CassetteStore.open(db) as store:
        assert [c.name for c in store.list_cassettes()] == ["copy"]
        # The copy still owns the media the original linked.
        assert store.read_media(store.media("copy", "1234").sha256) == b"\x89PNG fake"


def test_unknown_cassette_names_close_ones(runner: CliRunner, db: str) -> None:
    _seed(db)
    line = _one_line_error(runner.invoke(cli, ["cassette", "show", "greting", "--db", db]))
    assert "greting" in line and "'greeting'" in line


def test_cp_onto_existing_name_is_refused(runner: CliRunner, db: str) -> None:
    _seed(db)
    _seed(db, "other")
    line = _one_line_error(runner.invoke(cli, ["cassette", "cp", "greeting", "other", "--db", db]))
    assert "already exists" in line


def test_text_file_as_database_is_left_untouched(runner: CliRunner, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"my precious notes\n" * 100)
    before = notes.read_bytes()
    for args in (["cassette", "ls"], ["db", "upgrade"], ["cassette", "rm", "x"]):
        line = _one_line_error(runner.invoke(cli, [*args, "--db", f"sqlite:///{notes}"]))
        assert "not a SQLite database" in line
    assert notes.read_bytes() == before


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "malformed database URL"),
        ("mysql://u@h/db", "unsupported database"),
        ("postgresql://nobody@127.0.0.1:1/none", "cannot open database"),
    ],
)
def test_bad_database_urls(runner: CliRunner, url: str, expected: str) -> None:
    line = _one_line_error(runner.invoke(cli, ["cassette", "ls", "--db", url]))
    assert expected in line


def test_foreign_sqlite_database_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    before = path.read_bytes()
    line = _one_line_error(runner.invoke(cli, ["db", "upgrade", "--db", f"sqlite:///{path}"]))
    assert "did not create" in line
    assert path.read_bytes() == before


# -- replay ------------------------------------------------------------------------------
