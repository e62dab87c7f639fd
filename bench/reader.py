"""The consumer: a separate process that reads the targets the way a service would, and keeps score.

It does not import syncd (a consumer does not have it): it reads the stored
document with plain file I/O, HTTP or boto3 and judges it by its own
``expires_at`` and ``issued_at``.

It reads each target *when it is stalest*: right at the ``refresh_after`` the
payload announces, then every ``--poll`` seconds until the new token shows up,
so the minimum remaining lifetime it reports is the real worst case rather than
whatever a random sample happened to catch. On top of that it reads random
targets at ``--random-rate`` per second, as an ordinary consumer would.

Per read: expired (must never happen), the remaining fraction of the lifetime.
Per replacement it has watched (old token minted by syncd, not seeded):

* lateness = new ``issued_at`` - old ``refresh_after``: how late syncd sent the
  mint, on the consumer's own evidence (syncd stamps issued_at when it sends);
* visible lag = first read of the new token - old ``refresh_after``: lateness
  plus mint, write and this reader's polling granularity.

Usage (by the harness)::

    python -m bench.reader --spec '{"type": "file", ...}' --keys keys.txt --start-at T --duration 60 --out r.json
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class FileSource:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.directory = Path(spec["directory"])

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.directory / key).read_text())  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None


class VaultSource:
    """KV v2 over a kept-alive HTTP connection, as a lean consumer would read it."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import http.client
        from urllib.parse import urlsplit

        u = urlsplit(spec["url"])
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        self.headers = {"X-Vault-Token": spec["token"]}
        self.mount = spec.get("mount", "secret")

    def get(self, key: str) -> dict[str, Any] | None:
        self.conn.request("GET", f"/v1/{self.mount}/data/{key}", headers=self.headers)
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise RuntimeError(f"vault GET {key} -> {resp.status}")
        return json.loads(body)["data"]["data"]  # type: ignore[no-any-return]


class SsmSource:
    def __init__(self, spec: dict[str, Any]) -> None:
        import boto3

        self.client = boto3.client("ssm", region_name=spec["region"], endpoint_url=spec["endpoint"])

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            value = self.client.get_parameter(Name=key, WithDecryption=True)["Parameter"]["Value"]
        except self.client.exceptions.ParameterNotFound:
            return None
        return json.loads(value)  # type: ignore[no-any-return]


