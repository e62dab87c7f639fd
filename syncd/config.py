"""Configuration: the TOML schema of docs/design.md "Configuration", validated with pydantic-settings.

Sources, highest priority first: ``SYNCD_`` environment variables (``__``
separates nesting, e.g. ``SYNCD_DAEMON__LOG_LEVEL=debug``), then the TOML file.
Unknown keys are errors, because a typo such as ``refesh_at`` silently ignored
means a fleet refreshes on the wrong schedule.

Errors are collected, never raised one at a time: ``load_config`` raises one
``ConfigError`` listing every problem with its key path
(``credentials[2].targets[0].store``) and the reason, and the CLI exits 2.

Secrets are references (``{ env = ... }``, ``{ file = ... }``, a VGS CLI
service-account file) resolved at each mint, so a rotated secret file is picked
up without a restart; resolved values are ``SecretStr`` and never logged.
"""

from __future__ import annotations

import math
import os
import re
import socket
import stat
import tomllib
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from syncd.auth_rules import AUTH_KEYS, SECRET_METHODS, auth_keys_problem, inline_value_problem
from syncd.oauth import AuthMethod
from syncd.policy import RefreshPolicy

VGS_TOKEN_URL = "https://auth.verygoodsecurity.com/auth/realms/vgs/protocol/openid-connect/token"  # noqa: S105  # nosec B105
DEFAULT_CONFIG_FILE = "syncd.toml"
CONFIG_ENV = "SYNCD_CONFIG"

# --------------------------------------------------------------------------- durations

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")

#: The longest duration any key accepts. Beyond it a value is a typo (or "inf"), and epoch
#: arithmetic with it would leave the range of datetime and RFC 3339.
MAX_DURATION = 3650 * 86400.0
_DURATION_HINT = "seconds (30) or a string such as '30s', '5m', '1h', '1h30m'"


def parse_duration(value: Any) -> float:
    """Accept 30, 2.5, "30", "30s", "5m", "1h30m", "250ms"; return finite seconds in [0, 3650d]."""
    if isinstance(value, bool):
        raise ValueError(f"a duration must be {_DURATION_HINT}, not a boolean")
    if isinstance(value, int | float):
        seconds = float(value) if abs(value) < 1e300 else math.copysign(math.inf, value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            sign = -1.0 if text.startswith("-") else 1.0
            text = text.removeprefix("-").removeprefix("+")
            pos, seconds = 0, 0.0
            for match in _DURATION_RE.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise ValueError(f"{value!r} is not a duration: use {_DURATION_HINT}") from None
            seconds *= sign
    else:
        raise ValueError(f"a duration must be {_DURATION_HINT}, not {type(value).__name__}")
    if math.isnan(seconds):
        raise ValueError(f"{value!r} is not a number of seconds: use {_DURATION_HINT}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative ({value!r}): use 0s up to 3650d")
    if seconds > MAX_DURATION:
        raise ValueError(f"{value!r} is longer than the 3650d (10 years) any duration may be")
    return seconds


def _positive_duration(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError(f"must be above 0s (up to 3650d), got {seconds:g}s: use {_DURATION_HINT}")
    return seconds


#: A duration of 0s up to MAX_DURATION.
Duration = Annotated[float, BeforeValidator(parse_duration)]
#: A duration that must be above 0s: a zero timeout, lifetime or retry pace is a hot loop or a certain failure.
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive_duration)]


def _fraction(low: float, high: float, *, low_open: bool, high_open: bool, example: str) -> Any:
    lo_text = f"{'(' if low_open else '['}{low:g}"
    hi_text = f"{high:g}{')' if high_open else ']'}"

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"must be a number in {lo_text}, {hi_text} such as {example}")
        try:
            number = float(value)
        except (ValueError, OverflowError):
            raise ValueError(
                f"{value!r} is not a number: use a fraction in {lo_text}, {hi_text} such as {example}"
            ) from None
        above = number > low if low_open else number >= low
        below = number < high if high_open else number <= high
        if not (math.isfinite(number) and above and below):
            raise ValueError(f"must be a fraction in {lo_text}, {hi_text} such as {example}, got {value!r}")
        return number

    return BeforeValidator(check)


