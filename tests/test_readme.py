"""README examples run: the walkthrough's shell blocks, as written, on free ports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from pseudowa.proxy.testing.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# The walkthrough names fixed ports; the test swaps each for a free one so it cannot
# collide with anything else on the machine.
PORTS = ("8000", "8080", "8090", "8091", "8092")


def walkthrough_blocks() -> list[str]:
    text = README.read_text()
    start = text.index("## Five-minute walkthrough")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```sh\n(.*?)```", text[start:end], flags=re.S)


def test_walkthrough_has_record_replay_mutate_and_check() -> None:
    script = "\n".join(walkthrough_blocks())
    for needed in ("pseudowa record", "pseudowa replay", "pseudowa cassette mutate", "--check"):
        assert needed in script


def test_walkthrough_runs(tmp_path: Path) -> None:
    script = "\n".join(walkthrough_blocks())
    for port in PORTS:
        script = re.sub(rf"\b{port}\b", str(free_port()), script)
    (tmp_path / "cassettes").symlink_to(ROOT / "cassettes")
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PSEUDOWA_DB", None)
    # On any failure the background processes are killed so the test cannot hang.
    wrapped = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script
    run = subprocess.run(
        ["bash", "-c", wrapped], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "check: OK" in run.stdout
    assert "check: DIFFERENT" in run.stdout  # the swapped image was caught
    assert "duplicate" in run.stdout
    assert (tmp_path / "exported" / "my-session-dup" / "cassette.json").is_file()


def test_python_api_example_runs() -> None:
    text = README.read_text()
    start = text.index("## From Python: `Sandbox`")
    [code] = re.findall(
        r"```python\n(.*?)```", text[start : text.index("\n## ", start + 1)], flags=re.S
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "bot replied: echo: hi" in run.stdout
    assert "replay check: OK" in run.stdout


def test_pytest_example_runs(tmp_path: Path) -> None:
    text = README.read_text()
    start = text.index("## Testing your bot with pytest")
    [code] = re.findall(
        r"```python\n(.*?)```", text[start : text.index("\n## ", start + 1)], flags=re.S
    )
    (tmp_path / "test_readme_example.py").write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--pseudowa-cassettes={ROOT / 'cassettes'}",
            str(tmp_path),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "2 passed" in run.stdout
