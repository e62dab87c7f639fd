"""Which configuration keys each client-authentication method needs, allows and refuses.

Pure rules over key names and values, kept apart from the signing code so that
loading a configuration needs no cryptography, and table-tested on their own.
DESIGN.md "Client authentication at the token endpoint".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ASSERTION_METHODS",
    "AUTH_KEYS",
    "MAX_ASSERTION_LIFETIME",
    "SECRET_METHODS",
    "auth_keys_problem",
    "inline_value_problem",
]

#: Methods whose proof is the client secret (read from client_secret or the service-account file).
SECRET_METHODS = frozenset({"client_secret_post", "client_secret_basic", "client_secret_jwt"})
#: Methods that send ``client_assertion``.
ASSERTION_METHODS = frozenset({"client_secret_jwt", "private_key_jwt", "client_assertion"})

#: An assertion outliving this is a replayable credential for longer than any mint needs (DESIGN.md).
MAX_ASSERTION_LIFETIME = 300.0

#: The credential keys :func:`auth_keys_problem` judges.
AUTH_KEYS = (
    "client_id",
    "client_secret",
    "service_account_file",
    "private_key",
    "private_key_passphrase",
    "signing_alg",
    "key_id",
    "assertion_audience",
    "assertion_lifetime",
    "client_assertion",
    "client_cert",
)

#: What each secretless method cannot work without.
_REQUIRED: Mapping[str, tuple[str, str]] = {
    "private_key_jwt": ("private_key", 'signs with it; set private_key = { file = "..." }'),
    "client_assertion": ("client_assertion", 'sends that JWT; set client_assertion = { file = "..." }'),
    "tls_client_auth": ("client_cert", "authenticates with it; set client_cert and client_key"),
}

#: Keys that only mean something for some methods: given with another, they would silently do nothing.
_ONLY_FOR: Mapping[str, tuple[str, ...]] = {
    "private_key": ("private_key_jwt",),
    "private_key_passphrase": ("private_key_jwt",),
    "key_id": ("private_key_jwt",),
    "signing_alg": ("private_key_jwt", "client_secret_jwt"),
    "assertion_audience": ("private_key_jwt", "client_secret_jwt"),
    "assertion_lifetime": ("private_key_jwt", "client_secret_jwt"),
    "client_assertion": ("client_assertion",),
}


def auth_keys_problem(method: str, given: Mapping[str, Any]) -> str | None:
    """The first inconsistency between ``auth_method`` and the keys set (``given``: key -> value, None = unset).

    The shared-secret identity rules (client_id + client_secret or service_account_file) stay with
    the config model; this judges what the other methods add.
    """
    if method not in SECRET_METHODS:
        if given.get("client_id") is None:
            return f"client_id missing: auth_method {method} sends client_id, set it"
        for key in ("client_secret", "service_account_file"):
            if given.get(key) is not None:
                return (
                    f"{key} is not used with auth_method {method} (no shared secret is sent): remove it, "
                    "or use a client_secret_* auth_method"
                )
        needed, why = _REQUIRED[method]
        if given.get(needed) is None:
            return f"{needed} missing: auth_method {method} {why}"
    for key, methods in _ONLY_FOR.items():
        if given.get(key) is not None and method not in methods:
            return f"{key} is only used with auth_method {' or '.join(methods)}: remove it or change auth_method"
    alg = given.get("signing_alg")
    if method == "client_secret_jwt" and alg not in (None, "HS256"):
        return "signing_alg for client_secret_jwt can only be HS256: remove signing_alg"
    if method == "private_key_jwt" and alg == "HS256":
        return "signing_alg HS256 signs with the client secret: use auth_method client_secret_jwt"
    lifetime = given.get("assertion_lifetime")
    if lifetime is not None and lifetime > MAX_ASSERTION_LIFETIME:
        return (
            f"assertion_lifetime {lifetime:g}s is above the 5m maximum: an assertion only has to outlive "
            "one token request; use 60s"
        )
    return None


def inline_value_problem(key: str, value: str) -> str | None:
    """A plain string where a path was meant: ``private_key = "/etc/key.pem"`` would be taken as the key itself."""
    looks_inline = "-----BEGIN" in value if key == "private_key" else value.count(".") == 2 and "/" not in value
    if looks_inline:
        return None
    return f'{key} = "..." is the value itself, and this is not one: for a file, write {key} = {{ file = "{value}" }}'
