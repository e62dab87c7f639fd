"""Secrets Manager store without a server: the quota plan, call sequences (Stubber), faults (HTTP hooks).

The endpoint points at a closed port: Stubber answers before the HTTP layer and
``Faults`` answers at it, so nothing leaves the process.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from pathlib import Path

import pytest
from botocore.stub import Stubber
from pydantic import SecretStr

from syncd import policy
from syncd.config import AwsSecretsManagerStoreConfig, TargetConfig
from syncd.payload import TokenPayload
from syncd.stores import _aws
from syncd.stores._aws import client_request_token
from syncd.stores.aws_secretsmanager import SecretsManagerStore, slots_for
from syncd.stores.base import FatalStoreError, TransientStoreError
from tests.helpers import SYNCD
from tests.unit.test_aws_common import Faults, connect_timeout, error, ok

pytestmark = pytest.mark.usefixtures("aws_env")

NOWHERE = "http://127.0.0.1:9"
KEY = "vgs/calm"
ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:vgs/calm-AbCdEf"


@pytest.fixture(autouse=True)
def _fresh_limiters():
    _aws.reset_limiters()
    yield
    _aws.reset_limiters()


def make(**options) -> SecretsManagerStore:
    options.setdefault("region", "eu-west-1")
    options.setdefault("endpoint_url", NOWHERE)
    return SecretsManagerStore("aws", AwsSecretsManagerStoreConfig(type="aws-secretsmanager", **options))


def target(key: str = KEY, **options) -> TargetConfig:
    return TargetConfig(store="aws", key=key, **options)


def payload(token: str, life: float = 300.0) -> TokenPayload:
    now = time.time()
    return TokenPayload(
        credential="calm",
        access_token=SecretStr(token),
        issued_at=now,
        expires_at=now + life,
        refresh_after=now + life / 2,
    )


def wpd(lifetime: float, **knobs) -> float:
    return policy.writes_per_day(lifetime, policy.RefreshPolicy(**knobs))


# --------------------------------------------------------------------------- the quota plan


def test_five_minute_token_in_one_secret_is_refused_with_the_explanation_and_three_fixes():
    store = make()
    findings = store.plan(KEY, wpd(300), target=target())
    errors = [f for f in findings if f.level == "error"]
    assert len(errors) == 1
    err = errors[0]
    assert "~672 versions/24 h in secret vgs/calm" in err.message  # 86400 / 135 s * 1.05
    assert "younger than 24 h" in err.message and "beyond 100" in err.message
    assert "LimitExceededException" in err.message and "10 minutes" in err.message
    assert err.fix is not None
    assert 'slots = "auto"' in err.fix and "8 secrets vgs/calm-0..vgs/calm-7" in err.fix
    assert "longer-lived token" in err.fix
    assert "SSM Parameter Store" in err.fix and "Vault" in err.fix


def test_slots_auto_picks_the_smallest_n_under_90_and_says_so():
    store = make()
    findings = store.plan(KEY, wpd(300), target=target(slots="auto"))
    assert not [f for f in findings if f.level == "error"]
    info = [f for f in findings if f.level == "info" and "slots:" in f.message]
    assert info and "8 secrets vgs/calm-0..vgs/calm-7 plus the index at vgs/calm" in info[0].message
    assert "~84 versions/24 h each" in info[0].message
    assert "prices as published by AWS; check current pricing" in info[0].message
    assert store._auto_slots[KEY] == 8


@pytest.mark.parametrize("lifetime", [60, 120, 300, 600, 900, 1200, 3600, 7200])
def test_auto_slot_count_matches_policy_slots_needed(lifetime):
    pol = policy.RefreshPolicy()
    assert slots_for(policy.writes_per_day(lifetime, pol)) == policy.slots_needed(lifetime, pol)


@pytest.mark.parametrize(
    ("writes", "expected"),
    [(0.0, 1), (90.0, 1), (90.1, 2), (180.0, 2), (180.5, 3), (math.inf, 1), (math.nan, 1)],
)
def test_slots_for_a_rate(writes, expected):
    assert slots_for(writes) == expected


def test_slots_for_an_absurd_rate_answers():
    """A rate of 1.7e305 writes a day (a lifetime of 1e-300 s) gets an answer: the search used to loop forever."""
    assert slots_for(1.7e305) == pytest.approx(1.7e305 / 90, rel=1e-12)


def test_too_few_explicit_slots_are_refused_and_enough_are_accepted():
    store = make()
    few = store.plan(KEY, wpd(300), target=target(slots=4))
    assert [f.level for f in few].count("error") == 1
    err = next(f for f in few if f.level == "error")
    assert "each of 4 slot secrets" in err.message and "raise slots to 8" in (err.fix or "")
    enough = store.plan(KEY, wpd(300), target=target(slots=8))
    assert not [f for f in enough if f.level == "error"]


def test_twenty_minute_tokens():
    store = make()
    # refreshed at half-life (every 10 min, 9 at the low end of the jitter): 168 versions/24 h
    default = store.plan(KEY, wpd(1200), target=target())
    assert any(f.level == "error" and "~168 versions/24 h" in f.message for f in default)
    assert store.plan(KEY, wpd(1200), target=target(slots="auto"))[0].message.startswith("slots: 2 secrets")
    # the fix the error proposes: refresh at 90 % with a 5 % jitter fits one secret
    late = store.plan(KEY, wpd(1200, refresh_at=0.9, jitter=0.05), target=target())
    assert not [f for f in late if f.level == "error"]
    assert wpd(1200, refresh_at=0.9, jitter=0.05) == pytest.approx(88.4, abs=0.1)


def test_token_too_short_even_for_fifty_slots():
    findings = make().plan(KEY, wpd(30), target=target(slots="auto"))
    err = next(f for f in findings if f.level == "error")
    assert "even for 50 slots" in err.message


def test_quota_check_false_warns_instead():
    store = make(quota_check=False)
    findings = store.plan(KEY, wpd(3), target=target(slots="auto"))
    assert [f.level for f in findings if f.level != "info"] == ["warning"]
    assert "quota_check = false" in findings[0].message
    assert store._auto_slots[KEY] == 50  # capped at the option's range


def test_raw_with_slots_and_bad_names_are_config_errors():
    store = make()
    raw = store.plan(KEY, wpd(1200), target=target(format="raw", slots=2))
    assert raw[0].level == "error" and 'format = "raw" with slots' in raw[0].message
    bad = store.plan("arn:aws:secretsmanager:eu-west-1:1:secret:x", wpd(1200), target=target())
    assert bad[0].level == "error" and "not a secret name" in bad[0].message
    suffix = store.plan("vgs/calm-Ab12Cd", wpd(86400), target=target())
    assert any(f.level == "warning" and "six characters" in f.message for f in suffix)


def test_missing_region_is_reported_by_plan_and_writes(monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    store = SecretsManagerStore("aws", AwsSecretsManagerStoreConfig(type="aws-secretsmanager"))
    assert "no AWS region" in store.plan(KEY, 10.0, target=target())[0].message


async def test_missing_region_write_is_fatal(monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    store = SecretsManagerStore("aws", AwsSecretsManagerStoreConfig(type="aws-secretsmanager"))
    with pytest.raises(FatalStoreError, match="no AWS region"):
        await store.write(KEY, payload("tok-0123456789abcdef"), target=target())
    await store.aclose()


# --------------------------------------------------------------------------- `syncd check` through the CLI


def _check(tmp_path: Path, target_line: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(
        f"""
