"""``syncd probe``'s exporter (syncd.probe): what each judged status publishes, and the [probe] config.

The probe running against real stores, scraped by a real Prometheus, is in
tests/integration/test_prometheus_alerts.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncd.audit import TargetReport, inspect_targets
from syncd.config import ConfigError, load_config
from syncd.probe import STATUSES, ProbeMetrics
from tests.unit.test_cli_inspect import NOW, config, payload

SYNCD = str(Path(sys.executable).parent / "syncd")
IDS = ("calm", "local:calm.json")


def samples(m: ProbeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = m.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(m: ProbeMetrics, name: str, **labels: str) -> float | None:
    return samples(m).get((name, tuple(sorted({"credential": IDS[0], "target": IDS[1], **labels}.items()))))


def report(status: str, **kw: float | None) -> TargetReport:
    return TargetReport(*IDS, status, **kw)  # type: ignore[arg-type]


TOKEN = {"issued_at": NOW - 60, "expires_at": NOW + 240, "refresh_after": NOW + 90}


@pytest.mark.parametrize(
    ("status", "facts", "expiry_kept"),
    [
        ("fresh", TOKEN, True),
        ("stale", TOKEN, True),
        ("expired", {"issued_at": NOW - 400, "expires_at": NOW - 100, "refresh_after": NOW - 250}, True),
        ("missing", {}, False),
        ("unparseable", {}, False),
        ("foreign", TOKEN, False),  # another credential's token: not this one's expiry
        ("unverifiable", {}, False),
        ("error", {}, True),  # unreadable for the probe: the last token read still stands
    ],
)
def test_each_status_publishes_the_right_series(status, facts, expiry_kept):
    m = ProbeMetrics()
    m.apply([report("fresh", **TOKEN)], NOW - 30)
    m.apply([report(status, **facts)], NOW)
    for s in STATUSES:
        assert value(m, "syncd_probe_target_status", status=s) == (1.0 if s == status else 0.0)
    expiry = value(m, "syncd_probe_target_expiry_timestamp_seconds")
    if not expiry_kept:
        assert expiry is None
        assert value(m, "syncd_probe_target_lifetime_seconds") is None
        assert value(m, "syncd_probe_target_refresh_after_timestamp_seconds") is None
    else:
        want = facts or TOKEN
        assert expiry == want["expires_at"]
        assert value(m, "syncd_probe_target_refresh_after_timestamp_seconds") == want["refresh_after"]
        assert value(m, "syncd_probe_target_lifetime_seconds") == want["expires_at"] - want["issued_at"]
    assert value(m, "syncd_probe_read_errors_total") == (1.0 if status == "error" else 0.0)
    assert samples(m)[("syncd_probe_last_run_timestamp_seconds", ())] == NOW


def test_read_errors_count_every_failed_read():
    m = ProbeMetrics()
    m.apply([report("fresh", **TOKEN)], NOW)
    assert value(m, "syncd_probe_read_errors_total") == 0.0  # created at 0: increase() sees the first
    for _ in range(3):
        m.apply([report("error")], NOW)
    assert value(m, "syncd_probe_read_errors_total") == 3.0


async def test_built_on_the_inspect_judgement(tmp_path):
    """What the probe exports for real files is what syncd inspect reports for them."""
    (tmp_path / "calm.json").write_text(payload("calm", NOW - 60).to_json())
    cfg = config(tmp_path, {"calm": "local:calm.json", "gone": "local:gone.json"})
    reports = await inspect_targets(cfg, now=NOW)
    m = ProbeMetrics()
    m.apply(reports, NOW)
    assert value(m, "syncd_probe_target_status", status="fresh") == 1.0
    assert value(m, "syncd_probe_target_expiry_timestamp_seconds") == NOW - 60 + 300
    assert value(m, "syncd_probe_target_refresh_after_timestamp_seconds") == NOW - 60 + 150
    gone = samples(m)[
        ("syncd_probe_target_status", (("credential", "gone"), ("status", "missing"), ("target", "local:gone.json")))
    ]
    assert gone == 1.0
    assert "tok-" not in m.render().decode(), "never a token"


def test_probe_config_defaults_and_errors(tmp_path):
    base = {
        "stores": {"local": {"type": "file", "directory": str(tmp_path)}},
        "credentials": [
            {
                "name": "calm",
                "token_url": "http://127.0.0.1:9/token",
                "client_id": "calm",
                "client_secret": {"env": "UNUSED"},
                "targets": [{"store": "local", "key": "calm.json"}],
            }
        ],
    }
    cfg = load_config(data=base)
    assert cfg.probe.listen == "127.0.0.1:9442" and cfg.probe.interval == 30.0
    assert load_config(data={**base, "probe": {"interval": "5s"}}).probe.interval == 5.0
    for bad, key in (({"interval": "0.5s"}, "probe.interval"), ({"listen": "9441"}, "probe.listen")):
        with pytest.raises(ConfigError) as info:
            load_config(data={**base, "probe": bad})
        assert key in str(info.value)


def test_cli_rejects_bad_options_with_exit_2(tmp_path):
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(
        f'[stores.local]\ntype = "file"\ndirectory = "{tmp_path}"\n\n[[credentials]]\nname = "calm"\n'
        'token_url = "http://127.0.0.1:9/token"\nclient_id = "calm"\nclient_secret = { env = "UNUSED" }\n'
        'targets = [{ store = "local", key = "calm.json" }]\n'
    )
    result = subprocess.run(  # noqa: S603
        [SYNCD, "probe", "-c", str(cfg), "--interval", "0", "--listen", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "--interval" in result.stderr and "--listen" in result.stderr and "host:port" in result.stderr


def test_every_probe_metric_is_documented_with_its_labels():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text(encoding="utf-8")
    m = ProbeMetrics()
    m.apply([report("fresh", **TOKEN)], NOW)
    for metric in m.registry.collect():
        name = metric.name + ("_total" if metric.type == "counter" else "")
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"{name} has no row in docs/operations.md"
        for label in {label for s in metric.samples for label in s.labels}:
            assert f"`{label}`" in row, f"{name}: label {label} is not in its row"


async def test_run_probe_opens_each_store_once_and_closes_it_at_the_end(tmp_path, monkeypatch):
    """A store logs in once for the probe's life, not every round (a Vault login each round piles up tokens)."""
    import asyncio

    import syncd.audit
    from syncd.probe import run_probe

    (tmp_path / "calm.json").write_text(payload("calm", NOW).to_json())
    cfg = config(tmp_path, {"calm": "local:calm.json"})
    created, closed, rounds = [], [], []
    real_create, real_inspect = syncd.audit.create_store, syncd.probe.inspect_targets

    def counting_create(name, scfg):
        store = real_create(name, scfg)
        created.append(name)
        real_close = store.aclose

        async def aclose():
            closed.append(name)
            await real_close()

        store.aclose = aclose
        return store

    async def counting_inspect(*args, **kwargs):
        reports = await real_inspect(*args, **kwargs)
        rounds.append(reports)
        if len(rounds) == 3:
            stop.set()
        return reports

    monkeypatch.setattr(syncd.audit, "create_store", counting_create)
    monkeypatch.setattr(syncd.probe, "inspect_targets", counting_inspect)
    stop = asyncio.Event()
    await asyncio.wait_for(run_probe(cfg, "127.0.0.1", 0, 0.01, stop), timeout=30)
    assert len(rounds) == 3 and all(r[0].status in ("fresh", "expired", "stale") for r in rounds)
    assert created == ["local"] and closed == ["local"]