#: refresh_at: the fraction of the lifetime after which to refresh, strictly between 0 and 1.
RefreshAt = Annotated[float, _fraction(0.0, 1.0, low_open=True, high_open=True, example="0.5")]
#: jitter: +- fraction of the refresh delay, 0 to 0.5 (more could schedule a refresh before issue).
Jitter = Annotated[float, _fraction(0.0, 0.5, low_open=False, high_open=False, example="0.1")]


def parse_verify_interval(value: Any) -> Any:
    """``"auto"`` (halfway between a write and the next refresh), ``"off"``, or a duration above 0."""
    if isinstance(value, str) and value.strip().lower() in ("auto", "off"):
        return value.strip().lower()
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValueError(f'{exc}; or "auto" (the default) or "off"') from None
    if seconds <= 0:
        raise ValueError('verify_interval must be above 0 (or "off" to turn the check off)')
    return seconds


VerifyInterval = Annotated[float | Literal["auto", "off"], BeforeValidator(parse_verify_interval)]


def _parse_mode(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str) and re.fullmatch(r"0?o?[0-7]{3,4}", value.strip()):
        mode = int(value.strip().replace("o", ""), 8)
    else:
        raise ValueError(f'{value!r} is not a file mode: write it as an octal string such as "0600"')
    if mode & ~0o777:
        raise ValueError(f"file mode {value!r} has bits beyond 0777")
    return mode


FileMode = Annotated[int, BeforeValidator(_parse_mode)]

# The directory of the config file being loaded: relative paths resolve against it.
_BASE_DIR: ContextVar[Path | None] = ContextVar("syncd_config_base_dir", default=None)


def _resolve_path(value: Any) -> Any:
    if isinstance(value, str | Path) and str(value):
        path = Path(os.path.expanduser(str(value)))
        base = _BASE_DIR.get()
        if not path.is_absolute() and base is not None:
            path = base / path
        return path
    return value


