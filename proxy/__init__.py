"""pseudowa's Python API: a Meta-faithful WhatsApp Cloud API sandbox for a bot's tests.

    from pseudowa.proxy import Sandbox, SandboxConfig

    async with Sandbox(SandboxConfig(db="sqlite:///x.db")) as sb:
        await sb.connect_bot("http://127.0.0.1:8000/webhook")
        alice = sb.user("16505551234", name="Alice")
        await alice.send_text("hi")
        replies = await alice.wait_for_replies(1, timeout=5)
        report = await sb.replay("image-round-trip")
        assert report.ok, report.problems

Names are loaded on first use, so `import pseudowa.proxy.cassette` (mutations, no
server) or `pseudowa --version` do not pay for aiohttp and mitmproxy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from pseudowa.proxy.cassette.check import CheckResult
    from pseudowa.proxy.errors import ConfigError
    from pseudowa.proxy.errors import ListenError
    from pseudowa.proxy.errors import MutationError
    from pseudowa.proxy.errors import UserError
    from pseudowa.proxy.errors import VerifyFailed
    from pseudowa.proxy.sandbox.config import SandboxConfig
    from pseudowa.proxy.sandbox.deliveries import Outcome
    from pseudowa.proxy.sandbox.replay import ReplayReport
    from pseudowa.proxy.sandbox.sandbox import Sandbox
    from pseudowa.proxy.sandbox.sandbox import replay
    from pseudowa.proxy.sandbox.users import Reply
    from pseudowa.proxy.sandbox.users import User
    from pseudowa.storage.errors import CassetteExists
    from pseudowa.storage.errors import CassetteNotFound
    from pseudowa.storage.errors import StoreError
    from pseudowa.storage.store import CassetteStore

# public name -> the module that defines it
_EXPORTS = {
    "Sandbox": "pseudowa.proxy.sandbox.sandbox",
    "replay": "pseudowa.proxy.sandbox.sandbox",
    "SandboxConfig": "pseudowa.proxy.sandbox.config",
    "User": "pseudowa.proxy.sandbox.users",
    "Reply": "pseudowa.proxy.sandbox.users",
    "ReplayReport": "pseudowa.proxy.sandbox.replay",
    "Outcome": "pseudowa.proxy.sandbox.deliveries",
    "CheckResult": "pseudowa.proxy.cassette.check",
    "CassetteStore": "pseudowa.storage.store",
    "UserError": "pseudowa.proxy.errors",
    "ConfigError": "pseudowa.proxy.errors",
    "ListenError": "pseudowa.proxy.errors",
    "VerifyFailed": "pseudowa.proxy.errors",
    "MutationError": "pseudowa.proxy.errors",
    "StoreError": "pseudowa.storage.errors",
    "CassetteNotFound": "pseudowa.storage.errors",
    "CassetteExists": "pseudowa.storage.errors",
}

__all__ = [
    "CassetteExists",
    "CassetteNotFound",
    "CassetteStore",
    "CheckResult",
    "ConfigError",
    "ListenError",
    "MutationError",
    "Outcome",
    "ReplayReport",
    "Reply",
    "Sandbox",
    "SandboxConfig",
    "StoreError",
    "User",
    "UserError",
    "VerifyFailed",
    "replay",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
