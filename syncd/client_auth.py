"""Client authentication at the token endpoint: what one mint proves about the client, besides the grant.

DESIGN.md "Client authentication at the token endpoint". The shared-secret
methods need nothing from here. The three assertion methods send
``client_assertion`` (RFC 7523): ``client_secret_jwt`` signs one with the client
secret (HS256), so the secret never crosses the wire; ``private_key_jwt`` signs
one with a private key whose public half the IdP holds; ``client_assertion``
sends a JWT somebody else made (a projected Kubernetes service-account token),
read from its file again before every mint because the kubelet rotates it.
``tls_client_auth`` (RFC 8705) proves the client with the TLS client
certificate, so the form carries only ``client_id``.

Signing is done by joserfc; nothing here builds a signature by hand. Every
error is a :class:`ClientAuthError` whose text names the configuration key and
the fix and never contains a key, a passphrase, a secret or an assertion.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey
from pydantic import SecretStr

if TYPE_CHECKING:
    from syncd.config import CredentialConfig

__all__ = [
    "ASSERTION_TYPE",
    "SIGNING_ALGS",
    "ClientAuthError",
    "SigningKey",
    "assertion_claims",
    "assertion_for",
    "check_client_certificate",
    "check_foreign_assertion",
    "default_alg",
    "load_private_key",
    "load_signing_key",
    "sign_assertion",
    "sign_with_secret",
    "signing_key",
    "tls_files_version",
]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

#: Algorithms each key type can sign with; the first is the default for that key.
_RSA_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
SIGNING_ALGS = frozenset({*_RSA_ALGS, "ES256", "ES384", "EdDSA"})
_MIN_RSA_BITS = 2048

_JoseKey = RSAKey | ECKey | OKPKey
_PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class ClientAuthError(ValueError):
    """A key, certificate or assertion that cannot authenticate the client; the text is safe to log.

    ``key`` is the configuration key at fault (for ``syncd check``'s key path),
    ``problem`` what is wrong and ``fix`` what to do.
    """

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"{key}: {problem}: {fix}")


@dataclass(frozen=True)
class SigningKey:
    """A loaded private key with the algorithm and ``kid`` its assertions carry."""

    key: _JoseKey
    alg: str
    kid: str

    def __repr__(self) -> str:  # the dataclass repr would print the key object
        return f"SigningKey(alg={self.alg!r}, kid={self.kid!r})"


# --------------------------------------------------------------------------- keys


def _algs_for(key: _PrivateKey) -> tuple[str, ...]:
    """The algorithms ``key`` can sign with, default first; empty for an unusable key."""
    if isinstance(key, rsa.RSAPrivateKey):
        return _RSA_ALGS if key.key_size >= _MIN_RSA_BITS else ()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp256r1": ("ES256",), "secp384r1": ("ES384",)}.get(key.curve.name, ())
    return ("EdDSA",)


def _describe(key: _PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return f"an RSA key of {key.key_size} bits"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an EC key on {key.curve.name}"
    return "an Ed25519 key"


def default_alg(key: _PrivateKey) -> str:
    """RS256 for RSA, ES256 for P-256, ES384 for P-384, EdDSA for Ed25519."""
    algs = _algs_for(key)
    if not algs:
        raise ClientAuthError("private_key", f"{_describe(key)} cannot sign client assertions", "use another key")
    return algs[0]


def load_signing_key(
    pem: bytes,
    passphrase: bytes | None,
    *,
    alg: str | None,
    key_id: str | None,
) -> SigningKey:
    """Parse a PEM private key and check that it fits ``alg`` (``signing_alg``; None: the key's default)."""
    key = load_private_key(pem, passphrase, where="private_key", unlocked_by="private_key_passphrase")
    algs = _algs_for(key)
    if not algs:
        raise ClientAuthError(
            "private_key",
            f"{_describe(key)} cannot sign client assertions",
            "use an RSA key of 2048+ bits, an EC key on P-256 or P-384, or an Ed25519 key",
        )
    chosen = alg or algs[0]
    if chosen not in algs:
        raise ClientAuthError(
            "signing_alg",
            f"{chosen} does not fit the private_key ({_describe(key)})",
            f"use signing_alg = {' or '.join(repr(a) for a in algs)}, or a matching key",
        )
    jose: _JoseKey
    if isinstance(key, rsa.RSAPrivateKey):
        jose = RSAKey.import_key(key)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        jose = ECKey.import_key(key)
    else:
        jose = OKPKey.import_key(key)
    return SigningKey(key=jose, alg=chosen, kid=key_id or jose.thumbprint())


def load_private_key(pem: bytes, passphrase: bytes | None, *, where: str, unlocked_by: str | None) -> _PrivateKey:
    """A PEM private key of a supported type; errors name ``where`` and never the key or passphrase."""
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase)
    except TypeError:
        # cryptography raises TypeError both for "encrypted, no password" and "not encrypted, password given".
        if passphrase is None:
            fix = (
                f"set {unlocked_by} = {{ file = ... }} or {{ env = ... }}"
                if unlocked_by
                else "store the key unencrypted (mode 0600)"
            )
            raise ClientAuthError(where, "the key is encrypted and no passphrase is configured", fix) from None
        raise ClientAuthError(
            where, f"the key is not encrypted but {unlocked_by} is set", f"remove {unlocked_by}"
        ) from None
    except UnsupportedAlgorithm:
        raise ClientAuthError(
            where, "unsupported key type or encryption", "use an RSA (2048+ bits), EC P-256/P-384 or Ed25519 key in PEM"
        ) from None
    except ValueError:
        problem = (
            "the key cannot be decrypted (wrong passphrase) or is not a PEM private key"
            if passphrase is not None
            else "not a PEM private key"
        )
        raise ClientAuthError(where, problem, "write the PEM key (-----BEGIN PRIVATE KEY-----) into the file") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise ClientAuthError(
            where,
            f"{type(key).__name__.removeprefix('_')} keys are not supported",
            "use an RSA (2048+ bits), EC P-256/P-384 or Ed25519 key",
        )
    return key


class _KeyCache:
    """Parsed keys by digest of (PEM, passphrase, alg, kid): the file is read every mint, parsed only when it changes.

    Parsing (and for RSA, checking) a key costs far more than reading a small
    file (about 56 ms against 1 ms to sign), and a rotated key must be used from
    the next mint on. Each credential (``slot``) holds one digest; a key is
    dropped when no credential holds it any more, so the cache is bounded by the
    keys in use and never evicts one that is (thousands of credentials with
    their own keys would otherwise parse on every mint). Digests stay in memory.
    """

    def __init__(self) -> None:
        self._keys: dict[str, SigningKey] = {}
        self._slots: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, slot: str, pem: bytes, passphrase: bytes | None, alg: str | None, key_id: str | None) -> SigningKey:
        h = hashlib.sha256()
        for part in (pem, passphrase or b"", (alg or "").encode(), (key_id or "").encode()):
            h.update(hashlib.sha256(part).digest())
        digest = h.hexdigest()
        with self._lock:
            hit = self._keys.get(digest)
        loaded = hit if hit is not None else load_signing_key(pem, passphrase, alg=alg, key_id=key_id)
        with self._lock:
            self._keys[digest] = loaded
            old = self._slots.get(slot)
            self._slots[slot] = digest
            if old is not None and old != digest and old not in self._slots.values():
                self._keys.pop(old, None)
        return loaded

    def __len__(self) -> int:
        return len(self._keys)


