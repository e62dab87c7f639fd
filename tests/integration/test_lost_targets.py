"""Targets that lose what syncd wrote are re-created by syncd itself, before the next rotation.

Real servers throughout: an OAuth server issuing 30 s tokens (refreshed at 80 %, so the
next rotation is ~24 s away), OpenBao (restarted: the dev server comes back empty),
moto_server (a secret, a slot, the slot index, a parameter deleted with boto3) and the
file store (the file removed). ``verify_interval = "0.5s"`` reads each target back
between rotations. Each test checks that the target holds the *same* token again (so
it was the read-back that repaired it, not a rotation) and that the daemon logged the
target as missing; the one whose rewrite cannot succeed until an operator acts
(Secrets Manager without create_missing) shows /readyz naming the target meanwhile.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from syncd.payload import TokenPayload
from syncd.stores import _aws
from tests.helpers import SyncdProcess, wait_for
from tests.peers.servers import MotoServer, OidcClient, OidcServer, OpenBaoServer

pytestmark = pytest.mark.integration

TTL = 30
REFRESH_AT = 0.8
ROTATION = TTL * REFRESH_AT  # 24 s; every wait below is shorter, so no rotation repairs anything
CLIENT = OidcClient("lost", "lost-secret-0123456789", "cards:read")


@pytest.fixture(scope="module")
def oidc30(peers_installed: None) -> Iterator[OidcServer]:
    server = OidcServer(ttl=TTL, clients=[CLIENT])
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(autouse=True)
def _fresh_limiters() -> Iterator[None]:
    _aws.reset_limiters()
    yield
    _aws.reset_limiters()


def config(oidc: OidcServer, tmp_path: Path, stores: str, targets: str) -> str:
    secret = tmp_path / "lost.secret"
    secret.write_text(CLIENT.client_secret)
    secret.chmod(0o600)
    return f"""
[daemon]
listen = "127.0.0.1:{{port}}"
log_format = "json"

[defaults]
refresh_at = {REFRESH_AT}
jitter = 0
min_remaining = "1s"
retry_min = "0.2s"
retry_max = "1s"
fatal_retry = "1s"
token_lifetime = "{TTL}s"
verify_interval = "0.5s"

{stores}

[[credentials]]
name = "lost"
token_url = "{oidc.token_url}"
client_id = "{CLIENT.client_id}"
client_secret = {{ file = "{secret}" }}
targets = [{targets}]
"""


def ready(d: SyncdProcess) -> bool:
    return d.get("/readyz").status_code == 200


def missing_events(d: SyncdProcess, target: str) -> list[dict[str, Any]]:
    return [e for e in d.events("target_missing") if e["target"] == target]


def assert_one_mint(d: SyncdProcess) -> None:
    mints = [e for e in d.events("mint") if e.get("outcome") == "ok"]
    assert len(mints) == 1, "a rotation happened: the test would not show the read-back at work"


def test_file_removed(oidc30: OidcServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    stores = f'[stores.local]\ntype = "file"\ndirectory = "{out}"\n'
    cfg = config(oidc30, tmp_path, stores, '{ store = "local", key = "lost.json" }')
    with SyncdProcess(cfg, tmp_path) as d:
        d.wait_http(timeout=60)
        wait_for(lambda: ready(d), 15, what="ready")
        before = json.loads((out / "lost.json").read_text())["fingerprint"]
        (out / "lost.json").unlink()
        wait_for(lambda: (out / "lost.json").exists(), ROTATION - 8, what="the file re-created")
        assert json.loads((out / "lost.json").read_text())["fingerprint"] == before
        wait_for(lambda: d.events("target_restored"), 5, what="restored event")
        assert ready(d)
        assert_one_mint(d)
        assert d.stop() == 0
    [event] = missing_events(d, "local:lost.json")
    assert "not there any more" in event["reason"] and event["level"] == "warning"


def test_file_replaced_by_a_symlink(oidc30: OidcServer, tmp_path: Path) -> None:
    """A link where the token file was: reported missing, /readyz names it while the link stays, never written through."""
    out = tmp_path / "out"
    stores = f'[stores.local]\ntype = "file"\ndirectory = "{out}"\n'
    cfg = config(oidc30, tmp_path, stores, '{ store = "local", key = "lost.json" }')
    outside = tmp_path / "outside.json"
    outside.write_text("not syncd's")
    with SyncdProcess(cfg, tmp_path) as d:
        d.wait_http(timeout=60)
        wait_for(lambda: ready(d), 15, what="ready")
        before = json.loads((out / "lost.json").read_text())["fingerprint"]
        (out / "lost.json").unlink()
        (out / "lost.json").symlink_to(outside)

        def named() -> dict[str, Any] | None:
            r = d.get("/readyz")
            entries = r.json().get("not_ready", []) if r.status_code == 503 else []
            return next((e for e in entries if e["target"] == "local:lost.json"), None)

        entry = wait_for(named, ROTATION - 8, what="/readyz naming the target")
        assert entry["reason"].startswith("missing:") and "symbolic link" in entry["reason"]
        wait_for(lambda: [e for e in d.events("write") if e["outcome"] == "fatal"], 10, what="the write refused")
        assert outside.read_text() == "not syncd's"
        (out / "lost.json").unlink()  # the operator removes the link
        wait_for(lambda: (out / "lost.json").is_file(), 10, what="the file written again")
        assert json.loads((out / "lost.json").read_text())["fingerprint"] == before
        wait_for(lambda: ready(d), 10, what="ready again")
        assert_one_mint(d)
        assert d.stop() == 0
    assert outside.read_text() == "not syncd's"


def test_openbao_restarted_empty(openbao: OpenBaoServer, oidc30: OidcServer, tmp_path: Path) -> None:
    """The dev server keeps nothing: after a restart the path is gone (and its KV version with it)."""
    token_file = tmp_path / "vault.token"
    token_file.write_text(openbao.root_token)
    token_file.chmod(0o600)
    stores = f"""
