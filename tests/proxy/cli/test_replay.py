"""`pseudowa replay` from the command line: a real bot process, the check's exit status,
one-line mistakes, and the HTTPS proxy for bots that keep Meta's URLs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cli_helpers import one_line_error as _one_line_error
from cli_helpers import seed_greeting as _seed
from click.testing import CliRunner

from pseudowa.proxy.cassette import seeds
from pseudowa.proxy.cli.main import cli
from pseudowa.proxy.testing.ports import free_port as _free_port
from pseudowa.storage.store import CassetteStore


class _BotProcess:
    """The example bot in its own process, as a user would run it."""

    def __init__(self, graph_port: int, graph_url: str | None = None, **extra_env: str) -> None:
        import os
        import subprocess
        import sys

        self.port = _free_port()
        # The bot honours proxy variables (trust_env): none is inherited from the machine.
        inherited = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env = {
            **inherited,
            "WA_GRAPH_URL": graph_url or f"http://127.0.0.1:{graph_port}",
            "WA_TOKEN": "pseudowa-access-token",
            "WA_APP_SECRET": "pseudowa-app-secret",
            "WA_VERIFY_TOKEN": "pseudowa-verify-token",
            **extra_env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pseudowa.proxy.examples.example_bot", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}/webhook"
        self._wait()

    def _wait(self) -> None:
        import socket
        import time

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("example bot did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _replay_args(name: str, db: str, bot: _BotProcess, graph_port: int, *extra: str) -> list[str]:
    return [
        "replay",
        name,
        "--bot",
        bot.url,
        "--db",
        db,
        "--graph-port",
        str(graph_port),
        "--speed",
        "0",
        "--quiet",
        "0.3",
        *extra,
    ]


def test_replay_records_then_check_passes_and_fails(runner: CliRunner, db: str) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))

    with CassetteStore.open(db) as store:
        seeds.image_seed(store, "image")
    graph_port = _free_port()
    bot = _BotProcess(graph_port)
    try:
        first = runner.invoke(cli, _replay_args("image", db, bot, graph_port, "--journal", "rec"))
        assert first.exit_code == 0, first.output  # no --check: differences are only shown
        assert "send not in the recording" in first.output
        # The seed has no recorded sends, so --check fails on it.
        bot.stop()
        bot = _BotProcess(graph_port)
        failed = runner.invoke(
            cli, _replay_args("image", db, bot, graph_port, "--check", "--no-journal")
        )
        assert failed.exit_code == 1
        assert "check: DIFFERENT" in failed.output
        bot.stop()
        bot = _BotProcess(graph_port)
        passed = runner.invoke(
            cli,
            _replay_args(
                "rec", db, bot, graph_port, "--check", "--json", "--duplicate", "1", "--seed", "1"
            ),
        )
        assert passed.exit_code == 0, passed.output
        summary = json.loads(passed.output)
        assert summary["ok"] is True
        assert summary["webhooks"]["duplicated"] >= 1
        assert summary["check"]["dedupe_failures"] == {}
    finally:
        bot.stop()


def test_replay_user_mistakes_are_one_line(runner: CliRunner, db: str) -> None:
    import socket

    _seed(db)
    line = _one_line_error(
        runner.invoke(cli, ["replay", "nope", "--bot", "http://127.0.0.1:9/x", "--db", db])
    )
    assert "no cassette named 'nope'" in line
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _one_line_error(
            runner.invoke(
                cli,
                [
                    "replay",
                    "greeting",
                    "--bot",
                    "http://127.0.0.1:9/x",
                    "--db",
                    db,
                    "--graph-port",
                    str(port),
                ],
            )
        )
        assert "cannot listen" in line
    line = _one_line_error(
        runner.invoke(
            cli,
            [
                "replay",
                "greeting",
                "--bot",
                f"http://127.0.0.1:{_free_port()}/x",
                "--db",
                db,
                "--graph-port",
                "0",
            ],
        )
    )
    assert "verify handshake failed" in line
    bad = runner.invoke(cli, ["replay", "greeting", "--bot", "x", "--db", db, "--duplicate", "2"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


# -- replay through HTTPS_PROXY --------------------------------------------------------------

SAMPLE = Path(__file__).resolve().parents[3] / "cassettes" / "image-round-trip"


def test_replay_through_https_proxy_for_a_bot_keeping_metas_urls(
    runner: CliRunner, tmp_path: Path
) -> None:
    """The example bot as a user runs it behind the proxy: Meta's URLs, HTTPS_PROXY and
    mitmproxy's CA in SSL_CERT_FILE; nothing resolves graph.facebook.com."""
    confdir = tmp_path / "mitmproxy"
    made = runner.invoke(cli, ["ca", "--confdir", str(confdir)])  # before the bot reads it
    assert made.exit_code == 0, made.output
    ca = made.stdout.strip()
    assert ca == str(confdir / "mitmproxy-ca-cert.pem")
    proxy_port = _free_port()
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    bot = _BotProcess(
        0, graph_url="https://graph.facebook.com", HTTPS_PROXY=proxy_url, SSL_CERT_FILE=ca
    )
    try:
        result = runner.invoke(
            cli,
            [
                "replay",
                str(SAMPLE),
                "--bot",
                bot.url,
                "--graph-port",
                "0",
                "--proxy-port",
                str(proxy_port),
                "--confdir",
                str(confdir),
                "--speed",
                "0",
                "--quiet",
                "0.3",
                "--check",
                "--json",
                "--retry-time-scale",
                "1e-6",  # a bot failing on the proxy fails fast, not in days
            ],
        )
    finally:
        bot.stop()
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ok"] is True
    assert summary["check"]["run_sends"] == summary["check"]["recorded_sends"] == 1
    # Look-up, download (from the lookaside URL handed out) and reply all took the proxy;
    # the recorded reply, which --check compared, says the media's sha256 matched.
    assert summary["proxy"] == {"url": proxy_url, "redirected": 3}
    recorded = json.loads((SAMPLE / "cassette.json").read_text())
    sends = [x for x in recorded["interactions"] if x["method"] == "POST" and x["kind"] == "graph"]
    assert "sha256 ok" in json.dumps(sends)
    # The banner went to stderr, with what to set.
    assert f"HTTPS_PROXY={proxy_url} SSL_CERT_FILE={ca} REQUESTS_CA_BUNDLE={ca}" in result.stderr
    assert f"NODE_EXTRA_CA_CERTS={ca}" in result.stderr
    assert len(result.stderr.splitlines()) == 3, result.stderr  # the banner, nothing else


