"""The wheel is complete: built offline, installed in a fresh venv, its CLI migrates a store."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # No build isolation: CI has no network beyond the registries, and setuptools
    # is already in the test extras.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        check=True,
        cwd=build,
        env={**os.environ, "PIP_NO_INDEX": "1"},
    )
    (whl,) = out.glob("pseudowa-*.whl")
    return whl


def test_wheel_ships_namespaced_packages_and_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "pseudowa/migrations/env.py" in names
    assert "pseudowa/migrations/script.py.mako" in names
    assert "pseudowa/migrations/versions/0001_initial_schema.py" in names
    assert "pseudowa/storage/store.py" in names
    assert "pseudowa/proxy/cli/main.py" in names
    # No generic top-level names land in site-packages.
    tops = {n.split("/", 1)[0] for n in names if not n.startswith("pseudowa-")}
    assert tops == {"pseudowa"}


def _wheel_venv(wheel: Path, tmp_path: Path) -> Path:
    """A fresh venv with pseudowa from the wheel; its dependencies (and pytest) come from
    the test environment, appended after the venv's own site-packages (no network)."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
    )
    # The dependencies come from the test environment (appended after the venv's own
    # site-packages) so the test needs no network; pseudowa itself comes from the wheel.
    purelib = Path(
        subprocess.check_output(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
        ).strip()
    )
    deps = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]]]
    (purelib / "zz_test_deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")

    where = subprocess.check_output(
        [str(py), "-c", "import pseudowa.migrations as m; print(m.__file__)"],
        text=True,
        cwd=tmp_path,
    )
    assert str(env_dir) in where, where
    return env_dir


@pytest.fixture(scope="module")
def wheel_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _wheel_venv(wheel, tmp_path_factory.mktemp("env"))


def test_installed_wheel_runs_cli_and_migrates(wheel_env: Path, tmp_path: Path) -> None:
    exe = wheel_env / "bin" / "pseudowa"
    help_run = subprocess.run([str(exe), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert help_run.returncode == 0, help_run.stderr
    assert "cassette" in help_run.stdout

    db = tmp_path / "x.db"
    up = subprocess.run(
        [str(exe), "db", "upgrade", "--db", f"sqlite:///{db}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert up.returncode == 0, up.stderr
    assert "(head)" in up.stdout
    assert db.read_bytes().startswith(b"SQLite format 3")


def test_installed_wheel_brings_the_pytest_plugin_and_its_example_suite(
    wheel_env: Path, tmp_path: Path
) -> None:
    py = wheel_env / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    help_run = subprocess.run(
        [str(py), "-m", "pytest", "--help"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert help_run.returncode == 0, help_run.stderr
    assert "--pseudowa-record={none,once,new,all}" in help_run.stdout
    # The example suite as a user finds it in the installed package, copied and run.
    suite = subprocess.check_output(
        [str(py), "-c", "import pseudowa.proxy.examples as e; print(e.__path__[0])"],
        text=True,
        cwd=tmp_path,
    ).strip()
    assert str(wheel_env) in suite, suite
    project = tmp_path / "my-bot-tests"
    project.mkdir()
    for path in (Path(suite) / "pytest_suite").glob("test_*.py"):
        (project / path.name).write_text(path.read_text())
    run = subprocess.run(
        [str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        capture_output=True,
        text=True,
        cwd=project,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "4 passed" in run.stdout


def test_every_package_folder_is_listed_in_pyproject() -> None:
    """A sub-package missing from [tool.setuptools] packages is silently left out of the
    wheel; the editable install used in development would not notice."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    roots = {folder: name for name, folder in config["package-dir"].items()}
    found = set()
    for folder, name in roots.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *rel)))
    assert found == listed, {"missing": sorted(found - listed), "stale": sorted(listed - found)}
