"""The pytest plugin as a bot team uses it: user-style test files run by pytester in a
subprocess of their own, with only the plugin's fixtures, marker and options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[3] / "cassettes"

# Written into every pytester run: after the session, no sandbox thread and no listening
# graph port may be left behind.
LEAK_CHECK = """
import json, socket, threading

PORTS = []

def pytest_runtest_teardown(item):
    sb = getattr(item, "funcargs", {}).get("pseudowa_sandbox")
    if sb is not None:
        PORTS.append(int(sb.graph_url.rsplit(":", 1)[1]))

def pytest_unconfigure(config):
    threads = [t.name for t in threading.enumerate() if t.name.startswith("pseudowa")]
    listening = []
    for port in PORTS:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                listening.append(port)
    with open("leaks.json", "w") as f:
        json.dump({"threads": threads, "ports": listening, "sandboxes": len(PORTS)}, f)
"""

CHAT = """
import pytest

def test_sync_chat(pseudowa_sandbox, pseudowa_example_bot):
    alice = pseudowa_sandbox.user("16505551234", name="Alice")
    wamid = alice.send_text("hi")
    assert wamid.startswith("wamid.")
    [reply] = alice.wait_for_replies(1, timeout=5)
    assert reply.text == "echo: hi"
    pseudowa_sandbox.assert_replied(alice, contains="echo: hi")
    pseudowa_sandbox.assert_deduplicated(wamid)

@pytest.mark.asyncio
async def test_async_chat(pseudowa_sandbox, pseudowa_example_bot):
    bob = pseudowa_sandbox.user("447700900123", name="Bob")
    await bob.send_text("hello")
    [reply] = await bob.wait_for_replies(1, timeout=5)
    assert reply.text == "echo: hello"

def test_no_reply_without_a_message(pseudowa_sandbox, pseudowa_example_bot):
    pseudowa_sandbox.assert_no_reply(pseudowa_sandbox.user("16505550000"), quiet_s=0.2)
"""


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makeconftest(LEAK_CHECK)
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-W", "error::pytest.PytestUnraisableExceptionWarning", *args
    )


def _no_leaks(pytester: pytest.Pytester) -> dict[str, object]:
    leaks = json.loads((pytester.path / "leaks.json").read_text())
    assert leaks["threads"] == [] and leaks["ports"] == [], leaks
    return leaks


def test_sync_and_async_tests_chat_with_the_example_bot(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_chat=CHAT)
    result = _run(pytester)
    result.assert_outcomes(passed=3)
    assert _no_leaks(pytester)["sandboxes"] == 3


def test_a_marker_replay_passes_for_a_bot_that_behaves(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_replay="""
import pytest

@pytest.mark.pseudowa(cassette="image-round-trip")
def test_image_round_trip(pseudowa_sandbox, pseudowa_example_bot):
    report = pseudowa_sandbox.last_report
    assert report is not None and report.ok
    assert pseudowa_example_bot.state.media[0].sha256_ok
"""
    )
    result = _run(pytester, f"--pseudowa-cassettes={SAMPLES}")
    result.assert_outcomes(passed=1)
    _no_leaks(pytester)


def test_a_bot_that_replies_twice_fails_with_the_dedupe_message(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_dedupe="""
import pytest

class Forgetful(set):
    def __contains__(self, item):
        return False

@pytest.fixture
def forgetful_bot(pseudowa_example_bot):
    pseudowa_example_bot.state.seen = Forgetful()
    return pseudowa_example_bot

@pytest.mark.pseudowa(cassette="image-round-trip", duplicate=1.0, seed=1)
def test_duplicates_are_answered_once(forgetful_bot):
    pass
"""
    )
    result = _run(pytester, f"--pseudowa-cassettes={SAMPLES}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*pseudowa replay of cassette 'image-round-trip' failed the check:*",
            "*! failed dedupe: wamid.* delivered 2 times, the bot replied 2 times*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    _no_leaks(pytester)


def test_record_once_then_replay_with_none(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_greeting="""
import pytest

@pytest.mark.pseudowa(cassette="greeting")
def test_greeting(pseudowa_sandbox, pseudowa_example_bot):
    report = pseudowa_sandbox.last_report
    print("REPLAYED", report is not None and report.ok, report and report.check.recorded_sends)
    alice = pseudowa_sandbox.user("16505551234", name="Alice")
    alice.send_text("hi")
    alice.wait_for_replies(1, timeout=5)
"""
    )
    cassettes = pytester.path / "tests" / "cassettes"
    first = _run(pytester, "--pseudowa-record=once", "-s")
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["*REPLAYED False None*"])
    exported = json.loads((cassettes / "greeting" / "cassette.json").read_text())
    assert exported["cassette"]["name"] == "greeting"
    kinds = [(x["kind"], x["method"]) for x in exported["interactions"]]
    assert ("webhook", "POST") in kinds and ("graph", "POST") in kinds  # message and reply

    second = _run(pytester, "--pseudowa-record=none", "-s")
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["*REPLAYED True 1*"])  # the recorded reply, checked
    _no_leaks(pytester)


def test_a_missing_cassette_under_none_fails_with_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_missing="""
import pytest

@pytest.mark.pseudowa(cassette="nope")
def test_needs_a_cassette(pseudowa_example_bot):
    pass
