#!/usr/bin/env python3
"""Replay acceptance benchmark: one script, one run, ratios against baselines of the same run.

  1. send endpoint   FakeGraph's POST /{version}/{phone_number_id}/messages vs a bare
                     aiohttp handler (and FakeGraph journaling to SQLite, for information)
  2. emitter         Emitter webhooks/s into a bare receiver vs that receiver's own ceiling
  3. media download  server RSS growth and MB/s while streaming a 100 MB blob from SQLite

Servers run in separate processes pinned to one core; the load generator (wrk), the
emitter and the download client run pinned to the other. See bench/README.md.
Exit status: 0 whether goals are met or not; 1 when a sanity check failed (non-2xx
answers, counts or checksums that do not match, a server that crashed).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import json
import os
import selectors
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVERS = HERE / "servers.py"
LOADGEN = HERE / "loadgen.py"

MB = 1 << 20
PHONE_ID = "106540352242922"  # BusinessAccount's default phone number id
SEND_PATH = f"/v23.0/{PHONE_ID}/messages"
SEND_BODY = (
    b'{"messaging_product":"whatsapp","to":"16505551234","type":"text","text":{"body":"hi"}}'
)
TOKEN = "pseudowa-bench-token"
APP_SECRET = "pseudowa-bench-secret"
JOURNAL_NAME = "bench-journal"
MEDIA_CASSETTE = "bench-media"
BIG_MEDIA_ID = "1000000000000001"
SMALL_MEDIA_ID = "1000000000000002"

GOAL_SEND_RATIO = 0.75
GOAL_EMITTER_RATE = 5000.0
GOAL_MEDIA_GROWTH_MB = 32.0


class Broken(Exception):
    """A sanity check failed: the figures would measure something else than intended."""


def check(ok: bool, what: str) -> None:
    if not ok:
        raise Broken(what)


def say(text: str = "") -> None:
    print(text, flush=True)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# -- processes ------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """user+system CPU time of a whole process (all threads)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kb(pid: int, key: str) -> int | None:
    """A `VmXXX: N kB` field of /proc/<pid>/status."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Server:
    """One bench/servers.py process: started at construction, `ready()` waits for its port."""

    def __init__(
        self, name: str, args: list[str], cpu: int | None, logdir: Path, profile: Path | None = None
    ) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self.profile = profile
        cmd = [sys.executable, str(SERVERS), *args]
        if cpu is not None:
            cmd += ["--cpu", str(cpu)]
        if profile is not None:
            cmd += ["--profile", str(profile)]
        self._log = open(self.log_path, "wb")
        # A session of its own: Ctrl-C reaches run.py only, which stops servers in order.
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._log, start_new_session=True
        )
        self.port: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self, timeout: float = 60.0) -> Server:
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline and not line.endswith(b"\n"):
            if not sel.select(max(0.0, deadline - time.monotonic())):
                break
            chunk = self.proc.stdout.readline()
            if not chunk:
                break
            line += chunk
        sel.close()
        if not line.startswith(b"READY "):
            raise Broken(f"server {self.name} did not start: {self.log_tail()}")
        self.port = int(line.split()[1])
        return self

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return "\n    ".join(["(log tail)"] + text[-lines:]) if text else "(empty log)"

    def wait_idle(self, quiet_s: float = 0.3, timeout: float = 60.0) -> float:
        """Wait until the process stops using CPU (e.g. a journal writer draining its
        backlog); returns how long it stayed busy (0 when it already was idle)."""
        started = time.monotonic()
        last = cpu_seconds(self.pid)
        quiet_since = started
        while time.monotonic() - started < timeout:
            time.sleep(0.05)
            now_cpu = cpu_seconds(self.pid)
            now = time.monotonic()
            if now_cpu - last > 1.5 / CLK_TCK:
                quiet_since = now
            last = now_cpu
            if now - quiet_since >= quiet_s:
                return quiet_since - started
            check(self.alive(), f"server {self.name} died: {self.log_tail()}")
        return time.monotonic() - started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def http_request(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        target = u.path + (f"?{u.query}" if u.query else "")
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# -- load generation --------------------------------------------------------------------------


@dataclass
class Load:
    requests: int
    seconds: float
    non2xx: int
    errors: int
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        text = f"{self.rps:8.0f} req/s ({self.requests} requests)"
        if self.p50_ms is not None:
            text += f"  latency p50 {self.p50_ms:.2f} ms p99 {self.p99_ms:.2f} ms"
        if self.non2xx or self.errors:
            text += f"  non-2xx {self.non2xx} socket errors {self.errors}"
        return text


def _lua_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d\\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(99))))
end
"""


