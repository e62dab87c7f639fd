"""Config keys for hostile stores: max_lifetime, verify_interval, file keys too long for a temp name."""

from __future__ import annotations

from typing import Any

import pytest

from syncd.config import ConfigError, load_config


def cfg(defaults: dict[str, Any] | None = None, **cred: Any) -> dict[str, Any]:
    return {
        "defaults": defaults or {},
        "stores": {"local": {"type": "file", "directory": "/tmp/syncd-config-hostile"}},
        "credentials": [
            {
                "name": "calm",
                "client_id": "calm",
                "client_secret": {"env": "X"},
                "targets": [{"store": "local", "key": "calm.json"}],
                **cred,
            }
        ],
    }


def problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config(data=data)
    return {p.path: p.message for p in info.value.problems}


def test_defaults_and_overrides() -> None:
    c = load_config(data=cfg())
    cred = c.credentials[0]
    assert cred.max_lifetime_for(c.defaults) == 86_400.0
    assert cred.verify_interval_for(c.defaults) == "auto"
    c = load_config(data=cfg({"max_lifetime": "1h", "verify_interval": "off"}, verify_interval="30s"))
    cred = c.credentials[0]
    assert cred.max_lifetime_for(c.defaults) == 3600.0
    assert cred.verify_interval_for(c.defaults) == 30.0
    assert c.credentials[0].verify_interval_for(load_config(data=cfg({"verify_interval": "off"})).defaults) == 30.0


@pytest.mark.parametrize(
    ("data", "path", "text"),
    [
        (cfg({"verify_interval": "often"}), "defaults.verify_interval", '"auto"'),
        (cfg({"verify_interval": "0s"}), "defaults.verify_interval", '"off"'),
        (cfg(verify_interval=-1), "credentials[0].verify_interval", "negative"),
        (cfg({"max_lifetime": "0s"}), "defaults.max_lifetime", "at least 1s"),
        (cfg(max_lifetime="0s"), "credentials[0].max_lifetime", "at least 1s"),
    ],
)
def test_bad_values_name_the_key(data: dict[str, Any], path: str, text: str) -> None:
    found = problems(data)
    assert path in found, found
    assert text in found[path]


def test_file_key_too_long_for_its_temp_file() -> None:
    data = cfg()
    data["credentials"][0]["targets"] = [{"store": "local", "key": "k" * 230, "format": "raw"}]
    found = problems(data)
    assert "255-byte" in found["credentials[0].targets[0].key"]


@pytest.mark.parametrize("bad", [["a"], {"k": "v"}, 7])
@pytest.mark.parametrize("field", ["key", "store"])
def test_target_key_or_store_of_the_wrong_type_is_a_named_problem(field: str, bad: Any) -> None:
    """A list or table where a name belongs once crashed the duplicate-target check (unhashable)."""
    data = cfg()
    data["credentials"][0]["targets"] = [{"store": "local", "key": "calm.json", field: bad}] * 2
    found = problems(data)
    assert f"credentials[0].targets[0].{field}" in found, found
