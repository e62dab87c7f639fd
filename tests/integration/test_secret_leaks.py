"""No client secret or access token in logs (even at debug, the HTTP stack included), /status or /metrics."""

from __future__ import annotations

import os
import subprocess
import time

from tests.helpers import SYNCD, SyncdProcess, wait_for
from tests.peers.servers import free_port

SECRET = "calm-secret-0123456789"


def http_stack_logged(logs: str) -> bool:
    """The HTTP stack logged each token request: httpx's "HTTP Request: POST ..." line (the requests
    travel over aiohttp, which logs nothing per request; httpcore is no longer in the path)."""
    return "HTTP Request: POST" in logs and ('"logger": "httpx"' in logs or '"logger":"httpx"' in logs)


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
    assert http_stack_logged(logs), "debug logging of the HTTP stack must be on for this test to prove anything"
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
    cfg = (
        _config(oidc_server, out)
        + f"""
[stores.aws]
type = "aws-secretsmanager"
region = "eu-west-1"
endpoint_url = "{moto_server.endpoint_url}"
quota_check = false
"""
    )
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


# --------------------------------------------------------------------------- echoed secrets, URL credentials

ECHOED = "Qz7xK-echoed-secret-0123456789abcdef"  # the client secret the FakeIdP quotes back
# Server text is cut at these lengths (oauth: error code 64, description 200; messages and
# vendor text elsewhere 100-400): the secret is quoted so that it straddles each of them.
LIMITS = (64, 100, 200, 300, 400)


def _prefixes(secret: str) -> list[str]:
    return [secret[:n] for n in range(4, len(secret) + 1)]


def _assert_no_prefix(text: str, secret: str, where: str) -> None:
    leaked = [p for p in _prefixes(secret) if p in text]
    assert not leaked, f"{where} holds {len(leaked[-1])} leading characters of the secret"


def _straddling_errors():
    from tests.peers.fake_idp import error

    out = []
    for limit in LIMITS:
        for back in (1, 4, len(ECHOED) // 2, len(ECHOED) - 4):
            start = max(0, limit - 3 - back)
            out.append(error(401, "invalid_client", "d" * start + ECHOED + " was not accepted"))
            if limit == 64:
                out.append(error(401, "c" * start + ECHOED, "code quotes the secret"))
    return out


def _echo_config(idp, out, n: int = 6) -> str:
    creds = "".join(
        f"""
[[credentials]]
name = "echo{i}"
token_url = "{idp.token_url}"
client_id = "echo{i}"
client_secret = {{ file = "{out.parent / "echo.secret"}" }}
targets = [{{ store = "local", key = "echo{i}.json" }}]
"""
        for i in range(n)
    )
    return f"""
[daemon]
listen = "127.0.0.1:{{port}}"
log_format = "json"
log_level = "debug"

[defaults]
min_interval = "0s"
retry_min = "0.2s"
retry_max = "1s"
fatal_retry = "1s"

[stores.local]
type = "file"
directory = "{out}"
{creds}"""


def test_idp_echoing_the_secret_across_every_cut_leaks_no_prefix(fake_idp, tmp_path):
    """An IdP whose error body quotes the client secret so that it straddles every truncation limit.

    FakeIdP, because oidc-provider never echoes a client secret back. Every response is
    consumed (the credentials retry each second) while /status and /readyz are read.
    """
    out = tmp_path / "out"
    (tmp_path / "echo.secret").write_text(ECHOED)
    script = _straddling_errors()
    fake_idp.script(script)
    fake_idp.default = script[-1]
    exposed = ""
    with SyncdProcess(_echo_config(fake_idp, out), tmp_path) as d:
        d.wait_http()

        def consumed() -> bool:
            nonlocal exposed
            exposed += d.get("/status").text + d.get("/readyz").text
            return fake_idp.count > len(script)

        wait_for(consumed, 60, interval=0.2, what="every scripted error to be served")
        assert d.stop() == 0
    logs = d.log_text()
    failures = [e for e in d.events("mint") if e.get("error_class") == "FatalMintError"]
    assert len(failures) >= len(script), "every scripted answer must have been turned into an error event"
    assert "was not accepted" in logs or "code quotes the secret" in logs, "the IdP text must reach the logs"
    _assert_no_prefix(logs, ECHOED, "logs")
    _assert_no_prefix(exposed, ECHOED, "/status or /readyz")

    cfg = tmp_path / "check.toml"
    cfg.write_text(_echo_config(fake_idp, out).replace("{port}", "0"))
    for response in script[:6]:
        fake_idp.script([response] * 3)
        # env=os.environ: without COLUMNS (which readline, loaded by pytest, exports to children)
        # check does not wrap, so a leaked prefix cannot hide across a line break.
        proc = subprocess.run(
            [SYNCD, "check", "--connect", "-c", str(cfg)],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ),
        )
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr and "invalid_client" in proc.stdout
        _assert_no_prefix(proc.stdout + proc.stderr, ECHOED, "syncd check --connect")