_CACHE = _KeyCache()


def signing_key(
    slot: str, pem: SecretStr, passphrase: SecretStr | None, *, alg: str | None, key_id: str | None
) -> SigningKey:
    """The parsed key for this PEM text, for credential ``slot`` (cached while the text stays the same)."""
    raw_pass = passphrase.get_secret_value().encode() if passphrase is not None else None
    return _CACHE.get(slot, pem.get_secret_value().encode(), raw_pass, alg, key_id)


# --------------------------------------------------------------------------- assertions


def assertion_claims(client_id: str, audience: str, now: float, lifetime: float) -> dict[str, Any]:
    """RFC 7523 3: iss = sub = client_id; a fresh jti so the IdP can refuse a replay."""
    iat = int(now)
    return {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": iat,
        "exp": iat + max(1, int(lifetime)),
        "jti": secrets.token_urlsafe(24),
    }


def sign_assertion(key: SigningKey, client_id: str, audience: str, now: float, lifetime: float) -> SecretStr:
    """A private_key_jwt assertion (header carries alg, typ and kid)."""
    header = {"alg": key.alg, "typ": "JWT", "kid": key.kid}
    claims = assertion_claims(client_id, audience, now, lifetime)
    with warnings.catch_warnings():
        # RFC 9864 renames EdDSA to Ed25519, but DESIGN.md and the IdPs in use (Keycloak, Entra) speak EdDSA.
        warnings.simplefilter("ignore")
        return SecretStr(jwt.encode(header, claims, key.key, algorithms=[key.alg]))


def sign_with_secret(secret: SecretStr, client_id: str, audience: str, now: float, lifetime: float) -> SecretStr:
    """A client_secret_jwt assertion: HS256 keyed with the client secret, and no kid (DESIGN.md)."""
    with warnings.catch_warnings():
        # The IdP chose the secret's length; a short one is its policy, not something to print on every mint.
        warnings.simplefilter("ignore")
        key = OctKey.import_key(secret.get_secret_value().encode("utf-8"))
    claims = assertion_claims(client_id, audience, now, lifetime)
    return SecretStr(jwt.encode({"alg": "HS256", "typ": "JWT"}, claims, key, algorithms=["HS256"]))