ConfigPath = Annotated[Path, BeforeValidator(_resolve_path)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --------------------------------------------------------------------------- secrets


class SecretRef(_Model):
    """Where a secret comes from: ``{ env = "VAR" }``, ``{ file = "path" }`` or a plain string.

    A plain string is accepted only in a config file readable by its owner
    alone (checked by ``load_config``). Values are read on every ``get()``.
    """

    env: str | None = None
    file: ConfigPath | None = None
    value: SecretStr | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _plain_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"value": data}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("env", "file", "value") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError('give exactly one of { env = "VAR" } or { file = "/path" } (or a plain string)')
        return self

    @property
    def is_plaintext(self) -> bool:
        return self.value is not None

    def describe(self) -> str:
        if self.env:
            return f"env {self.env}"
        if self.file:
            return f"file {self.file}"
        return "inline value"

    def get(self) -> SecretStr:
        """Read the secret now. Errors name the source and the fix, never the value."""
        if self.value is not None:
            return self.value
        if self.env is not None:
            raw = os.environ.get(self.env)
            if raw is None or raw == "":
                raise SecretUnavailableError(f"environment variable {self.env} is not set or empty: export it")
            return SecretStr(raw.strip())
        assert self.file is not None
        try:
            raw = self.file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SecretUnavailableError(f"secret file {self.file} does not exist: create it or fix the path") from None
        except PermissionError:
            raise SecretUnavailableError(
                f"secret file {self.file} is not readable by this process (uid {os.getuid()}): fix its permissions"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretUnavailableError(f"secret file {self.file} cannot be read ({exc.__class__.__name__})") from None
        secret = raw.strip()
        if not secret:
            raise SecretUnavailableError(f"secret file {self.file} is empty: write the secret into it")
        return SecretStr(secret)


class SecretUnavailableError(Exception):
    """A secret reference cannot be resolved right now (treated as a fatal credential error)."""


@dataclass(frozen=True)
class ServiceAccount:
    """A VGS CLI ``kind: ServiceAccount`` file, read afresh at each mint."""

    client_id: str
    client_secret: SecretStr
    scopes: tuple[str, ...]
    name: str | None
    vault_id: str | None

    def __repr__(self) -> str:
        return f"ServiceAccount(client_id={self.client_id!r}, scopes={self.scopes!r}, vault_id={self.vault_id!r})"


def read_service_account(path: Path) -> ServiceAccount:
    """Parse the VGS CLI output; errors name the file and the missing field, never the secret."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SecretUnavailableError(f"service account file {path} does not exist") from None
    except PermissionError:
        raise SecretUnavailableError(f"service account file {path} is not readable by uid {os.getuid()}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SecretUnavailableError(
            f"service account file {path} is not valid YAML ({exc.__class__.__name__})"
        ) from None
    if not isinstance(doc, dict) or doc.get("kind") != "ServiceAccount":
        raise SecretUnavailableError(
            f"service account file {path} is not a VGS 'kind: ServiceAccount' document "
            "(create it with `vgs generate service-account` and `vgs apply service-account`)"
        )
    data = doc.get("data")
    if not isinstance(data, dict):
        raise SecretUnavailableError(f"service account file {path} has no 'data' mapping")
    missing = [k for k in ("clientId", "clientSecret") if not isinstance(data.get(k), str) or not data.get(k)]
    if missing:
        raise SecretUnavailableError(
            f"service account file {path}: data.{' and data.'.join(missing)} missing "
            "(the file from `vgs generate` has no credentials until `vgs apply service-account` fills them in)"
        )
    scopes_raw = data.get("scopes") or []
    if isinstance(scopes_raw, str):
        scopes = tuple(scopes_raw.split())
    elif isinstance(scopes_raw, list) and all(isinstance(s, str) for s in scopes_raw):
        scopes = tuple(scopes_raw)
    else:
        raise SecretUnavailableError(f"service account file {path}: data.scopes must be a list of strings")
    annotations: dict[str, Any] = {}
    for holder in (doc.get("metadata"), data, doc):
        if isinstance(holder, dict) and isinstance(holder.get("annotations"), dict):
            annotations = {**holder["annotations"], **annotations}
    vault_id = annotations.get("vgs.io/vault-id")
    return ServiceAccount(
        client_id=str(data["clientId"]),
        client_secret=SecretStr(str(data["clientSecret"])),
        scopes=scopes,
        name=str(data["name"]) if data.get("name") else None,
        vault_id=str(vault_id) if vault_id else None,
    )


# --------------------------------------------------------------------------- stores


class FileStoreConfig(_Model):
    type: Literal["file"]
    directory: ConfigPath
    mode: FileMode = 0o600  # default for targets without their own mode
    dir_mode: FileMode = 0o700
    create_directory: bool = True
    fsync: bool = True


class VaultTokenAuth(_Model):
    method: Literal["token"]
    token_file: ConfigPath | None = None  # else env VAULT_TOKEN; re-read on each login
    token_env: str = "VAULT_TOKEN"  # noqa: S105 - the name of a variable


class VaultAppRoleAuth(_Model):
    method: Literal["approle"]
    role_id: SecretRef
    secret_id: SecretRef
    mount: str = "approle"


class VaultKubernetesAuth(_Model):
    method: Literal["kubernetes"]
    role: str
    jwt_file: ConfigPath = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
    mount: str = "kubernetes"


class VaultJwtAuth(_Model):
    method: Literal["jwt"]
    role: str
    jwt_file: ConfigPath
    mount: str = "jwt"


VaultAuth = Annotated[
    VaultTokenAuth | VaultAppRoleAuth | VaultKubernetesAuth | VaultJwtAuth, Field(discriminator="method")
]


class VaultStoreConfig(_Model):
    type: Literal["vault"]
    url: str
    auth: VaultAuth = Field(default_factory=lambda: VaultTokenAuth(method="token"))
    namespace: str | None = None
    mount: str = "secret"
    kv_version: Literal[1, 2] = 2
    ca_cert: ConfigPath | None = None
    client_cert: ConfigPath | None = None
    client_key: ConfigPath | None = None
    tls_skip_verify: bool = False
    timeout: PositiveDuration = 10.0
    max_versions: int = Field(default=5, ge=1, le=100)
    max_workers: int = Field(default=8, ge=1, le=256)
    renew_before: Duration = 60.0  # renew the daemon's own token this long before its TTL ends

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not a Vault address: use https://host:8200")
        return v.rstrip("/")

    @field_validator("mount")
    @classmethod
    def _mount(cls, v: str) -> str:
        v = v.strip("/")
        if not v:
            raise ValueError("mount must name the KV secrets engine, e.g. 'secret'")
        return v


class _AwsStoreConfig(_Model):
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    kms_key_id: str | None = None
    max_attempts: int = Field(default=5, ge=1, le=20)
    connect_timeout: PositiveDuration = 5.0
    read_timeout: PositiveDuration = 10.0
    max_workers: int = Field(default=16, ge=1, le=256)
    # Where to call sts:AssumeRole for role_arn (a VPC endpoint, or an emulator in tests);
    # None means the regional STS endpoint. endpoint_url applies to the store's own service only.
    sts_endpoint_url: str | None = None


class AwsSecretsManagerStoreConfig(_AwsStoreConfig):
    type: Literal["aws-secretsmanager"]
    tags: dict[str, str] = Field(default_factory=dict)
    create_missing: bool = False
    description: str = "OAuth access token rotated by syncd"
    quota_check: bool = True
    max_writes_per_second: float = Field(default=40.0, gt=0, le=50)


class AwsSsmStoreConfig(_AwsStoreConfig):
    type: Literal["aws-ssm"]
    tier: Literal["Standard", "Advanced", "Intelligent-Tiering"] = "Standard"
    tags: dict[str, str] = Field(default_factory=dict)
    description: str = "OAuth access token rotated by syncd"
    # PutParameter: 3/s per account and region with the default (standard) throughput, 10/s
    # with "higher throughput" enabled. GetParameter shares 40/s with GetParameters and
    # GetParametersByPath, i.e. with the consumers; syncd only reads at start-up, so it takes half.
    max_writes_per_second: float = Field(default=3.0, gt=0, le=10000)
    max_reads_per_second: float = Field(default=20.0, gt=0, le=10000)


class PluginStoreConfig(BaseModel):
    """A store type provided by another package through the ``syncd.stores`` entry points.

    Its options are validated by the store class itself when it is created.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str


BUILTIN_STORE_TYPES = ("file", "vault", "aws-secretsmanager", "aws-ssm")


def _store_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in BUILTIN_STORE_TYPES else "plugin"


StoreConfig = Annotated[
    Annotated[FileStoreConfig, Tag("file")]
    | Annotated[VaultStoreConfig, Tag("vault")]
    | Annotated[AwsSecretsManagerStoreConfig, Tag("aws-secretsmanager")]
    | Annotated[AwsSsmStoreConfig, Tag("aws-ssm")]
    | Annotated[PluginStoreConfig, Tag("plugin")],
    Discriminator(_store_tag),
]

# --------------------------------------------------------------------------- credentials


class TargetConfig(_Model):
    store: str
    key: str = Field(min_length=1)
    format: Literal["json", "raw"] = "json"
    mode: FileMode | None = None  # file store only
    slots: int | Literal["auto"] | None = None  # aws-secretsmanager only

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
    lifetime_fallback: PositiveDuration = 300.0
    min_interval: Duration = 1.0
    # Expected token lifetime, for planning only (`syncd check`, store quotas) before the
    # first mint tells the real one: VGS payment optimization tokens live 5 minutes.
    token_lifetime: PositiveDuration = 300.0
    # The longest lifetime a token found in a target may claim before this process has
    # minted one (then the lifetime it saw applies): a planted 10-year payload is refused.
    max_lifetime: PositiveDuration = 86_400.0
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


SigningAlg = Literal["HS256", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]
DEFAULT_ASSERTION_LIFETIME = 60.0


class CredentialConfig(_Model):
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
    lifetime_fallback: PositiveDuration | None = None
    min_interval: Duration | None = None
    token_lifetime: PositiveDuration | None = None
    max_lifetime: PositiveDuration | None = None
    verify_interval: VerifyInterval | None = None
    ca_bundle: ConfigPath | None = None
    client_cert: ConfigPath | None = None
    client_key: ConfigPath | None = None

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+/\S*$", v):
            raise ValueError(f"{v!r} is not an http(s) URL of a token endpoint")
        return v

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
        """This credential's refresh policy: its own overrides over [defaults]."""

        def pick(name: str) -> Any:
            own = getattr(self, name)
            return own if own is not None else getattr(defaults, name)

        return RefreshPolicy(
            refresh_at=pick("refresh_at"),
            min_remaining=pick("min_remaining"),
            jitter=pick("jitter"),
            retry_min=pick("retry_min"),
            retry_max=pick("retry_max"),
            fatal_retry=pick("fatal_retry"),
            min_interval=pick("min_interval"),
        )

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


# --------------------------------------------------------------------------- daemon + root


class DaemonConfig(_Model):
    listen: str = "127.0.0.1:9440"
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    drain_timeout: Duration = 10.0  # bound on finishing in-flight writes at SIGTERM
    http_timeout: PositiveDuration = 10.0  # IdP read timeout
    connect_timeout: PositiveDuration = 5.0
    # Total bound on one mint (connect, send, every byte of the answer): http_timeout is per read,
    # so an IdP dripping its answer a byte at a time would otherwise hold a mint for ever.
    mint_timeout: PositiveDuration = 10.0
    # Mints in flight per token endpoint (scheme://host:port), so a hanging IdP cannot hold the
    # slots that credentials on other IdPs need.
    max_concurrent_mints: int = Field(default=32, ge=1, le=1024)
    startup_concurrency: int = Field(default=64, ge=1, le=4096)
    liveness_threshold: PositiveDuration = 30.0  # /livez fails when the loop heartbeat is older

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    @field_validator("mint_timeout")
    @classmethod
    def _mint_timeout(cls, v: float) -> float:
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"mint_timeout must be a finite duration above 0 (e.g. '10s'), got {v!r}")
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{v!r} is not host:port (e.g. 127.0.0.1:9440 or 0.0.0.0:9440)")
        return v

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    # --- several replicas (DESIGN.md "Several replicas"; rules in syncd/replicas.py)
    replicas: int = Field(default=1, ge=1, le=1024)  # how many syncd processes share this config
    # This process's ordinal, 0..replicas-1. Unset: the trailing "-N" of the hostname (a
    # StatefulSet pod), else 0. Declared after replicas, so the check below can see it.
    replica: int | None = Field(default=None, ge=0, validate_default=True)
    takeover_delay: float | Literal["auto"] = "auto"  # wait per rank before a follower acts; auto: lifetime/10, <= 60s

    @field_validator("takeover_delay", mode="before")
    @classmethod
    def _takeover_delay(cls, v: Any) -> Any:
        from syncd.replicas import parse_takeover_delay

        return parse_takeover_delay(v)

    @field_validator("replica")
    @classmethod
    def _replica(cls, v: int | None, info: ValidationInfo) -> int:
        from syncd.replicas import resolve_replica

        replicas = info.data.get("replicas")
        if not isinstance(replicas, int):
            return v or 0  # replicas itself is invalid and reported
        return resolve_replica(v, replicas, socket.gethostname())

    # --- end several replicas


