"""The chart's alert rules in a real Prometheus, scraping a real `syncd run`.

Debian's `prometheus` binary scrapes the daemon every second and evaluates the rules the chart
renders (default thresholds, which are fractions of each token's lifetime; only `lookback` and
`absent.after` shortened through chart values). The IdP is the real oidc-provider issuing
40-second tokens (refresh_at 0.35 in the daemon's config). Through Prometheus's own API the test
shows, in one run:

1. a clean run and a clean restart fire nothing;
2. a revoked credential (the client removed from the IdP) fires SyncdRotationFailing for that
   credential only; a store refusing writes (its directory replaced by a file) fires
   SyncdTargetStale for that target only;
3. a killed daemon fires SyncdAbsent;

each page with at least a quarter of the lifetime (10 s) left on the stored token a consumer
reads. The measured lead times are printed (pytest -s) for docs/operations.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from syncd.payload import TokenPayload
from tests.alert_rules import ALERT_NAMES, NAMESPACE, render_rule_groups
from tests.conftest import OIDC_CLIENTS
from tests.helpers import SYNCD, SyncdProcess, wait_for
from tests.peers.prometheus import PrometheusServer
from tests.peers.servers import OidcServer, free_port

pytestmark = pytest.mark.integration

LIFETIME = 40
LEAD = LIFETIME / 4  # every page leaves a quarter of the lifetime
JOB = "syncd"  # the chart's default selector for release "syncd": job="syncd",namespace="payments"
CLIENTS = {c.client_id: c for c in OIDC_CLIENTS if c.client_id in ("calm", "card", "extra1")}
TARGETS = {
    ("calm", "local:calm.json"): "local/calm.json",
    ("card", "local:card.json"): "local/card.json",
    ("card", "flaky:card.json"): "flaky/card.json",
    ("extra1", "local:extra1.json"): "local/extra1.json",
}


def daemon_config(idp: OidcServer, out: Path, port: int) -> str:
    creds = []
    for name, client in CLIENTS.items():
        targets = ", ".join(
            f'{{ store = "{t.split(":")[0]}", key = "{t.split(":")[1]}" }}' for (c, t) in TARGETS if c == name
        )
        creds.append(
            f'[[credentials]]\nname = "{name}"\ntoken_url = "{idp.token_url}"\nclient_id = "{client.client_id}"\n'
            f'client_secret = {{ env = "SECRET_{name.upper()}" }}\ntargets = [{targets}]\n'
        )
    return f"""
[daemon]
listen = "127.0.0.1:{port}"
log_format = "json"
drain_timeout = "2s"

[defaults]
refresh_at = 0.35
jitter = 0.1
min_remaining = "2s"
retry_min = "0.5s"
retry_max = "2s"
fatal_retry = "3s"
token_lifetime = "{LIFETIME}s"

[stores.local]
type = "file"
directory = "{out / "local"}"

[stores.flaky]
type = "file"
directory = "{out / "flaky"}"