class LoadGenerator:
    """wrk (preferred) or the aiohttp fallback, both POSTing one body with fixed headers."""

    def __init__(self, tool: str, workdir: Path, connections: int) -> None:
        self.tool = tool
        self.workdir = workdir
        self.connections = connections
        self._n = 0

    @property
    def label(self) -> str:
        if self.tool == "wrk":
            return f"wrk -t1 -c{self.connections}"
        return f"FALLBACK aiohttp load generator ({self.connections} connections; NOT wrk)"

    def run(self, url: str, body: bytes, headers: dict[str, str], duration: float) -> Load:
        self._n += 1
        if self.tool == "wrk":
            return self._wrk(url, body, headers, duration)
        return self._aiohttp(url, body, headers, duration)

    def _wrk(self, url: str, body: bytes, headers: dict[str, str], duration: float) -> Load:
        script = self.workdir / f"load{self._n}.lua"
        lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body.decode())}"]
        lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
        script.write_text("\n".join(lines) + "\n" + WRK_DONE)
        seconds = max(1, round(duration))
        cmd = ["wrk", "-t1", f"-c{self.connections}", f"-d{seconds}s", "-s", str(script), url]
        # Inherits run.py's affinity: the client core.
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH ")), None)
        if out.returncode != 0 or line is None:
            raise Broken(f"wrk failed ({out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}")
        f = dict(kv.split("=") for kv in line.split()[1:])
        errors = sum(int(f[k]) for k in ("connect", "read", "write", "timeout"))
        return Load(
            int(f["requests"]),
            int(f["duration_us"]) / 1e6,
            int(f["non2xx"]),
            errors,
            int(f["p50_us"]) / 1000,
            int(f["p99_us"]) / 1000,
        )

    def _aiohttp(self, url: str, body: bytes, headers: dict[str, str], duration: float) -> Load:
        body_file = self.workdir / f"load{self._n}.body"
        body_file.write_bytes(body)
        cmd = [
            sys.executable,
            str(LOADGEN),
            url,
            "--duration",
            str(duration),
            "--connections",
            str(self.connections),
            "--body-file",
            str(body_file),
        ]
        for k, v in headers.items():
            cmd += ["-H", f"{k}: {v}"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
        if out.returncode != 0:
            raise Broken(f"fallback load generator failed: {out.stderr[-800:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        return Load(r["requests"], r["duration_s"], r["non2xx"], r["errors"])


# -- the run's context --------------------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    stack: ExitStack
    tmp: Path
    server_cpu: int | None
    load: LoadGenerator

    def start(self, name: str, args: list[str], profile: bool = False) -> Server:
        prof = self.tmp / f"{name}.prof" if profile and self.args.profile is not None else None
        server = Server(name, args, self.server_cpu, self.tmp, prof)
        self.stack.callback(server.stop)
        return server


def print_profile(path: Path, title: str, keep_dir: str | None = None, limit: int = 25) -> None:
    import io
    import pstats

    if not path.exists():
        say(f"  (no profile written for {title})")
        return
    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.strip_dirs().sort_stats("tottime").print_stats(limit)
    say(f"  --- cProfile of {title} (by tottime) ---")
    for line in buf.getvalue().splitlines():
        if line.strip():
            say("  " + line)
    if keep_dir:
        keep = Path(keep_dir)
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, keep / path.name)
        say(f"  (stats kept in {keep / path.name})")


# -- 1. send endpoint ---------------------------------------------------------------------------


def section_send(ctx: Context) -> str:
    args = ctx.args
    say(
        f"== 1. send endpoint: POST {SEND_PATH}, {ctx.load.label}, "
        f"{args.rounds} rounds x {args.duration:g} s each, alternated"
    )
    db = ctx.tmp / "journal.db"
    servers = {
        "bare": ctx.start("bare", ["bare-send"]),
        "fake": ctx.start("fake", ["fake", "--token", TOKEN], profile=True),
        "fake+journal": ctx.start(
            "fake-journal",
            ["fake", "--token", TOKEN, "--db", f"sqlite:///{db}", "--journal", JOURNAL_NAME],
            profile=True,
        ),
    }
    for server in servers.values():
        server.ready()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    answered = {name: 0 for name in servers}

    # Sanity: each answers 200, the fakes with a wamid (we measure sends, not errors).
    for name, server in servers.items():
        status, body = http_request("POST", server.url + SEND_PATH, SEND_BODY, headers)
        answered[name] += 1
        check(status == 200, f"{name} answered {status} to the bench send: {body[:300]!r}")
        if name != "bare":
            wamid = json.loads(body)["messages"][0]["id"]
            check(wamid.startswith("wamid."), f"{name} answered no wamid: {body[:300]!r}")
        status, body = http_request(
            "POST", server.url + SEND_PATH, SEND_BODY, {**headers, "Authorization": "Bearer wrong"}
        )
        answered[name] += 1
        if name != "bare":
            check(status == 401, f"{name} accepted a wrong token ({status}): not the real path?")
    say("  sanity: all three answer 200; both fakes return a wamid and refuse a wrong token")

    def drive(name: str, duration: float) -> Load:
        server = servers[name]
        load = ctx.load.run(server.url + SEND_PATH, SEND_BODY, headers, duration)
        check(load.non2xx == 0, f"{name}: {load.non2xx} non-2xx answers under load")
        check(load.errors == 0, f"{name}: {load.errors} socket errors/timeouts under load")
        answered[name] += load.requests
        busy = server.wait_idle()
        if busy > 0.5:
            say(f"    ({name} kept working {busy:.1f} s after the load stopped)")
        return load

    for name in servers:  # warm-up, not counted
        drive(name, 1)
    results: dict[str, list[Load]] = {name: [] for name in servers}
    for r in range(args.rounds):
        for name in servers:
            load = drive(name, args.duration)
            results[name].append(load)
            say(f"  round {r + 1} {name:13s} {load.describe()}")

    # The journal really wrote every exchange (we measured the journaling path).
    servers["fake+journal"].wait_idle()
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT count(*) FROM interaction JOIN cassette ON cassette.id = interaction.cassette_id"
            " WHERE cassette.name = ?",
            (JOURNAL_NAME,),
        ).fetchone()[0]
    finally:
        con.close()
    # wrk counts completed answers; requests in flight when it stopped are journaled too.
    expected = answered["fake+journal"]
    check(rows >= expected, f"journal holds {rows} exchanges, but {expected} answers were counted")
    for name, server in servers.items():
        check(server.alive(), f"server {name} died: {server.log_tail()}")

    med = {name: statistics.median(ld.rps for ld in loads) for name, loads in results.items()}
    ratio = med["fake"] / med["bare"]
    jratio = med["fake+journal"] / med["bare"]
    for name in ("fake", "fake+journal"):
        per_round = [f / b.rps for f, b in zip((ld.rps for ld in results[name]), results["bare"])]
        say(
            f"  {name} / bare per round: "
            + " ".join(f"{r:.2f}" for r in per_round)
            + f"   (req/s spread: bare {min(ld.rps for ld in results['bare']):.0f}-"
            f"{max(ld.rps for ld in results['bare']):.0f}, {name} "
            f"{min(ld.rps for ld in results[name]):.0f}-{max(ld.rps for ld in results[name]):.0f})"
        )
    say(f"  journal: {rows} exchanges written for {expected} answers counted (in-flight extra ok)")
    if args.profile is not None:
        for name in ("fake", "fake+journal"):
            servers[name].stop()
            print_profile(servers[name].profile, f"server {name}", args.profile)  # type: ignore[arg-type]
    tool = "" if ctx.load.tool == "wrk" else " [FALLBACK load generator, not wrk]"
    line = (
        f"send endpoint: fake {med['fake']:.0f} req/s vs bare {med['bare']:.0f} req/s -> ratio "
        f"{ratio:.2f} (goal >= {GOAL_SEND_RATIO}) {verdict(ratio >= GOAL_SEND_RATIO)}{tool}"
    )
    jline = (
        f"send endpoint + SQLite journal (info, no goal): fake {med['fake+journal']:.0f} req/s "
        f"vs bare {med['bare']:.0f} req/s -> ratio {jratio:.2f}{tool}"
    )
    say(line)
    say(jline)
    return line + "\n" + jline


