"""`pseudowa cassette ls|show|rm|cp|export|import`, and `pseudowa replay DIR` of an export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_helpers import one_line_error
from cli_helpers import seed_greeting
from click.testing import CliRunner

from pseudowa.proxy.cassette import seeds
from pseudowa.proxy.cli.main import cli
from pseudowa.proxy.contract import webhooks as wh
from pseudowa.storage.export import CASSETTE_FILE
from pseudowa.storage.records import Exchange
from pseudowa.storage.store import CassetteStore

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = sorted(p.parent for p in (ROOT / "cassettes").glob(f"*/{CASSETTE_FILE}"))


# -- ls, show, rm, cp ------------------------------------------------------------------------


def test_default_store_is_under_cassettes(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PSEUDOWA_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cassettes" / "pseudowa.db").read_bytes().startswith(b"SQLite format 3")


def test_ls_and_show(runner: CliRunner, db: str) -> None:
    seed_greeting(db)
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


def _verify_then_texts(db: str) -> None:
    """A cassette as recorded from Meta: the verify handshake (no events) comes first."""
    with CassetteStore.open(db) as store:
        store.create_cassette("talk", source="meta")
        store.append(
            "talk",
            Exchange(
                "webhook",
                "GET",
                "http://bot/webhook?hub.mode=subscribe&hub.challenge=42",
                response_status=200,
                response_body=b"42",
                started_at=99.0,
                finished_at=99.01,
            ),
        )
        for i, text in enumerate(("hi", "menu", "bye")):
            seeds.add_webhook(
                store, "talk", wh.message("text", seeds.USER, wh.text_body(text)), 100.0 + i
            )


def test_show_numbers_events_as_mutate_takes_them(runner: CliRunner, db: str) -> None:
    _verify_then_texts(db)
    show = runner.invoke(cli, ["cassette", "show", "talk", "--db", db])
    assert show.exit_code == 0, show.output
    events = show.output.split("events (3)\n", 1)[1].splitlines()[:3]
    shown = [
        (m.group(1), m.group(2))
        for m in (re.match(r"  #(\d+) .* (wamid\.\S+)", e) for e in events)
        if m
    ]
    assert [index for index, _ in shown] == ["0", "1", "2"], events
    assert "(in exchange 1)" in events[0]
    doc = json.loads(runner.invoke(cli, ["cassette", "show", "talk", "--db", db, "--json"]).output)
    assert [(e["index"], e["exchange"]) for e in doc["events"]] == [(0, 1), (1, 2), (2, 3)]
    # What show calls #2 is what mutate drops as #2: the last text, not a fourth event.
    index, wamid = shown[2]
    drop = runner.invoke(
        cli, ["cassette", "mutate", "talk", "--out", "short", "--db", db, "drop", f"#{index}"]
    )
    assert drop.exit_code == 0, drop.output
    assert f"#{index}" in drop.output and wamid in drop.output
    with CassetteStore.open(db) as store:
        assert [e.wamid for e in store.events("short")] == [w for _, w in shown[:2]]
    beyond = runner.invoke(
        cli, ["cassette", "mutate", "talk", "--out", "x", "--db", db, "drop", "#3"]
    )
    assert "no event #3 (it has 3: #0 to #2)" in one_line_error(beyond)


def test_cp_then_rm(runner: CliRunner, db: str) -> None:
    seed_greeting(db)
    cp = runner.invoke(cli, ["cassette", "cp", "greeting", "copy", "--db", db])
    assert cp.exit_code == 0, cp.output
    rm = runner.invoke(cli, ["cassette", "rm", "greeting", "--db", db])
    assert rm.exit_code == 0
    with CassetteStore.open(db) as store:
        assert [c.name for c in store.list_cassettes()] == ["copy"]
        # The copy still owns the media the original linked.
        assert store.read_media(store.media("copy", "1234").sha256) == b"\x89PNG fake"


def test_unknown_cassette_names_close_ones(runner: CliRunner, db: str) -> None:
    seed_greeting(db)
    line = one_line_error(runner.invoke(cli, ["cassette", "show", "greting", "--db", db]))
    assert "greting" in line and "'greeting'" in line


def test_cp_onto_existing_name_is_refused(runner: CliRunner, db: str) -> None:
    seed_greeting(db)
    seed_greeting(db, "other")
    line = one_line_error(runner.invoke(cli, ["cassette", "cp", "greeting", "other", "--db", db]))
    assert "already exists" in line


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "malformed database URL"),
        ("mysql://u@h/db", "unsupported database"),
        ("postgresql://nobody@127.0.0.1:1/none", "cannot open database"),
    ],
)
def test_bad_database_urls(runner: CliRunner, url: str, expected: str) -> None:
    line = one_line_error(runner.invoke(cli, ["cassette", "ls", "--db", url]))
    assert expected in line


# -- export, import --------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["cassette", "export"], ["cassette", "import"]])
def test_commands_have_help(args: list[str]) -> None:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: pseudowa cassette" in result.output


def test_cli_export_then_import(tmp_path: Path) -> None:
    runner = CliRunner()
    a, b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    with CassetteStore.open(a) as store:
        seeds.image_seed(store, "img")
    out = tmp_path / "exported"
    result = runner.invoke(cli, ["cassette", "export", "img", "-o", str(out), "--db", a])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"exported img to {out}: 1 exchanges, 1 media")
    result = runner.invoke(cli, ["cassette", "import", str(out), "--db", b])
    assert result.exit_code == 0, result.output
    assert result.output == f"imported {out} as img: 1 exchanges, 1 events, 1 media\n"
    again = runner.invoke(cli, ["cassette", "import", str(out), "--db", b])
    assert again.exit_code == 1
    assert again.output == (
        "Error: a cassette named 'img' already exists; use --replace to "
        "overwrite it or --name to choose another name\n"
    )
    assert (
        runner.invoke(cli, ["cassette", "import", str(out), "--db", b, "--replace"]).exit_code == 0
    )
    renamed = runner.invoke(cli, ["cassette", "import", str(out), "--db", b, "--name", "img2"])
    assert renamed.exit_code == 0 and "as img2" in renamed.output
    bad = runner.invoke(cli, ["cassette", "import", str(out), "--db", b, "--name", "a/b"])
    assert bad.exit_code == 1 and bad.output.startswith("Error: invalid cassette name 'a/b'")
    missing = runner.invoke(
        cli, ["cassette", "export", "nope", "-o", str(tmp_path / "x"), "--db", a]
    )
    assert missing.exit_code == 1 and missing.output.startswith("Error: no cassette named 'nope'")


@pytest.mark.parametrize("kind", ["missing", "not an export"])
def test_import_of_a_wrong_directory_creates_no_store(tmp_path: Path, kind: str) -> None:
    directory = tmp_path / "export"
    if kind == "not an export":
        directory.mkdir()
    store_file = tmp_path / "new" / "store.db"
    result = CliRunner().invoke(
        cli, ["cassette", "import", str(directory), "--db", f"sqlite:///{store_file}"]
    )
    line = one_line_error(result)
    assert str(directory) in line
    assert not store_file.exists()


def test_replay_of_a_directory_refuses_a_journal_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "replay",
            str(SAMPLES[0]),
            "--bot",
            "http://127.0.0.1:9/webhook",
            "--journal",
            "j",
        ],
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: --journal needs a cassette in the store")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("cassettes/no-such-sample", "is not a directory (expected an exported cassette)"),
        ("tests/", "holds no cassette.json: not an exported cassette"),
    ],
)
def test_replay_of_a_path_that_is_no_export(
    path: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli, ["replay", path, "--bot", "http://127.0.0.1:9/webhook"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and expected in result.output
    assert result.output.count("\n") == 1
