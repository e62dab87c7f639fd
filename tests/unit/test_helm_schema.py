"""helm/syncd/values.schema.json against syncd's own config models, without Helm.

The chart's `config` values mirror syncd.toml key for key, and the schema forbids unknown
keys. These tests fail when syncd gains, renames or drops a config key (or an enum value)
and the chart schema was not updated with it, so the chart can never render a TOML that
syncd rejects, nor refuse a key syncd accepts.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from syncd import config as cfg

CHART = Path(__file__).resolve().parents[2] / "helm" / "syncd"
SCHEMA = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))

# Keys of syncd.toml the chart sets itself, so users cannot.
# replicas comes from replicaCount and replica from each StatefulSet pod's name (docs/ha.md).
CHART_OWNED = {"DaemonConfig": {"listen", "replicas", "replica"}, "ProbeConfig": {"listen"}}


def ref(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/definitions/")
        schema = SCHEMA["definitions"][name]
    return schema


def config_schema(*path: str) -> dict[str, Any]:
    node = SCHEMA["properties"]["config"]
    for part in path:
        node = ref(node)["properties"][part]
    return ref(node)


def fields(model: type[Any]) -> set[str]:
    # __pydantic_fields__: a model's and a pydantic dataclass's (the per-credential records) alike
    return set(model.__pydantic_fields__) - CHART_OWNED.get(model.__name__, set())


def literal_values(model: type[Any], name: str) -> set[Any]:
    annotation = model.__pydantic_fields__[name].annotation
    args = typing.get_args(annotation)
    found: set[Any] = set()
    for arg in args or (annotation,):
        if typing.get_origin(arg) is typing.Literal:
            found.update(typing.get_args(arg))
    if typing.get_origin(annotation) is typing.Literal:
        found.update(args)
    return found


def deep_merge(base: Any, override: Any) -> Any:
    """Helm's coalescing, enough for these files: maps merge, a null deletes, anything else replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = deep_merge(base.get(key), value)
        return out
    return override


def store_schema(store_type: str) -> dict[str, Any]:
    for rule in SCHEMA["definitions"]["store"]["allOf"]:
        if rule["if"]["properties"]["type"]["const"] == store_type:
            return ref(rule["then"])
    raise KeyError(store_type)


@pytest.mark.parametrize(
    ("path", "model"),
    [
        (("daemon",), cfg.DaemonConfig),
        (("defaults",), cfg.Defaults),
        (("probe",), cfg.ProbeConfig),
    ],
)
def test_sections_match_the_models(path, model):
    schema = config_schema(*path)
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == fields(model)


def test_credential_and_target_match_the_models():
    cred = ref(config_schema("credentials")["items"])
    assert cred["additionalProperties"] is False
    assert set(cred["properties"]) == fields(cfg.CredentialConfig)
    target = ref(cred["properties"]["targets"]["items"])
    assert set(target["properties"]) == fields(cfg.TargetConfig)
    assert set(target["properties"]["format"]["enum"]) == literal_values(cfg.TargetConfig, "format")
    assert set(cred["properties"]["auth_method"]["enum"]) == literal_values(cfg.CredentialConfig, "auth_method")


@pytest.mark.parametrize(
    ("store_type", "model"),
    [
        ("file", cfg.FileStoreConfig),
        ("vault", cfg.VaultStoreConfig),
        ("aws-secretsmanager", cfg.AwsSecretsManagerStoreConfig),
        ("aws-ssm", cfg.AwsSsmStoreConfig),
    ],
)
def test_store_types_match_the_models(store_type, model):
    schema = store_schema(store_type)
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == fields(model)
    assert schema["properties"]["type"]["const"] == store_type


def test_every_builtin_store_type_has_a_schema():
    covered = {rule["if"]["properties"]["type"]["const"] for rule in SCHEMA["definitions"]["store"]["allOf"]}
    assert covered == set(cfg.BUILTIN_STORE_TYPES)


def test_vault_auth_methods_match_the_models():
    auth = store_schema("vault")["properties"]["auth"]
    models: dict[str, type[BaseModel]] = {
        "token": cfg.VaultTokenAuth,
        "approle": cfg.VaultAppRoleAuth,
        "kubernetes": cfg.VaultKubernetesAuth,
        "jwt": cfg.VaultJwtAuth,
    }
    assert set(auth["properties"]["method"]["enum"]) == set(models)
    for rule in auth["allOf"]:
        method = rule["if"]["properties"]["method"]["const"]
        assert set(rule["then"]["properties"]) == fields(models[method]), method


def test_enums_match_the_models():
    daemon = config_schema("daemon")["properties"]
    assert set(daemon["log_format"]["enum"]) == literal_values(cfg.DaemonConfig, "log_format")
    assert set(daemon["log_level"]["enum"]) == literal_values(cfg.DaemonConfig, "log_level")
    assert set(store_schema("vault")["properties"]["kv_version"]["enum"]) == literal_values(
        cfg.VaultStoreConfig, "kv_version"
    )
    assert set(store_schema("aws-ssm")["properties"]["tier"]["enum"]) == literal_values(cfg.AwsSsmStoreConfig, "tier")


def validator() -> jsonschema.Draft7Validator:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    return jsonschema.Draft7Validator(SCHEMA)


def test_chart_defaults_validate():
    validator().validate(DEFAULTS)


@pytest.mark.parametrize("values_file", sorted((CHART / "ci").glob("*-values.yaml")), ids=lambda p: p.stem)
def test_ci_value_sets_validate(values_file):
    merged = deep_merge(DEFAULTS, yaml.safe_load(values_file.read_text(encoding="utf-8")))
    validator().validate(merged)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (30, True),
        (2.5, True),
        ("30", True),
        ("30s", True),
        ("250ms", True),
        ("1h30m", True),
        ("1d", True),
        ("-1s", False),
        (-1, False),
        ("soon", False),
        ("30 seconds", False),
        (True, False),
    ],
)
def test_duration_definition_agrees_with_syncd(value, ok):
    schema_ok = jsonschema.Draft7Validator({**SCHEMA["definitions"]["duration"]}).is_valid(value)
    try:
        cfg.parse_duration(value)
        syncd_ok = True
    except ValueError:
        syncd_ok = False
    assert schema_ok is ok
    assert syncd_ok is ok


@pytest.mark.parametrize(
    "secret",
    ["hunter2", {"existingSecret": "s"}, {"existingSecret": "s", "key": "k", "file": "/x"}, {"file": "relative"}],
)
def test_secret_reference_rejects_plaintext_and_half_references(secret):
    values = deep_merge(
        DEFAULTS,
        {
            "config": {
                "stores": {"local": {"type": "file", "directory": "/var/run/syncd"}},
                "credentials": [
                    {
                        "name": "c",
                        "client_id": "id",
                        "client_secret": secret,
                        "targets": [{"store": "local", "key": "k"}],
                    }
                ],
            }
        },
    )
    assert not validator().is_valid(values)