# -- 2. emitter ---------------------------------------------------------------------------------

FILLER = (
    "Hello! I would like to know whether my order has shipped and when it should arrive; "
    "the tracking page still says pending. Thanks a lot."
)


def make_webhooks(n: int) -> list[bytes]:
    """n distinct text-message webhook bodies of about 600 bytes, in Meta's wire form."""
    from pseudowa.proxy.contract import webhooks as w

    account = w.BusinessAccount()
    ts = str(int(time.time()))
    out = []
    for i in range(n):
        sender = f"1650555{i % 10000:04d}"
        msg = w.message("text", sender, w.text_body(f"#{i} {FILLER}"), timestamp=ts)
        out.append(w.dumps(w.inbound_webhook(account, msg, profile_name=f"Bench User {i % 97}")))
    return out


async def _emit(url: str, bodies: list[bytes], concurrency: int) -> tuple[object, float]:
    from pseudowa.proxy.sandbox.deliveries import Delivery
    from pseudowa.proxy.sandbox.emitter import Emitter
    from pseudowa.proxy.sandbox.emitter import EmitterConfig

    config = EmitterConfig(
        bot_url=url,
        app_secret=APP_SECRET,
        skip_verify=True,
        speed=0,
        concurrency=concurrency,
        signing="valid",
    )
    deliveries = [Delivery(body=b, label=f"#{i} message text") for i, b in enumerate(bodies)]
    emitter = Emitter(config)
    try:
        started = time.perf_counter()
        await emitter.verify()  # skipped, as configured
        emitter.add(deliveries)
        await emitter.run()
        elapsed = time.perf_counter() - started
    finally:
        await emitter.close()
    return emitter, elapsed


