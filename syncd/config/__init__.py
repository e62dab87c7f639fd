"""Configuration: the TOML schema of docs/design.md "Configuration", validated with pydantic-settings.

Sources, highest priority first: ``SYNCD_`` environment variables (``__``
separates nesting, e.g. ``SYNCD_DAEMON__LOG_LEVEL=debug``), then the TOML file.
Unknown keys are errors, because a typo such as ``refesh_at`` silently ignored
means a fleet refreshes on the wrong schedule.

One module per thing configured, plus the loading:

- ``values``: durations, fractions, file modes, paths relative to the config file
- ``secrets``: secret references and VGS CLI service-account files, resolved at each mint
- ``stores``: each store type's options
- ``credentials``: ``[[credentials]]`` (identity, client authentication, targets) and ``[defaults]``
- ``daemon``: ``[daemon]`` and ``[probe]``
- ``load``: the root ``Config``, ``load_config`` and ``ConfigError`` (every problem with its key path, exit 2)

Import from ``syncd.config``; the names below are its public surface.
"""

from syncd.config.credentials import (
    DEFAULT_ASSERTION_LIFETIME,
    VGS_TOKEN_URL,
    CredentialConfig,
    Defaults,
    SigningAlg,
    TargetConfig,
)
from syncd.config.daemon import DaemonConfig, ProbeConfig
from syncd.config.load import (
    CONFIG_ENV,
    DEFAULT_CONFIG_FILE,
    Config,
    ConfigError,
    Problem,
    config_path,
    load_config,
    read_toml,
)
from syncd.config.secrets import SecretRef, SecretUnavailableError, ServiceAccount, read_service_account
from syncd.config.stores import (
    BUILTIN_STORE_TYPES,
    AwsSecretsManagerStoreConfig,
    AwsSsmStoreConfig,
    FileStoreConfig,
    PluginStoreConfig,
    StoreConfig,
    VaultAppRoleAuth,
    VaultAuth,
    VaultJwtAuth,
    VaultKubernetesAuth,
    VaultStoreConfig,
    VaultTokenAuth,
)
from syncd.config.values import (
    MAX_DURATION,
    ConfigPath,
    Duration,
    FileMode,
    Jitter,
    PositiveDuration,
    RefreshAt,
    VerifyInterval,
    parse_duration,
    parse_verify_interval,
)

__all__ = [
    "BUILTIN_STORE_TYPES",
    "CONFIG_ENV",
    "DEFAULT_ASSERTION_LIFETIME",
    "DEFAULT_CONFIG_FILE",
    "MAX_DURATION",
    "VGS_TOKEN_URL",
    "AwsSecretsManagerStoreConfig",
    "AwsSsmStoreConfig",
    "Config",
    "ConfigError",
    "ConfigPath",
    "CredentialConfig",
    "DaemonConfig",
    "Defaults",
    "Duration",
    "FileMode",
    "FileStoreConfig",
    "Jitter",
    "PluginStoreConfig",
    "PositiveDuration",
    "ProbeConfig",
    "Problem",
    "RefreshAt",
    "SecretRef",
    "SecretUnavailableError",
    "ServiceAccount",
    "SigningAlg",
    "StoreConfig",
    "TargetConfig",
    "VaultAppRoleAuth",
    "VaultAuth",
    "VaultJwtAuth",
    "VaultKubernetesAuth",
    "VaultStoreConfig",
    "VaultTokenAuth",
    "VerifyInterval",
    "config_path",
    "load_config",
    "parse_duration",
    "parse_verify_interval",
    "read_service_account",
    "read_toml",
]
