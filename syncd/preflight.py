"""Local resources the first mint and the first write will need, checked before the daemon starts.

The schema can be valid while the first mint is bound to fail: the secret's
environment variable is unset, its file unreadable, the service-account file
was never filled in by ``vgs apply``, the Vault token file is missing, the file
store's directory cannot be created. ``syncd check`` reports each as an error
naming the key path and the fix, so a deployment fails its pre-flight instead of
alerting minutes after roll-out.

Secrets are read only to learn *whether* they can be read: the values are
dropped at once and never appear in a finding.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from syncd.client_auth import ClientAuthError, check_client_certificate, check_foreign_assertion, signing_key
from syncd.config import (
    Config,
    CredentialConfig,
    FileStoreConfig,
    SecretRef,
    SecretUnavailableError,
    VaultJwtAuth,
    VaultKubernetesAuth,
    VaultStoreConfig,
    VaultTokenAuth,
    read_service_account,
)
from syncd.stores.base import Finding

__all__ = ["preflight_findings"]


def _secret_ref(path: str, ref: SecretRef) -> list[Finding]:
    try:
        ref.get()
    except SecretUnavailableError as exc:
        return [Finding("error", path, str(exc), _fix_for(ref))]
    return []


def _fix_for(ref: SecretRef) -> str:
    if ref.env is not None:
        return f"export {ref.env} in the daemon's environment, or point the key at a file"
    return "create the file with the secret in it, readable by this user (mode 0600)"


def _readable_file(path: str, file: Path, what: str) -> list[Finding]:
    """A file that must exist, be readable and not be empty (its content is not kept)."""
    try:
        with file.open("rb") as fh:
            empty = not fh.read(4096).strip()
    except FileNotFoundError:
        return [Finding("error", path, f"{what} {file} does not exist", "create it or fix the path")]
    except IsADirectoryError:
        return [Finding("error", path, f"{what} {file} is a directory, not a file", "point it at the file")]
    except OSError as exc:
        return [
            Finding(
                "error",
                path,
                f"{what} {file} cannot be read by uid {os.getuid()} ({exc.strerror or type(exc).__name__})",
                "fix its permissions or ownership",
            )
        ]
    if empty:
        return [Finding("error", path, f"{what} {file} is empty", "write the value into it")]
    return []


def _directory(path: str, cfg: FileStoreConfig) -> list[Finding]:
    directory = Path(cfg.directory)
    if directory.exists():
        if not directory.is_dir():
            return [Finding("error", path, f"{directory} exists but is not a directory", "point it at a directory")]
        if not os.access(directory, os.W_OK | os.X_OK):
            return [
                Finding(
                    "error",
                    path,
                    f"directory {directory} is not writable by uid {os.getuid()}",
                    "fix its permissions, mount a writable volume, or set fsGroup in Kubernetes",
                )
            ]
        return []
    if not cfg.create_directory:
        return [
            Finding(
                "error",
                path,
                f"directory {directory} does not exist and create_directory is false",
                "create the directory or set create_directory = true",
            )
        ]
    parent = next((p for p in directory.parents if p.exists()), None)
    if parent is not None and (not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK)):
        return [
            Finding(
                "error",
                path,
                f"directory {directory} does not exist and cannot be created: {parent} is not writable "
                f"by uid {os.getuid()}",
                "create the directory beforehand or mount a writable volume there",
            )
        ]
    return []


def _vault_auth(path: str, cfg: VaultStoreConfig) -> list[Finding]:
    auth = cfg.auth
    if isinstance(auth, VaultTokenAuth):
        if auth.token_file is not None:
            return _readable_file(f"{path}.token_file", auth.token_file, "Vault token file")
        if not os.environ.get(auth.token_env, "").strip():
            return [
                Finding(
                    "error",
                    f"{path}.token_env",
                    f"no Vault token: the environment variable {auth.token_env} is not set or empty",
                    f"export {auth.token_env}, set auth.token_file, or use approle / kubernetes / jwt auth",
                )
            ]
        return []
    if isinstance(auth, VaultKubernetesAuth | VaultJwtAuth):
        return _readable_file(f"{path}.jwt_file", auth.jwt_file, "JWT file")
    return _secret_ref(f"{path}.role_id", auth.role_id) + _secret_ref(f"{path}.secret_id", auth.secret_id)


def _tls_files(path: str, ca: Path | None, cert: Path | None, key: Path | None, *, ca_key: str) -> list[Finding]:
    """CA bundle (a file, or a directory of hashed certificates), client certificate and key."""
    findings: list[Finding] = []
    if ca is not None and not ca.is_dir():
        findings += _readable_file(f"{path}.{ca_key}", ca, "CA bundle")
    if cert is not None:
        findings += _readable_file(f"{path}.client_cert", cert, "client certificate")
    if key is not None:
        findings += _readable_file(f"{path}.client_key", key, "client key")
    return findings


def _auth_error(path: str, exc: ClientAuthError) -> Finding:
    return Finding("error", f"{path}.{exc.key}", exc.problem, exc.fix)


def _world_readable(path: str, file: Path | None) -> list[Finding]:
    """A private key any local user can read is a shared secret again (group access is how Kubernetes mounts it)."""
    try:
        mode = file.stat().st_mode if file is not None else 0
    except OSError:
        return []
    if mode & stat.S_IROTH:
        return [Finding("warning", path, f"{file} is readable by every local user", f"chmod o-r {file}")]
    return []


def _client_auth(path: str, cred: CredentialConfig, now: float, *, tls_readable: bool) -> list[Finding]:
    """What the chosen auth_method will read at the first mint: key, passphrase, assertion, certificate.

    Keys and assertions are parsed to learn whether they can be used, then dropped.
    """
    findings: list[Finding] = []
    if cred.private_key is not None:
        refs = _secret_ref(f"{path}.private_key", cred.private_key)
        findings += _world_readable(f"{path}.private_key", cred.private_key.file)
        if cred.private_key_passphrase is not None:
            refs += _secret_ref(f"{path}.private_key_passphrase", cred.private_key_passphrase)
        findings += refs
        if not refs:
            passphrase = cred.private_key_passphrase.get() if cred.private_key_passphrase is not None else None
            try:
                signing_key(cred.name, cred.private_key.get(), passphrase, alg=cred.signing_alg, key_id=cred.key_id)
            except ClientAuthError as exc:
                findings.append(_auth_error(path, exc))
    if cred.client_assertion is not None:
        refs = _secret_ref(f"{path}.client_assertion", cred.client_assertion)
        findings += refs
        if not refs:
            try:
                check_foreign_assertion(cred.client_assertion.get().get_secret_value(), now)
            except ClientAuthError as exc:
                findings.append(_auth_error(path, exc))
    findings += _world_readable(f"{path}.client_key", cred.client_key)
    if cred.client_cert is not None and tls_readable:
        try:
            cert_pem = cred.client_cert.read_bytes()
            key_pem = cred.client_key.read_bytes() if cred.client_key is not None else None
        except OSError:
            return findings  # gone since _tls_files looked: reported at the mint
        try:
            check_client_certificate(cert_pem, key_pem, now)
        except ClientAuthError as exc:
            findings.append(_auth_error(path, exc))
    return findings


def preflight_findings(config: Config) -> list[Finding]:
    """Errors for every secret, file and directory the first mint or write would fail on."""
    findings: list[Finding] = []
    now = time.time()
    for i, cred in enumerate(config.credentials):
        path = f"credentials[{i}]"
        if cred.service_account_file is not None:
            try:
                read_service_account(cred.service_account_file)
            except SecretUnavailableError as exc:
                findings.append(
                    Finding(
                        "error",
                        f"{path}.service_account_file",
                        str(exc),
                        "write the file with `vgs generate service-account` and `vgs apply service-account`, "
                        "or fix the path",
                    )
                )
        elif cred.client_secret is not None:
            findings += _secret_ref(f"{path}.client_secret", cred.client_secret)
        tls = _tls_files(path, cred.ca_bundle, cred.client_cert, cred.client_key, ca_key="ca_bundle")
        findings += tls + _client_auth(path, cred, now, tls_readable=not tls)
    for name, scfg in config.stores.items():
        if isinstance(scfg, FileStoreConfig):
            findings += _directory(f"stores.{name}.directory", scfg)
        elif isinstance(scfg, VaultStoreConfig):
            findings += _vault_auth(f"stores.{name}.auth", scfg)
            findings += _tls_files(f"stores.{name}", scfg.ca_cert, scfg.client_cert, scfg.client_key, ca_key="ca_cert")
    return findings
