"""``[[credentials]]``: identity and client authentication, targets, and the refresh policy over ``[defaults]``."""

from __future__ import annotations

import functools
import re
import sys
from typing import Literal

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.dataclasses import dataclass as record

from syncd import logs
from syncd.auth_rules import AUTH_KEYS, SECRET_METHODS, auth_keys_problem, inline_value_problem
from syncd.config.secrets import SecretRef, read_service_account
from syncd.config.values import (
    RECORD,
    ConfigPath,
    Duration,
    FileMode,
    Jitter,
    LifetimeDuration,
    PositiveDuration,
    RefreshAt,
    VerifyInterval,
    _Model,
)
from syncd.oauth import AuthMethod
from syncd.policy import RefreshPolicy

VGS_TOKEN_URL = "https://auth.verygoodsecurity.com/auth/realms/vgs/protocol/openid-connect/token"  # noqa: S105  # nosec B105


@functools.lru_cache(maxsize=1024)
def checked_token_url(url: str) -> str:
    """``url`` interned, once it is known to be an http(s) URL a mint can use (ValueError if not).

    Cached per distinct URL (a failure is not cached): a fleet of 10,000 credentials shares a
    few token endpoints, and parsing each copy again was half of loading such a config.
    """
    if not re.match(r"^https?://[^/\s]+/\S*$", url):
        raise ValueError(f"{logs.scrub_url(url)!r} is not an http(s) URL of a token endpoint")
    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:  # a port that is not a number, an unclosed [ ...: no mint could use it
        raise ValueError(f"{logs.scrub_url(url)!r} is not a valid URL: {exc}") from None
    return sys.intern(url)  # one string per endpoint, however many credentials name it


