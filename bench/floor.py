"""The floor: the same mint + write calls syncd makes, back to back, with nothing around them.

Same httpx client (``build_http_client`` with syncd's settings), same ``mint``,
same ``TokenPayload``, same store class and ``write`` (built by
``create_store`` from the same TOML syncd reads), one credential after the
other. No scheduler, no metrics, no logging, no state, no /status. Its CPU per
rotation is what syncd's would be if all its bookkeeping were free, so
syncd / floor is the price of being a daemon.

A warm-up pass writes every key once first (files exist, Vault CAS versions
are known, connections are open), then ``--count`` rotations are timed with
``time.process_time()`` (all threads of this process, as for syncd).
``--rate`` paces the loop instead of running flat out.

Usage (by the harness)::

    python -m bench.floor --config floor.toml --count 1500 --out floor.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

from syncd import logs, policy
from syncd.config import load_config
from syncd.oauth import MintRequest, build_http_client, mint
from syncd.payload import TokenPayload
from syncd.stores.base import create_store


async def run(config_path: Path, count: int, rate: float | None) -> dict[str, float]:
    logs.configure("error", "json")  # no logging, as promised; errors would still show
    cfg = load_config(config_path)
    stores = {name: create_store(name, scfg) for name, scfg in cfg.stores.items()}
    d = cfg.daemon
    client = build_http_client(
        timeout=d.http_timeout, connect_timeout=d.connect_timeout, max_connections=max(d.max_concurrent_mints, 10)
    )
    creds = [(c, c.policy(cfg.defaults), c.lifetime_fallback_for(cfg.defaults)) for c in cfg.credentials]
    rng = random.Random()

    async def rotate(i: int) -> None:
        c, pol, fallback = creds[i % len(creds)]
        client_id, secret, scopes, _ = c.resolve_identity()
        req = MintRequest(
            credential=c.name,
            token_url=c.token_url,
            client_id=client_id,
            client_secret=secret,
            auth_method=c.auth_method,
            scopes=scopes,
            extra_params=dict(c.extra_params),
            lifetime_fallback=fallback,
        )
        token = await mint(client, req)
        payload = TokenPayload(
            credential=c.name,
            access_token=token.access_token,
            issued_at=token.issued_at,
            expires_at=token.expires_at,
            refresh_after=policy.refresh_time(token.issued_at, token.expires_at, time.time(), pol, rng.random()),
            token_type=token.token_type,
            scope=token.scope,
            fingerprint=token.fingerprint,
        )
        for t in c.targets:
            await stores[t.store].write(t.key, payload, target=t)

    try:
        for i in range(len(creds)):
            await rotate(i)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i in range(count):
            if rate:
                delay = wall0 + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await rotate(i)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        await client.aclose()
        for store in stores.values():
            await store.aclose()
    return {
        "count": count,
        "paced_rate": rate or 0.0,
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_per_rotation_ms": 1000 * cpu / count,
        "rotations_per_s": count / wall,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument("--count", type=int, default=1500)
    ap.add_argument("--rate", type=float, default=None)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    result = asyncio.run(run(args.config, args.count, args.rate))
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