"""
    )
    result = _run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*cassette 'nope' not found: no */tests/cassettes/nope/cassette.json and no such "
            "cassette in sqlite:///*; record it from this test's session with "
            "--pseudowa-record=once*"
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_marker_options_are_checked_against_the_sandbox_config(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_bad="""
import pytest

@pytest.mark.pseudowa(cassette="image-round-trip", duplicat=1.0)
def test_typo(pseudowa_example_bot):
    pass
"""
    )
    result = _run(pytester, f"--pseudowa-cassettes={SAMPLES}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.pseudowa: SandboxConfig has no option 'duplicat'*"])


def test_the_options_are_listed_in_pytest_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(
        [
            "*WhatsApp Cloud API sandbox (pseudowa)*",
            "*--pseudowa-cassettes=DIR*",
            "*--pseudowa-record={none,once,new,all}*",
            "*--pseudowa-db=URL*",
        ]
    )


def test_the_shipped_example_suite_passes(pytester: pytest.Pytester) -> None:
    """proxy/examples/pytest_suite is what users copy: it must pass as it is."""
    from pseudowa.proxy import examples

    suite = Path(examples.__path__[0]) / "pytest_suite"
    for path in sorted(suite.glob("test_*.py")):
        pytester.makepyfile(**{path.stem: path.read_text()})
    result = _run(pytester)
    result.assert_outcomes(passed=4)
    _no_leaks(pytester)


SYNC_BOT = '''
"""A Flask-style synchronous bot: a WSGI app (stdlib wsgiref) that checks the signature
and answers through the Graph API with urllib, as many production bots do."""
import hashlib, hmac, json, threading, urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class SyncBot:
    def __init__(self, graph_url, token, secret, verify_token, phone_id):
        self.graph_url, self.token, self.secret = graph_url, token, secret
        self.verify_token, self.phone_id = verify_token, phone_id
        self.seen = set()

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] == "GET":
            q = dict(p.split("=", 1) for p in environ["QUERY_STRING"].split("&"))
            ok = q.get("hub.verify_token") == self.verify_token
            start_response("200 OK" if ok else "403 Forbidden", [("Content-Type", "text/plain")])
            return [q.get("hub.challenge", "").encode() if ok else b""]
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, environ.get("HTTP_X_HUB_SIGNATURE_256", "")):
            start_response("401 Unauthorized", [])
            return [b""]
        for entry in json.loads(body)["entry"]:
            for change in entry["changes"]:
                for msg in change["value"].get("messages", []):
                    if msg["id"] not in self.seen and msg["type"] == "text":
                        self.seen.add(msg["id"])
                        self.reply(msg["from"], "got: " + msg["text"]["body"])
        start_response("200 OK", [])
        return [b""]

    def reply(self, to, text):
        req = urllib.request.Request(
            f"{self.graph_url}/v23.0/{self.phone_id}/messages",
            data=json.dumps({"messaging_product": "whatsapp", "to": to, "type": "text",
                             "text": {"body": text}}).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200


@pytest.fixture
def sync_bot(pseudowa_sandbox):
    c = pseudowa_sandbox.config
    app = SyncBot(pseudowa_sandbox.graph_url, c.access_token, c.app_secret, c.verify_token,
                  c.phone_number_id)
    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    pseudowa_sandbox.connect_bot(f"http://127.0.0.1:{server.server_port}/webhook")
    yield app
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_sync_bot_replies(pseudowa_sandbox, sync_bot):
    alice = pseudowa_sandbox.user("16505551234", name="Alice")
    alice.send_text("hi")
    pseudowa_sandbox.assert_replied(alice, contains="got: hi")


@pytest.mark.pseudowa(cassette="text-button", check=False)
def test_sync_bot_gets_a_recorded_conversation(pseudowa_sandbox, sync_bot):
    # check=False: this bot answers differently from the one recorded; every webhook of
    # the recording was still answered 200 and the bot replied to both texts once.
    report = pseudowa_sandbox.last_report
    assert report.ok, report.problems
    assert sorted(s.send.body["text"]["body"] for s in pseudowa_sandbox.sends) == [
        "got: hi", "got: menu"]
'''


def test_a_flask_style_sync_bot_works_with_the_same_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sync_bot=SYNC_BOT)
    result = _run(pytester, f"--pseudowa-cassettes={SAMPLES}")
    result.assert_outcomes(passed=2)
    _no_leaks(pytester)


def test_record_new_appends_the_session_to_an_existing_cassette(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_greeting="""
import pytest

@pytest.mark.pseudowa(cassette="greeting")
def test_greeting(pseudowa_sandbox, pseudowa_example_bot):
    alice = pseudowa_sandbox.user("16505551234", name="Alice")
    alice.send_text("hi")
    alice.wait_for_replies(1, timeout=5)
"""
    )
    cassette = pytester.path / "tests" / "cassettes" / "greeting" / "cassette.json"
    _run(pytester, "--pseudowa-record=once").assert_outcomes(passed=1)
    first = json.loads(cassette.read_text())["interactions"]
    _run(pytester, "--pseudowa-record=new").assert_outcomes(passed=1)  # replays, then appends
    second = json.loads(cassette.read_text())["interactions"]
    assert len(second) > len(first)
    bodies = [x["request"]["body"] for x in second if x["kind"] == "webhook"]
    assert sum("hi" in json.dumps(b) for b in bodies) >= 2  # the first episode and the new one
    _run(pytester, "--pseudowa-record=none").assert_outcomes(passed=1)  # still replays clean
    _no_leaks(pytester)