def receiver_count(server: Server) -> dict[str, int]:
    status, body = http_request("GET", server.url + "/count")
    check(status == 200, f"receiver /count answered {status}")
    return json.loads(body)


def section_emitter(ctx: Context) -> str:
    from pseudowa.proxy.contract import signature

    args = ctx.args
    n = args.webhooks
    say(f"== 2. emitter: {n} distinct signed webhooks, concurrency {args.concurrency}, speed 0")
    receiver = ctx.start("receiver", ["receiver", "--secret", APP_SECRET, "--verify-every", "10"])
    bodies = make_webhooks(n)
    check(len(set(bodies)) == n, "webhook bodies are not distinct")
    size = statistics.mean(len(b) for b in bodies)
    receiver.ready()
    url = receiver.url + "/webhook"
    sample = bodies[0]
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "facebookexternalua",
        signature.HEADER: signature.sign(APP_SECRET, sample),
        signature.LEGACY_HEADER: signature.sign_sha1(APP_SECRET, sample),
    }
    status, _ = http_request("POST", url, sample, headers)
    check(status == 200, f"receiver answered {status}")
    c = receiver_count(receiver)
    check(c["posts"] == 1 and c["verified"] == 1 and c["bad"] == 0, f"receiver self-check: {c}")
    http_request("DELETE", receiver.url + "/count")

    # The receiver's own ceiling under wrk with the same kind of body.
    ceiling = ctx.load.run(url, sample, headers, args.duration)
    check(
        ceiling.non2xx == 0 and ceiling.errors == 0,
        f"receiver ceiling run: {ceiling.non2xx} non-2xx, {ceiling.errors} errors",
    )
    receiver.wait_idle()
    c = receiver_count(receiver)
    check(c["bad"] == 0, f"receiver saw {c['bad']} bad signatures from the load generator")
    say(f"  receiver ceiling ({ctx.load.label}, {size:.0f} B bodies): {ceiling.describe()}")
    http_request("DELETE", receiver.url + "/count")

    emitter, elapsed = asyncio.run(_emit(url, bodies, args.concurrency))
    rate = n / elapsed
    receiver.wait_idle()
    c = receiver_count(receiver)
    outcomes = emitter.outcomes  # type: ignore[attr-defined]
    attempts = emitter.attempts  # type: ignore[attr-defined]
    say(
        f"  emitter: {n} webhooks in {elapsed:.2f} s -> {rate:.0f} webhooks/s; "
        f"receiver counted {c['posts']} POSTs, {c['distinct_signatures']} distinct signatures, "
        f"{c['verified']} sampled signatures verified, {c['bad']} bad"
    )
    check(
        len(outcomes) == n and all(o.delivered for o in outcomes),
        f"emitter delivered {sum(o.delivered for o in outcomes)} of {n}",
    )
    check(len(attempts) == n, f"emitter made {len(attempts)} attempts for {n} webhooks (retries?)")
    check(c["posts"] == n, f"receiver counted {c['posts']} POSTs, expected exactly {n}")
    check(c["distinct_signatures"] == n, f"receiver saw {c['distinct_signatures']} distinct bodies")
    check(
        c["bad"] == 0 and c["verified"] > 0,
        f"signatures: {c['verified']} verified, {c['bad']} failed",
    )

    if args.profile is not None:
        import cProfile

        http_request("DELETE", receiver.url + "/count")
        prof_path = ctx.tmp / "emitter.prof"
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(_emit(url, bodies, args.concurrency))
        profiler.disable()
        profiler.dump_stats(prof_path)
        print_profile(prof_path, "emitter (extra profiled run, not timed)", args.profile)

    ok = rate >= GOAL_EMITTER_RATE
    note = ""
    if not ok and ceiling.rps < GOAL_EMITTER_RATE and ctx.load.tool == "wrk":
        note = " (the receiver's own ceiling is below the goal on this machine)"
    tool = "" if ctx.load.tool == "wrk" else " [ceiling from FALLBACK load generator]"
    line = (
        f"emitter: {rate:.0f} webhooks/s vs receiver ceiling {ceiling.rps:.0f} req/s -> ratio "
        f"{rate / ceiling.rps:.2f}; goal >= {GOAL_EMITTER_RATE:.0f}/s {verdict(ok)}{note}{tool}"
    )
    say(line)
    return line


