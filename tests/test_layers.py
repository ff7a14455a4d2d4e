"""The dependency direction of redesign.md §8.2 holds, checked on the source text.

Why an AST check and not an import-time one: a layer break hidden in a function body
(`def run(): from pseudowa.proxy.cli import ...`) or under `if TYPE_CHECKING:` is invisible
until that code runs, yet it is a real design edge. So every `import` / `from ... import`
anywhere in a file is read, relative ones resolved.

- Layering rules count TYPE_CHECKING imports: a type named in a signature is a dependency of
  the design even when it costs nothing at run time.
- The cycle check does not count them: they never execute, and a TYPE_CHECKING import is the
  standard way to name a type across a run-time cycle that does not exist.
- Dynamic imports (`importlib.import_module("...")`, as in pseudowa.proxy's lazy `_EXPORTS`) and
  package-data look-ups (storage/migrate.py reads `resources.files("pseudowa.migrations")`,
  which is no import statement) are not seen; neither breaks a rule today.

The checkers take `{module name: source text}` and return violation strings, so the self-test
at the bottom can prove each rule catches a deliberate break on a synthetic tree.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# repository folder -> the package it installs as (pyproject.toml's package-dir)
PACKAGES = {
    "proxy": "pseudowa.proxy",
    "addons": "pseudowa.addons",
    "storage": "pseudowa.storage",
    "migrations": "pseudowa.migrations",
}

Sources = Mapping[str, str]


@dataclass(frozen=True)
class Import:
    """One imported module: who imports it, where, and whether only for type checking."""

    importer: str
    target: str
    line: int
    statement: str
    type_checking: bool


def repo_sources() -> dict[str, str]:
    """Every .py file of the four packages, keyed by the module name it installs as."""
    sources: dict[str, str] = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            sources[".".join((package, *parts))] = path.read_text(encoding="utf-8")
    return sources


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _packages(sources: Sources) -> set[str]:
    """Modules that are packages (an __init__.py): those with a module below them.

    Every package of ours has one; a lone __init__.py would only skew its own relative imports.
    """
    return {name.rpartition(".")[0] for name in sources} & set(sources)


def _where(module: str, packages: set[str]) -> str:
    """The repository file of a module, for messages: pseudowa.storage.store -> storage/store.py."""
    path = module.removeprefix("pseudowa.").replace(".", "/")
    return f"{path}/__init__.py" if module in packages else f"{path}.py"


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _walk(node: ast.AST, type_checking: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement below node, at any depth, with its TYPE_CHECKING flag."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node, type_checking
        return
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        for child in node.body:
            yield from _walk(child, True)
        for child in node.orelse:
            yield from _walk(child, type_checking)
        return
    for child in ast.iter_child_nodes(node):
        # import statements live only in statement bodies, never inside expressions
        if isinstance(child, ast.stmt | ast.excepthandler | ast.match_case):
            yield from _walk(child, type_checking)


@functools.cache
def _tree(text: str, filename: str) -> ast.Module:
    """Parse once per text: every rule reads the same repository."""
    return ast.parse(text, filename)


def imports(sources: Sources) -> list[Import]:
    """All imports of all modules, targets resolved to absolute names.

    `import a.b` targets a.b (a package means its __init__); `from a import b` targets the
    module a.b when there is one, else a.
    """
    packages = _packages(sources)
    found: list[Import] = []
    for module, text in sources.items():
        here = module if module in packages else module.rpartition(".")[0]
        for node, type_checking in _walk(_tree(text, _where(module, packages)), False):
            statement = ast.unparse(node)
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parts = here.split(".")
                    anchor = ".".join(parts[: len(parts) - node.level + 1])
                    base = f"{anchor}.{base}" if base else anchor
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in sources else base
                    for alias in node.names
                ]
            for target in dict.fromkeys(targets):
                found.append(Import(module, target, node.lineno, statement, type_checking))
    return found


def _forbidden(
    sources: Sources, scope: str, allowed: Callable[[str], bool], rule: str
) -> list[str]:
    """Imports of our modules by modules under scope that allowed() rejects."""
    packages = _packages(sources)
    return [
        f"{_where(i.importer, packages)}:{i.line}: `{i.statement}` imports {i.target}: {rule}"
        for i in imports(sources)
        if _within(i.importer, scope) and _within(i.target, "pseudowa") and not allowed(i.target)
    ]


def contract_violations(sources: Sources) -> list[str]:
    """pseudowa.proxy.contract is pure WhatsApp knowledge: it imports nothing of ours."""
    return _forbidden(
        sources,
        "pseudowa.proxy.contract",
        lambda target: _within(target, "pseudowa.proxy.contract"),
        "proxy.contract imports nothing of ours",
    )


def storage_violations(sources: Sources) -> list[str]:
    """pseudowa.storage imports nothing of ours outside itself.

    storage/migrate.py has no import of pseudowa.migrations (it reads it as package data),
    so storage -> migrations is not allowed either.
    """
    return _forbidden(
        sources,
        "pseudowa.storage",
        lambda target: _within(target, "pseudowa.storage"),
        "storage imports nothing of ours outside storage",
    )


def migrations_violations(sources: Sources) -> list[str]:
    """Alembic revisions and env.py sit on storage's models only, never on the proxy."""
    return _forbidden(
        sources,
        "pseudowa.migrations",
        lambda target: (
            _within(target, "pseudowa.migrations") or _within(target, "pseudowa.storage")
        ),
        "migrations import only migrations and storage",
    )