def test_replay_proxy_port_taken_is_one_line(runner: CliRunner, db: str, tmp_path: Path) -> None:
    import socket

    _seed(db)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _one_line_error(
            runner.invoke(
                cli,
                [
                    "replay",
                    "greeting",
                    "--bot",
                    "http://127.0.0.1:9/x",
                    "--db",
                    db,
                    "--graph-port",
                    "0",
                    "--proxy-port",
                    str(port),
                    "--confdir",
                    str(tmp_path / "mitmproxy"),
                ],
            )
        )
    assert line == (
        f"Error: cannot listen on 127.0.0.1:{port} for the proxy listener: "
        "Address already in use (choose another with --proxy-port)"
    )
    with CassetteStore.open(db) as store:  # refused before a journal was created
        assert [c.name for c in store.list_cassettes()] == ["greeting"]
    line = _one_line_error(
        runner.invoke(
            cli,
            ["replay", "greeting", "--bot", "http://127.0.0.1:9/x", "--db", db, "--confdir", "x"],
        )
    )
    assert "--confdir only applies with --proxy-port" in line
    line = _one_line_error(
        runner.invoke(
            cli,
            [
                "replay",
                "greeting",
                "--bot",
                "http://127.0.0.1:9/x",
                "--db",
                db,
                "--graph-port",
                "8765",
                "--proxy-port",
                "8765",
            ],
        )
    )
    assert "cannot share port 8765" in line


def test_replay_help_tells_how_to_use_the_proxy(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["replay", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for needle in (
        "--proxy-port PORT",
        "--confdir DIR",
        "--redirect-host HOST",
        "HTTPS_PROXY=",
        "SSL_CERT_FILE=",
        "REQUESTS_CA_BUNDLE=",
        "NODE_EXTRA_CA_CERTS=",
        "trust_env=True",
        "pseudowa ca",
    ):
        assert needle in text, needle


def test_check_update_accepts_the_run_of_a_cassette_edited_with_add(
    runner: CliRunner, db: str
) -> None:
    """A message added with `mutate add` makes the bot reply where the recording has no
    reply: --check fails until --check --update accepts this run's sends."""
    with CassetteStore.open(db) as store:
        seeds.text_seed(store, "texts", texts=("hi",))
    graph_port = _free_port()
    bot = _BotProcess(graph_port)
    try:
        made = runner.invoke(cli, _replay_args("texts", db, bot, graph_port, "--journal", "rec"))
        assert made.exit_code == 0, made.output
        added = runner.invoke(
            cli,
            ["cassette", "mutate", "rec", "--in-place", "--db", db, "add", "text", "--body", "new"],
        )
        assert added.exit_code == 0, added.output
        bot.stop()

        def run(*extra: str) -> Any:
            nonlocal bot
            bot = _BotProcess(graph_port)
            try:
                return runner.invoke(cli, _replay_args("rec", db, bot, graph_port, *extra))
            finally:
                bot.stop()

        failed = run("--check", "--no-journal")
        assert failed.exit_code == 1, failed.output
        assert "send not in the recording" in failed.output
        refused = run("--update", "--no-journal")
        assert refused.exit_code == 1 and "--update goes with --check" in refused.output
        updated = run("--check", "--update")
        assert updated.exit_code == 0, updated.output
        assert "updated rec: this run's" in updated.output
        passed = run("--check", "--no-journal")
        assert passed.exit_code == 0, passed.output
        assert "check: OK" in passed.output
        with CassetteStore.open(db) as store:
            history = [h.operation for h in store.history("rec")]
        assert history[-1] == "check-update"
    finally:
        bot.stop()


def test_a_failing_bot_is_retried_in_seconds_at_speed_0_with_progress(
    runner: CliRunner, db: str
) -> None:
    """--bad-signature: every POST is refused, retried on Meta's schedule compressed by
    --speed 0; the wait is announced with its worst case and followed line by line."""
    import time

    with CassetteStore.open(db) as store:
        seeds.text_seed(store, "texts", texts=("hi",))
    bot = _BotProcess(_free_port())
    try:
        started = time.monotonic()
        result = runner.invoke(
            cli, _replay_args("texts", db, bot, 0, "--bad-signature", "--check", "--no-journal")
        )
        took = time.monotonic() - started
    finally:
        bot.stop()
    assert result.exit_code == 1, result.output
    assert took < 30, took  # not Meta's seven days
    out = result.output
    assert "retries: a webhook the bot never accepts is dropped after 17 attempts" in out
    assert "waiting: " in out and "to retry" in out
    assert "never delivered (retries exhausted)" in out