class ProbeConfig(_Model):
    """``syncd probe``: the read-only exporter of what the stores hold (docs/operations.md)."""

    listen: str = "127.0.0.1:9442"
    interval: Duration = Field(default=30.0, ge=1.0, le=3600.0)  # between two reads of every target

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        return DaemonConfig._listen(v)  # the same host:port rule and message as [daemon].listen

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


_SOURCE: ContextVar[Mapping[str, Any] | None] = ContextVar("syncd_config_source", default=None)


class Config(BaseSettings):
    """The whole file. Build it with ``load_config`` (which reports all errors at once)."""

    model_config = SettingsConfigDict(
        env_prefix="SYNCD_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
        nested_model_default_partial_update=True,
    )

    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    probe: ProbeConfig = Field(default_factory=ProbeConfig)
    defaults: Defaults = Field(default_factory=Defaults)
    stores: dict[str, StoreConfig] = Field(default_factory=dict)
    credentials: list[CredentialConfig] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _MappingSource(settings_cls))

    def credential(self, name: str) -> CredentialConfig:
        for cred in self.credentials:
            if cred.name == name:
                return cred
        raise KeyError(name)


class _MappingSource(PydanticBaseSettingsSource):
    """The already-parsed TOML document (parsed once by ``load_config``).

    Not pydantic-settings' TomlConfigSettingsSource: ``load_config`` parses with tomllib
    itself to report syntax errors with line numbers and to run the cross-checks on the
    same document pydantic validates.
    """

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_SOURCE.get() or {})


