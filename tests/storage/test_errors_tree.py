"""The store's errors beyond their messages (test_errors.py): the docstring's tree is the
class tree, how many names a CassetteNotFound offers, and the store raising each one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pseudowa.storage import errors
from pseudowa.storage.errors import CassetteExists
from pseudowa.storage.errors import CassetteNotFound
from pseudowa.storage.errors import DatabaseUnavailable
from pseudowa.storage.errors import MediaNotFound
from pseudowa.storage.store import CassetteStore


def _docstring_tree() -> dict[str, str | None]:
    """class name -> parent class name (None for the root), as the docstring draws it."""
    tree: dict[str, str | None] = {}
    root = None
    for line in (errors.__doc__ or "").splitlines():
        m = re.match(r"^\s+(?:[├└]── )?([A-Z]\w+)\s{2,}", line)
        if not m:
            continue
        if "──" in line:
            tree[m.group(1)] = root
        else:
            root = m.group(1)
            tree[root] = None
    return tree


def test_docstring_tree_is_the_class_tree() -> None:
    classes = {
        name: obj
        for name, obj in vars(errors).items()
        if isinstance(obj, type)
        and issubclass(obj, Exception)
        and obj.__module__ == errors.__name__
    }
    tree = _docstring_tree()
    assert set(tree) == set(classes)
    for name, parent in tree.items():
        expected = Exception if parent is None else classes[parent]
        assert classes[name].__bases__ == (expected,), name


def test_not_found_suggests_at_most_three() -> None:
    e = CassetteNotFound("run", [f"run{i}" for i in range(6)])
    assert str(e).count("'run") == 1 + 3  # the name asked for, then three suggestions


def test_not_found_lists_at_most_eight_names() -> None:
    names = [f"{c}{c}{c}{c}" for c in "abcdefghij"]
    e = CassetteNotFound("zzzzzz", names)
    listed = str(e).split("cassettes: ", 1)[1].split(", ")
    assert listed == sorted(names)[:8]


def test_not_found_accepts_any_iterable() -> None:
    e = CassetteNotFound("greting", (n for n in ["greeting"]))
    assert "did you mean 'greeting'?" in str(e)


def test_the_store_raises_them_with_near_names(tmp_path: Path) -> None:
    with CassetteStore.open(f"sqlite:///{tmp_path / 'x.db'}") as store:
        with pytest.raises(CassetteNotFound, match="no cassettes yet"):
            store.get_cassette("greeting")
        store.create_cassette("greeting")
        with pytest.raises(CassetteNotFound, match=r"did you mean 'greeting'\?"):
            store.get_cassette("greting")
        with pytest.raises(CassetteExists, match="'greeting' already exists"):
            store.create_cassette("greeting")
        with pytest.raises(MediaNotFound, match="no media with id '42'"):
            store.media("greeting", "42")


def test_a_bad_url_is_database_unavailable() -> None:
    with pytest.raises(DatabaseUnavailable):
        CassetteStore.open("notaurl://nowhere")
