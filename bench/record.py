#!/usr/bin/env python3
"""Recording benchmark: `pseudowa record` against plain mitmproxy, same load, same run.

  1. throughput  req/s through the recording proxy (mitmproxy + the Recorder addon writing
                 every exchange to a SQLite cassette) vs plain mitmproxy in reverse mode with
                 no addon of ours, in front of the same upstream; wrk -t1 -c32 POSTing a Graph
                 text send with a Bearer token; alternated rounds, medians; goal ratio >= 0.90
  2. completeness  32 connections through a fresh recording proxy (bench/loadgen.py, which
                 counts every answer exactly), then a clean stop (SIGTERM): the cassette must
                 hold exactly as many Graph exchanges as the load tool saw answered

The upstream (bench/servers.py's bare aiohttp send handler) and both proxies run in processes
of their own: the proxies pinned to one core, the upstream and the load tools to the other.
See bench/README.md. Exit status: 1 when a sanity check failed or the counts differ; the
throughput ratio is reported, never asserted (nor is any absolute time).

`python bench/record.py serve plain|record ...` is the proxy process itself (used internally).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import ExitStack
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# bench/run.py's load generator and process helpers, bench/servers.py's bare answer.
import run as common
from run import Broken
from run import check
from run import say
from run import verdict
from servers import BARE_ANSWER

PHONE_ID = common.PHONE_ID
SEND_PATH = common.SEND_PATH
SEND_BODY = common.SEND_BODY
TOKEN = "EAAGm0PX4ZCpsBAKZCZBbenchAccessToken1234567890"  # long: learned as a secret too
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
GOAL_RATIO = 0.90
CASSETTE = "bench-record"


# -- the proxy processes ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serve_plain(
    args: argparse.Namespace, ready: asyncio.Future[int], stop: asyncio.Event
) -> None:
    """Plain mitmproxy: DumpMaster in reverse mode, no addon of ours, record()'s options."""
    from mitmproxy.options import Options
    from mitmproxy.tools.dump import DumpMaster

    from pseudowa.proxy.mitm.runner import drop_error_check as _drop_error_check

    port = _free_port()
    opts = Options()
    master = DumpMaster(opts, with_termlog=False, with_dumper=False)
    _drop_error_check(master)
    opts.update(
        confdir=args.confdir,
        mode=[f"reverse:{args.upstream}@127.0.0.1:{port}"],
        connection_strategy="lazy",
        ssl_insecure=False,
    )
    run = asyncio.get_running_loop().create_task(master.run())
    deadline = time.monotonic() + 30
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if run.done() or time.monotonic() > deadline:
                raise SystemExit(f"plain mitmproxy did not listen on {port}") from None
            await asyncio.sleep(0.05)
        else:
            writer.close()
            break
    ready.set_result(port)
    await stop.wait()
    master.shutdown()
    await run


async def _serve_record(
    args: argparse.Namespace, ready: asyncio.Future[int], stop: asyncio.Event
) -> None:
    """`pseudowa record` as the CLI runs it: record() with its live lines (to a log file)."""
    from urllib.parse import urlsplit

    from pseudowa.addons.writer import BatchWriter
    from pseudowa.proxy.mitm.record import RecordOptions
    from pseudowa.proxy.mitm.record import record

    # Instrumentation (information only): how the writer batches, and what it costs.
    write_batch = getattr(BatchWriter, "write_batch", None)
    stats = {"batches": 0, "rows": 0, "cpu": 0.0, "instrumented": write_batch is not None}

    def counted(self, batch):  # type: ignore[no-untyped-def]
        started = time.thread_time()
        try:
            return write_batch(self, batch)
        finally:
            stats["cpu"] += time.thread_time() - started
            stats["batches"] += 1
            stats["rows"] += len(batch)

    if write_batch is not None:  # (an older recorder writes one exchange at a time)
        BatchWriter.write_batch = counted  # type: ignore[method-assign]
    options = RecordOptions(
        args.cassette,
        db=args.db,
        graph_upstream=args.upstream,
        graph_port=0,
        media_port=0,
        regular_proxy=False,
        confdir=args.confdir,
        access_token=TOKEN,
        source="sandbox",
    )
    lines = open(args.lines, "w", buffering=1 << 16)  # noqa: ASYNC230, SIM115 - before serving

    def on_line(line: str) -> None:  # what click.echo does with stdout redirected to a file
        lines.write(line + "\n")

    def on_ready(listeners: Any) -> None:
        ready.set_result(int(urlsplit(listeners.graph_url).port or 0))

    try:
        summary = await record(options, on_line=on_line, on_ready=on_ready, stop=stop)
    finally:
        lines.close()
    sys.stderr.write(f"bench record: {summary.render()}\n")
    sys.stderr.write("WRITER " + json.dumps(stats) + "\n")