# --------------------------------------------------------------------------- loading + errors


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """Every problem found in a configuration, each with its key path. CLI exit code 2."""

    def __init__(self, source: str, problems: Iterable[Problem]) -> None:
        self.source = source
        self.problems = sorted(set(problems), key=lambda p: (p.path, p.message))
        lines = "\n".join(f"  - {p}" for p in self.problems)
        n = len(self.problems)
        super().__init__(f"{source}: {n} configuration problem{'s' if n != 1 else ''}:\n{lines}")


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    parts = list(loc)
    # A discriminated union adds the tag to the path (stores.<name>.<tag>.field); drop it.
    if len(parts) >= 3 and parts[0] == "stores" and parts[2] in (*BUILTIN_STORE_TYPES, "plugin"):
        del parts[2]
    # Same for the Vault auth union (auth.<method>.field).
    for i in range(len(parts) - 1):
        if parts[i] == "auth" and parts[i + 1] in ("token", "approle", "kubernetes", "jwt"):
            del parts[i + 1]
            break
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before", "function-wrap", "tagged-union") or (
            isinstance(part, str) and part.startswith("function-")
        ):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _why(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see config.example.toml for every option)"
    if kind == "missing":
        return "required key is missing"
    if kind in {"union_tag_invalid", "literal_error"}:
        return str(err.get("msg", "invalid value"))
    msg = str(err.get("msg", "invalid value"))
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _pydantic_problems(exc: ValidationError) -> list[Problem]:
    return [Problem(_format_loc(tuple(e["loc"])), _why(e)) for e in exc.errors(include_url=False)]