def test_url_credentials_never_appear_at_debug(oidc_server, tmp_path):
    """Userinfo and query credentials in token_url and in a Vault store url, daemon at debug level.

    The Vault address is a closed port, so every write fails and its message (which names the
    address) reaches the logs and /status; the token URLs reach httpx's debug lines.
    """
    out = tmp_path / "out"
    (tmp_path / "calm.secret").write_text(SECRET)
    closed = free_port()
    words = ("query-api-key-5555", "url-pass-666666", "vault-url-pass-7777", "sig-value-8888")
    text = f"""
[daemon]
listen = "127.0.0.1:{{port}}"
log_format = "json"
log_level = "debug"

[defaults]
min_remaining = "1s"
token_lifetime = "3s"
retry_max = "2s"

[stores.local]
type = "file"
directory = "{out}"

[stores.bao]
type = "vault"
url = "http://vault-user:vault-url-pass-7777@127.0.0.1:{closed}"
timeout = "1s"

[[credentials]]
name = "calm"
token_url = "{oidc_server.token_url}?api_key=query-api-key-5555&sig=sig-value-8888&realm=vgs"
client_id = "calm"
client_secret = {{ file = "{tmp_path / "calm.secret"}" }}
targets = [{{ store = "local", key = "calm.json" }}, {{ store = "bao", key = "calm" }}]

[[credentials]]
name = "card"
token_url = "{oidc_server.token_url.replace("http://", "http://card-user:url-pass-666666@")}"
client_id = "calm"
client_secret = {{ file = "{tmp_path / "calm.secret"}" }}
targets = [{{ store = "local", key = "card.json" }}]
"""
    env = {"VAULT_TOKEN": "vault-token-for-leak-test-0123"}
    exposed = ""
    with SyncdProcess(text, tmp_path, env=env) as d:
        d.wait_http()

        def written_and_failed() -> bool:
            nonlocal exposed
            exposed += d.get("/status").text + d.get("/readyz").text + d.get("/metrics").text
            logs = d.log_text()
            return (out / "calm.json").exists() and "***@127.0.0.1" in logs and "api_key=***" in logs

        wait_for(written_and_failed, 30, interval=0.2, what="a mint through the query URL and a failed Vault write")
        assert d.stop() == 0
    logs = d.log_text()
    assert http_stack_logged(logs), "debug logging of the HTTP stack must be on for this test to prove anything"
    assert "realm=vgs" in logs, "redaction must leave the rest of the URL readable"
    for word in (*words, env["VAULT_TOKEN"], SECRET):
        assert word not in logs, f"{word} in logs"
        assert word not in exposed, f"{word} in /status, /readyz or /metrics"

    cfg = tmp_path / "check.toml"
    cfg.write_text(text.replace("{port}", "0"))
    proc = subprocess.run(
        [SYNCD, "check", "--connect", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    shown = proc.stdout + proc.stderr
    assert "Traceback" not in shown, shown
    assert "api_key=***" in shown and "***@127.0.0.1" in shown, shown
    for word in (*words, env["VAULT_TOKEN"], SECRET):
        assert word not in shown, f"{word} in syncd check output"


# --------------------------------------------------------------------------- client authentication


def test_keys_assertions_and_passphrases_never_leak(tmp_path, peers_installed):
    """Every client-authentication method at debug level, then `syncd check` on broken key material:
    no private key (any PEM line), passphrase, client secret or assertion in logs, /status, /metrics
    or errors. Every JWT syncd handles starts with ``eyJ`` (base64 of '{"'); the IdP's tokens are opaque,
    so no ``eyJ`` at all may appear."""
    from tests.auth_idp import CS_SECRET, PASSPHRASE, AuthIdp

    material = AuthIdp(tmp_path / "material")
    server = material.server()
    server.start()
    try:
        material.write_foreign_assertion(server.token_url)
        out = tmp_path / "out"
        cfg = (
            '[daemon]\nlisten = "127.0.0.1:{port}"\nlog_format = "json"\nlog_level = "debug"\n\n'
            '[defaults]\nmin_remaining = "1s"\ntoken_lifetime = "3s"\nfatal_retry = "0.5s"\n\n'
            + material.credentials_toml(server, out)
        )
        exposed = ""
        with SyncdProcess(cfg, tmp_path) as d:
            d.wait_http()
            wait_for(lambda: len([e for e in d.events("mint") if e.get("outcome") == "ok"]) >= 12, 30, what="mints")
            exposed += d.get("/status").text + d.get("/metrics").text
            assert d.stop() == 0
        # broken material, reported by check: wrong passphrase, a garbage key, a non-JWT assertion
        (material.directory / "passphrase").write_text("wrong-" + PASSPHRASE)
        material.key_file("pk-rs256").write_text(
            "-----BEGIN PRIVATE KEY-----\n" + CS_SECRET + "\n-----END PRIVATE KEY-----\n"
        )
        material.assertion_file.write_text(PASSPHRASE)
        check_cfg = tmp_path / "check.toml"
        check_cfg.write_text(cfg.replace("{port}", "0"))
        check_cfg.chmod(0o600)
        proc = subprocess.run([SYNCD, "check", "-c", str(check_cfg)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        exposed += proc.stdout + proc.stderr
        for key_path in ("credentials[0].private_key", "credentials[2].private_key", "credentials[6].client_assertion"):
            assert key_path in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    finally:
        server.stop()
        server.cleanup()
    logs = d.log_text()
    assert http_stack_logged(logs), "debug logging of the HTTP stack must be on for this test to prove anything"
    for text, where in ((logs, "logs"), (exposed, "endpoints and check")):
        assert "eyJ" not in text, f"a JWT in {where}"
        for secret in material.secrets:
            assert secret not in text, f"key material or assertion in {where}"
        for secret in (CS_SECRET, PASSPHRASE, "wrong-" + PASSPHRASE):
            leaked = [p for p in _prefixes(secret)[6:] if p in text]
            assert not leaked, f"{where} holds {len(leaked[-1])} leading characters of a secret"