class SecretsManagerSource:
    """Reads ``<key>``; when it is a slots index, the freshest unexpired slot (what the consumer reader does)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import boto3

        self.client = boto3.client("secretsmanager", region_name=spec["region"], endpoint_url=spec["endpoint"])
        self.index: dict[str, list[str]] = {}

    def _one(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.client.get_secret_value(SecretId=key)["SecretString"])  # type: ignore[no-any-return]
        except self.client.exceptions.ResourceNotFoundException:
            return None

    def get(self, key: str) -> dict[str, Any] | None:
        slots = self.index.get(key)
        if slots is None:
            doc = self._one(key)
            if doc is None or "access_token" in doc or not isinstance(doc.get("keys"), list):
                return doc
            slots = self.index[key] = list(doc["keys"])
        got = self.client.batch_get_secret_value(SecretIdList=slots)["SecretValues"]
        docs = [json.loads(v["SecretString"]) for v in got]
        docs = [d for d in docs if "access_token" in d]
        return max(docs, key=lambda d: _ts(d["expires_at"])) if docs else None


SOURCES = {
    "file": FileSource,
    "vault": VaultSource,
    "aws-ssm": SsmSource,
    "aws-secretsmanager": SecretsManagerSource,
}


def run(spec: dict[str, Any], keys: list[str], start_at: float, duration: float, poll: float, random_rate: float):
    source = SOURCES[spec["type"]](spec)
    rng = random.Random(7)
    while time.time() < start_at:
        time.sleep(min(0.05, max(start_at - time.time(), 0)))
    end = start_at + duration
    now = time.time()
    # (due, seq, key); seq keeps heap order stable. Random first reads spread the start.
    heap: list[tuple[float, int, str]] = [(now + rng.random() * min(poll * 50, 1.0), i, k) for i, k in enumerate(keys)]
    heapq.heapify(heap)
    seq = len(keys)
    last: dict[str, dict[str, Any]] = {}
    stats: dict[str, Any] = {"reads": 0, "random_reads": 0, "missing": 0, "errors": 0, "expired": 0}
    min_fraction, min_remaining, worst = float("inf"), float("inf"), None
    fractions: list[float] = []
    lateness: list[float] = []
    lag: list[float] = []
    next_random = now
    while True:
        now = time.time()
        if now >= end:
            break
        if random_rate > 0 and now >= next_random:
            key, is_random = rng.choice(keys), True
            next_random += 1.0 / random_rate
        elif heap and heap[0][0] <= now:
            _, _, key = heapq.heappop(heap)
            is_random = False
        else:
            wake = min(heap[0][0] if heap else end, next_random if random_rate > 0 else end, end)
            time.sleep(max(0.0, wake - now))
            continue
        try:
            doc = source.get(key)
            if doc is None:
                stats["missing"] += 1
        except Exception as exc:  # a consumer sees errors too; count them, keep reading
            stats["errors"] += 1
            stats.setdefault("error_sample", f"{type(exc).__name__}: {exc}"[:300])
            doc = None
        t = time.time()
        stats["reads"] += 1
        stats["random_reads"] += is_random
        if doc is None:
            if not is_random:
                heapq.heappush(heap, (t + poll * 5, seq, key))
                seq += 1
            continue
        issued, expires = _ts(doc["issued_at"]), _ts(doc["expires_at"])
        refresh = _ts(doc["refresh_after"]) if doc.get("refresh_after") else issued + (expires - issued) / 2
        life = max(expires - issued, 1e-9)
        remaining = expires - t
        fraction = remaining / life
        if remaining <= 0:
            stats["expired"] += 1
        fractions.append(fraction)
        if fraction < min_fraction:
            min_fraction = fraction
            worst = {"key": key, "remaining_s": round(remaining, 4), "lifetime_s": round(life, 3)}
        min_remaining = min(min_remaining, remaining)
        prev = last.get(key)
        fp = doc.get("fingerprint")
        if prev is not None and prev["fingerprint"] != fp and not prev["seeded"] and issued > prev["issued"]:
            lateness.append(issued - prev["refresh"])
            if prev["watched"]:
                lag.append(t - prev["refresh"])
        if prev is None or prev["fingerprint"] != fp:
            prev = last[key] = {
                "fingerprint": fp,
                "issued": issued,
                "refresh": refresh,
                "seeded": doc.get("scope") == "bench:seed",
                "watched": False,
            }
        if is_random:
            continue
        if t >= refresh:
            # Seen while due: the first sighting of its replacement is a true lag. A seeded token's
            # stored refresh_after is not syncd's plan (syncd re-jitters what it adopts): poll it slowly.
            prev["watched"] = not prev["seeded"]
            heapq.heappush(heap, (t + (poll if not prev["seeded"] else max(poll * 10, 0.1)), seq, key))
        else:
            heapq.heappush(heap, (refresh + 0.001, seq, key))
        seq += 1
    fractions.sort()
    n = len(fractions)
    stats.update(
        {
            "duration": duration,
            "targets": len(keys),
            "min_fraction": None if n == 0 else round(min_fraction, 4),
            "fraction_p01": None if n == 0 else round(fractions[int(0.01 * (n - 1))], 4),
            "min_remaining_s": None if n == 0 else round(min_remaining, 4),
            "worst": worst,
            "replacements": len(lateness),
            "lateness": _summary(lateness),
            "visible_lag": _summary(lag),
        }
    )
    return stats


def _summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    v = sorted(values)
    n = len(v)
    return {
        "n": n,
        "p50": round(v[int(0.5 * (n - 1))], 4),
        "p99": round(v[int(0.99 * (n - 1))], 4),
        "max": round(v[-1], 4),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--keys", required=True, type=Path)
    ap.add_argument("--start-at", type=float, default=0.0)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--poll", type=float, default=0.02)
    ap.add_argument("--random-rate", type=float, default=40.0)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    keys = [k for k in args.keys.read_text().splitlines() if k]
    result = run(json.loads(args.spec), keys, args.start_at, args.duration, args.poll, args.random_rate)
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
