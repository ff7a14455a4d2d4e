"""SandboxConfig: everything a sandbox can be told, in one flat, validated dataclass.

It is the single source of defaults for the Python API, `pseudowa replay` and the
fixtures to come; the CLI's option names are its field names (`--access-token` sets
`access_token`). The nested runtime configs (`EmitterConfig`, `GraphConfig`) are built
from it, so no caller wires them by hand.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal

from pseudowa.proxy.contract import matching
from pseudowa.proxy.contract import media_url
from pseudowa.proxy.contract.webhooks import STATUS_ORDER
from pseudowa.proxy.contract.webhooks import BusinessAccount
from pseudowa.proxy.errors import ConfigError

if TYPE_CHECKING:
    from pseudowa.proxy.sandbox.emitter import EmitterConfig
    from pseudowa.proxy.sandbox.graph import GraphConfig

Signing = Literal["valid", "none", "bad"]
SIGNING_MODES: tuple[Signing, ...] = ("valid", "none", "bad")
# What `pseudowa replay` listens on unless told otherwise (architecture.md); the Python
# API's default is port 0, a free port, so two sandboxes never collide.
DEFAULT_GRAPH_PORT = 8080
_ACCOUNT = BusinessAccount()


@dataclass(frozen=True)
class SandboxConfig:
    """How a sandbox runs: store, addresses, secrets, Meta's behaviour and injected faults.

    Defaults give a faithful, fault-free sandbox on free ports of 127.0.0.1. Invalid
    values raise `ConfigError` (a `UserError`: the CLI prints it as one line).
    """

    # -- where --------------------------------------------------------------------------
    db: str | None = None  # store URL; None: no store (replay exported directories only)
    bot_url: str | None = None  # the bot's webhook URL; may be given later (connect_bot)
    graph_host: str = "127.0.0.1"
    graph_port: int = 0  # 0: a free port, known as `Sandbox.graph_url` once started
    # -- secrets (the bot's environment must carry the same) ----------------------------
    access_token: str = "pseudowa-access-token"  # Bearer token the bot must send
    app_secret: str = "pseudowa-app-secret"  # key of X-Hub-Signature-256
    verify_token: str = "pseudowa-verify-token"  # hub.verify_token of the handshake
    # -- the business side ----------------------------------------------------------------
    phone_number_id: str = _ACCOUNT.phone_number_id
    display_phone_number: str = _ACCOUNT.display_phone_number
    waba_id: str = _ACCOUNT.waba_id
    # -- webhook delivery, like Meta --------------------------------------------------------
    skip_verify: bool = False  # no verify handshake before the first delivery
    signing: Signing = "valid"  # "none": no signature header; "bad": a wrong one
    speed: float = 1.0  # recorded offsets divided by this; 0: as fast as possible
    duplicate: float = 0.0  # probability a webhook is delivered twice
    reorder: int = 0  # shuffle deliveries within windows of N
    batch: int = 1  # merge up to N due webhooks into one POST
    concurrency: int = 1  # POSTs in flight at once (1 keeps order)
    # Compresses Meta's 7-day retry schedule. None: follow speed, so retries are bounded
    # like the rest of the run (1/speed; at speed 0 the 7 days pass in about 3 s); a
    # number is used as given (1.0: Meta's own timing, 0.0001: about a minute).
    retry_time_scale: float | None = None
    timeout_s: float = 10.0  # a bot slower than this fails the attempt
    seed: int | None = None  # for duplicates, reordering and every injected fault
    # -- status webhooks for the bot's sends -----------------------------------------------
    statuses: tuple[str, ...] = STATUS_ORDER
    fail_status_rate: float = 0.0  # fraction of the bot's sends reported failed
    fail_status_code: int = 131026
    # -- the fake Graph API ------------------------------------------------------------------
    strict: bool = False  # a send without a recorded answer is an error
    fail_rate: float = 0.0  # fraction of sends answered with an injected error
    fail_codes: tuple[int, ...] = (131000,)
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    media_ttl: float = media_url.DEFAULT_TTL_S  # seconds a media URL stays valid
    ignore: tuple[str, ...] = ()  # send fields the replay check ignores, besides volatile ones
    # -- replay --------------------------------------------------------------------------------
    quiet_s: float = 1.0  # the bot is done when nothing happened for this long
    tolerate_retries: bool = False  # a webhook answered 200 only on Meta's retry passes
    journal: bool = True  # keep each replay's exchanges as a cassette in the store
    journal_name: str | None = None  # default: <cassette>.run-<UTC time>
    # -- a redirecting HTTP(S) proxy for bots that keep Meta's URLs -------------------------
    proxy_port: int | None = None  # None: no proxy; 0: a free port
    confdir: str | None = None  # mitmproxy's confdir, where its CA lives
    redirect_hosts: tuple[str, ...] = ()  # sent to the fake besides Meta's hosts

    def __post_init__(self) -> None:
        for name in ("statuses", "fail_codes", "ignore", "redirect_hosts"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, tuple | list):
                raise ConfigError(f"{name} must be a sequence, not {value!r}")
            object.__setattr__(self, name, tuple(value))
        _check(self.signing in SIGNING_MODES, f"signing must be one of {', '.join(SIGNING_MODES)}")
        _check(0 <= self.graph_port <= 65535, "graph_port must be between 0 and 65535")
        if self.proxy_port is not None:
            _check(0 <= self.proxy_port <= 65535, "proxy_port must be between 0 and 65535")
            _check(
                not (self.proxy_port and self.proxy_port == self.graph_port),
                f"the proxy and the fake Graph API cannot share port {self.proxy_port}: "
                "give each its own",
            )
        else:
            for option, given in (
                ("confdir", self.confdir),
                ("redirect_hosts", self.redirect_hosts),
            ):
                _check(not given, f"{option} only applies with proxy_port")
        for name in ("speed", "latency_ms", "jitter_ms", "media_ttl", "quiet_s"):
            _check(
                _finite(getattr(self, name)) and getattr(self, name) >= 0, f"{name} must be >= 0"
            )
        for name in ("retry_time_scale", "timeout_s"):
            value = getattr(self, name)
            if value is not None or name == "timeout_s":
                _check(_finite(value) and value > 0, f"{name} must be > 0")
        for name in ("duplicate", "fail_rate", "fail_status_rate"):
            _check(0.0 <= getattr(self, name) <= 1.0, f"{name} is a probability between 0 and 1")
        _check(self.reorder >= 0, "reorder must be >= 0")
        _check(self.batch >= 1 and self.concurrency >= 1, "batch and concurrency must be >= 1")
        _check(bool(self.fail_codes), "fail_codes needs at least one error code")
        known = (*STATUS_ORDER, "failed")
        unknown = [s for s in self.statuses if s not in known]
        _check(
            not unknown,
            f"unknown status {unknown[0]!r}: choose among {', '.join(known)}" if unknown else "",
        )
        for name in ("access_token", "app_secret", "verify_token", "phone_number_id"):
            _check(bool(getattr(self, name)), f"{name} must not be empty")

    def replace(self, **changes: Any) -> SandboxConfig:
        """A copy with `changes` applied (and validated)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"SandboxConfig has no option {unknown[0]!r}")
        return dataclasses.replace(self, **changes)

    @property
    def account(self) -> BusinessAccount:
        """The business account webhooks and statuses are addressed from."""
        return BusinessAccount(
            waba_id=self.waba_id,
            phone_number_id=self.phone_number_id,
            display_phone_number=self.display_phone_number,
        )

    def emitter_config(self) -> EmitterConfig:
        """The emitter's settings (its bot URL is "" until a bot is connected)."""
        # Imported here: the CLI reads this module's defaults without paying for aiohttp.
        from pseudowa.proxy.contract.retries import RetryPolicy
        from pseudowa.proxy.contract.retries import time_scale_for
        from pseudowa.proxy.sandbox.emitter import EmitterConfig

        return EmitterConfig(
            bot_url=self.bot_url or "",
            app_secret=self.app_secret,
            verify_token=self.verify_token,
            skip_verify=self.skip_verify,
            signing=self.signing,
            speed=self.speed,
            duplicate=self.duplicate,
            reorder=self.reorder,
            batch=self.batch,
            retry=RetryPolicy(time_scale=time_scale_for(self.speed, self.retry_time_scale)),
            timeout_s=self.timeout_s,
            concurrency=self.concurrency,
            seed=self.seed,
        )

    def graph_config(self, public_base_url: str | None = None) -> GraphConfig:
        """The fake Graph API's settings."""
        from pseudowa.proxy.sandbox.graph import GraphConfig

        return GraphConfig(
            access_token=self.access_token,
            media_ttl_s=self.media_ttl,
            strict=self.strict,
            fail_rate=self.fail_rate,
            fail_codes=self.fail_codes,
            latency_ms=self.latency_ms,
            jitter_ms=self.jitter_ms,
            seed=self.seed,
            account=self.account,
            volatile=(*matching.DEFAULT_VOLATILE, *self.ignore),
            public_base_url=public_base_url,
        )


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)