def _cross_problems(data: Mapping[str, Any]) -> list[Problem]:
    """Checks across sections, run on the raw document so they are reported with field errors."""
    problems: list[Problem] = []
    stores = data.get("stores") if isinstance(data.get("stores"), dict) else {}
    assert isinstance(stores, dict)
    creds = data.get("credentials") if isinstance(data.get("credentials"), list) else []
    assert isinstance(creds, list)
    seen: dict[str, int] = {}
    for i, cred in enumerate(creds):
        if not isinstance(cred, dict):
            continue
        name = cred.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append(
                    Problem(
                        f"credentials[{i}].name", f"duplicate credential name {name!r} (also credentials[{seen[name]}])"
                    )
                )
            else:
                seen[name] = i
        targets = cred.get("targets") if isinstance(cred.get("targets"), list) else []
        assert isinstance(targets, list)
        seen_targets: set[tuple[Any, Any]] = set()
        for j, tgt in enumerate(targets):
            if not isinstance(tgt, dict):
                continue
            path = f"credentials[{i}].targets[{j}]"
            store_name = tgt.get("store")
            if isinstance(store_name, str) and store_name not in stores:
                known = ", ".join(sorted(stores)) or "none are defined"
                problems.append(Problem(f"{path}.store", f"unknown store {store_name!r} (defined stores: {known})"))
            store = stores.get(store_name) if isinstance(store_name, str) else None
            stype = store.get("type") if isinstance(store, dict) else None
            if "slots" in tgt and stype is not None and stype != "aws-secretsmanager":
                problems.append(Problem(f"{path}.slots", f"slots apply to aws-secretsmanager stores only, not {stype}"))
            if "mode" in tgt and stype is not None and stype != "file":
                problems.append(Problem(f"{path}.mode", f"mode applies to file stores only, not {stype}"))
            if stype == "file" and isinstance(tgt.get("key"), str):
                from syncd.stores.file import name_length_problem

                fmt = tgt.get("format") if tgt.get("format") in ("json", "raw") else "json"
                problem = name_length_problem(tgt["key"], str(fmt))
                if problem is not None:
                    problems.append(Problem(f"{path}.key", f"{tgt['key'][:40]!r}: {problem}"))
            ident = (store_name, tgt.get("key"))
            if ident in seen_targets:
                problems.append(Problem(path, f"the same target {store_name}:{tgt.get('key')} is listed twice"))
            seen_targets.add(ident)
    # Two credentials writing the same target would overwrite each other's tokens.
    owners: dict[tuple[Any, Any], str] = {}
    for i, cred in enumerate(creds):
        if not isinstance(cred, dict) or not isinstance(cred.get("targets"), list):
            continue
        for j, tgt in enumerate(cred["targets"]):
            if isinstance(tgt, dict):
                ident = (tgt.get("store"), tgt.get("key"))
                if ident in owners and owners[ident] != f"credentials[{i}]":
                    problems.append(
                        Problem(
                            f"credentials[{i}].targets[{j}]",
                            f"target {ident[0]}:{ident[1]} is already written by {owners[ident]}",
                        )
                    )
                owners.setdefault(ident, f"credentials[{i}]")
    return problems


