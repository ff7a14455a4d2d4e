"""`pseudowa record`: its help, and how its options become the recorder's RecordOptions.

The recorder itself is tested in tests/proxy/mitm/test_record.py; here `run_record` is
replaced, so no mitmproxy runs and no port is bound.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cli_helpers import one_line_error
from click.testing import CliRunner

from pseudowa.proxy.cli.main import cli
from pseudowa.proxy.errors import UserError
from pseudowa.proxy.mitm import record as recorder
from pseudowa.proxy.mitm.record import RecordOptions


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[RecordOptions]:
    """The options each `pseudowa record` run handed to run_record."""
    calls: list[RecordOptions] = []

    def fake_run_record(options: RecordOptions, on_line: Callable[[str], None]) -> None:
        calls.append(options)
        on_line(f"recording {options.name}")

    # The command imports run_record when it runs, so patching the module is enough.
    monkeypatch.setattr(recorder, "run_record", fake_run_record)
    return calls


def test_help_tells_how_to_point_meta_and_the_bot_at_it(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["record", "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: pseudowa record [OPTIONS] NAME" in result.output
    assert "Pointing Meta and the bot at the recorder" in result.output
    assert "HTTPS_PROXY=http://127.0.0.1:8093" in result.output
    assert "PSEUDOWA_APP_SECRET" in result.output


def test_defaults_are_the_recorders(
    runner: CliRunner, recorded: list[RecordOptions], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("PSEUDOWA_APP_SECRET", "PSEUDOWA_ACCESS_TOKEN", "PSEUDOWA_VERIFY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    result = runner.invoke(cli, ["record", "session"])
    assert result.exit_code == 0, result.output
    assert result.output == "recording session\n"
    # The CLI's defaults and RecordOptions' defaults are the same recorder.
    assert recorded == [RecordOptions(name="session")]


def test_options_reach_the_recorder(
    runner: CliRunner, recorded: list[RecordOptions], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PSEUDOWA_ACCESS_TOKEN", "tok")
    args = [
        *("--db", "sqlite:///group.db", "record", "session"),
        *("--bot-webhook", "http://127.0.0.1:8000/webhook", "--host", "0.0.0.0"),
        *("--webhook-port", "0", "--graph-port", "1", "--media-port", "2", "--proxy-port", "3"),
        *("--graph-upstream", "http://g", "--media-upstream", "http://m"),
        *("--no-proxy", "--mode", "append", "--source", "sandbox", "--app-secret", "s"),
        *("--verify-token", "v", "--pseudonymize", "--confdir", "/conf", "--ssl-insecure"),
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert recorded == [
        RecordOptions(
            name="session",
            db="sqlite:///group.db",
            bot_webhook="http://127.0.0.1:8000/webhook",
            host="0.0.0.0",
            webhook_port=0,
            graph_port=1,
            media_port=2,
            proxy_port=3,
            graph_upstream="http://g",
            media_upstream="http://m",
            mode="append",
            source="sandbox",
            app_secret="s",
            access_token="tok",
            verify_token="v",
            pseudonymize=True,
            regular_proxy=False,
            confdir="/conf",
            ssl_insecure=True,
        )
    ]


def test_the_commands_db_wins_over_the_groups(
    runner: CliRunner, recorded: list[RecordOptions]
) -> None:
    args = ["--db", "sqlite:///group.db", "record", "s", "--db", "sqlite:///own.db"]
    assert runner.invoke(cli, args).exit_code == 0
    assert recorded[0].db == "sqlite:///own.db"


@pytest.mark.parametrize(
    "args",
    [
        ["--mode", "sometimes"],
        ["--source", "elsewhere"],
        ["--graph-port", "65536"],
    ],
)
def test_bad_choices_are_usage_errors(
    runner: CliRunner, recorded: list[RecordOptions], args: list[str]
) -> None:
    result = runner.invoke(cli, ["record", "s", *args])
    assert result.exit_code == 2
    assert "Invalid value" in result.output
    assert recorded == []


def test_a_recorder_refusal_is_one_line(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(options: RecordOptions, on_line: Callable[[str], None]) -> None:
        raise UserError(f"a cassette named {options.name!r} already exists")

    monkeypatch.setattr(recorder, "run_record", refuse)
    line = one_line_error(runner.invoke(cli, ["record", "taken"]))
    assert line == "Error: a cassette named 'taken' already exists"
