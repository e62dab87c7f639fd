"""[daemon] replicas, replica, takeover_delay: parsing, defaults from the hostname, and `syncd check`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from syncd.config import ConfigError, load_config

SYNCD = str(Path(sys.executable).parent / "syncd")

BASE = """
[stores.local]
type = "file"
directory = "out"

[stores.ssm]
type = "aws-ssm"
region = "us-east-1"

[stores.sm]
type = "aws-secretsmanager"
region = "us-east-1"

[[credentials]]
name = "calm"
client_id = "ACxxxx"
client_secret = { env = "CALM_SECRET" }
token_lifetime = "20m"
refresh_at = 0.9
jitter = 0.05
targets = [{ store = "ssm", key = "/calm" }, { store = "sm", key = "calm" }, { store = "local", key = "calm.json" }]

[[credentials]]
name = "podlocal"
client_id = "ACxxxx"
client_secret = { env = "CALM_SECRET" }
targets = [{ store = "local", key = "podlocal.json" }]
"""


def _write(tmp_path: Path, daemon: str) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(f"[daemon]\n{daemon}\n{BASE}")
    path.chmod(0o600)
    return path


def _load(tmp_path: Path, daemon: str) -> Any:
    return load_config(_write(tmp_path, daemon))


def _problems(tmp_path: Path, daemon: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, daemon)
    return {p.path: p.message for p in info.value.problems}


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "syncd-5d8f6c-24567")  # a Deployment pod
    daemon = _load(tmp_path, "").daemon
    assert (daemon.replicas, daemon.replica, daemon.takeover_delay) == (1, 0, "auto")


@pytest.mark.parametrize(
    ("daemon", "hostname", "expected"),
    [
        ("replicas = 3", "syncd-2", (3, 2, "auto")),
        ("replicas = 3", "syncd", (3, 0, "auto")),
        ('replicas = 3\nreplica = 1\ntakeover_delay = "5s"', "syncd-2", (3, 1, 5.0)),
        ('replicas = 2\ntakeover_delay = "1m30s"', "syncd-1.syncd-headless.ns.svc", (2, 1, 90.0)),
        ("replicas = 2\ntakeover_delay = 7", "x", (2, 0, 7.0)),
        ('replicas = 2\ntakeover_delay = "AUTO"', "x", (2, 0, "auto")),
    ],
)
def test_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, daemon: str, hostname: str, expected: tuple[Any, ...]
) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: hostname)
    d = _load(tmp_path, daemon).daemon
    assert (d.replicas, d.replica, d.takeover_delay) == expected


def test_replica_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "syncd-0")
    monkeypatch.setenv("SYNCD_DAEMON__REPLICA", "2")
    monkeypatch.setenv("SYNCD_DAEMON__REPLICAS", "3")
    d = _load(tmp_path, "").daemon
    assert (d.replicas, d.replica) == (3, 2)


@pytest.mark.parametrize(
    ("daemon", "hostname", "key", "words"),
    [
        ("replicas = 3\nreplica = 3", "x", "daemon.replica", "ordinal 3 (given) is not below replicas = 3"),
        ("replica = 1", "x", "daemon.replica", "is not below replicas = 1"),
        ("replicas = 3", "syncd-4", "daemon.replica", "taken from the hostname 'syncd-4'"),
        ("replicas = 3\nreplica = -1", "x", "daemon.replica", "greater than or equal to 0"),
        ("replicas = 0", "x", "daemon.replicas", "greater than or equal to 1"),
        ('replicas = "many"', "x", "daemon.replicas", "valid integer"),
        ('takeover_delay = "0s"', "x", "daemon.takeover_delay", "above 0"),
        ("takeover_delay = 0", "x", "daemon.takeover_delay", "above 0"),
        ('takeover_delay = "nan"', "x", "daemon.takeover_delay", "not a number"),
        ('takeover_delay = "inf"', "x", "daemon.takeover_delay", "3650d"),
        ("takeover_delay = inf", "x", "daemon.takeover_delay", "3650d"),
        ('takeover_delay = "-5s"', "x", "daemon.takeover_delay", "negative"),
        ('takeover_delay = "soon"', "x", "daemon.takeover_delay", '"auto"'),
    ],
)
def test_bad_values_name_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, daemon: str, hostname: str, key: str, words: str
) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: hostname)
    problems = _problems(tmp_path, daemon)
    assert key in problems, problems
    assert words in problems[key]


def _check(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYNCD, "check", "--offline", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "400", **env},
    )


def test_check_reports_the_plan_per_replica_count(tmp_path: Path) -> None:
    # refresh_at = 0.9 (one Secrets Manager secret) leaves 18 s per rank before the deadline.
    proc = _check(_write(tmp_path, 'replicas = 3\nreplica = 1\ntakeover_delay = "15s"'))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "this is replica 1 of 3; takeover_delay 15s" in out
    rows = {line.split("replica")[0].strip(): line for line in out.splitlines() if "follower reads/day" in line}
    assert set(rows) == {"1", "2", "3"}, out
    # Shared writes and Secrets Manager versions do not grow with N; the pod-local ones do.
    versions = {n: row.split("per secret ")[1] for n, row in rows.items()}
    assert len(set(versions.values())) == 1 and int(versions["1"]) <= 90
    assert "follower reads/day 0," in rows["1"] and "follower reads/day 0," not in rows["3"]
    assert "info: daemon.replicas: 'podlocal' writes only to pod-local targets" in out


def test_check_refuses_a_takeover_delay_past_the_deadline(tmp_path: Path) -> None:
    proc = _check(_write(tmp_path, "replicas = 3\nreplica = 0"))  # auto: 60 s per rank, 18 s fit
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error: daemon.takeover_delay:" in proc.stdout
    assert "'calm'" in proc.stdout and "takeover_delay to at most 18s" in proc.stdout
    assert "syncd would refuse to start" in proc.stderr


def test_check_refuses_an_ordinal_out_of_range(tmp_path: Path) -> None:
    proc = _check(_write(tmp_path, "replicas = 2"), SYNCD_DAEMON__REPLICA="2")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "daemon.replica: ordinal 2 (given) is not below replicas = 2" in proc.stderr


def test_check_with_one_replica_prints_no_replica_section(tmp_path: Path) -> None:
    proc = _check(_write(tmp_path, ""))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "follower reads/day" not in proc.stdout and "daemon.replicas" not in proc.stdout


def test_run_refuses_a_takeover_delay_past_the_deadline(tmp_path: Path) -> None:
    """``syncd run`` refuses the plan ``syncd check`` refuses (exit 2), before serving anything."""
    path = _write(tmp_path, 'replicas = 3\nreplica = 0\nlisten = "127.0.0.1:0"')
    proc = subprocess.run(
        [SYNCD, "run", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "400", "CALM_SECRET": "calm-secret-value"},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "daemon.takeover_delay" in proc.stderr and "takeover_delay to at most 18s" in proc.stderr
