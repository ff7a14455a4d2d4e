"""`pseudowa ca`, `pseudowa demo` and `pseudowa example-bot`: what the commands add to the
library functions they run (tested in tests/proxy/mitm/test_ca.py and tests/proxy/examples/)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cli_helpers import one_line_error
from click.testing import CliRunner

from pseudowa.proxy.cli.main import cli
from pseudowa.proxy.examples import demo

SECRETS = {"WA_TOKEN": "t", "WA_APP_SECRET": "s", "WA_VERIFY_TOKEN": "v"}

# -- ca ---------------------------------------------------------------------------------------


def test_ca_prints_the_path_of_the_certificate_it_made(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["ca", "--confdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip())
    assert result.output.count("\n") == 1
    assert path.parent == tmp_path and path.is_file()
    # A second run finds the same certificate.
    assert runner.invoke(cli, ["ca", "--confdir", str(tmp_path)]).output == result.output


def test_ca_that_cannot_be_made_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    line = one_line_error(runner.invoke(cli, ["ca", "--confdir", str(blocker / "conf")]))
    assert "cannot create mitmproxy's CA" in line


# -- demo -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("passed", "exit_code"), [(True, 0), (False, 1)])
def test_demo_exit_status_is_its_verdict(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, passed: bool, exit_code: int
) -> None:
    samples: list[Path | None] = []

    def fake_main(echo: Callable[[str], None], sample: Path | None = None) -> bool:
        samples.append(sample)
        echo("demo ran")
        return passed

    monkeypatch.setattr(demo, "main", fake_main)
    result = runner.invoke(cli, ["demo"])
    assert result.exit_code == exit_code
    assert result.output == "demo ran\n"
    assert samples == [Path("cassettes/image-round-trip")]
    runner.invoke(cli, ["demo", "--sample", "elsewhere"])
    assert samples[-1] == Path("elsewhere")


# -- example-bot ------------------------------------------------------------------------------


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The host and port of each web.run_app call, which returns at once."""
    calls: list[dict[str, Any]] = []

    def fake_run_app(app: web.Application, **kw: Any) -> None:
        calls.append({"app": app, "host": kw["host"], "port": kw["port"]})

    monkeypatch.setattr(web, "run_app", fake_run_app)
    return calls


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_example_bot_needs_its_three_secrets(
    runner: CliRunner, served: list[dict[str, Any]], missing: str
) -> None:
    env = {k: v for k, v in SECRETS.items() if k != missing}
    result = runner.invoke(cli, ["example-bot"], env={missing: None, **env})
    assert result.exit_code == 2
    assert "Missing option" in result.output
    assert served == []


def test_example_bot_serves_on_host_and_port(
    runner: CliRunner, served: list[dict[str, Any]]
) -> None:
    result = runner.invoke(cli, ["example-bot", "--port", "0"], env=SECRETS)
    assert result.exit_code == 0, result.output
    assert [(c["host"], c["port"]) for c in served] == [("127.0.0.1", 0)]
    assert isinstance(served[0]["app"], web.Application)


def test_example_bot_on_a_busy_port_is_one_line(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def busy(app: web.Application, **kw: Any) -> None:
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(web, "run_app", busy)
    result = runner.invoke(cli, ["example-bot", "--port", "8000"], env=SECRETS)
    line = one_line_error(result)
    assert line == "Error: cannot listen on 127.0.0.1:8000: Address already in use"