def _b64_json(part: str) -> Any:
    padded = part + "=" * (-len(part) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def check_foreign_assertion(text: str, now: float) -> dict[str, Any]:
    """The claims of a JWT made by someone else, checked for shape and expiry (the signature is the IdP's business).

    Returns the claims; never puts the token in an error.
    """
    parts = text.split(".")
    write = "point client_assertion at a projected service-account token or another signed JWT"
    if len(parts) != 3 or not all(parts[:2]):
        raise ClientAuthError("client_assertion", "the file does not hold a JWT (three dot-separated parts)", write)
    try:
        header = _b64_json(parts[0])
        claims = _b64_json(parts[1])
    except (ValueError, UnicodeError, binascii.Error):
        raise ClientAuthError("client_assertion", "the JWT's header or claims are not base64url JSON", write) from None
    if not isinstance(header, Mapping) or not isinstance(claims, Mapping) or "alg" not in header:
        raise ClientAuthError("client_assertion", "the file does not hold a signed JWT", write)
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise ClientAuthError(
            "client_assertion", "the JWT has no numeric exp claim (IdPs refuse such assertions)", write
        )
    if exp <= now:
        raise ClientAuthError(
            "client_assertion",
            f"the JWT expired {int(now - exp)}s ago",
            "whatever writes the file (kubelet token projection, a sidecar) must renew it",
        )
    return dict(claims)


def assertion_for(cfg: CredentialConfig, client_id: str, secret: SecretStr, now: float) -> SecretStr | None:
    """The ``client_assertion`` for one mint of ``cfg``, or None for methods that send none.

    Key, passphrase and foreign assertion are read from their sources now, so a
    rotated file is used from the next mint on.
    """
    method = cfg.auth_method
    if method == "client_secret_jwt":
        return sign_with_secret(secret, client_id, cfg.assertion_audience_for(), now, cfg.assertion_lifetime_for())
    if method == "private_key_jwt":
        assert cfg.private_key is not None  # the config validator requires it
        passphrase = cfg.private_key_passphrase.get() if cfg.private_key_passphrase is not None else None
        key = signing_key(cfg.name, cfg.private_key.get(), passphrase, alg=cfg.signing_alg, key_id=cfg.key_id)
        return sign_assertion(key, client_id, cfg.assertion_audience_for(), now, cfg.assertion_lifetime_for())
    if method == "client_assertion":
        assert cfg.client_assertion is not None  # the config validator requires it
        token = cfg.client_assertion.get()
        check_foreign_assertion(token.get_secret_value(), now)
        return token
    return None


# --------------------------------------------------------------------------- TLS


def check_client_certificate(cert_pem: bytes, key_pem: bytes | None, now: float) -> None:
    """The TLS client certificate is valid now and its public key is the client key's (``key_pem`` None:
    the key must be in the certificate file, as ``ssl.load_cert_chain`` then expects)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise ClientAuthError(
            "client_cert", "not a PEM certificate", "write the PEM certificate (-----BEGIN CERTIFICATE-----) into it"
        ) from None
    when = datetime.fromtimestamp(now, UTC)
    if cert.not_valid_after_utc <= when:
        raise ClientAuthError(
            "client_cert",
            f"the certificate expired at {cert.not_valid_after_utc.isoformat()}",
            "renew it (cert-manager: check the Certificate's status) and write the new one to the file",
        )
    if cert.not_valid_before_utc > when:
        raise ClientAuthError(
            "client_cert",
            f"the certificate is not valid before {cert.not_valid_before_utc.isoformat()}",
            "check this host's clock or wait for the certificate's start",
        )
    if key_pem is None:
        if b"PRIVATE KEY-----" not in cert_pem:
            raise ClientAuthError(
                "client_key", "not set, and the client_cert file holds no private key", "set client_key"
            )
        key_pem, where = cert_pem, "client_cert"
    else:
        where = "client_key"
    key = load_private_key(key_pem, None, where=where, unlocked_by=None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    ours = key.public_key().public_bytes(serialization.Encoding.DER, spki)
    theirs = cert.public_key().public_bytes(serialization.Encoding.DER, spki)
    if ours != theirs:
        raise ClientAuthError(
            where, "the private key does not match client_cert's public key", "pair the certificate with its own key"
        )


def tls_files_version(*files: Path | None) -> tuple[tuple[int, int, int] | None, ...]:
    """Identity of the files' current contents (inode, size, mtime): a change means rotated material.

    cert-manager and the kubelet replace mounted files by swapping a symlink, so
    the inode changes even when size and mtime would not.
    """
    out: list[tuple[int, int, int] | None] = []
    for f in files:
        try:
            st = os.stat(f) if f is not None else None
        except OSError:
            st = None
        out.append((st.st_ino, st.st_size, st.st_mtime_ns) if st is not None else None)
    return tuple(out)
