"""Each built-in store's options (``[stores.<name>]``), and the union that picks one by ``type``.

A ``type`` that is not built in is a plugin store, whose class validates its own options.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from syncd.config.secrets import SecretRef
from syncd.config.values import ConfigPath, Duration, FileMode, PositiveDuration, _Model


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
