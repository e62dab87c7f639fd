"""Client authentication: assertion contents, key handling, config validation and `syncd check` findings.

The IdP's acceptance of every method is proven in tests/integration/test_client_auth_oidc.py;
these tests pin down what the IdP cannot see directly: claims, headers, defaults and errors.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from joserfc import jwt
from joserfc.jwk import OctKey
from pydantic import SecretStr
from typer.testing import CliRunner

from syncd.cli import app
from syncd.client_auth import (
    ASSERTION_TYPE,
    ClientAuthError,
    check_client_certificate,
    check_foreign_assertion,
    load_signing_key,
    sign_assertion,
    sign_with_secret,
)
from syncd.config import ConfigError, load_config
from syncd.oauth import MintRequest, _build_request
from tests.auth_idp import jose_key
from tests.peers.pki import Pki, key_pem, new_key

SECRET = "client-secret-0123456789abcdef"  # noqa: S105 - a test value
PASSPHRASE = "unit-passphrase-0042"  # noqa: S105 - a test value
TOKEN_URL = "https://idp.example/realms/vgs/protocol/openid-connect/token"
runner = CliRunner()


def _hours_ago(n: int) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(hours=n)


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    def dec(p: str) -> Any:
        return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))

    h, c, _ = token.split(".")
    return dec(h), dec(c)


# --------------------------------------------------------------------------- signing


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
@pytest.mark.parametrize(
    ("kind", "alg", "expected"),
    [
        ("rsa", None, "RS256"),
        ("rsa", "PS256", "PS256"),
        ("rsa", "RS512", "RS512"),
        ("p256", None, "ES256"),
        ("p384", None, "ES384"),
        ("ed25519", None, "EdDSA"),
    ],
)
def test_private_key_jwt_claims_header_and_signature(kind: str, alg: str | None, expected: str) -> None:
    key = new_key(kind)
    signing = load_signing_key(key_pem(key), None, alg=alg, key_id=None)
    assert signing.alg == expected
    now = 1_800_000_000.5
    first = sign_assertion(signing, "calm", TOKEN_URL, now, 60).get_secret_value()
    second = sign_assertion(signing, "calm", TOKEN_URL, now, 60).get_secret_value()
    header, claims = _parts(first)
    public = jose_key(key)
    assert header == {"alg": expected, "typ": "JWT", "kid": public.thumbprint()}  # RFC 7638 default
    assert claims["iss"] == claims["sub"] == "calm" and claims["aud"] == TOKEN_URL
    assert claims["iat"] == 1_800_000_000 and claims["exp"] - claims["iat"] == 60
    assert _parts(second)[1]["jti"] != claims["jti"], "every assertion needs a fresh jti"
    verified = jwt.decode(first, public, algorithms=[expected])
    assert verified.claims["jti"] == claims["jti"]
    assert repr(signing).startswith("SigningKey(alg=") and "PRIVATE" not in repr(signing)


def test_key_id_overrides_the_thumbprint() -> None:
    signing = load_signing_key(key_pem(new_key("p256")), None, alg=None, key_id="calm-2026")
    header, _ = _parts(sign_assertion(signing, "calm", TOKEN_URL, time.time(), 60).get_secret_value())
    assert header["kid"] == "calm-2026"


def test_client_secret_jwt_is_hs256_with_the_secret_and_no_kid() -> None:
    token = sign_with_secret(SecretStr(SECRET), "calm", TOKEN_URL, time.time(), 30).get_secret_value()
    header, claims = _parts(token)
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert claims["exp"] - claims["iat"] == 30
    jwt.decode(token, OctKey.import_key(SECRET), algorithms=["HS256"])
    assert SECRET not in token


def test_assertion_methods_send_client_id_and_the_assertion_never_the_secret() -> None:
    req = MintRequest(
        credential="calm",
        token_url=TOKEN_URL,
        client_id="calm",
        client_secret=SecretStr(SECRET),
        auth_method="client_secret_jwt",
        client_assertion=SecretStr("a.b.c"),
    )
    form, headers = _build_request(req)
    assert form == {
        "grant_type": "client_credentials",
        "client_id": "calm",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": "a.b.c",
    }
    assert "Authorization" not in headers
    mtls = MintRequest(
        credential="calm",
        token_url=TOKEN_URL,
        client_id="calm",
        client_secret=SecretStr(""),
        auth_method="tls_client_auth",
    )
    assert _build_request(mtls)[0] == {"grant_type": "client_credentials", "client_id": "calm"}


# --------------------------------------------------------------------------- bad keys, certificates, assertions


def _encrypted(kind: str) -> bytes:
    return key_pem(new_key(kind), PASSPHRASE.encode())


@pytest.mark.parametrize(
    ("pem", "passphrase", "alg", "key", "text"),
    [
        (lambda: _encrypted("p256"), None, None, "private_key", "encrypted and no passphrase"),
        (lambda: _encrypted("p256"), "wrong", None, "private_key", "wrong passphrase"),
        (lambda: key_pem(new_key("p256")), PASSPHRASE, None, "private_key", "not encrypted"),
        (lambda: b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", None, None, "private_key", "PEM"),
        (lambda: key_pem(new_key("rsa")), None, "ES256", "signing_alg", "does not fit"),
        (lambda: key_pem(new_key("p256")), None, "ES384", "signing_alg", "use signing_alg = 'ES256'"),
        (lambda: key_pem(new_key("ed25519")), None, "RS256", "signing_alg", "EdDSA"),
    ],
)
def test_unusable_keys_name_the_key_and_the_fix(
    pem: Any, passphrase: str | None, alg: str | None, key: str, text: str
) -> None:
    with pytest.raises(ClientAuthError) as info:
        load_signing_key(pem(), passphrase.encode() if passphrase else None, alg=alg, key_id=None)
    assert info.value.key == key and text in str(info.value) and info.value.fix
    assert PASSPHRASE not in str(info.value)


def test_small_rsa_and_other_curves_are_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    for weak in (rsa.generate_private_key(65537, 1024), ec.generate_private_key(ec.SECP521R1())):
        with pytest.raises(ClientAuthError, match="cannot sign client assertions"):
            load_signing_key(key_pem(weak), None, alg=None, key_id=None)  # type: ignore[arg-type]


def _foreign(claims: dict[str, Any]) -> str:
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key("k" * 32))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not a jwt", "does not hold a JWT"),
        ("a.b.c", "not base64url JSON"),
        (_foreign({"iss": "x"}), "no numeric exp"),
        (_foreign({"exp": 1000}), "expired"),
    ],
)
def test_foreign_assertions_are_checked_for_shape_and_expiry(text: str, message: str) -> None:
    with pytest.raises(ClientAuthError, match=message) as info:
        check_foreign_assertion(text, time.time())
    assert info.value.key == "client_assertion" and text not in str(info.value)


def test_client_certificate_checks(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    now = time.time()
    cert, key = pki.issue("good")
    check_client_certificate(cert.read_bytes(), key.read_bytes(), now)
    check_client_certificate(cert.read_bytes() + key.read_bytes(), None, now)  # key inside the cert file
    _, other_key = pki.issue("other")
    old, old_key = pki.issue("old", not_before=_hours_ago(2), not_after=_hours_ago(1))
    cases = [
        ((cert.read_bytes(), other_key.read_bytes()), "client_key", "does not match"),
        ((old.read_bytes(), old_key.read_bytes()), "client_cert", "expired"),
        ((b"junk", key.read_bytes()), "client_cert", "not a PEM certificate"),
        ((cert.read_bytes(), None), "client_key", "holds no private key"),
    ]
    for (cert_pem, key_bytes), where, text in cases:
        with pytest.raises(ClientAuthError, match=text) as info:
            check_client_certificate(cert_pem, key_bytes, now)
        assert info.value.key == where


# --------------------------------------------------------------------------- config + syncd check


def _doc(tmp: Path, **cred: Any) -> dict[str, Any]:
    credential: dict[str, Any] = {
        "name": "calm",
        "token_url": "http://127.0.0.1:1/token",
        "client_id": "calm",
        "targets": [{"store": "local", "key": "calm.json"}],
    }
    credential.update(cred)
    return {"stores": {"local": {"type": "file", "directory": str(tmp / "out")}}, "credentials": [credential]}


def _write(tmp: Path, doc: dict[str, Any]) -> Path:
    path = tmp / "syncd.toml"
    path.write_text(tomli_w.dumps(doc))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("cred", "text"),
    [
        ({"auth_method": "private_key_jwt"}, "private_key missing"),
        ({"auth_method": "client_assertion"}, "client_assertion missing"),
        ({"auth_method": "tls_client_auth"}, "client_cert missing"),
        (
            {"auth_method": "private_key_jwt", "private_key": {"file": "k"}, "client_secret": "x" * 20},
            "client_secret is not used",
        ),
        ({"auth_method": "client_secret_post", "client_secret": {"env": "X"}, "key_id": "k"}, "key_id is only used"),
        ({"auth_method": "client_secret_jwt", "client_secret": {"env": "X"}, "signing_alg": "RS256"}, "only be HS256"),
        ({"auth_method": "private_key_jwt", "private_key": {"file": "k"}, "assertion_lifetime": "10m"}, "5m maximum"),
        ({"auth_method": "private_key_jwt", "private_key": {"file": "k"}, "signing_alg": "HS256"}, "client_secret_jwt"),
        ({"auth_method": "private_key_jwt", "private_key": {"file": "k"}, "signing_alg": "none"}, "signing_alg"),
        ({"client_secret": {"env": "X"}, "extra_params": {"client_assertion": "x"}}, "client_assertion"),
    ],
)
def test_config_refuses_inconsistent_auth_keys(tmp_path: Path, cred: dict[str, Any], text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, _doc(tmp_path, **cred)))
    assert any(p.path.startswith("credentials[0]") and text in p.path + p.message for p in info.value.problems), (
        info.value
    )


def test_defaults_for_audience_and_lifetime(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, _doc(tmp_path, auth_method="private_key_jwt", private_key={"file": "k"})))
    cred = cfg.credentials[0]
    assert cred.assertion_audience_for() == cred.token_url and cred.assertion_lifetime_for() == 60.0


def _material(tmp: Path) -> dict[str, Path]:
    pki = Pki(tmp / "pki")
    cert, key = pki.issue("calm")
    _, other_key = pki.issue("other")
    old, old_key = pki.issue("old", not_before=_hours_ago(2), not_after=_hours_ago(1))
    files = {"cert": cert, "key": key, "other_key": other_key, "old": old, "old_key": old_key}
    for name, data in {
        "rsa": key_pem(new_key("rsa")),
        "enc": _encrypted("p256"),
        "junk": b"not a key",
        "expired_jwt": _foreign({"exp": 1000, "iss": "calm"}).encode(),
        "not_jwt": b"hello",
        "pass": PASSPHRASE.encode(),
        "wrong_pass": b"wrong-" + PASSPHRASE.encode(),
    }.items():
        files[name] = tmp / name
        files[name].write_bytes(data)
    return files


PK = {"auth_method": "private_key_jwt"}


@pytest.mark.parametrize(
    ("cred", "key", "text"),
    [
        ({**PK, "private_key": {"file": "/nonexistent/calm.key"}}, "private_key", "does not exist"),
        ({**PK, "private_key": {"file": "junk"}}, "private_key", "not a PEM private key"),
        ({**PK, "private_key": {"file": "enc"}}, "private_key", "encrypted and no passphrase"),
        (
            {**PK, "private_key": {"file": "enc"}, "private_key_passphrase": {"file": "wrong_pass"}},
            "private_key",
            "wrong passphrase",
        ),
        (
            {**PK, "private_key": {"file": "enc"}, "private_key_passphrase": {"env": "UNSET_PASS_VAR"}},
            "private_key_passphrase",
            "not set",
        ),
        ({**PK, "private_key": {"file": "rsa"}, "signing_alg": "ES256"}, "signing_alg", "does not fit"),
        (
            {"auth_method": "client_assertion", "client_assertion": {"file": "expired_jwt"}},
            "client_assertion",
            "expired",
        ),
        (
            {"auth_method": "client_assertion", "client_assertion": {"file": "not_jwt"}},
            "client_assertion",
            "not hold a JWT",
        ),
        ({"auth_method": "tls_client_auth", "client_cert": "old", "client_key": "old_key"}, "client_cert", "expired"),
        (
            {"auth_method": "tls_client_auth", "client_cert": "cert", "client_key": "other_key"},
            "client_key",
            "does not match",
        ),
        ({"auth_method": "tls_client_auth", "client_cert": "/nonexistent/c.pem"}, "client_cert", "does not exist"),
    ],
)
def test_check_finds_bad_auth_material_before_the_first_mint(
    tmp_path: Path, cred: dict[str, Any], key: str, text: str
) -> None:
    files = _material(tmp_path)

    def resolve(value: Any) -> Any:
        if isinstance(value, dict) and "file" in value:
            return {"file": str(files.get(value["file"], value["file"]))}
        if isinstance(value, str) and value in files:
            return str(files[value])
        return value

    result = runner.invoke(
        app, ["check", "-c", str(_write(tmp_path, _doc(tmp_path, **{k: resolve(v) for k, v in cred.items()})))]
    )
    assert result.exit_code == 2, result.output
    assert f"error: credentials[0].{key}: " in result.output and text in result.output, result.output
    assert "fix: " in result.output
    assert PASSPHRASE not in result.output
    for path in files.values():
        for line in path.read_text(errors="replace").splitlines():
            assert len(line) < 16 or line.startswith("-----") or line not in result.output


def test_check_passes_good_material(tmp_path: Path) -> None:
    files = _material(tmp_path)
    for cred in (
        {**PK, "private_key": {"file": str(files["enc"])}, "private_key_passphrase": {"file": str(files["pass"])}},
        {**PK, "private_key": {"file": str(files["rsa"])}, "signing_alg": "PS384"},
        {"auth_method": "tls_client_auth", "client_cert": str(files["cert"]), "client_key": str(files["key"])},
    ):
        result = runner.invoke(app, ["check", "-c", str(_write(tmp_path, _doc(tmp_path, **cred)))])
        assert result.exit_code == 0, result.output


def test_check_plan_says_what_proves_the_client(tmp_path: Path) -> None:
    files = _material(tmp_path)
    cred = {**PK, "private_key": {"file": str(files["rsa"])}, "key_id": "calm-2026"}
    result = runner.invoke(app, ["check", "-c", str(_write(tmp_path, _doc(tmp_path, **cred)))])
    assert result.exit_code == 0, result.output
    assert f"client_id calm, private key from file {files['rsa']}, alg by key type, kid calm-2026" in result.output


def test_a_rotated_private_key_is_used_from_the_next_mint(tmp_path: Path) -> None:
    """The key file is read before every mint; the parsed-key cache is keyed by content, not by path."""
    from syncd.client_auth import assertion_for

    path = tmp_path / "calm.key"
    first, second = new_key("p256"), new_key("ed25519")
    path.write_bytes(key_pem(first))
    cfg = load_config(_write(tmp_path, _doc(tmp_path, **PK, private_key={"file": str(path)}))).credentials[0]
    before = _parts(assertion_for(cfg, "calm", SecretStr(""), time.time()).get_secret_value())[0]  # type: ignore[union-attr]
    path.write_bytes(key_pem(second))
    after = _parts(assertion_for(cfg, "calm", SecretStr(""), time.time()).get_secret_value())[0]  # type: ignore[union-attr]
    assert (before["alg"], before["kid"]) == ("ES256", jose_key(first).thumbprint())
    assert (after["alg"], after["kid"]) == ("EdDSA", jose_key(second).thumbprint())


@pytest.mark.parametrize(
    ("method", "given", "expected"),
    [
        ("client_secret_post", {"client_id": "a", "client_secret": "s"}, None),
        ("client_secret_jwt", {"client_id": "a", "client_secret": "s", "assertion_lifetime": 300.0}, None),
        ("private_key_jwt", {"client_id": "a", "private_key": "k", "signing_alg": "EdDSA", "key_id": "x"}, None),
        ("client_assertion", {"client_id": "a", "client_assertion": "f"}, None),
        ("tls_client_auth", {"client_id": "a", "client_cert": "c"}, None),
        ("private_key_jwt", {"private_key": "k"}, "client_id missing"),
        ("tls_client_auth", {"client_id": "a"}, "client_cert missing"),
        (
            "client_assertion",
            {"client_id": "a", "client_assertion": "f", "service_account_file": "p"},
            "service_account_file is not used",
        ),
        (
            "client_assertion",
            {"client_id": "a", "client_assertion": "f", "private_key": "k"},
            "private_key is only used",
        ),
        (
            "tls_client_auth",
            {"client_id": "a", "client_cert": "c", "assertion_audience": "x"},
            "assertion_audience is only used",
        ),
        (
            "client_secret_basic",
            {"client_id": "a", "client_secret": "s", "client_assertion": "f"},
            "client_assertion is only used",
        ),
        ("client_secret_jwt", {"client_id": "a", "client_secret": "s", "assertion_lifetime": 300.5}, "5m maximum"),
    ],
)
def test_auth_keys_rules(method: str, given: dict[str, Any], expected: str | None) -> None:
    from syncd.auth_rules import auth_keys_problem

    problem = auth_keys_problem(method, given)
    assert (problem is None) if expected is None else (problem is not None and expected in problem), problem


def test_a_path_written_as_a_plain_string_is_refused_with_the_file_form(tmp_path: Path) -> None:
    doc = _doc(tmp_path, **PK, private_key="/etc/syncd/calm.key")
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, doc))
    assert 'private_key = { file = "/etc/syncd/calm.key" }' in str(info.value)
    inline = _doc(tmp_path, **PK, private_key=key_pem(new_key("p256")).decode())
    assert load_config(_write(tmp_path, inline)).credentials[0].private_key is not None
    path = _write(tmp_path, inline)
    path.chmod(0o644)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "credentials[0].private_key" in problems_of(info.value) and "BEGIN" not in str(info.value)


def problems_of(exc: ConfigError) -> dict[str, str]:
    return {p.path: p.message for p in exc.problems}


def test_key_cache_parses_once_per_key_and_forgets_rotated_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of credentials with their own keys must not re-parse on every mint (RSA: ~56 ms)."""
    from syncd import client_auth

    parsed: list[bytes] = []
    real = client_auth.load_signing_key

    def counting(pem: bytes, *args: Any, **kwargs: Any) -> Any:
        parsed.append(pem)
        return real(pem, *args, **kwargs)

    monkeypatch.setattr(client_auth, "load_signing_key", counting)
    cache = client_auth._KeyCache()
    pems = [key_pem(new_key("p256")) for _ in range(300)]
    for _ in range(2):
        for i, pem in enumerate(pems):
            cache.get(f"c{i}", pem, None, None, None)
    assert len(parsed) == 300 and len(cache) == 300  # no eviction thrash past any fixed size
    cache.get("shared", pems[0], None, None, None)
    assert len(parsed) == 300  # the same key under another credential: parsed once
    rotated = key_pem(new_key("p256"))
    cache.get("c1", rotated, None, None, None)
    assert len(cache) == 300  # c1's old key dropped, the new one kept
    cache.get("c0", rotated, None, None, None)
    assert len(cache) == 300  # pems[0] is still held by "shared"


def test_check_warns_about_a_world_readable_private_key(tmp_path: Path) -> None:
    files = _material(tmp_path)
    files["rsa"].chmod(0o644)
    result = runner.invoke(
        app, ["check", "-c", str(_write(tmp_path, _doc(tmp_path, **PK, private_key={"file": str(files["rsa"])})))]
    )
    assert result.exit_code == 0, result.output
    assert "warning: credentials[0].private_key:" in result.output and "readable by every local user" in result.output
    files["rsa"].chmod(0o640)
    result = runner.invoke(
        app, ["check", "-c", str(_write(tmp_path, _doc(tmp_path, **PK, private_key={"file": str(files["rsa"])})))]
    )
    assert "readable by every local user" not in result.output