# -- 3. media download ----------------------------------------------------------------------


class RssSampler(threading.Thread):
    """Reads a process's VmRSS every `interval` seconds; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            kb = proc_status_kb(self.pid, "VmRSS")
            if kb is not None:
                self.peak_kb = max(self.peak_kb, kb)
                self.samples += 1
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def reset_hwm(pid: int) -> bool:
    """Reset VmHWM (peak RSS) of a process: `echo 5 > /proc/pid/clear_refs` (Linux >= 4.0)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


async def _download(base: str, media_id: str) -> tuple[dict, int, str, float, int]:
    import aiohttp

    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/v23.0/{media_id}", headers=auth) as resp:
            if resp.status != 200:
                raise Broken(f"media look-up answered {resp.status}: {await resp.text()}")
            info = await resp.json()
        digest = hashlib.sha256()
        size = 0
        started = time.perf_counter()
        async with session.get(info["url"], headers=auth) as resp:
            if resp.status != 200:
                raise Broken(f"download answered {resp.status}: {(await resp.read())[:300]!r}")
            async for chunk in resp.content.iter_any():
                digest.update(chunk)
                size += len(chunk)
        elapsed = time.perf_counter() - started
    return info, size, digest.hexdigest(), elapsed, resp.status


def write_blob(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(MB, left))
            digest.update(chunk)
            fh.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def section_media(ctx: Context) -> str:
    from pseudowa.storage.store import CassetteStore

    args = ctx.args
    size = args.media_mb * MB
    say(
        f"== 3. media download: {args.media_mb} MB blob from SQLite, server VmRSS sampled every 5 ms"
    )
    db_url = f"sqlite:///{ctx.tmp / 'media.db'}"
    big, small = ctx.tmp / "big.bin", ctx.tmp / "small.bin"
    big_sha, small_sha = write_blob(big, size), write_blob(small, 256 << 10)
    started = time.perf_counter()
    with CassetteStore.open(db_url) as store:
        store.create_cassette(MEDIA_CASSETTE, phone_number_ids=[PHONE_ID])
        info = store.put_media(big, "video/mp4")
        check(info.sha256 == big_sha and info.size == size, f"put_media stored {info}")
        store.put_media(small, "image/jpeg")
        store.link_media(MEDIA_CASSETTE, BIG_MEDIA_ID, big_sha, "video/mp4")
        store.link_media(MEDIA_CASSETTE, SMALL_MEDIA_ID, small_sha, "image/jpeg")
    big.unlink()
    say(f"  stored in {time.perf_counter() - started:.1f} s (not measured)")
    server = ctx.start(
        "media", ["fake", "--token", TOKEN, "--db", db_url, "--cassette", MEDIA_CASSETTE]
    ).ready()

    # Warm-up: the same path end to end on a small blob (sessions, threads, statements).
    _, wsize, wsha, _, _ = asyncio.run(_download(server.url, SMALL_MEDIA_ID))
    check(wsize == 256 << 10 and wsha == small_sha, "warm-up download: wrong bytes")
    server.wait_idle()
    baseline_kb = proc_status_kb(server.pid, "VmRSS") or 0
    hwm_reset = reset_hwm(server.pid)
    sampler = RssSampler(server.pid)
    sampler.start()
    try:
        info, got, sha, elapsed, _ = asyncio.run(_download(server.url, BIG_MEDIA_ID))
    finally:
        sampler.stop()
    hwm_kb = proc_status_kb(server.pid, "VmHWM") if hwm_reset else None
    after_kb = proc_status_kb(server.pid, "VmRSS") or 0
    check(server.alive(), f"media server died: {server.log_tail()}")
    check(got == size, f"downloaded {got} bytes, expected {size}")
    check(info["sha256"] == big_sha, f"look-up reports sha256 {info['sha256']}, stored {big_sha}")
    check(sha == big_sha, f"downloaded bytes hash to {sha}, expected {big_sha}")
    check(sampler.samples > 0, "no RSS samples taken")

    peak_kb = max(sampler.peak_kb, hwm_kb or 0)
    growth = (peak_kb - baseline_kb) / 1024
    rate = size / MB / elapsed
    hwm_text = (
        f"VmHWM growth {(hwm_kb - baseline_kb) / 1024:.1f} MB"
        if hwm_kb is not None
        else "VmHWM not resettable; sampled peak only"
    )
    say(
        f"  baseline VmRSS {baseline_kb / 1024:.1f} MB; sampled peak {sampler.peak_kb / 1024:.1f} MB "
        f"({sampler.samples} samples); {hwm_text}; VmRSS after {after_kb / 1024:.1f} MB"
    )
    ok = growth < GOAL_MEDIA_GROWTH_MB
    line = (
        f"media download: {args.media_mb} MB in {elapsed:.2f} s = {rate:.0f} MB/s; server RSS "
        f"peak growth {growth:.1f} MB (goal < {GOAL_MEDIA_GROWTH_MB:.0f} MB) {verdict(ok)}; "
        f"sha256 matched"
    )
    say(line)
    return line


