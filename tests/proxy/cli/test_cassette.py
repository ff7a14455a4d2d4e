"""`pseudowa cassette export` / `import`, and `pseudowa replay DIR` of an export."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pseudowa.proxy.cassette import seeds
from pseudowa.proxy.cli.main import cli
from pseudowa.storage.export import CASSETTE_FILE
from pseudowa.storage.store import CassetteStore

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = sorted(p.parent for p in (ROOT / "cassettes").glob(f"*/{CASSETTE_FILE}"))


# -- CLI -------------------------------------------------------------------------------------


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
