"""Configuration: schema, every error at once with its key path, secrets read lazily."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.config import (
    ConfigError,
    SecretRef,
    SecretUnavailableError,
    load_config,
    parse_duration,
    read_service_account,
)

ROOT = Path(__file__).resolve().parents[2]
SYNCD = str(Path(sys.executable).parent / "syncd")

MINIMAL = """
[stores.local]
type = "file"
directory = "out"

[[credentials]]
name = "calm"
client_id = "ACxxxx"
client_secret = { env = "CALM_SECRET" }
targets = [{ store = "local", key = "calm.json" }]
"""


def write(tmp_path: Path, text: str, mode: int = 0o600, name: str = "syncd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


def problems(exc: ConfigError) -> dict[str, str]:
    return {p.path: p.message for p in exc.problems}


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (2.5, 2.5),
        ("30", 30.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        (" 2m 30s ", 150.0),
        ("1d", 86400.0),
    ],
)
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "5x", "m5", "-3s", True, [1], "5m3", "1h 2q"])
def test_bad_durations(value):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


def test_example_config_is_valid():
    cfg = load_config(ROOT / "config.example.toml")
    assert cfg.credentials[0].name == "calm"
    assert {t.label for t in cfg.credentials[0].targets} == {"local:calm.json", "local:calm.token"}
    # relative paths resolve against the file's directory
    assert cfg.stores["local"].directory == ROOT / "demo-out"


def test_minimal_config_and_defaults(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    cred = cfg.credentials[0]
    assert cred.token_url.startswith("https://auth.verygoodsecurity.com/auth/realms/vgs/")
    assert cred.auth_method == "client_secret_post"
    pol = cred.policy(cfg.defaults)
    assert (pol.refresh_at, pol.min_remaining, pol.jitter, pol.retry_min, pol.retry_max, pol.fatal_retry) == (
        0.5,
        30.0,
        0.1,
        1.0,
        60.0,
        300.0,
    )
    assert cfg.daemon.listen == "127.0.0.1:9440" and cfg.daemon.log_format == "json"


def test_credential_overrides_defaults(tmp_path):
    text = MINIMAL.replace('name = "calm"', 'name = "calm"\nrefresh_at = 0.75\nretry_max = "2m"')
    cfg = load_config(write(tmp_path, "[defaults]\njitter = 0.2\n" + text))
    pol = cfg.credentials[0].policy(cfg.defaults)
    assert (pol.refresh_at, pol.retry_max, pol.jitter) == (0.75, 120.0, 0.2)


def test_env_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNCD_DAEMON__LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("SYNCD_DEFAULTS__MIN_REMAINING", "45s")
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.daemon.log_level == "debug"
    assert cfg.defaults.min_remaining == 45.0


def test_unparseable_env_override_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNCD_DAEMON", "x")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, MINIMAL))
    assert "SYNCD_DAEMON" in problems(info.value)["daemon"]


def test_config_file_from_env(tmp_path, monkeypatch):
    path = write(tmp_path, MINIMAL, name="other.toml")
    monkeypatch.setenv("SYNCD_CONFIG", str(path))
    assert load_config().credentials[0].name == "calm"


def test_all_problems_reported_at_once_with_paths(tmp_path):
    text = """
[defaults]
refresh_at = 1.5
jiter = 0.1

[stores.local]
type = "file"
directory = "out"

[stores.v]
type = "vault"
url = "not a url"

[[credentials]]
name = "calm"
client_id = "a"
client_secret = { env = "A" }
targets = [{ store = "local", key = "a" }]

[[credentials]]
name = "calm"
client_id = "b"
targets = [{ store = "local", key = "b" }, { store = "nowhere", key = "c" }]

[[credentials]]
name = "card"
client_id = "c"
client_secret = { env = "C", file = "/x" }
extra_params = { grant_type = "password" }
targets = [{ store = "v", key = "d", slots = 3 }, { store = "local", key = "e", slots = "many" }]
"""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    got = problems(info.value)
    expected = [
        "defaults.refresh_at",
        "defaults.jiter",
        "stores.v.url",
        "credentials[1].name",
        "credentials[1]",
        "credentials[1].targets[1].store",
        "credentials[2].client_secret",
        "credentials[2].extra_params",
        "credentials[2].targets[0].slots",
        "credentials[2].targets[1].slots",
    ]
    for path in expected:
        assert path in got, f"{path} not reported; got {sorted(got)}"
    assert "unknown key" in got["defaults.jiter"]
    assert "duplicate credential name 'calm'" in got["credentials[1].name"]
    assert "client_secret missing" in got["credentials[1]"]
    assert "unknown store 'nowhere'" in got["credentials[1].targets[1].store"]
    assert "aws-secretsmanager stores only" in got["credentials[2].targets[0].slots"]
    assert str(info.value).count("\n  - ") == len(info.value.problems)


def test_unknown_store_type_field_and_bad_listen(tmp_path):
    text = MINIMAL.replace('directory = "out"', 'directory = "out"\ndirectroy = "x"') + '\n[daemon]\nlisten = "9440"\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    got = problems(info.value)
    assert "unknown key" in got["stores.local.directroy"]
    assert "host:port" in got["daemon.listen"]


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ('name = "calm"', 'name = "calm"\nscope = "x"', "credentials[0].scope"),
        ('key = "calm.json" }', 'key = "calm.json", formt = "raw" }', "credentials[0].targets[0].formt"),
        ('{ env = "CALM_SECRET" }', '{ env = "CALM_SECRET", fiel = "/x" }', "credentials[0].client_secret.fiel"),
    ],
)
def test_an_unknown_key_in_a_per_credential_record_is_named(tmp_path, old, new, path):
    """The credential, its targets and its secret references are slotted records, not models:
    an unknown key in any of them is still reported as one, at its key path."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, MINIMAL.replace(old, new)))
    assert problems(info.value) == {path: "unknown key (check the spelling; see config.example.toml for every option)"}