""" + "\n".join(creds)


def stored(path: Path) -> TokenPayload:
    return TokenPayload.from_json(path.read_text(encoding="utf-8"), source=str(path))


def key(alert: dict[str, Any]) -> tuple[str, str, str]:
    labels = alert["labels"]
    return (labels["alertname"], labels.get("credential", ""), labels.get("target", ""))


def active_at(alert: dict[str, Any]) -> float:
    return datetime.fromisoformat(alert["activeAt"].replace("Z", "+00:00")).timestamp()


def watch(prom: PrometheusServer, want: set[tuple[str, str, str]], timeout: float) -> dict[tuple[str, str, str], Any]:
    """Poll /api/v1/alerts until every alert in `want` fires; every alert seen meanwhile."""
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}

    def done() -> bool:
        for alert in prom.alerts():
            seen.setdefault(key(alert), alert)
            if alert["state"] == "firing":
                seen[key(alert)] = alert
        return all(k in seen and seen[k]["state"] == "firing" for k in want)

    try:
        wait_for(done, timeout, interval=0.25, what=f"alerts {sorted(want)}")
    except AssertionError:
        raise AssertionError(f"wanted {sorted(want)}, active: {json.dumps(list(seen.values()), indent=1)}") from None
    return seen


def test_alerts_fire_for_their_fault_only_with_a_quarter_of_the_lifetime_left(peers_installed, tmp_path):
    out = tmp_path / "out"
    env = {f"SECRET_{name.upper()}": c.client_secret for name, c in CLIENTS.items()}
    rules = render_rule_groups(
        {"prometheusRule": {"lookback": "10m", "alerts": {"absent": {"enabled": True, "after": "10s"}}}}
    )
    assert {r["alert"] for g in rules["groups"] for r in g["rules"]} == set(ALERT_NAMES)
    port = free_port()
    idp = OidcServer(ttl=LIFETIME, clients=list(CLIENTS.values()))
    idp.start()
    prom = PrometheusServer(rules, {JOB: [f"127.0.0.1:{port}"]}, namespace=NAMESPACE)
    config = daemon_config(idp, out, port)
    first = SyncdProcess(config, tmp_path, env=env, name="first")
    first.port = port
    second = SyncdProcess(config, tmp_path, env=env, name="second")
    second.port = port
    try:
        first.start()
        first.wait_http()
        wait_for(lambda: all((out / p).exists() for p in TARGETS.values()), 20, what="first writes")
        prom.start()
        wait_for(
            lambda: len(prom.query(f'syncd_target_token_expiry_timestamp_seconds{{job="{JOB}"}}')) == len(TARGETS),
            20,
            what="the first scrape",
        )

        # 1. Clean run, a clean restart (SIGTERM, start: the stored tokens are adopted), and a
        #    refresh of every target afterwards: nothing fires.
        clean_from = time.time()
        time.sleep(5)
        assert first.stop() == 0
        restarted = time.time()
        second.start()
        second.wait_http()
        wait_for(
            lambda: all(stored(out / p).issued_at > restarted for p in TARGETS.values()),
            LIFETIME,
            interval=0.2,
            what="every target refreshed after the restart",
        )
        time.sleep(2)  # two more evaluations
        window = int(time.time() - clean_from)
        assert prom.query(f"count_over_time(ALERTS[{window}s])") == [], "an alert was pending or fired"
        assert all(health == "ok" for _, health, _ in prom.rules_health()), prom.rules_health()
        assert second.events("adopted"), "the restart did not adopt the stored tokens"

        # 2. Faults: calm is revoked at the IdP (real oidc-provider, client removed); the flaky
        #    store refuses writes (its directory replaced by a regular file: ENOTDIR).
        idp.clients = [c for c in idp.clients if c.client_id != "calm"]
        idp.clients_file.write_text(json.dumps([c.as_json() for c in idp.clients]), encoding="utf-8")
        idp.restart()
        (out / "flaky").rename(out / "flaky.down")
        (out / "flaky").write_text("not a directory\n", encoding="utf-8")
        want = {
            ("SyncdRotationFailing", "calm", ""),
            ("SyncdTargetStale", "calm", "local:calm.json"),
            ("SyncdTargetStale", "card", "flaky:card.json"),
        }
        seen = watch(prom, want, timeout=LIFETIME + 15)
        # The stored tokens a consumer reads, at the moment each page went active.
        expiry = {
            ("SyncdRotationFailing", "calm", ""): stored(out / "local" / "calm.json").expires_at,
            ("SyncdTargetStale", "calm", "local:calm.json"): stored(out / "local" / "calm.json").expires_at,
            ("SyncdTargetStale", "card", "flaky:card.json"): stored(out / "flaky.down" / "card.json").expires_at,
        }
        leads = {k: expiry[k] - active_at(seen[k]) for k in want}
        print(
            "\nlead times (s) before the stored token expires:",
            {"/".join(filter(None, k)): round(v, 1) for k, v in leads.items()},
        )
        for k, lead in leads.items():
            assert lead >= LEAD, f"{k} fired {lead:.1f}s before expiry, less than a quarter of {LIFETIME}s"
        # Only the faulty credential and target page (the last-resort expiry alert may follow
        # for them); nothing about card's healthy target, extra1, or the daemon.
        allowed = want | {
            ("SyncdTokenExpiringSoon", "calm", "local:calm.json"),
            ("SyncdTokenExpiringSoon", "card", "flaky:card.json"),
        }
        assert set(seen) <= allowed, sorted(set(seen) - allowed)
        for alert in seen.values():
            assert alert["labels"]["namespace"] == NAMESPACE and alert["labels"]["job"] == JOB, alert["labels"]
            assert alert["annotations"]["runbook_url"].startswith("docs/operations.md#")

        # Recovery: the client is back, the directory too; every alert resolves.
        idp.clients = list(CLIENTS.values())
        idp.clients_file.write_text(json.dumps([c.as_json() for c in idp.clients]), encoding="utf-8")
        idp.restart()
        (out / "flaky").unlink()
        (out / "flaky.down").rename(out / "flaky")
        wait_for(lambda: prom.alerts() == [], 30, interval=0.25, what="every alert resolved")

        # 3. The daemon dies (SIGKILL): SyncdAbsent, with namespace and job, before any stored
        #    token is within a quarter of its lifetime from expiring.
        assert second.proc is not None
        second.proc.kill()
        second.proc.wait()
        killed = time.time()
        first_expiry = min(stored(out / p).expires_at for p in TARGETS.values())
        seen = watch(prom, {("SyncdAbsent", "", "")}, timeout=LIFETIME)
        absent = seen[("SyncdAbsent", "", "")]
        assert absent["labels"] == {
            "alertname": "SyncdAbsent",
            "namespace": NAMESPACE,
            "job": JOB,
            "severity": "critical",
        }
        lead = first_expiry - active_at(absent)
        print(
            f"SyncdAbsent: {lead:.1f}s before the first stored token expires, {active_at(absent) - killed:.1f}s after the kill"
        )
        assert lead >= LEAD, f"SyncdAbsent fired {lead:.1f}s before the first stored token expires"
    finally:
        for d in (first, second):
            if d.proc is not None and d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()
        prom.cleanup()
        idp.cleanup()
    for d in (first, second):
        for secret in env.values():
            assert secret not in d.log_text()


def test_probe_series_carry_the_stored_token_alerts_once_the_daemon_is_dead(peers_installed, tmp_path):
    """With probe.enabled the rules read `syncd probe`'s series: a dead daemon's stored tokens still page.

    The probe runs as its own process with the same config and no client secret in its
    environment (it never needs one). After the daemon is killed, SyncdTargetStale fires from
    the probe's series (job syncd-probe) for every target, with a quarter of the lifetime left.
    """
    out = tmp_path / "out"
    env = {f"SECRET_{name.upper()}": c.client_secret for name, c in CLIENTS.items()}
    rules = render_rule_groups(
        {
            "probe": {"enabled": True},
            "prometheusRule": {"lookback": "10m", "alerts": {"absent": {"enabled": True, "after": "10s"}}},
        }
    )
    port, probe_port = free_port(), free_port()
    idp = OidcServer(ttl=LIFETIME, clients=list(CLIENTS.values()))
    idp.start()
    prom = PrometheusServer(
        rules, {JOB: [f"127.0.0.1:{port}"], f"{JOB}-probe": [f"127.0.0.1:{probe_port}"]}, namespace=NAMESPACE
    )
    config = daemon_config(idp, out, port)
    daemon = SyncdProcess(config, tmp_path, env=env, name="daemon")
    daemon.port = port
    probe_log = (tmp_path / "probe.log").open("wb")
    probe_env = {k: v for k, v in os.environ.items() if not k.startswith("SECRET_")}
    probe: subprocess.Popen[bytes] | None = None
    try:
        daemon.start()
        daemon.wait_http()
        wait_for(lambda: all((out / p).exists() for p in TARGETS.values()), 20, what="first writes")
        probe = subprocess.Popen(  # noqa: S603
            [SYNCD, "probe", "-c", str(daemon.config_path), "--listen", f"127.0.0.1:{probe_port}", "--interval", "1"],
            stdout=probe_log,
            stderr=subprocess.STDOUT,
            env=probe_env,
        )
        prom.start()
        probe_expiry = 'syncd_probe_target_expiry_timestamp_seconds{job="syncd-probe"}'
        wait_for(lambda: len(prom.query(probe_expiry)) == len(TARGETS), 30, what="the probe's first scrape")
        # The probe reports what the store holds.
        for sample in prom.query(probe_expiry):
            labels = sample["metric"]
            path = out / TARGETS[(labels["credential"], labels["target"])]
            assert (
                abs(float(sample["value"][1]) - stored(path).expires_at) < 0.01
                or stored(path).issued_at > time.time() - 3
            )
        # A brand-new Prometheus may evaluate SyncdAbsent's "nothing scraped for lookback"
        # branch once before its first scrape: wait for that to clear, then nothing fires.
        wait_for(lambda: prom.alerts() == [], 10, interval=0.25, what="no alert once scraped")
        time.sleep(3)
        assert prom.alerts() == []

        daemon.signal(9)  # SIGKILL: no drain, no last write
        assert daemon.proc is not None
        daemon.proc.wait()
        first_expiry = {k: stored(out / p).expires_at for k, p in TARGETS.items()}
        want = {("SyncdTargetStale", c, t) for (c, t) in TARGETS} | {("SyncdAbsent", "", "")}
        seen = watch(prom, want, timeout=LIFETIME + 10)
        for c, t in TARGETS:
            alert = seen[("SyncdTargetStale", c, t)]
            assert alert["labels"]["job"] == f"{JOB}-probe" and alert["labels"]["namespace"] == NAMESPACE
            lead = first_expiry[(c, t)] - active_at(alert)
            print(f"SyncdTargetStale {c}/{t} from the probe: {lead:.1f}s before expiry")
            assert lead >= LEAD, f"{c}/{t}: paged {lead:.1f}s before expiry"
        lead = min(first_expiry.values()) - active_at(seen[("SyncdAbsent", "", "")])
        assert lead >= LEAD, f"SyncdAbsent paged {lead:.1f}s before the first stored token expires"
    finally:
        if probe is not None:
            probe.terminate()
            assert probe.wait(timeout=10) == 0, (tmp_path / "probe.log").read_text()
        probe_log.close()
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()
        prom.cleanup()
        idp.cleanup()
    probe_text = (tmp_path / "probe.log").read_text()
    assert '"event": "probe_started"' in probe_text and '"event": "probe_stopped"' in probe_text
    for secret in env.values():
        assert secret not in probe_text and secret not in daemon.log_text()
