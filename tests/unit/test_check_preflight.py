"""`syncd check` finds, before the daemon starts, what the first mint or write would fail on.

Each problem is an error naming the key path and the fix (exit 2), and a secret is only
reported as readable or not, never printed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from typer.testing import CliRunner

from syncd.cli import app
from syncd.config import load_config
from syncd.preflight import preflight_findings

SECRET = "preflight-secret-0123456789"  # noqa: S105 - a test value
runner = CliRunner()


def _doc(tmp: Path, **cred: Any) -> dict[str, Any]:
    secret = tmp / "calm.secret"
    if not secret.exists():
        secret.write_text(SECRET)
    credential: dict[str, Any] = {
        "name": "calm",
        "token_url": "http://127.0.0.1:1/token",
        "client_id": "calm",
        "client_secret": {"file": str(secret)},
        "targets": [{"store": "local", "key": "calm.json"}],
    }
    credential.update(cred)
    return {
        "stores": {"local": {"type": "file", "directory": str(tmp / "out")}},
        "credentials": [credential],
    }


def _check(tmp: Path, doc: dict[str, Any], *args: str, env: dict[str, str] | None = None) -> Any:
    path = tmp / "syncd.toml"
    path.write_text(tomli_w.dumps(doc))
    path.chmod(0o600)
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        # No COLUMNS: findings stay one line each (check wraps only for a terminal or COLUMNS).
        return runner.invoke(app, ["check", "-c", str(path), *args], env={"COLUMNS": None})
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _sa(tmp: Path, text: str) -> str:
    path = tmp / "sa.yaml"
    path.write_text(text)
    return str(path)


GOOD_SA = f"kind: ServiceAccount\ndata:\n  clientId: ACcalm\n  clientSecret: {SECRET}\n"


def test_a_readable_config_passes(tmp_path: Path) -> None:
    result = _check(tmp_path, _doc(tmp_path))
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        (
            {"client_secret": {"env": "PREFLIGHT_UNSET_VAR"}},
            "credentials[0].client_secret",
            "environment variable PREFLIGHT_UNSET_VAR is not set",
        ),
        ({"client_secret": {"file": "/nonexistent/calm.secret"}}, "credentials[0].client_secret", "does not exist"),
        ({"client_secret": {"file": "EMPTY"}}, "credentials[0].client_secret", "is empty"),
        (
            {"client_id": None, "client_secret": None, "service_account_file": "/nonexistent/sa.yaml"},
            "credentials[0].service_account_file",
            "does not exist",
        ),
        (
            {"client_id": None, "client_secret": None, "service_account_file": "SA:kind: Other\n"},
            "credentials[0].service_account_file",
            "is not a VGS 'kind: ServiceAccount' document",
        ),
        (
            {"client_id": None, "client_secret": None, "service_account_file": "SA:kind: ServiceAccount\ndata: {}\n"},
            "credentials[0].service_account_file",
            "data.clientId and data.clientSecret missing",
        ),
        (
            {"client_id": None, "client_secret": None, "service_account_file": "SA:{not yaml: ["},
            "credentials[0].service_account_file",
            "is not valid YAML",
        ),
    ],
)
def test_credential_secret_problems_are_errors_naming_the_key(
    tmp_path: Path, change: dict[str, Any], key: str, message: str
) -> None:
    for name, value in list(change.items()):
        if value is None:
            change.pop(name)
        elif value == {"file": "EMPTY"}:
            (tmp_path / "empty.secret").write_text("  \n")
            change[name] = {"file": str(tmp_path / "empty.secret")}
        elif isinstance(value, str) and value.startswith("SA:"):
            change[name] = _sa(tmp_path, value[3:])
    doc = _doc(tmp_path, **change)
    for name in ("client_id", "client_secret"):
        if name in change or "service_account_file" not in change:
            continue
        doc["credentials"][0].pop(name, None)
    result = _check(tmp_path, doc)
    assert result.exit_code == 2, result.output
    assert f"error: {key}: " in result.output and message in result.output, result.output
    assert "fix: " in result.output
    assert SECRET not in result.output


def test_a_good_service_account_file_passes(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    cred = doc["credentials"][0]
    del cred["client_id"], cred["client_secret"]
    cred["service_account_file"] = _sa(tmp_path, GOOD_SA)
    result = _check(tmp_path, doc)
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output


@pytest.mark.parametrize(
    ("auth", "env", "key", "message"),
    [
        (
            {"method": "token", "token_file": "/nonexistent/vault-token"},
            {},
            "stores.bao.auth.token_file",
            "does not exist",
        ),
        ({"method": "token", "token_env": "PREFLIGHT_NO_VAULT_TOKEN"}, {}, "stores.bao.auth.token_env", "not set"),
        ({"method": "token", "token_file": "DIR"}, {}, "stores.bao.auth.token_file", "is a directory"),
        (
            {"method": "approle", "role_id": "role", "secret_id": {"env": "PREFLIGHT_NO_SECRET_ID"}},
            {},
            "stores.bao.auth.secret_id",
            "PREFLIGHT_NO_SECRET_ID is not set",
        ),
        (
            {"method": "jwt", "role": "syncd", "jwt_file": "/nonexistent/jwt"},
            {},
            "stores.bao.auth.jwt_file",
            "does not exist",
        ),
    ],
)
def test_vault_auth_problems_are_errors_naming_the_key(
    tmp_path: Path, auth: dict[str, Any], env: dict[str, str], key: str, message: str
) -> None:
    if auth.get("token_file") == "DIR":
        auth["token_file"] = str(tmp_path)
    doc = _doc(tmp_path)
    doc["stores"]["bao"] = {"type": "vault", "url": "http://127.0.0.1:1", "auth": auth}
    doc["credentials"][0]["targets"].append({"store": "bao", "key": "calm"})
    result = _check(tmp_path, doc, env=env)
    assert result.exit_code == 2, result.output
    assert f"error: {key}: " in result.output and message in result.output, result.output


def test_vault_token_file_that_is_readable_passes_and_is_not_printed(tmp_path: Path) -> None:
    token = tmp_path / "vault-token"
    token.write_text("vault-token-value-0123456789")
    doc = _doc(tmp_path)
    doc["stores"]["bao"] = {
        "type": "vault",
        "url": "http://127.0.0.1:1",
        "auth": {"method": "token", "token_file": str(token)},
    }
    doc["credentials"][0]["targets"].append({"store": "bao", "key": "calm"})
    result = _check(tmp_path, doc)
    assert result.exit_code == 0, result.output
    assert "vault-token-value" not in result.output


def test_file_store_directory_problems(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    doc["stores"]["local"]["create_directory"] = False
    result = _check(tmp_path, doc)
    assert result.exit_code == 2, result.output
    assert "error: stores.local.directory: " in result.output and "create_directory is false" in result.output

    (tmp_path / "afile").write_text("x")
    doc = _doc(tmp_path)
    doc["stores"]["local"]["directory"] = str(tmp_path / "afile")
    result = _check(tmp_path, doc)
    assert result.exit_code == 2 and "is not a directory" in result.output, result.output

    doc = _doc(tmp_path)
    doc["stores"]["local"]["directory"] = str(tmp_path / "afile" / "sub")
    result = _check(tmp_path, doc)
    assert result.exit_code == 2 and "cannot be created" in result.output, result.output


def test_secret_path_that_cannot_be_read(tmp_path: Path) -> None:
    """A directory where the secret file should be: unreadable for any user, root included."""
    doc = _doc(tmp_path, client_secret={"file": str(tmp_path)})
    result = _check(tmp_path, doc)
    assert result.exit_code == 2, result.output
    assert "error: credentials[0].client_secret: " in result.output and "cannot be read" in result.output


def test_offline_skips_the_reads(tmp_path: Path) -> None:
    doc = _doc(tmp_path, client_secret={"env": "PREFLIGHT_UNSET_VAR"})
    assert _check(tmp_path, doc).exit_code == 2
    result = _check(tmp_path, doc, "--offline")
    assert result.exit_code == 0, result.output


def test_preflight_findings_are_plain_data(tmp_path: Path) -> None:
    doc = _doc(tmp_path, client_secret={"env": "PREFLIGHT_UNSET_VAR"})
    findings = preflight_findings(load_config("x.toml", data=doc))
    assert [(f.level, f.subject) for f in findings] == [("error", "credentials[0].client_secret")]
    assert findings[0].fix and "PREFLIGHT_UNSET_VAR" in findings[0].fix


def test_missing_tls_files_are_errors_naming_the_key(tmp_path: Path) -> None:
    doc = _doc(tmp_path, ca_bundle="/nonexistent/ca.pem", client_cert=str(tmp_path / "none.pem"))
    doc["stores"]["bao"] = {
        "type": "vault",
        "url": "https://127.0.0.1:1",
        "ca_cert": "/nonexistent/vault-ca.pem",
        "auth": {"method": "token", "token_env": "PREFLIGHT_VT"},
    }
    doc["credentials"][0]["targets"].append({"store": "bao", "key": "calm"})
    result = _check(tmp_path, doc, env={"PREFLIGHT_VT": "vault-token-value-0123"})
    assert result.exit_code == 2, result.output
    for key in ("credentials[0].ca_bundle", "credentials[0].client_cert", "stores.bao.ca_cert"):
        assert f"error: {key}: " in result.output, result.output
    assert "vault-token-value" not in result.output
