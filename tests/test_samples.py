"""The shipped sample cassettes: recorded in the sandbox, free of secrets, small, and each
replays with `pseudowa replay cassettes/<name> --check` against a fresh example bot."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pseudowa.proxy.testing.ports import free_ports as _free_ports
from pseudowa.proxy.testing.ports import wait_port as _wait_port
from pseudowa.storage.export import CASSETTE_FILE

ROOT = Path(__file__).resolve().parent.parent
CASSETTES = ROOT / "cassettes"
NAMES = ["image-round-trip", "text-button", "failed-send"]
MAX_SAMPLE_BYTES = 100_000
CLI = [sys.executable, "-m", "pseudowa.proxy.cli.main"]
# The replay's own secrets: any will do, the bot just has to share them.
REPLAY_SECRETS = {
    "--access-token": "replay-token",
    "--app-secret": "replay-secret",
    "--verify-token": "replay-verify",
}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_samples", CASSETTES / "make_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_samples", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


make_samples = _generator()


def _doc(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((CASSETTES / name / CASSETTE_FILE).read_bytes())
    return doc


def _files(name: str) -> list[Path]:
    return sorted(p for p in (CASSETTES / name).rglob("*") if p.is_file())


def _sends(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The bot's message sends (not read receipts), with their answers."""
    return [
        x
        for x in doc["interactions"]
        if x["kind"] == "graph"
        and x["method"] == "POST"
        and x["url"].endswith("/messages")
        and "status" not in x["request"]["body"]["json"]
    ]


def _webhook_values(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        change["value"]
        for x in doc["interactions"]
        if x["kind"] == "webhook" and x["method"] == "POST"
        for entry in x["request"]["body"]["json"]["entry"]
        for change in entry["changes"]
    ]


# -- each sample replays against a fresh example bot ----------------------------------------


