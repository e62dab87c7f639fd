"""The store's own Vault token: log in, renew before the TTL ends, log in again when renewal stops working.

After a login (or, for ``token`` auth, after reading the token and looking it up)
:class:`TokenKeeper` knows the token's TTL. Before every request it checks, without
I/O, whether renewal is due (``renew_before`` of the TTL left, at most half the TTL);
the store's background renewer asks the same question, so a token is kept alive between
writes that are further apart than its TTL. When a renewal no longer extends the token
(its max TTL caps it) the keeper logs in again. A 403 on a request logs in again
(``token`` auth re-reads the file or variable) and retries once; a second 403 is fatal,
with a message that names the policy path and capability. Login and renewal hold a
lock: hvac keeps the token on the shared adapter, and one fresh login is enough for
every thread.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import hvac.exceptions

from syncd import logs
from syncd.stores.base import FatalStoreError, StoreError, TransientStoreError
from syncd.stores.vault.errors import Context, Denied, Op, call, is_denial

if TYPE_CHECKING:
    from syncd.config import VaultStoreConfig

T = TypeVar("T")
log = logs.get_logger("syncd.stores.vault")

RENEW_CAPPED_RATIO = 0.9  # a renewal granting less than this of what was asked has hit the max TTL
DEFAULT_K8S_JWT = "/var/run/secrets/kubernetes.io/serviceaccount/token"


@dataclass(frozen=True)
class Lease:
    """What the store knows about its own Vault token. Times are ``clock()`` (monotonic) seconds.

    Replaced as a whole (never mutated), so a thread reading it without the lock
    sees one consistent snapshot.
    """

    generation: int = 0  # bumps at every login; 0 = not logged in yet
    expires: float | None = None  # None: no TTL (root or ttl 0) or not known
    ttl: float = 0.0  # granted at the last login/renewal
    creation_ttl: float = 0.0  # granted at login: what each renewal asks for
    renewable: bool = False
    capped: bool = False  # a renewal no longer extends it (max TTL reached)
    retry_at: float | None = None  # a renewal failed transiently: not before this (no request storm)


class TokenKeeper:
    """Keeps a live token on the shared hvac client (``client.adapter.token``). Thread-safe."""

    def __init__(
        self, name: str, config: VaultStoreConfig, client: Any, ctx: Context, clock: Callable[[], float]
    ) -> None:
        self.name = name
        self.config = config
        self._client = client
        self._ctx = ctx
        self._clock = clock
        self._lock = threading.Lock()
        self.lease = Lease()
        self._old_tokens: list[str] = []
        self._warned_static = False

    def authed(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` with a live token; on a denial log in again and run it once more.

        A denial after a fresh login is fatal, and the message says whether the token
        itself is valid (then the policy lacks the capability) or was rejected.
        """
        self.ensure()
        generation = self.lease.generation
        try:
            return fn()
        except Denied as denied:
            log.info(
                "vault_denied",
                store=self.name,
                path=denied.op.path,
                action="log in again and retry once",
            )
            self._relogin(generation, reason="permission_denied")
        try:
            return fn()
        except Denied as denied:
            err = denied.error
            raise FatalStoreError(err.message + self._explain_token(), code=err.code) from None

    def _explain_token(self) -> str:
        """After a second denial: is the token valid (policy problem) or dead (auth problem)? Best effort."""
        try:
            data = self._client.auth.token.lookup_self()["data"]
        except hvac.exceptions.VaultError as exc:
            if is_denial(exc):
                return (
                    " Vault also refuses the token's own lookup-self: the token is invalid, expired or revoked "
                    "even after a fresh login (or its policies lack the default policy)."
                )
            return ""
        except Exception:
            return ""
        policies = data.get("policies") if isinstance(data, dict) else None
        if isinstance(policies, list):
            return f" The token is valid (policies: {', '.join(str(p) for p in policies) or 'none'})."
        return ""

    # ------------------------------------------------------------------ renewal and login

    def _due_at(self, lease: Lease) -> float | None:
        """When to renew (or log in again): ``renew_before`` ahead of expiry, at most half the TTL ahead.

        Half the TTL keeps short-lived tokens (seconds, in tests; minutes, with a small token_ttl)
        from being renewed on every request when renew_before is larger than the TTL itself.
        """
        if lease.expires is None:
            return None
        margin = min(self.config.renew_before, max(lease.creation_ttl, lease.ttl) / 2)
        due = lease.expires - margin
        if lease.retry_at is not None:
            due = max(due, min(lease.retry_at, lease.expires))
        return due

    def ensure(self) -> None:
        """Log in the first time; renew or log in again when due. No I/O when nothing is due."""
        lease = self.lease
        due = self._due_at(lease)
        if lease.generation and (due is None or self._clock() < due):
            return
        with self._lock:
            lease = self.lease
            now = self._clock()
            due = self._due_at(lease)
            if lease.generation and (due is None or now < due):
                return  # another thread did it while we waited
            if not lease.generation:
                self._login("start")
            elif lease.expires is not None and now >= lease.expires:
                self._login("expired")
            elif lease.renewable and not lease.capped:
                self._renew()
            else:
                self._login("max_ttl" if lease.capped else "not_renewable")

    def _relogin(self, seen_generation: int, *, reason: str) -> None:
        with self._lock:
            if self.lease.generation != seen_generation:
                return  # another thread already logged in again after the same denial
            self._login(reason)

    def _set_token(self, token: str) -> None:
        logs.register_secret(token)
        current = self._client.adapter.token
        if current and current != token:
            self._old_tokens.append(current)
            # Keep redacting the previous token a while (a slow request may still log it).
            while len(self._old_tokens) > 2:
                logs.forget_secret(self._old_tokens.pop(0))
        self._client.adapter.token = token

    def _login(self, reason: str) -> None:
        """Obtain a token by the configured method. Caller holds ``_auth_lock``."""
        from syncd.config import SecretUnavailableError, VaultAppRoleAuth, VaultJwtAuth, VaultKubernetesAuth

        auth = self.config.auth
        method = auth.method
        if method == "token":
            self._login_token(reason)
            return
        op = Op("log in at", f"auth/{getattr(auth, 'mount', method)}/login", ("update",), login_method=method)
        sent = self._clock()
        try:
            if isinstance(auth, VaultAppRoleAuth):
                role_id = auth.role_id.get().get_secret_value()
                secret_id = auth.secret_id.get().get_secret_value()
                logs.register_secret(role_id)
                logs.register_secret(secret_id)
                login = functools.partial(
                    self._client.auth.approle.login,
                    role_id=role_id,
                    secret_id=secret_id,
                    use_token=False,
                    mount_point=auth.mount,
                )
            elif isinstance(auth, VaultKubernetesAuth):
                login = functools.partial(
                    self._client.auth.kubernetes.login,
                    role=auth.role,
                    jwt=self._read_jwt(auth.jwt_file, method),
                    use_token=False,
                    mount_point=auth.mount,
                )
            elif isinstance(auth, VaultJwtAuth):
                login = functools.partial(
                    self._client.auth.jwt.jwt_login,
                    role=auth.role,
                    jwt=self._read_jwt(auth.jwt_file, method),
                    use_token=False,
                    path=auth.mount,
                )
            else:  # pragma: no cover - the config union has no other member
                raise FatalStoreError(f"store {self.name!r}: unknown auth method {method!r}", code="auth")
        except SecretUnavailableError as exc:
            raise FatalStoreError(
                f"store {self.name!r}: cannot log in to Vault ({method}): {exc}", code="auth"
            ) from None
        resp = call(op, self._ctx, login)
        info = resp.get("auth") if isinstance(resp, dict) else None
        token = info.get("client_token") if isinstance(info, dict) else None
        if not isinstance(info, dict) or not isinstance(token, str) or not token:
            raise TransientStoreError(
                f"store {self.name!r}: the {method} login at {op.path} returned no client token", code="login"
            )
        self._set_token(token)
        ttl = float(info.get("lease_duration") or 0)
        self._new_lease(sent, ttl, ttl, bool(info.get("renewable")))
        log.info(
            "vault_login",
            store=self.name,
            method=method,
            reason=reason,
            ttl=ttl,
            renewable=self.lease.renewable,
            policies=info.get("policies"),
        )

    def _new_lease(self, sent: float, ttl: float, creation_ttl: float, renewable: bool) -> None:
        """The lease of a token just logged in (or read), its TTL counted from ``sent``, when the request left."""
        self.lease = Lease(
            generation=self.lease.generation + 1,
            expires=sent + ttl if ttl > 0 else None,
            ttl=ttl,
            creation_ttl=creation_ttl,
            renewable=renewable,
        )

    def _read_secret_file(
        self, path: Path, what: str, *, purpose: str = "", missing: str = "", unreadable: str = ""
    ) -> str:
        """The stripped text of a file holding a credential (a JWT, a Vault token); a missing,
        unreadable or empty file is fatal, and the message names ``what`` and the file."""
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise FatalStoreError(
                f"store {self.name!r}: the {what} {path}{purpose} does not exist{missing}", code="auth"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise FatalStoreError(
                f"store {self.name!r}: cannot read the {what} {path}{purpose} ({type(exc).__name__}){unreadable}",
                code="auth",
            ) from None
        if not text:
            raise FatalStoreError(f"store {self.name!r}: the {what} {path} is empty", code="auth")
        return text

    def _read_jwt(self, path: Path, method: str) -> str:
        in_pod = " (is syncd running in a Kubernetes pod with its service account token mounted?)"
        jwt = self._read_secret_file(
            path, "JWT file", purpose=f" for {method} login", missing=in_pod if method == "kubernetes" else ""
        )
        logs.register_secret(jwt)
        return jwt

    def _read_static_token(self) -> str:
        auth = self.config.auth
        assert auth.method == "token"
        if auth.token_file is not None:
            return self._read_secret_file(auth.token_file, "Vault token file", unreadable=": fix its permissions")
        token = os.environ.get(auth.token_env, "").strip()
        if not token:
            raise FatalStoreError(
                f"store {self.name!r}: no Vault token: set the environment variable {auth.token_env} "
                "or auth.token_file (or use approle / kubernetes / jwt auth)",
                code="auth",
            )
        return token

    def _login_token(self, reason: str) -> None:
        """``token`` auth: (re-)read the token, then learn its TTL with lookup-self."""
        token = self._read_static_token()
        same = token == self._client.adapter.token
        if same and reason in ("max_ttl", "not_renewable", "expired"):
            # Nothing new in the file: stop proactive handling; a 403 later re-reads it again.
            lease = self.lease
            if not self._warned_static:
                self._warned_static = True
                log.warning(
                    "vault_token_not_extendable",
                    store=self.name,
                    source=self._token_source(),
                    reason=reason,
                    fix="write a new token to the source before this one expires, or use approle/kubernetes/jwt auth",
                )
            self.lease = replace(lease, expires=None)
            return
        self._set_token(token)
        self._warned_static = False
        sent = self._clock()
        op = Op("look up its own token at", "auth/token/lookup-self", ("read",))
        try:
            resp = call(op, self._ctx, self._client.auth.token.lookup_self)
        except Denied:
            # An invalid token, or one without the default policy: we cannot tell. Use it as is;
            # a denied write re-reads the source and then fails with a message naming both causes.
            self.lease = Lease(generation=self.lease.generation + 1)
            log.warning(
                "vault_token_lookup_denied",
                store=self.name,
                source=self._token_source(),
                consequence="TTL unknown: no renewal; the token is used until Vault refuses it",
            )
            return
        data = resp.get("data") if isinstance(resp, dict) else None
        data = data if isinstance(data, dict) else {}
        ttl = float(data.get("ttl") or 0)
        self._new_lease(sent, ttl, float(data.get("creation_ttl") or ttl), bool(data.get("renewable")))
        log.info(
            "vault_login",
            store=self.name,
            method="token",
            reason=reason,
            source=self._token_source(),
            ttl=ttl,
            renewable=bool(data.get("renewable")),
            policies=data.get("policies"),
        )

    def _token_source(self) -> str:
        auth = self.config.auth
        if auth.method != "token":
            return auth.method
        return f"file {auth.token_file}" if auth.token_file else f"env {auth.token_env}"

    def _renew(self) -> None:
        """renew-self; log in instead when Vault will not extend the token. Caller holds ``_auth_lock``."""
        lease = self.lease
        increment = max(round(lease.creation_ttl), 1)
        op = Op("renew its own token at", "auth/token/renew-self", ("update",))
        sent = self._clock()
        try:
            resp = call(op, self._ctx, lambda: self._client.auth.token.renew_self(increment=f"{increment}s"))
        except Denied:
            self._login("renew_denied")
            return
        except StoreError as exc:
            if not exc.transient:  # e.g. 400 "lease is not renewable"
                self._login("renew_refused")
                return
            if lease.expires is not None and sent < lease.expires:
                left = lease.expires - sent
                retry_in = min(max(left / 4, 1.0), 30.0)
                self.lease = replace(lease, retry_at=sent + retry_in)
                log.warning(
                    "vault_token_renew_failed",
                    store=self.name,
                    remaining=round(left, 3),
                    retry_in=round(retry_in, 3),
                    action="using the current token while it lasts",
                    **logs.error_fields(exc),
                )
                return
            raise
        info = resp.get("auth") if isinstance(resp, dict) else None
        if not isinstance(info, dict):
            raise TransientStoreError(f"store {self.name!r}: renew-self returned no auth data", code="renew")
        ttl = float(info.get("lease_duration") or 0)
        warnings = resp.get("warnings") or []
        capped = ttl < increment * RENEW_CAPPED_RATIO or any("max_ttl" in str(w) for w in warnings)
        self.lease = replace(
            lease,
            expires=sent + ttl if ttl > 0 else None,
            ttl=ttl,
            renewable=bool(info.get("renewable", lease.renewable)),
            capped=capped,
            retry_at=None,
        )
        log.info("vault_token_renewed", store=self.name, ttl=ttl, requested=increment, capped=capped)
        due = self._due_at(self.lease)
        if capped and due is not None and self._clock() >= due:
            self._login("max_ttl")  # what is left is within renew_before already

    def seconds_until_due(self) -> float | None:
        due = self._due_at(self.lease)
        return None if due is None else due - self._clock()
