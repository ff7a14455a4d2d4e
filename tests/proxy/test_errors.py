"""The proxy side's user errors: the tree in the module docstring, and one line in the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_helpers import one_line_error
from click.testing import CliRunner

from pseudowa.proxy import errors
from pseudowa.proxy.cassette import mutations
from pseudowa.proxy.cli.main import cli
from pseudowa.proxy.errors import ConfigError
from pseudowa.proxy.errors import ListenError
from pseudowa.proxy.errors import MutationError
from pseudowa.proxy.errors import UserError
from pseudowa.proxy.errors import VerifyFailed
from pseudowa.storage.errors import StoreError
from pseudowa.storage.store import CassetteStore


def _docstring_tree() -> dict[str, str]:
    """child class name -> parent class name, as drawn in the module docstring."""
    doc = errors.__doc__ or ""
    parents: dict[str, str] = {}
    root = None
    for line in doc.splitlines():
        m = re.match(r"^\s+(?:[├└]── )?([A-Z]\w+)\s{2,}", line)
        if not m:
            continue
        if "──" not in line:
            root = m.group(1)
        else:
            assert root is not None
            parents[m.group(1)] = root
    return parents


def _classes() -> dict[str, type]:
    return {
        name: obj
        for name, obj in vars(errors).items()
        if isinstance(obj, type)
        and issubclass(obj, Exception)
        and obj.__module__ == errors.__name__
    }


def test_docstring_tree_is_the_class_tree() -> None:
    tree = _docstring_tree()
    classes = _classes()
    assert set(tree) | {"UserError"} == set(classes)
    for child, parent in tree.items():
        assert parent == "UserError"
        assert classes[child].__bases__[0] is classes[parent]


@pytest.mark.parametrize("cls", [ConfigError, ListenError, VerifyFailed, MutationError])
def test_every_error_is_a_user_error(cls: type[Exception]) -> None:
    assert issubclass(cls, UserError)
    assert isinstance(cls("boom"), UserError)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="bad speed"):
        raise ConfigError("bad speed")


def test_listen_error_is_an_os_error() -> None:
    with pytest.raises(OSError, match="port 8080 is taken"):
        raise ListenError("port 8080 is taken")


def test_errors_are_not_store_errors() -> None:
    for cls in _classes().values():
        assert not issubclass(cls, StoreError)
    assert not issubclass(StoreError, UserError)


def test_verify_failed_and_mutation_error_are_not_value_or_os_errors() -> None:
    for cls in (VerifyFailed, MutationError, UserError):
        assert not issubclass(cls, ValueError | OSError)


def test_cli_prints_a_user_error_as_one_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    args = ["replay", "x", "--bot", "http://127.0.0.1:1/webhook", "--no-sign", "--bad-signature"]
    result = CliRunner().invoke(cli, [*args, "--db", db])
    assert result.exit_code == 1
    line = one_line_error(result)
    assert "--no-sign" in line and "--bad-signature" in line
    assert isinstance(result.exception, SystemExit)


def test_cli_prints_a_config_error_as_one_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    args = ["replay", "x", "--bot", "http://127.0.0.1:1/webhook", "--confdir", str(tmp_path)]
    result = CliRunner().invoke(cli, [*args, "--db", db])
    assert result.exit_code == 1
    assert "--confdir only applies with --proxy-port" in one_line_error(result)
    # Rejected before the store was opened.
    assert not (tmp_path / "x.db").exists()


def test_cli_mutate_without_out_or_in_place_is_one_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(cli, ["cassette", "mutate", "x", "--db", db, "drop", "1"])
    assert result.exit_code == 1
    assert one_line_error(result) == "Error: give --out NEW (a new cassette to write) or --in-place"


def test_a_mutation_error_reaches_the_user_as_one_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    with CassetteStore.open(db) as store:
        store.create_cassette("x")
        # The library raises MutationError (a UserError, not a StoreError) ...
        with pytest.raises(MutationError, match="no event #5"):
            mutations.drop(store, "x", "5", out="y")
        assert not store.exists("y")
    # ... and the CLI prints it as one line with exit status 1.
    args = ["cassette", "mutate", "x", "--out", "y", "--db", db, "drop", "5"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "no event #5" in one_line_error(result)
