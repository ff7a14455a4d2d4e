"""`pseudowa db upgrade|current`, and a file that is no pseudowa store left untouched."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import one_line_error
from click.testing import CliRunner
from sqlalchemy import text

from pseudowa.proxy.cli.main import cli
from pseudowa.storage import migrate
from pseudowa.storage.store import CassetteStore


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


def _newer_store(db: str) -> None:
    with CassetteStore.open(db) as store:
        with store.engine.begin() as conn:
            conn.execute(text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = '9999_future'"))


def test_db_current_on_a_store_from_a_newer_pseudowa_fails_in_one_line(
    runner: CliRunner, db: str
) -> None:
    _newer_store(db)
    for args in (["db", "current"], ["db", "upgrade"]):
        line = one_line_error(runner.invoke(cli, [*args, "--db", db]))
        assert "written by a newer pseudowa" in line and "9999_future" in line


def test_db_upgrade_refuses_a_store_with_corrupted_pages(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with CassetteStore.open(f"sqlite:///{path}") as store:
        store.create_cassette("c")
        for i in range(40):
            store.put_media(bytes([i]) * 20_000, "image/png")
    with path.open("r+b") as fh:
        fh.seek(4096 * 6)
        fh.write(bytes(range(256)) * 48)
    damaged = path.read_bytes()
    for args in (["db", "upgrade"], ["db", "current"], ["cassette", "ls"]):
        line = one_line_error(runner.invoke(cli, [*args, "--db", f"sqlite:///{path}"]))
        assert "is damaged" in line
    assert path.read_bytes() == damaged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.db"]


def test_db_current_on_an_empty_file_writes_nothing(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    result = runner.invoke(cli, ["db", "current", "--db", f"sqlite:///{path}"])
    assert result.exit_code == 0, result.output
    assert "no schema" in result.output
    assert path.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


def test_db_current_on_a_missing_file_creates_nothing(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "store.db"
    result = runner.invoke(cli, ["db", "current", "--db", f"sqlite:///{path}"])
    assert result.exit_code == 0, result.output
    assert "no schema" in result.output
    assert list(tmp_path.iterdir()) == []


def test_db_gc_is_a_dry_run_until_yes(runner: CliRunner, db: str) -> None:
    with CassetteStore.open(db) as store:
        store.create_cassette("kept")
        store.link_media("kept", "1", store.put_media(b"kept", "image/png").sha256)
        stray = store.put_media(b"x" * 1500, "image/png").sha256

    dry = runner.invoke(cli, ["db", "gc", "--min-age", "0", "--db", db])
    assert dry.exit_code == 0, dry.output
    assert dry.output.count("\n") == 1
    assert "would free 1 unreferenced media blob (1,500 bytes)" in dry.output
    assert "--yes" in dry.output
    with CassetteStore.open(db) as store:
        assert store.media_info(stray) is not None

    young = runner.invoke(cli, ["db", "gc", "--yes", "--db", db])  # default --min-age 3600
    assert young.exit_code == 0, young.output
    assert "nothing to free" in young.output

    done = runner.invoke(cli, ["db", "gc", "--yes", "--min-age", "0", "--db", db])
    assert done.exit_code == 0, done.output
    assert done.output.count("\n") == 1
    assert "freed 1 unreferenced media blob (1,500 bytes)" in done.output
    with CassetteStore.open(db) as store:
        assert store.media_info(stray) is None
        assert store.media("kept", "1").size == 4


def test_db_gc_dry_run_on_a_missing_store_creates_nothing(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(cli, ["db", "gc", "--db", f"sqlite:///{tmp_path / 'none.db'}"])
    assert result.exit_code == 0, result.output
    assert "nothing to free" in result.output
    assert list(tmp_path.iterdir()) == []


def test_db_gc_with_a_bad_min_age_is_a_usage_error(runner: CliRunner, db: str) -> None:
    result = runner.invoke(cli, ["db", "gc", "--min-age", "-1", "--db", db])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
