"""Server processes for bench/run.py, one per process: `python bench/servers.py KIND [options]`.

Kinds:
  fake       the real FakeGraph (optionally reading a cassette, optionally journaling
             every exchange to a SQLite store, as `pseudowa replay --journal` does)
  bare-send  a bare aiohttp app: POST /{version}/{phone_number_id}/messages reads the
             body and answers a constant JSON body the size of the fake's answer
  receiver   a bare webhook receiver: POST /webhook answers 200 and counts; it checks the
             signature of every `--verify-every`-th body; GET /count, DELETE /count

Each server pins itself to `--cpu`, binds 127.0.0.1 on a free port and prints
`READY <port>` on stdout, then serves until SIGTERM/SIGINT or until its parent dies.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

# The constant answer of the bare app: the fake's synthesized answer to the bench's send.
BARE_ANSWER = (
    b'{"messaging_product":"whatsapp","contacts":[{"input":"16505551234",'
    b'"wa_id":"16505551234"}],"messages":[{"id":"wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI0M'
    b'zVGNDM0QjIxREZEMUQ1ODgA"}]}'
)


def pin(cpu: int | None) -> None:
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as e:
        print(f"servers.py: cannot pin to cpu {cpu}: {e}", file=sys.stderr)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("kind", choices=["fake", "bare-send", "receiver"])
    p.add_argument("--cpu", type=int, default=None, help="pin this process to one core")
    p.add_argument("--db", help="fake: store URL (for --cassette and/or --journal)")
    p.add_argument("--cassette", help="fake: cassette to serve media and recordings from")
    p.add_argument("--journal", help="fake: journal every exchange to this new cassette")
    p.add_argument("--token", default=None, help="fake: Bearer token (default: GraphConfig's)")
    p.add_argument("--secret", default="pseudowa-app-secret", help="receiver: app secret")
    p.add_argument("--verify-every", type=int, default=10, help="receiver: check 1 body in N")
    p.add_argument("--profile", help="write cProfile stats of the event loop thread here")
    return p.parse_args(argv)


# -- apps ---------------------------------------------------------------------------------


async def start_fake(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from pseudowa.proxy.sandbox.graph import FakeGraph
    from pseudowa.proxy.sandbox.graph import GraphConfig
    from pseudowa.proxy.sandbox.journal import Journal
    from pseudowa.storage.store import CassetteStore

    store = CassetteStore.open(args.db) if args.db else None
    journal = None
    if args.journal:
        if store is None:
            raise SystemExit("--journal needs --db")
        store.create_cassette(args.journal, source="replay", notes="bench journal")
        journal = Journal(store, args.journal)
    config = GraphConfig() if args.token is None else GraphConfig(access_token=args.token)
    graph = FakeGraph(
        config, store=store if args.cassette else None, cassette=args.cassette, journal=journal
    )
    await graph.start("127.0.0.1", 0)
    assert graph._runner is not None  # noqa: SLF001 - the bound port
    port = graph._runner.addresses[0][1]  # noqa: SLF001

    async def stop() -> None:
        await graph.stop()
        if journal is not None:
            await journal.close()
        if store is not None:
            store.close()

    return port, stop


async def start_app(app):  # type: ignore[no-untyped-def]
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner.addresses[0][1], runner.cleanup


async def start_bare_send(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from aiohttp import web

    async def send(request: web.Request) -> web.Response:
        await request.read()  # any real handler reads the body; so does the fake
        return web.Response(body=BARE_ANSWER, content_type="application/json")

    app = web.Application()
    app.router.add_post("/{version}/{phone_number_id}/messages", send)
    return await start_app(app)


async def start_receiver(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from aiohttp import web

    from pseudowa.proxy.contract import signature

    secret = args.secret.encode()
    every = max(1, args.verify_every)
    counts = {"posts": 0, "verified": 0, "bad": 0}
    signatures: set[str | None] = set()

    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        counts["posts"] += 1
        sig = request.headers.get(signature.HEADER)
        signatures.add(sig)
        if counts["posts"] % every == 1 or every == 1:
            if signature.verify(secret, body, sig):
                counts["verified"] += 1
            else:
                counts["bad"] += 1
        return web.Response()

    async def count(request: web.Request) -> web.Response:
        return web.json_response({**counts, "distinct_signatures": len(signatures)})

    async def reset(request: web.Request) -> web.Response:
        counts.update(posts=0, verified=0, bad=0)
        signatures.clear()
        return web.json_response({"reset": True})

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    app.router.add_get("/count", count)
    app.router.add_delete("/count", reset)
    return await start_app(app)


STARTERS = {"fake": start_fake, "bare-send": start_bare_send, "receiver": start_receiver}


# -- main ---------------------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    port, stop = await STARTERS[args.kind](args)
    parent = os.getppid()

    async def watch_parent() -> None:
        # Never outlive run.py, even if it was killed without a chance to clean up.
        while not done.is_set():
            if os.getppid() != parent:
                done.set()
            await asyncio.sleep(0.5)

    watcher = loop.create_task(watch_parent())
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()
    try:
        await done.wait()
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        watcher.cancel()
        await stop()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    pin(args.cpu)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