def serve_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="bench/record.py serve")
    p.add_argument("kind", choices=["plain", "record"])
    p.add_argument("--upstream", required=True)
    p.add_argument("--confdir", required=True)
    p.add_argument("--cpu", type=int, default=None)
    p.add_argument("--db")
    p.add_argument("--cassette", default=CASSETTE)
    p.add_argument("--lines", default=os.devnull, help="record: where live lines go")
    p.add_argument("--profile", help="cProfile the event loop thread, stats written here")
    args = p.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        parent = os.getppid()

        async def watch_parent() -> None:  # never outlive the bench
            while not stop.is_set():
                if os.getppid() != parent:
                    stop.set()
                await asyncio.sleep(0.5)

        watcher = loop.create_task(watch_parent())
        ready: asyncio.Future[int] = loop.create_future()
        serve = _serve_plain if args.kind == "plain" else _serve_record
        task = loop.create_task(serve(args, ready, stop))
        await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            if profiler is not None:  # serving only: not imports and start-up
                profiler.enable()
            sys.stdout.write(f"READY {ready.result()}\n")
            sys.stdout.flush()
            stopping = loop.create_task(stop.wait())
            await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if profiler is not None:  # not the shutdown either
                profiler.disable()
        await task
        watcher.cancel()

    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    try:
        asyncio.run(main())
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)


class Proxy(common.Server):
    """A `bench/record.py serve` process (bench/run.py's Server, another command line)."""

    def __init__(
        self, name: str, args: list[str], cpu: int | None, logdir: Path, profile: Path | None = None
    ) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self.profile = profile
        cmd = [sys.executable, str(Path(__file__).resolve()), "serve", *args]
        if cpu is not None:
            cmd += ["--cpu", str(cpu)]
        if profile is not None:
            cmd += ["--profile", str(profile)]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._log, start_new_session=True
        )
        self.port = None

    def stop_cleanly(self, timeout: float = 60.0) -> int:
        """SIGTERM, as `pseudowa record` gets from Ctrl-C or a service manager; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Broken(f"{self.name} did not stop within {timeout:.0f} s after SIGTERM") from None


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process's main thread (the event loop) and of its other threads."""
    out: dict[str, float] = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                text = fh.read()
            fields = text.rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue
        name = "event loop" if tid == str(pid) else "other threads"
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / common.CLK_TCK
    return out


def writer_stats(proxy: Proxy) -> str:
    """What the recording proxy's writer did (its WRITER line on stderr at exit)."""
    try:
        lines = proxy.log_path.read_text(errors="replace").splitlines()
        w = json.loads(next(ln for ln in reversed(lines) if ln.startswith("WRITER "))[7:])
    except (OSError, StopIteration, ValueError):
        return "(no statistics)"
    if not w.get("instrumented", True):
        return "(not instrumented: a recorder without the batching writer)"
    if not w["batches"]:
        return "nothing written"
    return (
        f"{w['rows']} exchanges in {w['batches']} transactions (mean batch "
        f"{w['rows'] / w['batches']:.1f}), writer thread {1e6 * w['cpu'] / w['rows']:.0f} us "
        "CPU per exchange"
    )


def graph_rows(db: Path, cassette: str) -> int:
    con = sqlite3.connect(db)
    try:
        return int(
            con.execute(
                "SELECT count(*) FROM interaction JOIN cassette ON cassette.id = interaction.cassette_id"
                " WHERE cassette.name = ? AND interaction.kind = 'graph'",
                (cassette,),
            ).fetchone()[0]
        )
    finally:
        con.close()


# -- the bench --------------------------------------------------------------------------------


