"""SandboxConfig: one flat, validated source of defaults, whose fields the CLI mirrors."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pseudowa.proxy.cli.replay import replay_cmd
from pseudowa.proxy.errors import ConfigError
from pseudowa.proxy.errors import UserError
from pseudowa.proxy.sandbox.config import SandboxConfig
from pseudowa.proxy.sandbox.deliveries import Delivery
from pseudowa.proxy.sandbox.emitter import Emitter


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"duplicate": 1.5}, "duplicate is a probability"),
        ({"signing": "maybe"}, "signing must be one of valid, none, bad"),
        ({"graph_port": 70000}, "graph_port must be between 0 and 65535"),
        ({"proxy_port": 9000, "graph_port": 9000}, "cannot share port 9000"),
        ({"confdir": "/tmp/x"}, "confdir only applies with proxy_port"),
        ({"statuses": ("sent", "seen")}, "unknown status 'seen'"),
        ({"batch": 0}, "batch and concurrency must be >= 1"),
        ({"timeout_s": 0}, "timeout_s must be > 0"),
        ({"retry_time_scale": 0}, "retry_time_scale must be > 0"),
        ({"fail_codes": ()}, "fail_codes needs at least one"),
        ({"access_token": ""}, "access_token must not be empty"),
    ],
)
def test_bad_values_are_one_line_config_errors(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        SandboxConfig(**changes)  # type: ignore[arg-type]
    assert isinstance(info.value, UserError) and "\n" not in str(info.value)


def test_replace_validates_and_rejects_unknown_options() -> None:
    config = SandboxConfig()
    assert config.replace(speed=0).speed == 0
    with pytest.raises(ConfigError, match="no option 'sped'"):
        config.replace(sped=0)
    with pytest.raises(ConfigError):
        config.replace(reorder=-1)


def test_runtime_configs_are_built_from_the_flat_fields() -> None:
    config = SandboxConfig(
        app_secret="s",
        access_token="t",
        speed=2,
        retry_time_scale=0.5,
        fail_codes=[130429],
        ignore=("text.body",),
        phone_number_id="42",
    )
    emitter, graph = config.emitter_config(), config.graph_config()
    assert (emitter.app_secret, emitter.speed, emitter.retry.time_scale) == ("s", 2, 0.5)
    assert graph.access_token == "t" and graph.fail_codes == (130429,)
    assert graph.volatile[-1] == "text.body" and graph.account.phone_number_id == "42"
    assert config.fail_codes == (130429,)  # lists are frozen into tuples


def test_retries_follow_the_speed_unless_a_time_scale_is_given() -> None:
    def scale(**changes: object) -> float:
        return SandboxConfig(**changes).emitter_config().retry.time_scale  # type: ignore[arg-type]

    assert SandboxConfig().retry_time_scale is None  # "follow speed", not a number
    assert (scale(), scale(speed=4), scale(speed=4, retry_time_scale=1.0)) == (1.0, 0.25, 1.0)
    # As fast as possible is bounded too: a bot that never accepts a webhook keeps the
    # run a few seconds (plus its own timeouts), not Meta's seven days.
    fast = SandboxConfig(speed=0, timeout_s=1).emitter_config()
    assert fast.retry.worst_case_s() < 5
    assert fast.retry.describe(fast.timeout_s).startswith(
        "retries: a webhook the bot never accepts is dropped after 17 attempts, at most 20."
    )


async def test_at_speed_zero_a_bot_refusing_bad_signatures_ends_in_seconds() -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=401, text="bad signature")

    app = web.Application()
    app.router.add_post("/webhook", refuse)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    config = SandboxConfig(
        speed=0, signing="bad", skip_verify=True, bot_url=str(server.make_url("/webhook"))
    )
    emitter = Emitter(config.emitter_config())
    try:
        emitter.add([Delivery(b'{"object":"whatsapp_business_account","entry":[]}', label="w")])
        started = time.monotonic()
        await asyncio.wait_for(emitter.run(), timeout=10)
        assert time.monotonic() - started < 5
    finally:
        await emitter.close()
        await server.close()
    (outcome,) = emitter.dropped
    assert outcome.dropped_reason is not None
    assert outcome.dropped_reason.startswith("gave up after 17 attempts over 6.9 days")


def test_every_replay_option_is_a_config_field_of_the_same_name() -> None:
    fields = {f.name for f in dataclasses.fields(SandboxConfig)}
    # Options that are not sandbox settings: what to replay and how to report it.
    front_end = {
        "name",
        "db",
        "check_",
        "as_json",
        "no_sign",
        "bad_signature",
        "no_journal",
        "update",
    }
    params = {p.name for p in replay_cmd.params} - front_end
    assert params <= fields, params - fields
    for p in replay_cmd.params:
        if p.name in fields and p.name != "redirect_hosts":  # repeatable: --redirect-host
            assert f"--{p.name.replace('_', '-')}" in p.opts, p.opts  # type: ignore[union-attr]
