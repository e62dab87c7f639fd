"""`[daemon] mint_timeout`: validated, and `syncd check` warns when it exceeds a quarter of a token lifetime."""

from __future__ import annotations

from typing import Any

import pytest

from syncd.config import ConfigError, load_config
from syncd.engine import plan_findings


def _config(lifetime: str, **daemon: Any):
    return load_config(
        data={
            "daemon": daemon,
            "defaults": {"token_lifetime": lifetime, "min_remaining": "1s"},
            "stores": {"local": {"type": "file", "directory": "/tmp/x"}},
            "credentials": [
                {
                    "name": "calm",
                    "client_id": "x",
                    "client_secret": {"env": "X"},
                    "targets": [{"store": "local", "key": "calm.json"}],
                }
            ],
        }
    )


def test_mint_timeout_default_and_duration_strings() -> None:
    assert _config("5m").daemon.mint_timeout == 10.0
    assert _config("5m", mint_timeout="2500ms").daemon.mint_timeout == 2.5


@pytest.mark.parametrize("bad", [0, "0s", "inf", "nan", -1])
def test_mint_timeout_must_be_finite_and_positive(bad: Any) -> None:
    with pytest.raises(ConfigError) as info:
        _config("5m", mint_timeout=bad)
    assert "daemon.mint_timeout" in str(info.value)


@pytest.mark.parametrize(
    ("lifetime", "mint_timeout", "warned"),
    [
        ("5m", "10s", False),
        ("40s", "10s", False),  # exactly a quarter
        ("20s", "10s", True),
        ("20s", "5s", False),
        ("3s", "10s", True),
    ],
)
def test_check_warns_about_a_mint_timeout_too_long_for_the_lifetime(
    lifetime: str, mint_timeout: str, warned: bool
) -> None:
    findings = [
        f for f in plan_findings(_config(lifetime, mint_timeout=mint_timeout), {}) if "mint_timeout" in f.message
    ]
    assert bool(findings) is warned
    for f in findings:
        assert f.level == "warning" and f.subject == "calm" and f.fix and "mint_timeout" in f.fix
