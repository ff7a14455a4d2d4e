"""Fallback HTTP load generator for bench/run.py when `wrk` is not installed.

`python bench/loadgen.py URL --duration S --connections C --body-file F -H 'Name: value' ...`
POSTs the same body over C keep-alive connections for S seconds and prints one JSON
line: requests, duration_s, non2xx, errors. It is a Python (aiohttp) client, so it
usually saturates before a Python server does: its req/s are a floor of the server's
capacity, and ratios between two servers measured with it understate the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time


async def drive(
    url: str, body: bytes, headers: dict[str, str], duration: float, conns: int
) -> dict:
    import aiohttp

    counts = {"requests": 0, "non2xx": 0, "errors": 0}
    connector = aiohttp.TCPConnector(limit=conns, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as s:
        started = time.perf_counter()
        deadline = started + duration

        async def worker() -> None:
            while time.perf_counter() < deadline:
                try:
                    async with s.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        counts["requests"] += 1
                        if not 200 <= resp.status < 300:
                            counts["non2xx"] += 1
                except aiohttp.ClientError:
                    counts["errors"] += 1

        await asyncio.gather(*(worker() for _ in range(conns)))
        elapsed = time.perf_counter() - started
    return {**counts, "duration_s": elapsed}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("url")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--body-file", required=True)
    p.add_argument("-H", "--header", action="append", default=[])
    p.add_argument("--cpu", type=int, default=None)
    args = p.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    with open(args.body_file, "rb") as fh:
        body = fh.read()
    headers = dict(h.split(": ", 1) for h in args.header)
    result = asyncio.run(drive(args.url, body, headers, args.duration, args.connections))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