[stores.bao]
type = "vault"
url = "{openbao.url}"
mount = "secret"
auth = {{ method = "token", token_file = "{token_file}" }}
"""
    cfg = config(oidc30, tmp_path, stores, '{ store = "bao", key = "vgs/lost" }')

    def held() -> str | None:
        try:
            r = openbao.client().secrets.kv.v2.read_secret_version(
                path="vgs/lost", mount_point="secret", raise_on_deleted_version=True
            )
        except Exception:
            return None
        return TokenPayload.from_dict(r["data"]["data"]).fingerprint

    with SyncdProcess(cfg, tmp_path) as d:
        d.wait_http(timeout=60)
        wait_for(lambda: ready(d), 15, what="ready")
        before = held()  # version 1: the store's next cas is 1, a version the restarted server lacks
        openbao.restart()  # empty again (the daemon may already be re-creating the path)
        back = wait_for(held, ROTATION - 8, what="the path re-created")
        assert back == before
        assert_one_mint(d)
        assert d.stop() == 0
    assert missing_events(d, "bao:vgs/lost")


@pytest.fixture
def aws(moto_server: MotoServer, aws_env: None) -> tuple[Any, Any, str]:
    sm = boto3.client("secretsmanager", endpoint_url=moto_server.endpoint_url, region_name="eu-west-1")
    ssm = boto3.client("ssm", endpoint_url=moto_server.endpoint_url, region_name="eu-west-1")
    return sm, ssm, uuid.uuid4().hex[:8]


def aws_stores(moto: MotoServer, *, create_missing: bool = True) -> str:
    return f"""
[stores.aws]
type = "aws-secretsmanager"
region = "eu-west-1"
endpoint_url = "{moto.endpoint_url}"
create_missing = {"true" if create_missing else "false"}
quota_check = false