def test_per_credential_records_are_frozen_and_hold_no_dict(tmp_path):
    cred = load_config(write(tmp_path, MINIMAL)).credentials[0]
    for record in (cred, cred.targets[0], cred.client_secret):
        assert not hasattr(record, "__dict__"), type(record).__name__  # slots: ~1 KiB a credential at 100,000
        first = dataclasses.fields(record)[0].name  # type: ignore[arg-type]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, first, "other")


def test_plaintext_secret_needs_private_file(tmp_path):
    text = MINIMAL.replace('{ env = "CALM_SECRET" }', '"plain-value-123456"')
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text, mode=0o644))
    msg = problems(info.value)["credentials[0].client_secret"]
    assert "readable by group/others" in msg and "chmod 600" in msg
    assert "plain-value-123456" not in str(info.value)
    cfg = load_config(write(tmp_path, text, mode=0o600))
    assert cfg.credentials[0].client_secret is not None
    assert cfg.credentials[0].client_secret.get().get_secret_value() == "plain-value-123456"
    assert "plain-value-123456" not in repr(cfg)


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[daemon\nlisten = 1"))
    with pytest.raises(ConfigError, match="no \\[\\[credentials\\]\\]"):
        load_config(write(tmp_path, "[daemon]\n"))


# TOML 1.1 additions, each on a line of an otherwise valid file. Python 3.11's tomllib refuses them, so
# syncd must too: a config it accepts is one every TOML 1.0 tool (and `python -c "import tomllib"`) reads.
TOML_1_1_ONLY = {
    "trailing comma in an inline table": 'extra = { a = "1", }',
    "newline in an inline table": 'extra = {\n  a = "1"\n}',
    "\\e escape": 'extra = "\\e[0m"',
    "\\x escape": 'extra = "\\x41"',
    "time without seconds": "extra = 07:32",
}


@pytest.mark.parametrize("line", TOML_1_1_ONLY.values(), ids=TOML_1_1_ONLY.keys())
def test_the_config_language_is_the_toml_python_reads(tmp_path, line):
    import tomllib

    text = f"[daemon]\n{line}\n"
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads(text)
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, text))


def test_secret_file_is_reread(tmp_path):
    secret_file = tmp_path / "s"
    secret_file.write_text("first-secret\n")
    ref = SecretRef(file=secret_file)
    assert ref.get().get_secret_value() == "first-secret"
    secret_file.write_text("rotated-secret")
    assert ref.get().get_secret_value() == "rotated-secret"
    secret_file.write_text("  \n")
    with pytest.raises(SecretUnavailableError, match="is empty"):
        ref.get()
    secret_file.unlink()
    with pytest.raises(SecretUnavailableError, match="does not exist"):
        ref.get()


def test_secret_env(monkeypatch):
    ref = SecretRef(env="SYNCD_TEST_SECRET")
    monkeypatch.delenv("SYNCD_TEST_SECRET", raising=False)
    with pytest.raises(SecretUnavailableError, match="SYNCD_TEST_SECRET is not set"):
        ref.get()
    monkeypatch.setenv("SYNCD_TEST_SECRET", "from-env")
    assert ref.get().get_secret_value() == "from-env"


SERVICE_ACCOUNT = """
apiVersion: 1.0.0
kind: ServiceAccount
metadata:
  annotations:
    vgs.io/vault-id: tntabc123
data:
  clientId: ACvgs123
  clientSecret: sa-secret-987654321
  name: calm
  scopes:
  - cards:write
  - cards:read
"""