@record(frozen=True, slots=True, kw_only=True, config=RECORD)
class TargetConfig:
    store: str
    key: str = Field(min_length=1)
    format: Literal["json", "raw"] = "json"
    mode: FileMode | None = None  # file store only
    slots: int | Literal["auto"] | None = None  # aws-secretsmanager only

    @field_validator("store")
    @classmethod
    def _store(cls, v: str) -> str:
        return sys.intern(v)  # one string per store name, not one per target

    @field_validator("slots")
    @classmethod
    def _slots(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and not 1 <= v <= 50:
            raise ValueError('slots must be between 1 and 50, or "auto"')
        return v

    @property
    def label(self) -> str:
        """The ``target`` metric label and the name in /status: ``<store>:<key>``."""
        return f"{self.store}:{self.key}"


class Defaults(_Model):
    refresh_at: RefreshAt = 0.5
    min_remaining: Duration = 30.0
    jitter: Jitter = 0.1
    retry_min: PositiveDuration = 1.0
    retry_max: PositiveDuration = 60.0
    fatal_retry: PositiveDuration = 300.0
    lifetime_fallback: LifetimeDuration = 300.0
    min_interval: Duration = 1.0
    # Expected token lifetime, for planning only (`syncd check`, store quotas) before the
    # first mint tells the real one: VGS payment optimization tokens live 5 minutes.
    token_lifetime: LifetimeDuration = 300.0
    # The longest lifetime a token found in a target may claim before this process has
    # minted one (then the lifetime it saw applies): a planted 10-year payload is refused.
    max_lifetime: LifetimeDuration = 86_400.0
    # Read each target back between rotations, so a target that lost its token (store
    # restarted empty, secret deleted) is noticed and rewritten: see docs/operations.md.
    verify_interval: VerifyInterval = "auto"

    @model_validator(mode="after")
    def _order(self) -> Defaults:
        if self.retry_min <= 0:
            raise ValueError("retry_min must be above 0")
        if self.retry_max < self.retry_min:
            raise ValueError(f"retry_max ({self.retry_max}s) must not be below retry_min ({self.retry_min}s)")
        if self.lifetime_fallback <= 0:
            raise ValueError("lifetime_fallback must be above 0")
        return self


#: The refresh policy's fields, in `RefreshPolicy`'s order: a credential's own value, else [defaults]'.
_POLICY = ("refresh_at", "min_remaining", "jitter", "retry_min", "retry_max", "fatal_retry", "min_interval")
#: The policies made so far, by their values (frozen records, shared by every credential with those values).
_POLICIES: dict[tuple[float, ...], RefreshPolicy] = {}


SigningAlg = Literal["HS256", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]
DEFAULT_ASSERTION_LIFETIME = 60.0


@record(frozen=True, slots=True, kw_only=True, config=RECORD)
class CredentialConfig:
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    token_url: str = VGS_TOKEN_URL
    client_id: str | None = None
    client_secret: SecretRef | None = None
    service_account_file: ConfigPath | None = None
    auth_method: AuthMethod = "client_secret_post"
    # Client authentication beyond a shared secret (DESIGN.md "Client authentication at the token endpoint").
    private_key: SecretRef | None = None
    private_key_passphrase: SecretRef | None = None
    signing_alg: SigningAlg | None = None
    key_id: str | None = Field(default=None, min_length=1, max_length=256)
    assertion_audience: str | None = Field(default=None, min_length=1)
    assertion_lifetime: PositiveDuration | None = None
    client_assertion: SecretRef | None = None
    scopes: list[str] | None = None
    extra_params: dict[str, str] = Field(default_factory=dict)
    targets: list[TargetConfig] = Field(min_length=1)
    # Per-credential overrides of [defaults]; None means inherit.
    refresh_at: RefreshAt | None = None
    min_remaining: Duration | None = None
    jitter: Jitter | None = None
    retry_min: PositiveDuration | None = None
    retry_max: PositiveDuration | None = None
    fatal_retry: PositiveDuration | None = None
    lifetime_fallback: LifetimeDuration | None = None
    min_interval: Duration | None = None
    token_lifetime: LifetimeDuration | None = None
    max_lifetime: LifetimeDuration | None = None
    verify_interval: VerifyInterval | None = None
    ca_bundle: ConfigPath | None = None
    client_cert: ConfigPath | None = None
    client_key: ConfigPath | None = None

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, v: str) -> str:
        return checked_token_url(v)

    @field_validator("extra_params")
    @classmethod
    def _extra(cls, v: dict[str, str]) -> dict[str, str]:
        owned = {"grant_type", "client_id", "client_secret", "scope", "client_assertion", "client_assertion_type"}
        reserved = sorted(owned & set(v))
        if reserved:
            raise ValueError(f"{', '.join(reserved)} cannot be set in extra_params (use the dedicated keys)")
        return v

    @model_validator(mode="after")
    def _identity(self) -> CredentialConfig:
        problem = auth_keys_problem(self.auth_method, {k: getattr(self, k) for k in AUTH_KEYS})
        for key in ("private_key", "client_assertion"):
            ref = getattr(self, key)
            if problem is None and ref is not None and ref.value is not None:
                problem = inline_value_problem(key, ref.value.get_secret_value())
        if problem:
            raise ValueError(problem)
        if self.auth_method not in SECRET_METHODS:
            return self
        if self.service_account_file is not None:
            if self.client_id is not None or self.client_secret is not None:
                raise ValueError("give either service_account_file or client_id + client_secret, not both")
        elif self.client_id is None or self.client_secret is None:
            missing = " and ".join(k for k in ("client_id", "client_secret") if getattr(self, k) is None)
            raise ValueError(f"{missing} missing: give client_id and client_secret, or service_account_file")
        return self

    def assertion_audience_for(self) -> str:
        return self.assertion_audience or self.token_url

    def assertion_lifetime_for(self) -> float:
        return self.assertion_lifetime if self.assertion_lifetime is not None else DEFAULT_ASSERTION_LIFETIME

    def policy(self, defaults: Defaults) -> RefreshPolicy:
        """This credential's refresh policy: its own overrides over [defaults].

        One record per distinct set of values (`_POLICIES`): start-up asks for every
        credential's policy a few times, and most credentials share one.
        """
        values = tuple(own if (own := getattr(self, name)) is not None else getattr(defaults, name) for name in _POLICY)
        known = _POLICIES.get(values)
        if known is None:  # a bad mix raises ValueError here, and nothing is kept
            known = _POLICIES[values] = RefreshPolicy(**dict(zip(_POLICY, values, strict=True)))
        return known

    def lifetime_fallback_for(self, defaults: Defaults) -> float:
        return self.lifetime_fallback if self.lifetime_fallback is not None else defaults.lifetime_fallback

    def verify_interval_for(self, defaults: Defaults) -> float | Literal["auto", "off"]:
        return self.verify_interval if self.verify_interval is not None else defaults.verify_interval

    def max_lifetime_for(self, defaults: Defaults) -> float:
        return self.max_lifetime if self.max_lifetime is not None else defaults.max_lifetime

    def token_lifetime_for(self, defaults: Defaults) -> float:
        return self.token_lifetime if self.token_lifetime is not None else defaults.token_lifetime

    def resolve_identity(self) -> tuple[str, SecretStr, tuple[str, ...] | None, str | None]:
        """(client_id, client_secret, scopes, vgs vault id), read now from their sources."""
        if self.service_account_file is not None:
            sa = read_service_account(self.service_account_file)
            scopes = tuple(self.scopes) if self.scopes is not None else (sa.scopes or None)
            return sa.client_id, sa.client_secret, scopes, sa.vault_id
        assert self.client_id is not None
        # Secretless methods: the empty secret is never sent (oauth sends client_id and the assertion only).
        secret = self.client_secret.get() if self.client_secret is not None else SecretStr("")
        return self.client_id, secret, tuple(self.scopes) if self.scopes else None, None