def addons_violations(sources: Sources) -> list[str]:
    """mitmproxy addons stand on storage and the contract only (not proxy.errors either)."""
    allowed = ("pseudowa.addons", "pseudowa.storage", "pseudowa.proxy.contract")
    return _forbidden(
        sources,
        "pseudowa.addons",
        lambda target: any(_within(target, prefix) for prefix in allowed),
        "addons import only addons, storage and proxy.contract",
    )


def cassette_violations(sources: Sources) -> list[str]:
    """The cassette domain is pure: no server, no mitmproxy, no front end, no shipped tests."""
    banned = [
        f"pseudowa.proxy.{name}" for name in ("sandbox", "mitm", "cli", "examples", "testing")
    ]
    return _forbidden(
        sources,
        "pseudowa.proxy.cassette",
        lambda target: not any(_within(target, prefix) for prefix in banned),
        "proxy.cassette never imports sandbox, mitm, cli, examples or testing",
    )


def cli_importer_violations(sources: Sources) -> list[str]:
    """The click front end is a leaf: nothing outside pseudowa.proxy.cli imports it."""
    packages = _packages(sources)
    return [
        f"{_where(i.importer, packages)}:{i.line}: `{i.statement}` imports {i.target}: "
        "nothing outside proxy.cli imports proxy.cli"
        for i in imports(sources)
        if _within(i.target, "pseudowa.proxy.cli") and not _within(i.importer, "pseudowa.proxy.cli")
    ]


def runtime_cli_violations(sources: Sources) -> list[str]:
    """The sandbox, mitm and examples are library code a front end uses, never the reverse."""
    found: list[str] = []
    for scope in ("pseudowa.proxy.sandbox", "pseudowa.proxy.mitm", "pseudowa.proxy.examples"):
        found += _forbidden(
            sources,
            scope,
            lambda target: not _within(target, "pseudowa.proxy.cli"),
            f"{scope.removeprefix('pseudowa.')} never imports proxy.cli",
        )
    return found


def _shortest_cycle(graph: Mapping[str, Mapping[str, int]], first: str) -> list[str] | None:
    """The shortest import chain from first back to first, breadth first."""
    came_from: dict[str, str] = {}
    frontier = [first]
    while frontier and first not in came_from:
        following: list[str] = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    if first not in came_from:
        return None
    chain = [first]
    node = came_from[first]
    while node != first:
        chain.append(node)
        node = came_from[node]
    chain.append(first)
    return chain[::-1]


def cycle_violations(sources: Sources) -> list[str]:
    """Import cycles between our modules, each as a chain a -> b -> a with file:line per edge.

    Function-level imports count (they run, just later); TYPE_CHECKING-only ones do not.
    """
    packages = _packages(sources)
    graph: dict[str, dict[str, int]] = {module: {} for module in sources}
    for i in imports(sources):
        target = i.target
        while target and target not in sources:  # a name missing from the tree: its package
            target = target.rpartition(".")[0]
        if not i.type_checking and target and target != i.importer:
            graph[i.importer].setdefault(target, i.line)
    found: list[str] = []
    seen: set[frozenset[str]] = set()
    for module in sorted(graph):
        chain = _shortest_cycle(graph, module)
        if chain is None or frozenset(chain) in seen:
            continue
        seen.add(frozenset(chain))
        steps = " -> ".join(
            f"{b} ({_where(a, packages)}:{graph[a][b]})" for a, b in zip(chain, chain[1:])
        )
        found.append(f"import cycle: {module} -> {steps}")
    return found


def _report(violations: list[str]) -> str:
    return "\n" + "\n".join(violations)