# -- main ---------------------------------------------------------------------------------------

SECTIONS: dict[str, Callable[[Context], str]] = {
    "send": section_send,
    "emitter": section_emitter,
    "media": section_media,
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--only", action="append", choices=list(SECTIONS), help="run only these sections"
    )
    p.add_argument("--duration", type=float, default=5.0, help="seconds per load run (5)")
    p.add_argument("--rounds", type=int, default=3, help="alternated rounds per server (3)")
    p.add_argument("--connections", type=int, default=32, help="load generator connections (32)")
    p.add_argument("--webhooks", type=int, default=20_000, help="webhooks the emitter sends")
    p.add_argument("--concurrency", type=int, default=32, help="emitter concurrency (32)")
    p.add_argument("--media-mb", type=int, default=100, help="size of the media blob (100)")
    p.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "aiohttp"],
        default="auto",
        help="auto: wrk when installed, else the aiohttp fallback",
    )
    p.add_argument(
        "--profile",
        nargs="?",
        const="",
        default=None,
        metavar="DIR",
        help="cProfile the fake servers and an extra emitter run, print the top\n"
        "functions (and keep the .prof files in DIR when given); profiled\n"
        "figures are slower and not comparable",
    )
    return p.parse_args()


def choose_cpus() -> tuple[int | None, int | None, str]:
    if not hasattr(os, "sched_setaffinity"):
        return None, None, "no os.sched_setaffinity here: processes are NOT pinned"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None, f"only cpu {cpus} available: processes are NOT pinned"
    return (
        cpus[0],
        cpus[1],
        (f"servers pinned to cpu {cpus[0]}; wrk, emitter and download client to cpu {cpus[1]}"),
    )


