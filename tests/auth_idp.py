"""A TLS oidc-provider with one client per client-authentication method and key type, plus the files syncd needs.

Shared by the client-authentication integration tests and the leak test: the
keys, certificates and secrets are generated per use, and every value a test
must never find in syncd's output is in :attr:`AuthIdp.secrets`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from tests.peers.pki import Pki, PrivateKey, key_pem, new_key
from tests.peers.servers import OidcClient, OidcServer

CS_SECRET = "client-secret-jwt-0123456789abcdefghijklmnop"  # noqa: S105 - a test value
PASSPHRASE = "calm-key-passphrase-42"  # noqa: S105 - a test value

#: client_id -> (key type, signing_alg or None for the default, key_id or None for the thumbprint)
PK_CLIENTS: dict[str, tuple[str, str | None, str | None]] = {
    "pk-rs256": ("rsa", None, None),
    "pk-ps256": ("rsa", "PS256", None),
    "pk-es256": ("p256", None, None),
    "pk-es384": ("p384", None, "calm-2026"),
    "pk-eddsa": ("ed25519", None, None),
}


def jose_key(key: PrivateKey) -> RSAKey | ECKey | OKPKey:
    pem = key_pem(key)
    for cls in (RSAKey, ECKey, OKPKey):
        try:
            return cls.import_key(pem)
        except Exception:  # noqa: S112 - try the next key type
            continue
    raise ValueError("unsupported key")


def public_jwk(key: PrivateKey, kid: str | None) -> dict[str, Any]:
    jk = jose_key(key)
    out = dict(jk.as_dict(private=False))
    out["kid"] = kid or jk.thumbprint()
    return out


@dataclass
class AuthIdp:
    """Keys and certificates under ``directory``; :meth:`server` registers a client for each."""

    directory: Path
    keys: dict[str, PrivateKey] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pki = Pki(self.directory / "pki")
        self.server_tls = self.pki.server_tls()
        for client_id, (kind, _alg, _kid) in PK_CLIENTS.items():
            self.keys[client_id] = new_key(kind)
            path = self.key_file(client_id)
            if client_id == "pk-es256":  # one encrypted key, to cover the passphrase source
                path.write_bytes(key_pem(self.keys[client_id], PASSPHRASE.encode()))
            else:
                path.write_bytes(key_pem(self.keys[client_id]))
            path.chmod(0o600)
        self.foreign_key = new_key("rsa")
        self.mtls_cert, self.mtls_key = self.pki.issue("mtls-client")
        (self.directory / "passphrase").write_text(PASSPHRASE)
        (self.directory / "cs.secret").write_text(CS_SECRET)
        self.secrets += [CS_SECRET, PASSPHRASE]
        for client_id in self.keys:
            self.secrets += _pem_lines(self.key_file(client_id).read_text())
        self.secrets += _pem_lines(self.mtls_key.read_text())

    def key_file(self, client_id: str) -> Path:
        return self.directory / f"{client_id}.key"

    @property
    def assertion_file(self) -> Path:
        return self.directory / "foreign.jwt"

    def clients(self) -> list[OidcClient]:
        out = [
            OidcClient(
                client_id,
                None,
                token_endpoint_auth_method="private_key_jwt",
                jwks={"keys": [public_jwk(self.keys[client_id], kid)]},
            )
            for client_id, (_kind, _alg, kid) in PK_CLIENTS.items()
        ]
        out.append(OidcClient("cs-jwt", CS_SECRET, token_endpoint_auth_method="client_secret_jwt"))
        out.append(
            OidcClient(
                "foreign",
                None,
                token_endpoint_auth_method="private_key_jwt",
                jwks={"keys": [public_jwk(self.foreign_key, None)]},
            )
        )
        out.append(
            OidcClient(
                "mtls",
                None,
                token_endpoint_auth_method="tls_client_auth",
                tls_client_auth_subject_dn=Pki.subject_dn("mtls-client"),
            )
        )
        return out

    def server(self, ttl: int = 3) -> OidcServer:
        return OidcServer(ttl=ttl, clients=self.clients(), tls=self.server_tls)

    def write_foreign_assertion(self, audience: str, *, lifetime: int = 120, iat: float | None = None) -> str:
        """What "someone else" (a kubelet, say) would write: a signed JWT for client ``foreign``."""
        now = int(time.time() if iat is None else iat)
        claims = {
            "iss": "foreign",
            "sub": "foreign",
            "aud": audience,
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode({"alg": "RS256"}, claims, jose_key(self.foreign_key))
        tmp = self.assertion_file.with_suffix(".tmp")
        tmp.write_text(token)
        tmp.replace(self.assertion_file)  # atomically, as the kubelet's symlink swap is
        self.secrets.append(token)
        return token

    def credentials_toml(self, idp: OidcServer, out: Path) -> str:
        """One [[credentials]] per client (both RSA algorithms share client pk-rs256's key)."""
        blocks = []
        for client_id, (_kind, alg, kid) in PK_CLIENTS.items():
            extra = []
            if alg:
                extra.append(f'signing_alg = "{alg}"')
            if kid:
                extra.append(f'key_id = "{kid}"')
            if client_id == "pk-es256":
                extra.append(f'private_key_passphrase = {{ file = "{self.directory / "passphrase"}" }}')
            blocks.append(
                _cred(
                    client_id,
                    idp,
                    "private_key_jwt",
                    f'private_key = {{ file = "{self.key_file(client_id)}" }}',
                    *extra,
                )
            )
        blocks.append(
            _cred("cs-jwt", idp, "client_secret_jwt", f'client_secret = {{ file = "{self.directory}/cs.secret" }}')
        )
        blocks.append(
            _cred("foreign", idp, "client_assertion", f'client_assertion = {{ file = "{self.assertion_file}" }}')
        )
        blocks.append(
            _cred(
                "mtls", idp, "tls_client_auth", f'client_cert = "{self.mtls_cert}"', f'client_key = "{self.mtls_key}"'
            )
        )
        return f'[stores.local]\ntype = "file"\ndirectory = "{out}"\n\n' + "\n".join(
            b.replace("{ca}", str(self.server_tls.ca)) for b in blocks
        )


def _cred(client_id: str, idp: OidcServer, method: str, *lines: str) -> str:
    body = "\n".join(lines)
    return f"""
[[credentials]]
name = "{client_id}"
token_url = "{idp.token_url}"
client_id = "{client_id}"
auth_method = "{method}"
ca_bundle = "{{ca}}"
{body}
targets = [{{ store = "local", key = "{client_id}.json" }}]
"""


def _pem_lines(pem: str) -> list[str]:
    """The base64 body lines of a PEM key: any one of them in output would be a leak."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]