class Bench:
    def __init__(
        self,
        args: argparse.Namespace,
        stack: ExitStack,
        tmp: Path,
        server_cpu: int | None,
        client_cpu: int | None,
    ) -> None:
        self.args = args
        self.stack = stack
        self.tmp = tmp
        self.server_cpu = server_cpu
        self.client_cpu = client_cpu
        self.load = common.LoadGenerator(args.tool, tmp, args.connections)
        self.upstream: common.Server | None = None

    def start_upstream(self) -> common.Server:
        up = common.Server("upstream", ["bare-send"], self.client_cpu, self.tmp)
        self.stack.callback(up.stop)
        self.upstream = up.ready()
        return up

    def start_proxy(self, kind: str, name: str, profile: bool = False) -> Proxy:
        assert self.upstream is not None
        args = [kind, "--upstream", self.upstream.url, "--confdir", str(self.tmp / "mitmproxy")]
        if kind == "record":
            args += [
                "--db",
                f"sqlite:///{self.tmp / (name + '.db')}",
                "--cassette",
                CASSETTE,
                "--lines",
                str(self.tmp / f"{name}.lines"),
            ]
        prof = self.tmp / f"{name}.prof" if profile else None
        proxy = Proxy(name, args, self.server_cpu, self.tmp, prof)
        self.stack.callback(proxy.stop)
        return proxy

    def db_of(self, proxy: Proxy) -> Path:
        return self.tmp / f"{proxy.name}.db"

    def sanity(self, proxy: Proxy) -> None:
        status, body = common.http_request("POST", proxy.url + SEND_PATH, SEND_BODY, HEADERS)
        check(status == 200, f"{proxy.name} answered {status}: {body[:300]!r}")
        check(body == BARE_ANSWER, f"{proxy.name} changed the upstream's answer: {body[:300]!r}")

    def drive(self, proxy: Proxy, duration: float) -> tuple[common.Load, float, float, float]:
        """One load run; also the proxy's and the upstream's CPU use (cores) during it."""
        assert self.upstream is not None
        before = (common.cpu_seconds(proxy.pid), common.cpu_seconds(self.upstream.pid))
        t0 = time.monotonic()
        load = self.load.run(proxy.url + SEND_PATH, SEND_BODY, HEADERS, duration)
        wall = time.monotonic() - t0
        p_cpu = (common.cpu_seconds(proxy.pid) - before[0]) / wall
        u_cpu = (common.cpu_seconds(self.upstream.pid) - before[1]) / wall
        check(load.non2xx == 0, f"{proxy.name}: {load.non2xx} non-2xx answers under load")
        check(load.errors == 0, f"{proxy.name}: {load.errors} socket errors/timeouts under load")
        check(proxy.alive(), f"{proxy.name} died: {proxy.log_tail()}")
        busy = proxy.wait_idle()
        if busy > 0.5:
            say(f"    ({proxy.name} kept working {busy:.1f} s after the load stopped)")
        return load, p_cpu, u_cpu, busy

    # -- 1. throughput ----------------------------------------------------------------------

    def throughput(self) -> tuple[str, float]:
        args = self.args
        say(
            f"== 1. throughput: POST {SEND_PATH} (Bearer), {self.load.label}, "
            f"{args.rounds} rounds x {args.duration:g} s, alternated plain/record"
        )
        proxies = {
            "plain": self.start_proxy("plain", "plain"),
            "record": self.start_proxy("record", "record"),
        }
        for proxy in proxies.values():
            proxy.ready()
        answered = {name: 0 for name in proxies}
        for name, proxy in proxies.items():
            self.sanity(proxy)
            answered[name] += 1
        say("  sanity: both proxies pass the send through and return the upstream's answer")
        for name, proxy in proxies.items():  # warm-up, not counted
            load, *_ = self.drive(proxy, 1)
            answered[name] += load.requests
        results: dict[str, list[common.Load]] = {name: [] for name in proxies}
        cpu: dict[str, list[float]] = {name: [] for name in proxies}
        threads_before = thread_cpu(proxies["record"].pid)
        for r in range(args.rounds):
            for name, proxy in proxies.items():
                load, p_cpu, u_cpu, _ = self.drive(proxy, args.duration)
                answered[name] += load.requests
                results[name].append(load)
                cpu[name].append(p_cpu)
                warn = "  (UPSTREAM NEAR SATURATION)" if u_cpu > 0.85 else ""
                say(
                    f"  round {r + 1} {name:6s} {load.describe()}  cpu: proxy {p_cpu:.2f} "
                    f"upstream {u_cpu:.2f}{warn}"
                )
        threads = thread_cpu(proxies["record"].pid)
        spent = {k: v - threads_before.get(k, 0.0) for k, v in threads.items()}
        med = {name: statistics.median(ld.rps for ld in loads) for name, loads in results.items()}
        ratio = med["record"] / med["plain"]
        per_round = [b.rps / a.rps for a, b in zip(results["plain"], results["record"])]
        say("  record / plain per round: " + " ".join(f"{x:.2f}" for x in per_round))
        us = {
            name: 1e6
            * sum(cpu[name][i] * results[name][i].seconds for i in range(args.rounds))
            / sum(ld.requests for ld in results[name])
            for name in proxies
        }
        say(
            f"  proxy CPU per request: plain {us['plain']:.0f} us, record {us['record']:.0f} us "
            f"(+{us['record'] - us['plain']:.0f} us, CPU ratio {us['plain'] / us['record']:.2f}); "
            "record's threads over the rounds: "
            + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(spent.items()) if v > 0.005)
        )

        # Every answer wrk counted is in the cassette (those in flight when wrk stopped are
        # recorded too, uncounted): checked after a clean stop, which flushes.
        rec = proxies["record"]
        code = rec.stop_cleanly()
        check(code == 0, f"record proxy exited {code}: {rec.log_tail()}")
        rows = graph_rows(self.db_of(rec), CASSETTE)
        say(
            f"  after SIGTERM: cassette holds {rows} graph exchanges; "
            f"{answered['record']} answers were counted (in flight when wrk stopped: extra ok)"
        )
        say(f"  writer: {writer_stats(rec)}")
        check(
            rows >= answered["record"],
            f"cassette holds {rows} exchanges but {answered['record']} answers were counted",
        )
        if self.args.profile is not None:
            for kind in proxies:
                self.profile(kind)
        tool = "" if self.load.tool == "wrk" else " [FALLBACK load generator, not wrk]"
        line = (
            f"record throughput: record {med['record']:.0f} req/s vs plain mitmproxy "
            f"{med['plain']:.0f} req/s -> ratio {ratio:.2f} (goal >= {GOAL_RATIO:.2f}) "
            f"{verdict(ratio >= GOAL_RATIO)}{tool}"
        )
        say(line)
        return line, ratio

    def profile(self, kind: str) -> None:
        """An extra, untimed run of a profiled proxy; its top functions (event loop thread,
        while serving)."""
        proxy = self.start_proxy(kind, f"{kind}-profiled", profile=True)
        proxy.ready()
        self.sanity(proxy)
        load, *_ = self.drive(proxy, self.args.duration)
        proxy.stop_cleanly()
        assert proxy.profile is not None
        common.print_profile(
            proxy.profile,
            f"{kind} proxy, {load.requests} requests (extra run, not timed)",
            self.args.profile or None,
            limit=40,
        )

    # -- 2. completeness ----------------------------------------------------------------------

    def completeness(self) -> tuple[str, bool]:
        args = self.args
        say(
            f"== 2. completeness: bench/loadgen.py (aiohttp, counts every answer), "
            f"{args.connections} connections for {args.count_duration:g} s through a fresh "
            "recording proxy, then SIGTERM"
        )
        proxy = self.start_proxy("record", "record-count")
        proxy.ready()
        body_file = self.tmp / "count.body"
        body_file.write_bytes(SEND_BODY)
        cmd = [
            sys.executable,
            str(common.LOADGEN),
            proxy.url + SEND_PATH,
            "--duration",
            str(args.count_duration),
            "--connections",
            str(args.connections),
            "--body-file",
            str(body_file),
        ]
        for k, v in HEADERS.items():
            cmd += ["-H", f"{k}: {v}"]
        if self.client_cpu is not None:
            cmd += ["--cpu", str(self.client_cpu)]
        out = subprocess.run(
            cmd, capture_output=True, text=True, check=False, timeout=args.count_duration + 120
        )
        if out.returncode != 0:
            raise Broken(f"bench/loadgen.py failed: {out.stderr[-800:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        # The load tool lets every request it started finish before it stops: `requests`
        # is every answer it got, each of which the recorder must have written.
        answered = int(r["requests"])
        say(
            f"  load tool: {answered} requests answered in {r['duration_s']:.1f} s "
            f"({answered / r['duration_s']:.0f} req/s), {r['non2xx']} non-2xx, "
            f"{r['errors']} errors"
        )
        code = proxy.stop_cleanly()
        check(code == 0, f"record proxy exited {code}: {proxy.log_tail()}")
        rows = graph_rows(self.db_of(proxy), CASSETTE)
        say(f"  writer: {writer_stats(proxy)}")
        ok = rows == answered and r["non2xx"] == 0 and r["errors"] == 0
        line = (
            f"record completeness: {answered} requests answered at {args.connections} "
            f"connections ({r['non2xx']} non-2xx, {r['errors']} errors), {rows} graph "
            f"exchanges in the cassette -> {'equal' if rows == answered else 'DIFFERENT'} "
            f"{verdict(ok)}"
        )
        say(line)
        return line, ok


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per load run (5)")
    p.add_argument("--rounds", type=int, default=3, help="alternated rounds per proxy (3)")
    p.add_argument("--connections", type=int, default=32, help="connections (32)")
    p.add_argument(
        "--count-duration",
        type=float,
        default=5.0,
        help="seconds of load for the completeness count (5)",
    )
    p.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "aiohttp"],
        default="auto",
        help="throughput load: auto = wrk when installed, else the aiohttp fallback",
    )
    p.add_argument(
        "--only", action="append", choices=["throughput", "count"], help="run only these sections"
    )
    p.add_argument(
        "--profile",
        nargs="?",
        const="",
        default=None,
        metavar="DIR",
        help="after section 1, cProfile an extra (untimed) run of each proxy\n"
        "(event loop thread, while serving) and print the top functions\n"
        "(keep the .prof files in DIR when given); not comparable figures",
    )
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve_main(argv[1:])
        return 0
    args = parse_args(argv)
    try:
        import aiohttp  # noqa: F401
        import mitmproxy.version

        import pseudowa.addons.recorder  # noqa: F401
    except ImportError as e:
        say(
            f"cannot import the project ({e}): run with the venv, e.g. .venv/bin/python "
            "bench/record.py"
        )
        return 1

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    server_cpu, client_cpu, _ = common.choose_cpus()
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
        pin_text = (
            f"proxies pinned to cpu {server_cpu}; upstream, wrk and loadgen to cpu {client_cpu}"
        )
    else:
        pin_text = "fewer than 2 cpus (or no affinity): NOT pinned"
    args.tool = "wrk" if args.loadgen in ("auto", "wrk") and shutil.which("wrk") else "aiohttp"
    say(
        f"pseudowa record bench: python {sys.version.split()[0]}, mitmproxy "
        f"{mitmproxy.version.VERSION}, {os.cpu_count()} cpus; {pin_text}"
    )
    if args.tool != "wrk":
        say(
            "NOTE: using the FALLBACK aiohttp load generator for throughput (no wrk): ratios "
            "are pulled toward 1"
        )
    load_before = os.getloadavg()[0]
    if load_before >= 0.5:
        say(f"NOTE: load average {load_before:.2f} before starting: expect noisier figures")
    started = time.perf_counter()
    summaries: list[str] = []
    broken: list[str] = []
    sections = args.only or ["throughput", "count"]
    try:
        with ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pseudowa-rbench-")))
            bench = Bench(args, stack, tmp, server_cpu, client_cpu)
            try:
                bench.start_upstream()
                if "throughput" in sections:
                    line, _ = bench.throughput()
                    summaries.append(line)
                    say()
                if "count" in sections:
                    line, ok = bench.completeness()
                    summaries.append(line)
                    if not ok:
                        broken.append("the cassette does not hold every answered request")
            except Broken as e:
                broken.append(str(e))
                say(f"BROKEN: {e}")
            except Exception as e:  # noqa: BLE001 - report, clean up
                broken.append(f"{type(e).__name__}: {e}")
                say("BROKEN: unexpected error")
                traceback.print_exc()
    except KeyboardInterrupt:
        say("\ninterrupted: processes stopped, temporary files removed")
        return 130
    say()
    say(
        f"== summary ({time.perf_counter() - started:.0f} s; load average {load_before:.2f} "
        f"before, {os.getloadavg()[0]:.2f} at the end)"
    )
    for line in summaries:
        say(line)
    for problem in broken:
        say(f"BROKEN: {problem}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