def main() -> int:
    args = parse_args()
    try:
        import aiohttp  # noqa: F401

        import pseudowa.proxy.sandbox.graph  # noqa: F401
    except ImportError as e:
        say(
            f"cannot import the project ({e}): run with the venv, e.g. .venv/bin/python bench/run.py"
        )
        return 1

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # Even when started with SIGINT ignored (a background job of a script), Ctrl-C cleans up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    server_cpu, client_cpu, pin_text = choose_cpus()
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    tool = "wrk" if args.loadgen in ("auto", "wrk") and shutil.which("wrk") else "aiohttp"
    say(f"pseudowa bench: python {sys.version.split()[0]}, {os.cpu_count()} cpus; {pin_text}")
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load_before >= 0.5:
        say(
            f"NOTE: load average {load_before:.2f} before starting: other work shares these cores, "
            "expect noisier figures (rounds are alternated so ratios suffer least)"
        )
    if tool != "wrk":
        say(
            "NOTE: wrk is not installed (apt-get install wrk)"
            if args.loadgen != "aiohttp"
            else "NOTE: --loadgen aiohttp requested"
        )
        say(
            "      using the FALLBACK aiohttp load generator in a separate process: it is slower "
            "than wrk, so ceilings are understated and ratios pulled toward 1"
        )
    started = time.perf_counter()
    summaries: list[str] = []
    broken: list[str] = []
    try:
        with ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pseudowa-bench-")))
            ctx = Context(args, stack, tmp, server_cpu, LoadGenerator(tool, tmp, args.connections))
            for name in args.only or list(SECTIONS):
                with ExitStack() as section_stack:
                    ctx.stack = section_stack  # servers stop at the end of their section
                    try:
                        summaries.append(SECTIONS[name](ctx))
                    except Broken as e:
                        broken.append(f"{name}: {e}")
                        say(f"BROKEN ({name}): {e}")
                    except Exception as e:  # noqa: BLE001 - report, clean up, go on
                        broken.append(f"{name}: {type(e).__name__}: {e}")
                        say(f"BROKEN ({name}): unexpected error")
                        traceback.print_exc()
                say()
    except KeyboardInterrupt:
        say("\ninterrupted: servers stopped, temporary files removed")
        return 130
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    say(
        f"== summary ({time.perf_counter() - started:.0f} s; load average {load_before:.2f} before, "
        f"{load_after:.2f} at the end, the bench itself keeping up to 2 cores busy)"
    )
    for line in summaries:
        say(line)
    for problem in broken:
        say(f"BROKEN: {problem}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