def test_contract_imports_nothing_of_ours() -> None:
    violations = contract_violations(repo_sources())
    assert not violations, _report(violations)


def test_storage_imports_nothing_of_ours() -> None:
    violations = storage_violations(repo_sources())
    assert not violations, _report(violations)


def test_migrations_import_only_storage() -> None:
    violations = migrations_violations(repo_sources())
    assert not violations, _report(violations)


def test_addons_import_only_storage_and_contract() -> None:
    violations = addons_violations(repo_sources())
    assert not violations, _report(violations)


def test_cassette_never_imports_runtime_or_front_ends() -> None:
    violations = cassette_violations(repo_sources())
    assert not violations, _report(violations)


def test_nothing_outside_cli_imports_cli() -> None:
    violations = cli_importer_violations(repo_sources())
    assert not violations, _report(violations)


def test_sandbox_mitm_examples_never_import_cli() -> None:
    violations = runtime_cli_violations(repo_sources())
    assert not violations, _report(violations)


def test_no_import_cycles() -> None:
    violations = cycle_violations(repo_sources())
    assert not violations, _report(violations)


def test_checker_catches_deliberate_breaks() -> None:
    """A green run means something only if the checker sees a break where there is one."""
    sources = {
        "pseudowa.proxy.contract": "",
        "pseudowa.proxy.contract.x": (
            "from pseudowa.storage.store import CassetteStore\nfrom . import ids\n"
        ),
        "pseudowa.proxy.contract.ids": "",
        "pseudowa.storage": "",
        "pseudowa.storage.store": "from .rows import row\n",
        "pseudowa.storage.rows": "def row():\n    from ..proxy.errors import UserError\n",
        "pseudowa.storage.a": "from pseudowa.storage import b\n",
        "pseudowa.storage.b": "class B:\n    def m(self):\n        import pseudowa.storage.a\n",
        "pseudowa.storage.c": "from typing import TYPE_CHECKING\nimport pseudowa.storage.d\n",
        "pseudowa.storage.d": (
            "import typing\nif typing.TYPE_CHECKING:\n    import pseudowa.storage.c\n"
        ),
        "pseudowa.addons.w": (
            "import typing\nif typing.TYPE_CHECKING:\n    from pseudowa.proxy import errors\n"
        ),
        "pseudowa.proxy.errors": "",
        "pseudowa.proxy.cassette.t": "def f():\n    import pseudowa.proxy.mitm.runner\n",
        "pseudowa.proxy.sandbox.y": "async def go():\n    from pseudowa.proxy.cli import main\n",
        "pseudowa.proxy.cli": "",
    }

    def one(violations: list[str], where: str, target: str) -> None:
        assert [v for v in violations if v.startswith(where) and target in v], violations

    one(contract_violations(sources), "proxy/contract/x.py:1", "pseudowa.storage.store")
    assert len(contract_violations(sources)) == 1  # `from . import ids` is its own package
    one(storage_violations(sources), "storage/rows.py:2", "pseudowa.proxy.errors")  # relative
    one(addons_violations(sources), "addons/w.py:3", "pseudowa.proxy.errors")  # TYPE_CHECKING
    one(cassette_violations(sources), "proxy/cassette/t.py:2", "pseudowa.proxy.mitm.runner")
    one(cli_importer_violations(sources), "proxy/sandbox/y.py:2", "pseudowa.proxy.cli")
    one(runtime_cli_violations(sources), "proxy/sandbox/y.py:2", "pseudowa.proxy.cli")
    # a -> b -> a with b's import inside a method; c -> d -> c is TYPE_CHECKING-only, no cycle
    assert cycle_violations(sources) == [
        "import cycle: pseudowa.storage.a -> pseudowa.storage.b (storage/a.py:1)"
        " -> pseudowa.storage.a (storage/b.py:3)"
    ]
    clean = {
        "pseudowa.proxy.contract": "",
        "pseudowa.proxy.contract.x": "from pseudowa.proxy.contract import ids\n",
        "pseudowa.proxy.contract.ids": "",
        "pseudowa.addons.w": (
            "from pseudowa.storage.store import S\nfrom pseudowa.proxy import contract\n"
        ),
        "pseudowa.storage.store": "",
        "pseudowa.proxy.cli.main": "from pseudowa.proxy.cli import options\n",
        "pseudowa.proxy.cli.options": "",
    }
    for rule in (
        contract_violations,
        storage_violations,
        addons_violations,
        cli_importer_violations,
        cycle_violations,
    ):
        assert rule(clean) == []
