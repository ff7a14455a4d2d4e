"""`pseudowa db upgrade|current`, and a file that is no pseudowa store left untouched."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import one_line_error
from click.testing import CliRunner

from pseudowa.proxy.cli.main import cli


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


def test_text_file_as_database_is_left_untouched(runner: CliRunner, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"my precious notes\n" * 100)
    before = notes.read_bytes()
    for args in (["cassette", "ls"], ["db", "upgrade"], ["cassette", "rm", "x"]):
        line = one_line_error(runner.invoke(cli, [*args, "--db", f"sqlite:///{notes}"]))
        assert "not a SQLite database" in line
    assert notes.read_bytes() == before


def test_foreign_sqlite_database_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    before = path.read_bytes()
    line = one_line_error(runner.invoke(cli, ["db", "upgrade", "--db", f"sqlite:///{path}"]))
    assert "did not create" in line
    assert path.read_bytes() == before
