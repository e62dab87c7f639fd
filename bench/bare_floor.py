"""The bare floor: the cheapest honest client, with no syncd code at all.

One ``aiohttp.ClientSession`` POSTs the client-credentials form, the JSON answer
becomes the same payload document syncd writes, and the document goes to the
store with the least code that store allows: the file store's atomic write
(temporary file, fsync, rename, fsync of the directory) inline; OpenBao's two
KV v2 requests (data with ``cas``, then the path's ``custom_metadata``) with
the same aiohttp session; SSM's PutParameter and Secrets Manager's
PutSecretValue with boto3 (request signing has no cheaper honest path), called
inline. No validation beyond what the JSON parse does, no redaction, no
timeouts beyond aiohttp's defaults: what is left is what any client must pay.

A warm-up pass writes every key once, then ``--count`` rotations are timed
with ``time.process_time()``, as ``bench/floor.py`` does.

Usage (by the harness)::

    python -m bench.bare_floor --spec spec.json --count 1500 --out bare.json

spec: {"token_url", "keys": [...], "store": {<reader spec, bench/stores.py>}}
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

Writer = Callable[[str, dict[str, Any]], Awaitable[None]]


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _file_writer(store: dict[str, Any]) -> Writer:
    directory = store["directory"]
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)

    async def write(key: str, doc: dict[str, Any]) -> None:
        tmp = os.path.join(directory, f".{key}.bare")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(doc).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(directory, key))
        os.fsync(dir_fd)

    return write


def _vault_writer(store: dict[str, Any], session: aiohttp.ClientSession) -> Writer:
    base, mount = store["url"].rstrip("/"), store["mount"]
    headers = {"X-Vault-Token": store["token"]}
    versions: dict[str, int] = {}

    async def write(key: str, doc: dict[str, Any]) -> None:
        body = {"data": doc, "options": {"cas": versions.get(key, 0)}}
        async with session.post(f"{base}/v1/{mount}/data/{key}", json=body, headers=headers) as resp:
            if resp.status == 400:  # first write of a path seeded by someone else: learn its version
                async with session.get(f"{base}/v1/{mount}/metadata/{key}", headers=headers) as meta:
                    versions[key] = (await meta.json())["data"]["current_version"]
                return await write(key, doc)
            resp.raise_for_status()
            versions[key] = (await resp.json())["data"]["version"]
        meta_body = {"custom_metadata": {"expires_at": doc["expires_at"], "fingerprint": doc["fingerprint"]}}
        async with session.post(f"{base}/v1/{mount}/metadata/{key}", json=meta_body, headers=headers) as resp:
            resp.raise_for_status()

    return write


def _aws_writer(store: dict[str, Any]) -> Writer:
    import boto3

    kind = store["type"]
    client: Any = boto3.client(
        "ssm" if kind == "aws-ssm" else "secretsmanager", region_name=store["region"], endpoint_url=store["endpoint"]
    )

    async def write(key: str, doc: dict[str, Any]) -> None:
        text = json.dumps(doc)
        if kind == "aws-ssm":
            client.put_parameter(Name=key, Value=text, Type="SecureString", Overwrite=True)
        else:
            try:
                client.put_secret_value(SecretId=key, SecretString=text)
            except client.exceptions.ResourceNotFoundException:
                client.create_secret(Name=key, SecretString=text)

    return write


async def run(spec: dict[str, Any], count: int) -> dict[str, float]:
    keys: list[str] = spec["keys"]
    store = spec["store"]
    async with aiohttp.ClientSession() as session:
        if store["type"] == "file":
            write = _file_writer(store)
        elif store["type"] == "vault":
            write = _vault_writer(store, session)
        else:
            write = _aws_writer(store)

        async def rotate(i: int) -> None:
            n = i % len(keys)
            form = {
                "grant_type": "client_credentials",
                "client_id": f"c{n:05d}",
                "client_secret": f"bench-secret-{n:05d}",
            }
            sent = time.time()
            async with session.post(spec["token_url"], data=form) as resp:
                resp.raise_for_status()
                tok = await resp.json()
            access = tok["access_token"]
            life = float(tok.get("expires_in", 300))
            doc = {
                "version": 1,
                "credential": f"c{n:05d}",
                "access_token": access,
                "token_type": tok.get("token_type", "Bearer"),
                "scope": tok.get("scope"),
                "issued_at": rfc3339(sent),
                "expires_at": rfc3339(sent + life),
                "refresh_after": rfc3339(sent + life / 2),
                "fingerprint": "sha256:" + hashlib.sha256(access.encode()).hexdigest()[:16],
            }
            await write(keys[n], doc)

        for i in range(len(keys)):
            await rotate(i)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i in range(count):
            await rotate(i)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "count": count,
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_per_rotation_ms": 1000 * cpu / count,
        "rotations_per_s": count / wall,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True, type=Path)
    ap.add_argument("--count", type=int, default=1500)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    result = asyncio.run(run(json.loads(args.spec.read_text()), args.count))
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
