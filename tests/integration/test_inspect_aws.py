"""`syncd inspect` on AWS targets: json payloads judged, raw values reported as unverifiable."""

from __future__ import annotations

import json
import subprocess
import time

import boto3
from pydantic import SecretStr

from syncd.payload import TokenPayload
from tests.helpers import SYNCD


def test_inspect_ssm_json_and_raw(moto_server, aws_env, tmp_path):
    ssm = boto3.client("ssm", endpoint_url=moto_server.endpoint_url, region_name="eu-west-1")
    now = time.time()
    fresh = TokenPayload(
        credential="calm",
        access_token=SecretStr("tok-inspect-1234567890"),
        issued_at=now,
        expires_at=now + 300,
        refresh_after=now + 150,
    )
    ssm.put_parameter(Name="/inspect/calm", Value=fresh.to_json(), Type="SecureString", Overwrite=True)
    ssm.put_parameter(Name="/inspect/calm-raw", Value="tok-inspect-1234567890", Type="SecureString", Overwrite=True)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[stores.ssm]
type = "aws-ssm"
region = "eu-west-1"
endpoint_url = "{moto_server.endpoint_url}"

[[credentials]]
name = "calm"
client_id = "x"
client_secret = {{ env = "X" }}
targets = [{{ store = "ssm", key = "/inspect/calm" }}, {{ store = "ssm", key = "/inspect/calm-raw", format = "raw" }},
           {{ store = "ssm", key = "/inspect/absent" }}]
""")
    proc = subprocess.run([SYNCD, "inspect", "-c", str(cfg), "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # /inspect/absent is missing
    report = {t["target"]: t for t in json.loads(proc.stdout)["targets"]}
    assert report["ssm:/inspect/calm"]["status"] == "fresh"
    assert report["ssm:/inspect/calm"]["fingerprint"] == fresh.fingerprint
    raw = report["ssm:/inspect/calm-raw"]
    assert raw["status"] == "unverifiable" and raw["problem"] is None and "no expiry" in raw["warning"]
    assert report["ssm:/inspect/absent"]["status"] == "missing"
    assert "tok-inspect" not in proc.stdout + proc.stderr
