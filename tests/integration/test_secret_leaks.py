"""No client secret or access token in logs (even at debug, httpx/httpcore included), /status or /metrics."""

from __future__ import annotations

import subprocess
import time

from tests.helpers import SYNCD, SyncdProcess, wait_for

SECRET = "calm-secret-0123456789"


def _config(idp, out, level="debug") -> str:
    return f"""
[daemon]
listen = "127.0.0.1:{{port}}"
log_format = "json"
log_level = "{level}"

[defaults]
min_remaining = "1s"
token_lifetime = "3s"

[stores.local]
type = "file"
directory = "{out}"

[[credentials]]
name = "calm"
token_url = "{idp.token_url}"
client_id = "calm"
client_secret = {{ file = "{out.parent / "calm.secret"}" }}
auth_method = "client_secret_basic"
targets = [{{ store = "local", key = "calm.json" }}, {{ store = "local", key = "calm.raw", format = "raw" }}]
"""


def test_debug_logs_status_metrics_never_leak(oidc_server, tmp_path):
    out = tmp_path / "out"
    (tmp_path / "calm.secret").write_text(SECRET)
    tokens: set[str] = set()
    with SyncdProcess(_config(oidc_server, out), tmp_path) as d:
        d.wait_http()
        deadline = time.time() + 8
        exposed = ""
        while time.time() < deadline:
            raw = out / "calm.raw"
            if raw.exists():
                tokens.add(raw.read_text())
            exposed += d.get("/status").text + d.get("/metrics").text + d.get("/readyz").text
            time.sleep(0.2)
        assert d.stop() == 0
    logs = d.log_text()
    assert len(tokens) >= 3, "the test must see several real tokens to be meaningful"
    assert '"logger": "httpcore' in logs or '"logger":"httpcore' in logs or "httpcore" in logs, (
        "debug logging of the HTTP stack must be on for this test to prove anything"
    )
    assert len(d.events("mint")) >= 3
    for text, where in ((logs, "logs"), (exposed, "endpoints")):
        assert SECRET not in text, f"client secret in {where}"
        for token in tokens:
            assert token not in text, f"access token in {where}"
    # the fingerprint is what identifies a token in logs
    assert any(e.get("fingerprint", "").startswith("sha256:") for e in d.events("write"))


def test_once_and_wrong_secret_errors_never_leak(oidc_server, tmp_path):
    out = tmp_path / "out"
    (tmp_path / "calm.secret").write_text("wrong-" + SECRET)
    cfg = tmp_path / "c.toml"
    cfg.write_text(_config(oidc_server, out).replace("{port}", "0"))
    proc = subprocess.run([SYNCD, "once", "-c", str(cfg)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "FAILED  calm" in proc.stdout and "invalid_client" in proc.stdout
    assert "wrong-" + SECRET not in proc.stdout + proc.stderr
    (tmp_path / "calm.secret").write_text(SECRET)
    proc = subprocess.run([SYNCD, "once", "-c", str(cfg)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    token = wait_for(lambda: (out / "calm.raw").read_text(), 5)
    assert token not in proc.stdout + proc.stderr and SECRET not in proc.stdout + proc.stderr


def test_botocore_debug_bodies_are_redacted(oidc_server, moto_server, aws_env, tmp_path):
    """botocore at debug prints request bodies (the SecretString): redaction must remove the token."""
    out = tmp_path / "out"
    (tmp_path / "calm.secret").write_text(SECRET)
    import boto3

    sm = boto3.client("secretsmanager", endpoint_url=moto_server.endpoint_url, region_name="eu-west-1")
    sm.create_secret(Name="leak/calm", SecretString="placeholder")
    cfg = _config(oidc_server, out) + f"""
[stores.aws]
type = "aws-secretsmanager"
region = "eu-west-1"
endpoint_url = "{moto_server.endpoint_url}"
quota_check = false
"""
    cfg = cfg.replace(
        '{ store = "local", key = "calm.raw", format = "raw" }]',
        '{ store = "local", key = "calm.raw", format = "raw" }, { store = "aws", key = "leak/calm" }]',
    )
    tokens: set[str] = set()
    with SyncdProcess(cfg, tmp_path, env=dict(aws_env_vars())) as d:
        d.wait_http()
        deadline = time.time() + 6
        while time.time() < deadline:
            if (out / "calm.raw").exists():
                tokens.add((out / "calm.raw").read_text())
            time.sleep(0.2)
        assert d.stop() == 0
    logs = d.log_text()
    assert "PutSecretValue" in logs and "SecretString" in logs, "botocore debug bodies must be in the logs"
    assert len(tokens) >= 2
    assert SECRET not in logs
    for token in tokens:
        assert token not in logs, "an access token leaked through botocore debug logging"


def aws_env_vars():
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-1"}