def test_service_account_file(tmp_path):
    sa = tmp_path / "credentials.yaml"
    sa.write_text(SERVICE_ACCOUNT)
    text = MINIMAL.replace(
        'client_id = "ACxxxx"\nclient_secret = { env = "CALM_SECRET" }', 'service_account_file = "credentials.yaml"'
    )
    cfg = load_config(write(tmp_path, text))
    client_id, secret, scopes, vault_id = cfg.credentials[0].resolve_identity()
    assert (client_id, scopes, vault_id) == ("ACvgs123", ("cards:write", "cards:read"), "tntabc123")
    assert secret.get_secret_value() == "sa-secret-987654321"
    assert "sa-secret" not in repr(read_service_account(sa))
    # picked up afresh at the next mint
    sa.write_text(SERVICE_ACCOUNT.replace("sa-secret-987654321", "sa-secret-rotated"))
    assert cfg.credentials[0].resolve_identity()[1].get_secret_value() == "sa-secret-rotated"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Other\n", "not a VGS 'kind: ServiceAccount'"),
        ("kind: ServiceAccount\ndata:\n  clientId: x\n", "data.clientSecret missing"),
        ("kind: ServiceAccount\ndata: [\n", "not valid YAML"),
        ("kind: ServiceAccount\ndata:\n  clientId: x\n  clientSecret: y\n  scopes: 3\n", "data.scopes"),
    ],
)
def test_service_account_errors(tmp_path, text, message):
    sa = tmp_path / "sa.yaml"
    sa.write_text(text)
    with pytest.raises(SecretUnavailableError, match=message) as info:
        read_service_account(sa)
    assert str(sa) in str(info.value)


def test_service_account_excludes_client_id(tmp_path):
    text = MINIMAL.replace('client_secret = { env = "CALM_SECRET" }', 'service_account_file = "x.yaml"')
    with pytest.raises(ConfigError, match="either service_account_file or client_id"):
        load_config(write(tmp_path, text))


def test_check_cli_three_mistakes_exit_2(tmp_path):
    """`syncd check` on a config with three different mistakes exits 2 and names all three."""
    text = MINIMAL.replace('name = "calm"', 'name = "calm"\nrefresh_at = 1.2\nscope = ["a"]').replace(
        'store = "local"', 'store = "locl"'
    )
    proc = subprocess.run(
        [SYNCD, "check", "-c", str(write(tmp_path, text))], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "credentials[0].refresh_at" in proc.stderr
    assert "credentials[0].scope: unknown key" in proc.stderr
    assert "credentials[0].targets[0].store: unknown store 'locl'" in proc.stderr
    assert "3 configuration problems" in proc.stderr


def test_check_cli_example_exit_0():
    proc = subprocess.run(
        [SYNCD, "check", "-c", str(ROOT / "config.example.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "credential calm" in proc.stdout and "writes/day" in proc.stdout
    assert "demo-secret" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("https://user:url-pass-123456@idp.example:abc/token", "is not a valid URL: Invalid port"),
        ("https://[::1/realms/x/token", "is not a valid URL"),
        ("ftp://user:url-pass-123456@idp.example/token", "is not an http(s) URL"),
    ],
)
def test_a_token_url_no_mint_could_use_is_refused_without_its_credentials(tmp_path, url, said):
    """Refused at load (exit 2, key path named), not at each mint; the message never quotes userinfo."""
    text = MINIMAL.replace('client_id = "ACxxxx"', f'client_id = "ACxxxx"\ntoken_url = "{url}"')
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = problems(info.value)["credentials[0].token_url"]
    assert said in message and "url-pass-123456" not in str(info.value)


def test_a_token_url_is_checked_once_per_distinct_url_and_a_refusal_is_not_remembered(tmp_path, monkeypatch):
    """Credentials naming one endpoint share one checked, interned string; a bad URL is refused
    at every load (the cache keeps only what passed), so fixing it is enough to load."""
    from syncd.config import credentials

    parsed: list[str] = []
    real_url = credentials.httpx.URL

    def counting_url(url: str) -> object:
        parsed.append(url)
        return real_url(url)

    monkeypatch.setattr(credentials.httpx, "URL", counting_url)
    credentials.checked_token_url.cache_clear()
    url = "https://idp.example/realms/shared/token"
    text = MINIMAL + "".join(
        f'\n[[credentials]]\nname = "c{i}"\nclient_id = "c{i}"\nclient_secret = "s-{i}"\ntoken_url = "{url}"\n'
        f'targets = [{{ store = "local", key = "c{i}.json" }}]\n'
        for i in range(3)
    )
    config = load_config(write(tmp_path, text))
    shared = [c.token_url for c in config.credentials if c.name != "calm"]
    assert parsed.count(url) == 1 and shared == [url] * 3
    assert all(u is shared[0] for u in shared)

    bad = MINIMAL.replace('client_id = "ACxxxx"', 'client_id = "ACxxxx"\ntoken_url = "https://idp.example:abc/token"')
    for _ in range(2):
        with pytest.raises(ConfigError) as info:
            load_config(write(tmp_path, bad))
        assert "is not a valid URL" in problems(info.value)["credentials[0].token_url"]
    assert parsed.count("https://idp.example:abc/token") == 2