@pytest.mark.parametrize("name", NAMES)
async def test_sample_replays_with_check(name: str) -> None:
    graph_port, bot_port = _free_ports(2)
    bot = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pseudowa.proxy.examples.example_bot",
        "--port",
        str(bot_port),
        env={
            **os.environ,
            "WA_GRAPH_URL": f"http://127.0.0.1:{graph_port}",
            "WA_TOKEN": REPLAY_SECRETS["--access-token"],
            "WA_APP_SECRET": REPLAY_SECRETS["--app-secret"],
            "WA_VERIFY_TOKEN": REPLAY_SECRETS["--verify-token"],
        },
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await _wait_port(bot_port)
        replay = await asyncio.create_subprocess_exec(
            *CLI,
            "replay",
            f"cassettes/{name}",
            "--check",
            "--speed",
            "0",
            "--quiet",
            "0.3",
            "--bot",
            f"http://127.0.0.1:{bot_port}/webhook",
            "--graph-port",
            str(graph_port),
            *[part for pair in REPLAY_SECRETS.items() for part in pair],
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(replay.communicate(), 60)
    finally:
        if bot.returncode is None:
            bot.kill()
        await bot.wait()
    text = out.decode() + err.decode()
    assert replay.returncode == 0, text
    assert f"replayed {name}: " in text and "check: OK" in text
    assert "journal:" not in text  # a directory replays from a throwaway store, no journal
    sends = len(_sends(_doc(name)))
    assert f"bot sends: {sends} now, {sends} recorded" in text


# -- what the samples hold ------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_metadata_says_sandbox(name: str) -> None:
    doc = _doc(name)
    meta = doc["cassette"]
    assert meta["name"] == name and meta["source"] == "sandbox"
    for words in ("pseudowa record", "fake Graph API", "example bot", "make_samples.py"):
        assert words in meta["notes"], words
    assert meta["graph_api_version"] == "v23.0"
    assert meta["phone_number_ids"] == [make_samples.ACCOUNT.phone_number_id]
    [record] = doc["history"]
    assert record["operation"] == "record" and record["arguments"]["source"] == "sandbox"
    assert record["arguments"]["signature_checked"] is True
    # Every webhook the recorder saw was signed correctly by the sandbox.
    posts = [x for x in doc["interactions"] if x["kind"] == "webhook" and x["method"] == "POST"]
    assert posts and all(x["annotations"]["signature"] == "valid" for x in posts)
    assert all(x["request"]["body"]["encoding"] == "compact-ascii" for x in posts)


@pytest.mark.parametrize("name", NAMES)
def test_no_secrets_in_the_files(name: str) -> None:
    secrets = [
        *make_samples.SECRETS,
        "pseudowa-access-token",
        "pseudowa-app-secret",
        "pseudowa-verify-token",
    ]
    for path in _files(name):
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"{secret!r} in {path}"
    for x in _doc(name)["interactions"]:
        names = {k.lower() for k, _ in x["request"]["headers"] + x["response"]["headers"]}
        assert not names & {"authorization", "x-hub-signature-256", "x-hub-signature", "cookie"}
        if "hub.verify_token=" in x["url"]:
            assert "hub.verify_token=REDACTED" in x["url"]
        assert "hash=" not in x["url"] and "access_token" not in x["url"]


@pytest.mark.parametrize("name", NAMES)
def test_samples_are_small(name: str) -> None:
    total = sum(p.stat().st_size for p in _files(name))
    assert total < MAX_SAMPLE_BYTES, total
    for path in (CASSETTES / name).glob("media/*"):
        assert path.stat().st_size < 1024


def test_image_round_trip_content() -> None:
    doc = _doc("image-round-trip")
    [media] = doc["media"]
    assert media["media_id"] == make_samples.MEDIA_ID and media["mime_type"] == "image/png"
    png = (CASSETTES / "image-round-trip" / media["file"]).read_bytes()
    assert png.startswith(b"\x89PNG") and png == make_samples.seeds.tiny_png(1)
    kinds = [(x["kind"], x["method"]) for x in doc["interactions"]]
    assert ("media", "GET") in kinds
    [lookup] = [x for x in doc["interactions"] if x["kind"] == "graph" and x["method"] == "GET"]
    assert lookup["url"].endswith(f"/v23.0/{make_samples.MEDIA_ID}")
    [send] = _sends(doc)
    assert (
        send["request"]["body"]["json"]["text"]["body"] == "got your image (263 bytes, sha256 ok)"
    )
    statuses = [s["status"] for v in _webhook_values(doc) for s in v.get("statuses", [])]
    assert statuses == ["sent", "delivered", "read"]


def test_text_button_content() -> None:
    doc = _doc("text-button")
    sends = [x["request"]["body"]["json"] for x in _sends(doc)]
    assert [s["type"] for s in sends] == ["text", "interactive", "text"]
    assert sends[0]["text"]["body"] == "echo: hi"
    assert [b["reply"]["id"] for b in sends[1]["interactive"]["action"]["buttons"]] == [
        "opt-news",
        "opt-help",
    ]
    assert sends[2]["text"]["body"] == "you chose opt-news"
    messages = [m for v in _webhook_values(doc) for m in v.get("messages", [])]
    assert [m["type"] for m in messages] == ["text", "text", "interactive"]
    # The button reply quotes the menu message by the wamid Graph gave it.
    menu_answer = [x for x in _sends(doc) if x["request"]["body"]["json"]["type"] == "interactive"]
    menu_wamid = menu_answer[0]["response"]["body"]["json"]["messages"][0]["id"]
    assert messages[2]["context"]["id"] == menu_wamid
    statuses = [s["status"] for v in _webhook_values(doc) for s in v.get("statuses", [])]
    assert statuses == ["sent", "delivered", "read"] * 3


def test_failed_send_content() -> None:
    doc = _doc("failed-send")
    first, second = _sends(doc)
    assert first["response"]["status"] == 400
    assert first["response"]["body"]["json"]["error"]["code"] == 130429
    assert second["response"]["status"] == 200
    wamid = second["response"]["body"]["json"]["messages"][0]["id"]
    statuses = [s for v in _webhook_values(doc) for s in v.get("statuses", [])]
    assert [(s["id"], s["status"]) for s in statuses] == [(wamid, "sent"), (wamid, "failed")]
    assert statuses[1]["errors"][0]["code"] == 131047


# -- the generator still works --------------------------------------------------------------


def _shape(doc: dict[str, Any]) -> list[tuple[str, str, str, int | None]]:
    """What a regeneration must reproduce: exchanges by kind, method, path and status."""
    out = []
    for x in doc["interactions"]:
        path = x["url"].split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
        out.append((x["kind"], x["method"], path, x["response"]["status"]))
    return out


def test_make_samples_regenerates_the_same_conversation(tmp_path: Path) -> None:
    """Real processes again (recorder, bot): the same exchanges as the shipped sample."""
    import subprocess

    result = subprocess.run(
        [
            sys.executable,
            str(CASSETTES / "make_samples.py"),
            "--only",
            "failed-send",
            "--out",
            str(tmp_path),
            "--port-base",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    fresh = json.loads((tmp_path / "failed-send" / CASSETTE_FILE).read_bytes())
    shipped = _doc("failed-send")
    assert _shape(fresh) == _shape(shipped)
    assert fresh["cassette"]["notes"] == shipped["cassette"]["notes"]
