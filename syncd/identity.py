"""Whether a reload changed what a credential's token stands for, so the held token must be replaced.

A token is issued to one identity: a client at a token URL, authenticated one
way, for some scopes and extra parameters. When a reload changes any of that,
the token the daemon holds is the old identity's, and it must be re-minted at
once rather than served until its next refresh (a scope removed for a reason
stays granted for half a lifetime otherwise). Secrets are read from a file or an
environment variable on every mint, so an unchanged reference can still hide a
new value: the engine keeps a digest of the identity it last minted with and
compares it with what the sources hold at reload time.
"""

from __future__ import annotations

import hashlib

from syncd.config import CredentialConfig

__all__ = ["IDENTITY_FIELDS", "config_changes", "digest", "remint_reasons"]

#: The configuration keys a token is bound to (TLS files too: a client certificate can authenticate).
IDENTITY_FIELDS = (
    "token_url",
    "client_id",
    "client_secret",
    "service_account_file",
    "auth_method",
    "private_key",
    "client_assertion",
    "scopes",
    "extra_params",
    "ca_bundle",
    "client_cert",
    "client_key",
)


def config_changes(old: CredentialConfig, new: CredentialConfig) -> list[str]:
    """The identity keys whose configured value differs (a secret reference compares by source)."""
    return [name for name in IDENTITY_FIELDS if getattr(old, name) != getattr(new, name)]


def digest(cfg: CredentialConfig) -> str | None:
    """A digest of the identity as its sources hold it now; None when they cannot be read.

    Kept in memory only, to notice a changed secret value; never logged or shown.
    """
    try:
        client_id, secret, scopes, vault_id = cfg.resolve_identity()
    except Exception:  # an unreadable source is the mint's error to report, not the reload's
        return None
    h = hashlib.sha256()
    for part in (client_id, secret.get_secret_value(), " ".join(scopes or ()), vault_id or ""):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def remint_reasons(
    old: CredentialConfig, new: CredentialConfig, minted_with: str | None, current: str | None
) -> list[str]:
    """Why the held token must be re-minted after a reload; empty when it may be kept.

    ``minted_with`` is the digest of the identity the held token was minted with (None for
    a token adopted from a store, whose identity is unknown), ``current`` the digest now.
    """
    reasons = config_changes(old, new)
    if not reasons and minted_with is not None and current is not None and minted_with != current:
        reasons.append("resolved identity (client secret or service account file content)")
    return reasons
