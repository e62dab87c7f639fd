"""CPU per mint, in-process: ``oauth.mint`` through a ``build_http_client`` client against the fake IdP.

The fake IdP (``bench/fake_idp.py``) runs in its own process, so ``time.process_time()``
here counts only the client side: building the request, the HTTP client, the
transport, reading and validating the answer. After a warm-up, ``--count`` mints run
back to back, ``--repeats`` times; the median is printed, next to two references in the
same process and against the same IdP:

- ``httpx path``: the same mint with a client ``mint`` cannot send directly
  (``build_http_client``'s settings, but an httpx transport wrapping ours, so only the
  direct path is skipped);
- ``bare aiohttp``: one ``aiohttp.ClientSession`` POST of the same form and a
  ``json.loads`` of the answer, no syncd code (what any client must pay).

Run: ``python -m bench.mint_cost [--count 3000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
from pydantic import SecretStr

from bench.procs import FakeIdpProcess
from syncd.oauth import MintRequest, build_http_client, mint

FORM = {"grant_type": "client_credentials", "client_id": "bench", "client_secret": "bench-secret-0123456789"}


class HttpxPathOnly(httpx.AsyncBaseTransport):
    """Forwards to another transport: ``mint`` does not recognise it, so it keeps the httpx path."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _cpu_per_call(call: Callable[[], Awaitable[object]], count: int, warmup: int) -> float:
    """Microseconds of this process's CPU per call, over ``count`` calls after ``warmup``."""
    for _ in range(warmup):
        await call()
    start = time.process_time()
    for _ in range(count):
        await call()
    return (time.process_time() - start) / count * 1e6


async def _measure(token_url: str, count: int, warmup: int) -> dict[str, float]:
    req = MintRequest(
        credential="bench", token_url=token_url, client_id="bench", client_secret=SecretStr(FORM["client_secret"])
    )
    direct = build_http_client()
    via_httpx = build_http_client()
    via_httpx._transport = HttpxPathOnly(via_httpx._transport)  # the reference path, on purpose
    session = aiohttp.ClientSession()

    async def bare() -> object:
        async with session.post(token_url, data=FORM) as resp:
            return json.loads(await resp.read())

    try:
        return {
            "mint (as built)": await _cpu_per_call(lambda: mint(direct, req), count, warmup),
            "mint, httpx path": await _cpu_per_call(lambda: mint(via_httpx, req), count, warmup),
            "bare aiohttp": await _cpu_per_call(bare, count, warmup),
        }
    finally:
        await direct.aclose()
        await via_httpx.aclose()
        await session.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=3000, help="mints timed per repeat (default 3000)")
    ap.add_argument("--warmup", type=int, default=300, help="untimed mints first (default 300)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats; the median is shown (default 3)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mint-cost-") as tmp:
        idp = FakeIdpProcess(300, Path(tmp))
        idp.start()
        try:
            runs = [asyncio.run(_measure(idp.token_url, args.count, args.warmup)) for _ in range(args.repeats)]
        finally:
            idp.stop()
    print(f"CPU per mint, this process only ({args.count} mints x {args.repeats}, after {args.warmup} warm-up):")
    for name in runs[0]:
        values = [run[name] for run in runs]
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(f"  {name:<18} {statistics.median(values):7.0f} us   (runs: {shown})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
