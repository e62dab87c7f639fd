"""docs/aws.md: the settings of AWS's Python caching client (aws-secretsmanager-caching), run against moto.

The ``aws-caching-client`` block of the doc is executed as written, with its two intervals
scaled down (30 s -> 1 s) for 10-second tokens, against a real moto server over HTTP.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from syncd.payload import TokenPayload, slot_index_doc
from tests.peers.servers import MotoServer

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "aws.md"


def block(**intervals: str) -> str:
    text = DOC.read_text()
    match = re.search(r"<!-- tested: aws-caching-client -->\n```python\n(.*?)\n```", text, re.S)
    assert match, "docs/aws.md has no tested block 'aws-caching-client'"
    code = match.group(1)
    for name, value in intervals.items():
        code, n = re.subn(rf"{name}=\d+", f"{name}={value}", code)
        assert n == 1, f"the doc's block no longer sets {name}"
    return code


def consumer(**intervals: str) -> dict[str, Any]:
    """Run the doc's block; its names (cache, vgs_token) land in the returned namespace."""
    namespace: dict[str, Any] = {}
    exec(compile(block(**intervals), str(DOC), "exec"), namespace)
    return namespace


def make(token: str, issued: float, lifetime: float) -> TokenPayload:
    return TokenPayload(
        credential="card",
        access_token=SecretStr(token),
        issued_at=issued,
        expires_at=issued + lifetime,
        refresh_after=issued + lifetime / 2,
    )


@pytest.fixture
def sm(moto_server: MotoServer, aws_env: None, monkeypatch: pytest.MonkeyPatch):
    """A Secrets Manager client on moto; the doc's own boto3 client finds it through AWS_ENDPOINT_URL."""
    moto_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    yield boto3.client("secretsmanager", endpoint_url=moto_server.endpoint_url)
    moto_server.reset()


def test_scaled_settings_keep_slots_fresh_from_a_cold_start(sm) -> None:
    """Three slots filled one per rotation, as syncd does; every call after the first slot lands is fresh."""
    life = 10.0
    ns = consumer(secret_refresh_interval="1", exception_retry_delay_max="1")
    keys = [f"vgs/card-{i}" for i in range(3)]
    sm.create_secret(Name="vgs/card", SecretString=json.dumps(slot_index_doc(keys)))
    with pytest.raises(RuntimeError, match="no slot written yet"):
        ns["vgs_token"]("vgs/card")

    written: list[str] = []

    def write(n: int) -> TokenPayload:
        payload = make(f"cache-tok-{n}", time.time(), life)
        key = keys[n % len(keys)]
        if n < len(keys):
            sm.create_secret(Name=key, SecretString=payload.to_json())
        else:
            sm.put_secret_value(SecretId=key, SecretString=payload.to_json())
        written.append(f"cache-tok-{n}")
        return payload

    current = write(0)
    deadline = time.monotonic() + 10
    while True:  # the miss cached before slot 0 existed lasts until the cache's retry time
        try:
            ns["vgs_token"]("vgs/card")
            break
        except RuntimeError:
            assert time.monotonic() < deadline, "slot 0 was never served"
            time.sleep(0.05)

    served: set[str] = set()
    end = time.time() + 3 * life
    n = 0
    while time.time() < end:
        if time.time() >= current.refresh_after:
            n += 1
            current = write(n)
        served.add(ns["vgs_token"]("vgs/card"))  # raises on an expired token or no slot
        time.sleep(0.05)
    assert len(served) >= 5, f"served {len(served)} of {len(written)} tokens"


# The library hands the float to random.randint, which Python 3.11 still accepts with this warning.
@pytest.mark.filterwarnings("ignore:randrange\\(\\) will raise TypeError:DeprecationWarning")
def test_fractional_refresh_interval_breaks_every_read(sm) -> None:
    sm.create_secret(Name="vgs/calm", SecretString=make("frac", time.time(), 300).to_json())
    ns = consumer(secret_refresh_interval="1.5")
    for _ in range(2):
        with pytest.raises((ValueError, TypeError), match="non-integer"):
            ns["vgs_token"]("vgs/calm")


def test_default_interval_serves_an_expired_token_and_the_check_refuses_it(sm) -> None:
    from aws_secretsmanager_caching import SecretCache

    first = make("default-old", time.time(), 2.0)
    sm.create_secret(Name="vgs/calm", SecretString=first.to_json())
    ns = consumer()
    ns["cache"] = SecretCache(client=ns["client"])  # every default: secret_refresh_interval 3600
    assert ns["vgs_token"]("vgs/calm") == "default-old"
    sm.put_secret_value(SecretId="vgs/calm", SecretString=make("default-new", time.time(), 300).to_json())
    while time.time() <= first.expires_at:
        time.sleep(0.05)
    assert json.loads(ns["cache"].get_secret_string("vgs/calm"))["access_token"] == "default-old"
    with pytest.raises(RuntimeError, match="token expired at") as info:
        ns["vgs_token"]("vgs/calm")
    assert "default-old" not in str(info.value)


def test_cold_start_a_capped_retry_delay_finds_a_late_secret_first(sm) -> None:
    """A miss is cached with a doubling delay; exception_retry_delay_max bounds how long a late secret hides."""
    from aws_secretsmanager_caching import SecretCache, SecretCacheConfig

    client = boto3.client("secretsmanager")
    default = SecretCache(config=SecretCacheConfig(secret_refresh_interval=1), client=client)
    capped = SecretCache(
        config=SecretCacheConfig(secret_refresh_interval=1, exception_retry_delay_max=1), client=client
    )

    def poll(cache: SecretCache) -> str | None:
        try:
            return cache.get_secret_string("vgs/late")
        except client.exceptions.ResourceNotFoundException:
            return None

    start = time.monotonic()
    while time.monotonic() - start < 8.0:  # consumers started before syncd wrote the secret
        assert poll(default) is None and poll(capped) is None
        time.sleep(0.05)
    sm.create_secret(Name="vgs/late", SecretString=make("late-tok", time.time(), 300).to_json())
    created = time.monotonic()
    seen: dict[str, float] = {}
    while len(seen) < 2 and time.monotonic() - created < 30:
        for name, cache in (("default", default), ("capped", capped)):
            if name not in seen and poll(cache) is not None:
                seen[name] = time.monotonic() - created
        time.sleep(0.05)
    print(f"served after creation: {', '.join(f'{k} {v:.1f} s' for k, v in seen.items())}")
    assert "capped" in seen, "the capped cache never served the late secret"
    assert "default" not in seen or seen["capped"] < seen["default"], seen