[stores.aws]
type = "aws-secretsmanager"
region = "eu-west-1"

[[credentials]]
name = "calm"
client_id = "calm"
client_secret = {{ env = "CALM_SECRET" }}
token_lifetime = "5m"
targets = [ {target_line} ]
"""
    )
    env = {**os.environ, "CALM_SECRET": "calm-secret-0123456789"}  # check reads the secret's source
    return subprocess.run([SYNCD, "check", "-c", str(cfg)], capture_output=True, text=True, timeout=60, env=env)


def test_cli_check_refuses_a_five_minute_token_in_one_secret(tmp_path):
    proc = _check(tmp_path, '{ store = "aws", key = "vgs/calm" }')
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "error: calm -> aws:vgs/calm" in out
    assert "younger than 24 h" in out and "beyond 100" in out and "LimitExceededException" in out
    assert "(1)" in out and 'slots = "auto"' in out
    assert "(2)" in out and "longer-lived token" in out
    assert "(3)" in out and "SSM Parameter Store" in out and "Vault" in out
    assert "syncd would refuse to start" in out


def test_cli_check_accepts_it_with_slots_auto(tmp_path):
    proc = _check(tmp_path, '{ store = "aws", key = "vgs/calm", slots = "auto" }')
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "8 secrets vgs/calm-0..vgs/calm-7" in out
    assert "ok: configuration is valid" in out


# --------------------------------------------------------------------------- call sequences


async def test_one_put_per_rotation_and_no_call_for_an_unchanged_token():
    store = make()
    p1, p2 = payload("tok-one-0123456789abcdef"), payload("tok-two-0123456789abcdef")
    arn = ARN
    stub = Stubber(store._client)
    stub.add_client_error("get_secret_value", "ResourceNotFoundException", expected_params={"SecretId": KEY})
    for p in (p1, p2):
        token = client_request_token(KEY, p.fingerprint)
        stub.add_response(
            "put_secret_value",
            {"ARN": arn, "Name": KEY, "VersionId": token},
            expected_params={"SecretId": KEY, "SecretString": p.to_json(), "ClientRequestToken": token},
        )
    with stub:
        first = await store.write(KEY, p1, target=target())  # unknown secret: one read, then the put
        second = await store.write(KEY, p2, target=target())  # known: the put alone
        again = await store.write(KEY, p2, target=target())  # unchanged: no call at all
        stub.assert_no_pending_responses()
    assert first.written and first.version == client_request_token(KEY, p1.fingerprint)
    assert second.written and not again.written
    await store.aclose()


async def test_read_learns_the_stored_fingerprint_so_the_write_is_skipped():
    store = make()
    p = payload("tok-one-0123456789abcdef")
    stub = Stubber(store._client)
    stub.add_response("get_secret_value", {"ARN": ARN, "Name": KEY, "SecretString": p.to_json()})
    with stub:
        got = await store.read(KEY, target=target())
        result = await store.write(KEY, p, target=target())
        stub.assert_no_pending_responses()
    assert got is not None and got.fingerprint == p.fingerprint
    assert result.written is False
    await store.aclose()


async def test_raw_value_reads_as_none_but_still_skips_an_unchanged_write():
    store = make()
    p = payload("tok-raw-0123456789abcdef")
    stub = Stubber(store._client)
    stub.add_response("get_secret_value", {"ARN": ARN, "Name": KEY, "SecretString": "tok-raw-0123456789abcdef"})
    with stub:
        assert await store.read(KEY, target=target(format="raw")) is None
        assert (await store.write(KEY, p, target=target(format="raw"))).written is False
    await store.aclose()


async def test_a_write_is_not_blocked_by_a_denied_read():
    store = make()
    p = payload("tok-one-0123456789abcdef")
    stub = Stubber(store._client)
    stub.add_client_error("get_secret_value", "AccessDeniedException", "not authorized")
    stub.add_response("put_secret_value", {"ARN": ARN, "Name": KEY, "VersionId": "v" * 32})
    with stub:
        assert (await store.write(KEY, p, target=target())).written
    await store.aclose()


# --------------------------------------------------------------------------- faults at the HTTP layer


async def test_limit_exceeded_is_fatal_explained_and_not_retried():
    store = make(max_attempts=5)
    faults = Faults(store._client)
    faults.add("GetSecretValue", error("ResourceNotFoundException"))
    faults.add("PutSecretValue", error("LimitExceededException", message="too many versions"))
    with pytest.raises(FatalStoreError) as info:
        await store.write(KEY, payload("tok-0123456789abcdef"), target=target())
    err = info.value
    assert err.code == "LimitExceededException" and err.kind == "fatal"
    assert "version quota" in err.message and 'slots = "auto"' in err.message and "Not retried" in err.message
    assert "too many versions" in err.message
    assert faults.sent["PutSecretValue"] == 1  # botocore's standard mode would have retried it 4 times
    await store.aclose()


async def test_throttling_is_retried_by_botocore_and_charged_to_the_limiter():
    store = make(max_attempts=5)
    faults = Faults(store._client)
    faults.add("GetSecretValue", error("ResourceNotFoundException"))
    faults.add(
        "PutSecretValue",
        error("ThrottlingException", message="Rate exceeded"),
        error("ThrottlingException", message="Rate exceeded"),
        ok({"ARN": ARN, "Name": KEY, "VersionId": "v" * 32}),
    )
    result = await store.write(KEY, payload("tok-0123456789abcdef"), target=target())
    assert result.written
    assert faults.sent["PutSecretValue"] == 3
    assert store.writes.acquired == 1 and store.writes.debited == 2
    await store.aclose()


async def test_throttling_beyond_the_attempts_is_transient():
    store = make(max_attempts=2)
    faults = Faults(store._client)
    faults.add("GetSecretValue", error("ResourceNotFoundException"))
    faults.add("PutSecretValue", *[error("ThrottlingException", message="Rate exceeded")] * 2)
    with pytest.raises(TransientStoreError) as info:
        await store.write(KEY, payload("tok-0123456789abcdef"), target=target())
    assert info.value.code == "ThrottlingException" and "retrying with backoff" in info.value.message
    assert faults.sent["PutSecretValue"] == 2
    await store.aclose()


async def test_timeouts_and_5xx_are_transient():
    store = make(max_attempts=1)
    faults = Faults(store._client)
    faults.add("GetSecretValue", error("ResourceNotFoundException"))
    faults.add("PutSecretValue", connect_timeout(), error("InternalServiceError", status=500))
    p = payload("tok-0123456789abcdef")
    with pytest.raises(TransientStoreError, match="timed out"):
        await store.write(KEY, p, target=target())
    with pytest.raises(TransientStoreError, match="InternalServiceError"):
        await store.write(KEY, p, target=target())
    await store.aclose()


@pytest.mark.parametrize(
    ("code", "message", "expect"),
    [
        ("AccessDeniedException", "User x is not authorized", "grant secretsmanager:PutSecretValue on arn:aws:"),
        ("ResourceNotFoundException", "Secrets Manager can't find the specified secret.", "create_missing = true"),
        ("EncryptionFailure", "kms key disabled", "kms:GenerateDataKey and kms:Decrypt"),
        ("AccessDeniedException", "Access to KMS is not allowed", "kms:GenerateDataKey and kms:Decrypt"),
        ("InvalidRequestException", "it was marked for deletion", "restore-secret --secret-id vgs/calm"),
    ],
)
async def test_fatal_write_errors_name_the_secret_and_the_fix(code, message, expect):
    store = make(kms_key_id="alias/syncd")
    faults = Faults(store._client)
    faults.add("GetSecretValue", error("ResourceNotFoundException"))
    faults.add("PutSecretValue", error(code, message=message))
    with pytest.raises(FatalStoreError) as info:
        await store.write(KEY, payload("tok-0123456789abcdef"), target=target())
    assert expect in info.value.message
    assert "vgs/calm" in info.value.message
    assert "tok-0123456789abcdef" not in info.value.message
    await store.aclose()
