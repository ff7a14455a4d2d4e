"""pseudowa.proxy's public surface is exactly what it promises (httpx's exported-members test).

The package exports its names lazily: a module `__getattr__` imports each from the module
`_EXPORTS` names, so `import pseudowa.proxy` and the cassette tools stay cheap. That design can
rot silently: a name listed but gone, a re-export from the wrong module, `__all__` drifting
from `_EXPORTS`, or an eager import dragging aiohttp back in. These tests pin each of those.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import pseudowa.proxy

# What redesign.md §8.1 and the README promise a bot's test suite.
CORE = {
    "Sandbox",
    "SandboxConfig",
    "ReplayReport",
    "CassetteStore",
    "UserError",
    "VerifyFailed",
    "ConfigError",
    "StoreError",
    "replay",
}


def _loaded(statement: str, prefixes: list[str]) -> list[str]:
    """Modules under prefixes that a fresh interpreter has loaded after running statement."""
    code = (
        f"import json, sys\n{statement}\n"
        f"prefixes = {prefixes!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules"
        " if any(m == p or m.startswith(p + '.') for p in prefixes))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded: list[str] = json.loads(out)
    return loaded


def test_all_is_sorted_and_is_the_lazy_exports() -> None:
    assert pseudowa.proxy.__all__ == sorted(pseudowa.proxy.__all__)
    assert pseudowa.proxy.__all__ == sorted(pseudowa.proxy._EXPORTS)


def test_core_names_are_promised() -> None:
    assert CORE <= set(pseudowa.proxy.__all__), CORE - set(pseudowa.proxy.__all__)


@pytest.mark.parametrize("name", pseudowa.proxy.__all__)
def test_name_resolves_from_its_own_module(name: str) -> None:
    """Each name is defined where _EXPORTS says, not re-exported through another module."""
    value = getattr(pseudowa.proxy, name)
    assert value.__module__ == pseudowa.proxy._EXPORTS[name]


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        getattr(pseudowa.proxy, "NoSuchName")


def test_importing_the_package_loads_no_server() -> None:
    """`import pseudowa.proxy` must not pay for aiohttp (nor mitmproxy, its docstring says)."""
    assert _loaded("import pseudowa.proxy", ["aiohttp", "mitmproxy"]) == []


def test_mutations_load_no_runtime() -> None:
    """Cassette mutations are pure: no aiohttp, mitmproxy, sandbox, mitm runner or CLI."""
    banned = [
        "aiohttp",
        "mitmproxy",
        "pseudowa.proxy.sandbox",
        "pseudowa.proxy.mitm",
        "pseudowa.proxy.cli",
    ]
    assert _loaded("import pseudowa.proxy.cassette.mutations", banned) == []
