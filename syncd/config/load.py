"""Loading: the root ``Config``, its sources (``SYNCD_`` environment over the TOML file), and ``ConfigError``.

Errors are collected, never raised one at a time: ``load_config`` raises one
``ConfigError`` listing every problem with its key path
(``credentials[2].targets[0].store``) and the reason, and the CLI exits 2.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli
from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from syncd.config.credentials import CredentialConfig, Defaults
from syncd.config.daemon import DaemonConfig, ProbeConfig
from syncd.config.stores import BUILTIN_STORE_TYPES, StoreConfig
from syncd.config.values import _BASE_DIR
from syncd.heap import collector_paused

DEFAULT_CONFIG_FILE = "syncd.toml"
CONFIG_ENV = "SYNCD_CONFIG"

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

    Not pydantic-settings' TomlConfigSettingsSource: ``load_config`` parses with tomli
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
    if kind in {"extra_forbidden", "unexpected_keyword_argument"}:  # a model's word, a record's
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
                from syncd.stores.file.layout import name_length_problem

                fmt = tgt.get("format") if tgt.get("format") in ("json", "raw") else "json"
                problem = name_length_problem(tgt["key"], str(fmt))
                if problem is not None:
                    problems.append(Problem(f"{path}.key", f"{tgt['key'][:40]!r}: {problem}"))
            ident = (store_name, tgt.get("key"))
            if not all(isinstance(part, str) for part in ident):
                continue  # a list or table here is reported by the type checks, with its key path
            if ident in seen_targets:
                problems.append(Problem(path, f"the same target {store_name}:{tgt.get('key')} is listed twice"))
            seen_targets.add(ident)
    # Two credentials writing the same target would overwrite each other's tokens.
    owners: dict[tuple[Any, Any], str] = {}
    for i, cred in enumerate(creds):
        if not isinstance(cred, dict) or not isinstance(cred.get("targets"), list):
            continue
        for j, tgt in enumerate(cred["targets"]):
            if isinstance(tgt, dict) and isinstance(tgt.get("store"), str) and isinstance(tgt.get("key"), str):
                ident = (tgt["store"], tgt["key"])
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
    """The parsed file. tomli, not the standard library's tomllib (the same parser, pure Python):
    its compiled build parses a 10,000-credential file in a quarter of the time (~0.3 s, not ~1.1 s)."""
    try:
        with path.open("rb") as fh:
            return tomli.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            str(path),
            [Problem("", f"file not found: pass -c FILE, set {CONFIG_ENV}, or create ./{DEFAULT_CONFIG_FILE}")],
        ) from None
    except PermissionError:
        raise ConfigError(str(path), [Problem("", f"not readable by uid {os.getuid()}: fix its permissions")]) from None
    except tomli.TOMLDecodeError as exc:
        raise ConfigError(str(path), [Problem("", f"not valid TOML: {exc}")]) from None
    except IsADirectoryError:
        raise ConfigError(str(path), [Problem("", "is a directory, not a TOML file")]) from None


def load_config(path: str | Path | None = None, *, data: Mapping[str, Any] | None = None) -> Config:
    """Parse, validate and cross-check a configuration; raise ``ConfigError`` with every problem."""
    with collector_paused():  # a large file is a lot of long-lived objects (see syncd.heap)
        return _load(path, data)


def _load(path: str | Path | None, data: Mapping[str, Any] | None) -> Config:
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
