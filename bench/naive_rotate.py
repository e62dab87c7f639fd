"""The naive alternative: a cron-style script, one fresh Python process per rotation.

What many teams run instead of a daemon: start Python, import an HTTP client
and the store's SDK, mint one token, write it, exit. It writes the same
payload document syncd writes (so the comparison is like for like) but uses
only the libraries a team would reach for (httpx, hvac, boto3); no syncd code.

The harness runs it N times and measures the children's CPU with
``resource.getrusage(RUSAGE_CHILDREN)``: interpreter start-up and imports
included, because that is what this approach costs on every rotation.

Usage::

    python bench/naive_rotate.py '<spec json>'

spec: {"token_url", "client_id", "client_secret", "key", "credential", "store": {<reader spec>}}
"""

import hashlib
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime

import httpx


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def main() -> int:
    spec = json.loads(sys.argv[1])
    sent = time.time()
    resp = httpx.post(
        spec["token_url"],
        data={
            "grant_type": "client_credentials",
            "client_id": spec["client_id"],
            "client_secret": spec["client_secret"],
        },
        timeout=10,
    )
    resp.raise_for_status()
    tok = resp.json()
    access = tok["access_token"]
    life = float(tok.get("expires_in", 300))
    doc = {
        "version": 1,
        "credential": spec["credential"],
        "access_token": access,
        "token_type": "Bearer",
        "scope": tok.get("scope"),
        "issued_at": rfc3339(sent),
        "expires_at": rfc3339(sent + life),
        "refresh_after": rfc3339(sent + life / 2),
        "fingerprint": "sha256:" + hashlib.sha256(access.encode()).hexdigest()[:16],
    }
    store = spec["store"]
    kind = store["type"]
    if kind == "file":
        directory = store["directory"]
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".naive.")
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, os.path.join(directory, spec["key"]))
    elif kind == "vault":
        import hvac

        client = hvac.Client(url=store["url"], token=store["token"])
        client.secrets.kv.v2.create_or_update_secret(path=spec["key"], secret=doc, mount_point=store["mount"])
    elif kind == "aws-ssm":
        import boto3

        ssm = boto3.client("ssm", region_name=store["region"], endpoint_url=store["endpoint"])
        ssm.put_parameter(Name=spec["key"], Value=json.dumps(doc), Type="SecureString", Overwrite=True)
    elif kind == "aws-secretsmanager":
        import boto3

        sm = boto3.client("secretsmanager", region_name=store["region"], endpoint_url=store["endpoint"])
        sm.put_secret_value(SecretId=spec["key"], SecretString=json.dumps(doc))
    else:
        raise SystemExit(f"unknown store type {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
