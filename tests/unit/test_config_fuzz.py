"""No configuration input makes `syncd check` crash: it exits 0 (valid) or 2 (a named problem).

A Hypothesis property puts values of the wrong type or range (NaN, infinities,
negative and huge numbers, duration strings such as "1e400s", booleans, lists,
tables) at random keys of a valid configuration, in the TOML file or as
``SYNCD_...`` environment overrides, and runs `syncd check` in-process.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from syncd.cli import app
from syncd.config import ConfigError, load_config

SECRET = "fuzz-secret-0123456789"  # noqa: S105 - a test value

DURATION_KEYS = (
    "min_remaining",
    "retry_min",
    "retry_max",
    "fatal_retry",
    "lifetime_fallback",
    "min_interval",
    "token_lifetime",
)
FRACTION_KEYS = ("refresh_at", "jitter")

KEYS: tuple[tuple[str, ...], ...] = (
    *(("defaults", k) for k in (*DURATION_KEYS, *FRACTION_KEYS)),
    *(("credentials", 0, k) for k in (*DURATION_KEYS, *FRACTION_KEYS)),
    *(("credentials", 1, k) for k in (*DURATION_KEYS, *FRACTION_KEYS)),
    *(
        ("daemon", k)
        for k in (
            "drain_timeout",
            "http_timeout",
            "connect_timeout",
            "liveness_threshold",
            "max_concurrent_mints",
            "startup_concurrency",
            "listen",
            "log_level",
        )
    ),
    *(("stores", "local", k) for k in ("directory", "mode", "dir_mode", "create_directory", "fsync")),
    *(("stores", "bao", k) for k in ("timeout", "renew_before", "max_versions", "max_workers", "kv_version", "url")),
    *(
        ("stores", "ssm", k)
        for k in ("connect_timeout", "read_timeout", "max_writes_per_second", "max_reads_per_second", "max_attempts")
    ),
    ("credentials", 0, "token_url"),
    ("credentials", 0, "scopes"),
    ("credentials", 0, "client_secret"),
    ("credentials", 0, "targets"),
    ("credentials", 1, "name"),
    ("credentials",),
    ("stores",),
    ("defaults",),
)

ODD_STRINGS = (
    "0s", "-1s", "1e400s", "1e400", "inf", "-inf", "nan", "NaN", "Infinity", "", " ", "0", "-0", "5", "1h30m",
    "250ms", "3650d", "3651d", "99999999999999999999d", "0.0000001s", "1e-400", "5 m", "m5", "0x10", "1_000",
    "true", "0.5", "1", "0.0", "abc", "☃", "\x00", "[/x]", "[bold]", "[/]",
)  # fmt: skip

VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, -1.0, 0.5, 1.0, 1e300, -1e300, 1e-300, math.inf, -math.inf, math.nan]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 1, 2**63 - 1, -(2**63)]),
    st.sampled_from(ODD_STRINGS),
    st.text(max_size=12),
    st.booleans(),
    st.lists(st.integers(-3, 3), max_size=2),
    st.dictionaries(st.sampled_from(["env", "file", "x", "store", "key"]), st.text(max_size=5), max_size=2),
)


def _base(tmp: Path) -> dict[str, Any]:
    return {
        "daemon": {"listen": "127.0.0.1:0"},
        "defaults": {"token_lifetime": "5m"},
        "stores": {
            "local": {"type": "file", "directory": str(tmp / "out")},
            "bao": {"type": "vault", "url": "http://127.0.0.1:1"},
            "ssm": {"type": "aws-ssm", "region": "eu-west-1", "endpoint_url": "http://127.0.0.1:1"},
        },
        "credentials": [
            {
                "name": "calm",
                "token_url": "http://127.0.0.1:1/token",
                "client_id": "calm",
                "client_secret": {"env": "FUZZ_SECRET"},
                "targets": [{"store": "local", "key": "calm.json"}, {"store": "bao", "key": "calm"}],
            },
            {
                "name": "card",
                "token_url": "http://127.0.0.1:1/token",
                "client_id": "card",
                "client_secret": {"env": "FUZZ_SECRET"},
                "targets": [{"store": "ssm", "key": "/vgs/card"}],
            },
        ],
    }


def _put(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    holder: Any = doc
    try:
        for part in path[:-1]:
            holder = holder[part]
        holder[path[-1]] = value
    except (TypeError, KeyError, IndexError):
        pass  # an earlier edit replaced the section this key lives in: nothing to put it in


def _env_name(path: tuple[Any, ...]) -> str:
    return "SYNCD_" + "__".join(str(p).upper() for p in path)


def _env_value(value: Any) -> str:
    if isinstance(value, float | int | bool):
        return str(value).lower() if isinstance(value, bool) else repr(value)
    if isinstance(value, list | dict):
        return re.sub(r"\s+", " ", repr(value)).replace("'", '"')
    return str(value).replace("\x00", "")


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


runner = CliRunner()
# "  - credentials[1].jitter: ..." (schema) or "error: stores.local.directory: ..." (check findings)
KEY_PATH_LINE = re.compile(r"(?m)^\s*(?:- |error: )(?:credentials|defaults|daemon|stores)[\w.\[\]-]*:")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_base_config_is_valid(workdir: Path) -> None:
    """The property below is only meaningful if the unmodified config passes (exit 0)."""
    path = workdir / "base.toml"
    path.write_text(tomli_w.dumps(_base(workdir)))
    path.chmod(0o600)
    with _environ({"FUZZ_SECRET": SECRET, "VAULT_TOKEN": "fuzz-vault-token"}):
        result = runner.invoke(app, ["check", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    toml_edits=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=3),
    env_edits=st.lists(st.tuples(st.sampled_from([k for k in KEYS if "credentials" not in k]), VALUES), max_size=2),
)
def test_check_never_crashes(
    workdir: Path, toml_edits: list[tuple[tuple[Any, ...], Any]], env_edits: list[tuple[tuple[Any, ...], Any]]
) -> None:
    doc = _base(workdir)
    for path, value in toml_edits:
        _put(doc, path, value)
    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError):
        return  # not representable in TOML (a NUL in a key, say): no file can hold it
    path = workdir / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    env = {"FUZZ_SECRET": SECRET, "VAULT_TOKEN": "fuzz-vault-token"}
    env.update({_env_name(p): _env_value(v) for p, v in env_edits})
    with _environ(env):
        result = runner.invoke(app, ["check", "-c", str(path)])
    assert result.exit_code in (0, 2), (
        f"exit {result.exit_code}\n{result.output}\n{result.exception!r}\nTOML:\n{text}\nenv: {env}"
    )
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if result.exit_code == 2:
        # Every refusal names the key it is about, so the operator knows what to fix.
        assert KEY_PATH_LINE.search(result.output), result.output


@pytest.mark.parametrize(
    ("where", "key", "value", "expected"),
    [
        ("credentials", "token_lifetime", "0s", "at least 1s"),
        ("credentials", "token_lifetime", 1e-300, "at least 1s"),  # used to hang `check` (slot planning)
        ("defaults", "max_lifetime", "500ms", "at least 1s"),
        ("credentials", "lifetime_fallback", "0.1s", "at least 1s"),
        ("credentials", "min_remaining", "inf", "longer than the 3650d"),
        ("credentials", "lifetime_fallback", "inf", "longer than the 3650d"),
        ("credentials", "refresh_at", math.nan, "fraction in (0, 1)"),
        ("credentials", "jitter", math.inf, "fraction in [0, 0.5]"),
        ("credentials", "retry_min", "-1s", "cannot be negative"),
        ("credentials", "fatal_retry", "1e400s", "is not a duration"),
        ("credentials", "min_interval", 1e400, "longer than the 3650d"),
        ("credentials", "retry_max", "nan", "not a number of seconds"),
        ("defaults", "retry_min", 0, "above 0s"),
        ("defaults", "jitter", -0.1, "fraction in [0, 0.5]"),
        ("daemon", "http_timeout", "0s", "above 0s"),
        ("daemon", "drain_timeout", -math.inf, "cannot be negative"),
        ("stores.bao", "timeout", math.inf, "longer than the 3650d"),
        ("stores.ssm", "read_timeout", 0, "above 0s"),
    ],
)
def test_bad_duration_or_fraction_names_key_and_range(
    workdir: Path, where: str, key: str, value: Any, expected: str
) -> None:
    doc = _base(workdir)
    if where == "credentials":
        doc["credentials"][1][key] = value
        key_path = f"credentials[1].{key}"
    else:
        _put(doc, (*where.split("."), key), value)
        key_path = f"{where}.{key}"
    with pytest.raises(ConfigError) as info:
        load_config("fuzz.toml", data=doc)
    text = str(info.value)
    assert f"{key_path}: " in text and expected in text, text


def test_override_that_breaks_the_merged_policy_names_the_credential_key(workdir: Path) -> None:
    doc = _base(workdir)
    doc["defaults"]["retry_min"] = "10s"
    doc["credentials"][0]["retry_max"] = "2s"
    with pytest.raises(ConfigError) as info:
        load_config("fuzz.toml", data=doc)
    assert "credentials[0].retry_max: retry_max must be >= retry_min" in str(info.value)


@pytest.mark.parametrize("value", ["[/x]", "[bold]", "[/]"])
def test_markup_in_a_bad_value_is_printed_not_interpreted(workdir: Path, value: str) -> None:
    doc = _base(workdir)
    doc["defaults"]["min_remaining"] = value
    path = workdir / "markup.toml"
    path.write_text(tomli_w.dumps(doc))
    path.chmod(0o600)
    result = runner.invoke(app, ["check", "-c", str(path)])
    assert result.exit_code == 2, repr(result.exception)
    assert f"defaults.min_remaining: {value!r} is not a duration" in result.output
