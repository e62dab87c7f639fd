"""Where secrets come from: ``{ env = ... }``, ``{ file = ... }``, an inline value, a VGS CLI service-account file.

References are resolved at each mint, so a rotated secret file is picked up without
a restart; resolved values are ``SecretStr`` and errors never carry them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr, model_validator
from pydantic.dataclasses import dataclass as record

from syncd.config.values import RECORD, ConfigPath


@record(frozen=True, slots=True, kw_only=True, config=RECORD)
class SecretRef:
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