[stores.ssm]
type = "aws-ssm"
region = "eu-west-1"
endpoint_url = "{moto.endpoint_url}"
"""


def sm_fingerprint(sm: Any, secret_id: str) -> str | None:
    try:
        text = sm.get_secret_value(SecretId=secret_id)["SecretString"]
    except sm.exceptions.ResourceNotFoundException:
        return None
    doc = json.loads(text)
    return doc.get("fingerprint") if "fingerprint" in doc else json.dumps(doc, sort_keys=True)


def param_fingerprint(ssm: Any, name: str) -> str | None:
    try:
        value = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return None
    return str(json.loads(value)["fingerprint"])


def test_secret_slot_and_parameter_deleted(
    moto_server: MotoServer, aws: tuple[Any, Any, str], oidc30: OidcServer, tmp_path: Path
) -> None:
    """A plain secret, the slot holding the token and an SSM parameter deleted: each re-created with the same token.

    An untouched raw parameter (whose value ``read`` cannot judge) is never reported missing.
    """
    sm, ssm, tag = aws
    plain, slotted, param = f"vgs/{tag}/plain", f"vgs/{tag}/slotted", f"/vgs/{tag}/lost"
    targets = (
        f'{{ store = "aws", key = "{plain}" }}, {{ store = "aws", key = "{slotted}", slots = 2 }}, '
        f'{{ store = "ssm", key = "{param}" }}, {{ store = "ssm", key = "{param}-raw", format = "raw" }}'
    )
    cfg = config(oidc30, tmp_path, aws_stores(moto_server), targets)
    with SyncdProcess(cfg, tmp_path) as d:
        d.wait_http(timeout=60)
        wait_for(lambda: ready(d), 20, what="ready")
        token = sm_fingerprint(sm, plain)
        holding = next(s for s in (f"{slotted}-0", f"{slotted}-1") if sm_fingerprint(sm, s) == token)

        sm.delete_secret(SecretId=plain, ForceDeleteWithoutRecovery=True)
        sm.delete_secret(SecretId=holding, ForceDeleteWithoutRecovery=True)
        ssm.delete_parameter(Name=param)

        wait_for(lambda: sm_fingerprint(sm, plain) == token, ROTATION - 8, what="the secret re-created")
        wait_for(
            lambda: token in {sm_fingerprint(sm, f"{slotted}-0"), sm_fingerprint(sm, f"{slotted}-1")},
            10,
            what="a slot holding the token",
        )
        wait_for(lambda: param_fingerprint(ssm, param) == token, 10, what="the parameter re-created")
        time.sleep(1.0)  # two more read-backs of every target
        assert_one_mint(d)
        assert d.stop() == 0
    for label in (f"aws:{plain}", f"aws:{slotted}", f"ssm:{param}"):
        assert missing_events(d, label), f"{label} was not reported missing"
    assert not missing_events(d, f"ssm:{param}-raw"), "a raw parameter holding the token was reported missing"


def test_slot_index_deleted(
    moto_server: MotoServer, aws: tuple[Any, Any, str], oidc30: OidcServer, tmp_path: Path
) -> None:
    """Only the index document is gone (the slots still hold the token): consumers cannot find it, syncd re-creates it."""
    sm, _, tag = aws
    slotted = f"vgs/{tag}/indexed"
    cfg = config(oidc30, tmp_path, aws_stores(moto_server), f'{{ store = "aws", key = "{slotted}", slots = 2 }}')
    with SyncdProcess(cfg, tmp_path) as d:
        d.wait_http(timeout=60)
        wait_for(lambda: ready(d), 20, what="ready")
        index = sm_fingerprint(sm, slotted)
        assert index is not None
        sm.delete_secret(SecretId=slotted, ForceDeleteWithoutRecovery=True)
        wait_for(lambda: sm_fingerprint(sm, slotted) == index, ROTATION - 8, what="the slot index re-created")
        assert_one_mint(d)
        assert d.stop() == 0
    [event] = missing_events(d, f"aws:{slotted}")
    assert "slot index" in event["reason"]


def test_readyz_names_a_missing_target_until_it_is_back(
    moto_server: MotoServer, aws: tuple[Any, Any, str], oidc30: OidcServer, tmp_path: Path
) -> None:
    """Without create_missing the rewrite fails until an operator re-creates the secret: /readyz names it meanwhile."""
    sm, _, tag = aws
    key = f"vgs/{tag}/manual"
    sm.create_secret(Name=key, SecretString="{}")
    cfg = config(oidc30, tmp_path, aws_stores(moto_server, create_missing=False), f'{{ store = "aws", key = "{key}" }}')
    with SyncdProcess(cfg, tmp_path) as d:
        d.wait_http(timeout=60)
        wait_for(lambda: ready(d), 20, what="ready")
        token = sm_fingerprint(sm, key)
        sm.delete_secret(SecretId=key, ForceDeleteWithoutRecovery=True)

        def named() -> dict[str, Any] | None:
            r = d.get("/readyz")
            if r.status_code != 503:
                return None
            body = r.json()
            entries = body.get("not_ready") or body.get("targets") or body
            return next((e for e in entries if isinstance(e, dict) and e.get("target") == f"aws:{key}"), None)

        entry = wait_for(named, 10, what="/readyz naming the target")
        assert entry["reason"].startswith("missing:")
        status = d.get("/status").json()["credentials"][0]["targets"][0]
        assert status["missing"] and status["missing_since"]
        wait_for(lambda: d.events("write") and any(e["outcome"] == "fatal" for e in d.events("write")), 10)
        sm.create_secret(Name=key, SecretString="{}")  # the operator's fix
        wait_for(lambda: sm_fingerprint(sm, key) == token, 10, what="rewritten after the fix")
        wait_for(lambda: ready(d), 10, what="ready again")
        assert d.get("/status").json()["credentials"][0]["targets"][0]["missing"] is None
        assert_one_mint(d)
        assert d.stop() == 0


async def test_slot_index_comes_back_without_read_back(moto_server: MotoServer, aws: tuple[Any, Any, str]) -> None:
    """With verify_interval = "off" the store itself re-reads the index once per round of the slots."""
    from pydantic import SecretStr

    from syncd.config import AwsSecretsManagerStoreConfig, TargetConfig
    from syncd.stores.aws_secretsmanager import SecretsManagerStore

    sm, _, tag = aws
    key = f"vgs/{tag}/noverify"
    store = SecretsManagerStore(
        "aws",
        AwsSecretsManagerStoreConfig(
            type="aws-secretsmanager", region="eu-west-1", endpoint_url=moto_server.endpoint_url, create_missing=True
        ),
    )
    target = TargetConfig(store="aws", key=key, slots=2)

    def token(n: int) -> TokenPayload:
        now = time.time()
        return TokenPayload(
            credential="lost",
            access_token=SecretStr(f"tok-noverify-{n}-0123456789"),
            issued_at=now,
            expires_at=now + 300,
            refresh_after=now + 150,
        )

    await store.write(key, token(1), target=target)
    index = sm_fingerprint(sm, key)
    assert index is not None
    sm.delete_secret(SecretId=key, ForceDeleteWithoutRecovery=True)
    for n in (2, 3):  # one round of the two slots
        await store.write(key, token(n), target=target)
    assert sm_fingerprint(sm, key) == index
    await store.aclose()