def _plaintext_problems(cfg_data: Mapping[str, Any], path: Path | None) -> list[Problem]:
    """A plain ``client_secret = "..."`` is allowed only in a file no one else can read."""
    if path is None:
        return []
    try:
        mode = path.stat().st_mode
    except OSError:
        return []
    if not mode & (stat.S_IRWXG | stat.S_IRWXO):
        return []
    problems = []
    creds = cfg_data.get("credentials")
    for i, cred in enumerate(creds if isinstance(creds, list) else []):
        for key in ("client_secret", "private_key", "private_key_passphrase", "client_assertion"):
            if isinstance(cred, dict) and isinstance(cred.get(key), str):
                problems.append(
                    Problem(
                        f"credentials[{i}].{key}",
                        f"a plaintext secret in {path}, which is readable by group/others (mode "
                        f'{stat.S_IMODE(mode):04o}): use {key} = {{ file = "..." }} or {{ env = "..." }}, '
                        f"or `chmod 600 {path}`",
                    )
                )
    stores = cfg_data.get("stores")
    for sname, store in (stores if isinstance(stores, dict) else {}).items():
        auth = store.get("auth") if isinstance(store, dict) else None
        if isinstance(auth, dict):
            for key in ("role_id", "secret_id"):
                if key == "secret_id" and isinstance(auth.get(key), str):
                    problems.append(
                        Problem(
                            f"stores.{sname}.auth.{key}",
                            f"a plaintext secret in {path}, readable by group/others: use {{ file = ... }} or "
                            f"{{ env = ... }}, or `chmod 600 {path}`",
                        )
                    )
    return problems


def _policy_problems(config: Config) -> list[Problem]:
    """A credential's overrides merged with [defaults] must still make a valid policy.

    Each key is valid alone, but ``retry_max = "1s"`` on a credential under a
    ``[defaults] retry_min = "5s"`` is not: found here, not at the first run.
    """
    problems = []
    for i, cred in enumerate(config.credentials):
        try:
            cred.policy(config.defaults)
        except ValueError as exc:
            key = str(exc).split(" ", 1)[0]
            problems.append(
                Problem(
                    f"credentials[{i}].{key}",
                    f"{exc} once [defaults] apply: set both keys on this credential, or fix [defaults]",
                )
            )
    return problems


def config_path(explicit: str | Path | None = None) -> Path:
    """``-c``, else ``SYNCD_CONFIG``, else ``./syncd.toml``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else Path(DEFAULT_CONFIG_FILE)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            str(path),
            [Problem("", f"file not found: pass -c FILE, set {CONFIG_ENV}, or create ./{DEFAULT_CONFIG_FILE}")],
        ) from None
    except PermissionError:
        raise ConfigError(str(path), [Problem("", f"not readable by uid {os.getuid()}: fix its permissions")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [Problem("", f"not valid TOML: {exc}")]) from None
    except IsADirectoryError:
        raise ConfigError(str(path), [Problem("", "is a directory, not a TOML file")]) from None


def load_config(path: str | Path | None = None, *, data: Mapping[str, Any] | None = None) -> Config:
    """Parse, validate and cross-check a configuration; raise ``ConfigError`` with every problem."""
    file_path: Path | None = None
    if data is None:
        file_path = config_path(path)
        data = read_toml(file_path)
        source = str(file_path)
    else:
        source = str(path) if path else "<config>"
    base = file_path.resolve().parent if file_path else Path.cwd()
    problems = _cross_problems(data) + _plaintext_problems(data, file_path)
    token_base = _BASE_DIR.set(base)
    token_src = _SOURCE.set(data)
    try:
        config = Config()
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc))
        raise ConfigError(source, problems) from None
    except SettingsError as exc:
        # An environment override that is not valid for its key, e.g. SYNCD_DAEMON=x.
        field = re.search(r'field "([^"]+)"', str(exc))
        key = field.group(1) if field else "?"
        problems.append(
            Problem(
                key,
                f"the environment variable SYNCD_{key.upper()} cannot be parsed for this key "
                f"(a section needs SYNCD_{key.upper()}__<KEY>=value, or JSON): fix or unset it",
            )
        )
        raise ConfigError(source, problems) from None
    finally:
        _SOURCE.reset(token_src)
        _BASE_DIR.reset(token_base)
    if not config.credentials:
        problems.append(Problem("credentials", "no [[credentials]] defined: nothing to rotate"))
    problems.extend(_policy_problems(config))
    if problems:
        raise ConfigError(source, problems)
    return config
