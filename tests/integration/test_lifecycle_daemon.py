"""``syncd run`` as a real process: the four endpoints while it rotates, SIGHUP reloads, SIGTERM.

Against the real OAuth server (oidc-provider issuing 3 s tokens) with file
targets, so a rotation happens every ~1.5 s and every claim below is checked
against what the IdP, the files and the logs say happened.

Exception: the two SIGTERM drain tests use the in-process ``fake_idp``, because
they need a token endpoint that takes seconds to answer, and oidc-provider
answers at once and cannot be told to be slow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from syncd import __version__
from syncd.payload import TokenPayload, fingerprint, from_rfc3339
from tests.helpers import SYNCD, SyncdProcess, wait_for
from tests.peers.fake_idp import delay, ok
from tests.peers.servers import OidcClient, OidcServer

SECRETS = {"CALM_SECRET": "calm-secret-0123456789", "CARD_SECRET": "card-secret-0123456789"}

Sample = tuple[str, frozenset[tuple[str, str]]]


def M(name: str, **labels: str) -> Sample:
    return name, frozenset(labels.items())


def parse_metrics(text: str) -> dict[Sample, float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


def credential(name: str, token_url: str, targets: list[str]) -> str:
    tlist = ", ".join(targets)
    return f"""
[[credentials]]
name = "{name}"
token_url = "{token_url}"
client_id = "{name}"
client_secret = {{ env = "{name.upper()}_SECRET" }}
scopes = ["cards:read"]
targets = [{tlist}]
"""


def config(out: Path, *creds: str, defaults: str = "") -> str:
    return f"""
[defaults]
min_remaining = "1s"
retry_min = "0.2s"
retry_max = "1s"
token_lifetime = "3s"
{defaults}
[stores.local]
type = "file"
directory = "{out}"
{"".join(creds)}"""


def fingerprint_of(path: Path) -> str | None:
    try:
        return TokenPayload.from_json(path.read_text()).fingerprint
    except (OSError, ValueError):
        return None  # not written yet (or, never with atomic writes, half written)


def rotations(path: Path, n: int, timeout: float = 15.0, also: Any = None) -> set[str]:
    """Wait until ``path`` has held ``n`` distinct tokens from now on; ``also()`` runs on each poll."""
    seen: set[str] = set()

    def enough() -> bool:
        if also is not None:
            also()
        fp = fingerprint_of(path)
        if fp:
            seen.add(fp)
        return len(seen) >= n

    wait_for(enough, timeout, interval=0.1, what=f"{n} tokens in {path.name}")
    return seen


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([SYNCD, *args], capture_output=True, text=True, env=env, timeout=60)


def quiet_snapshot(d: SyncdProcess, idp: OidcServer, clients: dict[str, int]) -> tuple[Any, ...]:
    """/metrics, /status, the IdP's counts and the files, all from one moment between two runs.

    Two identical scrapes around the reads prove no run happened in between (every run
    moves next_refresh and the lateness histogram).
    """

    def take() -> tuple[Any, ...] | None:
        before = d.get("/metrics").text
        status = {c["name"]: c for c in d.get("/status").json()["credentials"]}
        issued = {c: idp.issued(c) - base for c, base in clients.items()}
        files = {p.name: p.read_text() for p in d.workdir.joinpath("out").glob("*.json")}
        after = d.get("/metrics").text
        return (parse_metrics(after), status, issued, files) if before == after else None

    result: tuple[Any, ...] = wait_for(take, 15, interval=0.02, what="a quiet moment between runs")
    return result


def test_rotate_scrape_reload_and_sigterm(oidc_server, tmp_path):
    out = tmp_path / "out"
    url = oidc_server.token_url
    calm_v1 = credential(
        "calm",
        url,
        ['{ store = "local", key = "calm.json" }', '{ store = "local", key = "raw/calm.token", format = "raw" }'],
    )
    base = {"calm": oidc_server.issued("calm"), "card": oidc_server.issued("card")}
    seen_text: list[str] = []  # every endpoint body, checked for tokens at the end
    tokens: set[str] = set()

    def scrape() -> None:
        live, ready, metrics, status = (d.get(p) for p in ("/livez", "/readyz", "/metrics", "/status"))
        assert live.status_code == 200, live.text
        assert ready.status_code == 200, ready.text
        assert metrics.status_code == 200 and status.status_code == 200
        parse_metrics(metrics.text)  # valid exposition format
        seen_text.extend(r.text for r in (live, ready, metrics, status))
        raw = out / "raw" / "calm.token"
        if raw.exists():
            tokens.add(raw.read_text())

    with SyncdProcess(config(out, calm_v1), tmp_path, env=SECRETS) as d:
        d.wait_http()
        wait_for(lambda: fingerprint_of(out / "calm.json"), 10, what="first write")
        wait_for(lambda: d.get("/readyz").status_code == 200, 5, what="/readyz 200")

        # ---- 1. all four endpoints while it rotates
        rotations(out / "calm.json", 3, also=scrape)
        metrics, status, issued, files = quiet_snapshot(d, oidc_server, base)
        calm = status["calm"]
        stored = TokenPayload.from_json(files["calm.json"])
        assert metrics[M("syncd_mints_total", credential="calm", outcome="ok")] == issued["calm"] >= 3
        assert metrics[M("syncd_mints_total", credential="calm", outcome="transient")] == 0
        assert metrics[M("syncd_mints_total", credential="calm", outcome="fatal")] == 0
        assert metrics[M("syncd_mint_duration_seconds_count")] == issued["calm"]
        for target in ("local:calm.json", "local:raw/calm.token"):
            assert metrics[M("syncd_writes_total", credential="calm", target=target, outcome="ok")] == issued["calm"]
            expiry = metrics[M("syncd_target_token_expiry_timestamp_seconds", credential="calm", target=target)]
            assert abs(expiry - stored.expires_at) < 0.002, "the gauge is what the target holds"
        assert metrics[M("syncd_write_duration_seconds_count", store="local")] == 2 * issued["calm"]
        held = metrics[M("syncd_token_expiry_timestamp_seconds", credential="calm")]
        assert abs(held - stored.expires_at) < 0.002 and abs(held - from_rfc3339(calm["expires_at"])) < 0.002
        assert calm["fingerprint"] == stored.fingerprint
        nxt = metrics[M("syncd_next_refresh_timestamp_seconds", credential="calm")]
        assert abs(nxt - from_rfc3339(calm["next_refresh"])) < 0.002
        last = metrics[M("syncd_target_last_success_timestamp_seconds", credential="calm", target="local:calm.json")]
        assert abs(last - from_rfc3339(calm["targets"][0]["last_success"])) < 0.002
        assert metrics[M("syncd_consecutive_failures", credential="calm")] == 0 == calm["consecutive_failures"]
        assert metrics[M("syncd_schedule_lateness_seconds_count")] >= issued["calm"]
        assert metrics[M("syncd_build_info", version=__version__)] == 1
        assert calm["state"] == "ok" and calm["healthy"] is True and calm["last_error"] is None
        assert calm["last_mint"] and calm["targets"][1]["stored_expires_at"]

        table = cli("status", "--url", d.url)
        assert table.returncode == 0, table.stdout + table.stderr
        assert "calm" in table.stdout and "2/2 fresh" in table.stdout and "1 of 1 credentials ok" in table.stdout
        as_json = cli("status", "--url", d.url, "--json")
        assert as_json.returncode == 0 and json.loads(as_json.stdout)["credentials"][0]["name"] == "calm"
        audit = cli("inspect", "-c", str(d.config_path), "--json")
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert {t["status"] for t in json.loads(audit.stdout)["targets"]} <= {"fresh", "stale"}

        # ---- 2. SIGHUP with a credential added: it starts rotating
        card = credential("card", url, ['{ store = "local", key = "card.json" }'])
        d.write_config(config(out, calm_v1, card))
        d.signal(signal.SIGHUP)
        reloaded = wait_for(lambda: d.events("reloaded"), 10, what="reloaded event")[0]
        assert reloaded["added"] == ["card"] and reloaded["removed"] == [] and reloaded["changed"] == []
        rotations(out / "card.json", 2, also=scrape)
        metrics, status, issued, _ = quiet_snapshot(d, oidc_server, base)
        assert metrics[M("syncd_mints_total", credential="card", outcome="ok")] == issued["card"] >= 2
        assert metrics[M("syncd_writes_total", credential="card", target="local:card.json", outcome="ok")] >= 2
        assert status["card"]["state"] == "ok"

        # ---- 3. SIGHUP: card removed, calm changed (a target replaced): rescheduled, series follow
        calm_v3 = credential(
            "calm", url, ['{ store = "local", key = "calm.json" }', '{ store = "local", key = "calm-copy.json" }']
        )
        d.write_config(config(out, calm_v3))
        d.signal(signal.SIGHUP)
        wait_for(lambda: len(d.events("reloaded")) == 2, 10, what="second reloaded event")
        second = d.events("reloaded")[1]
        assert second["removed"] == ["card"] and second["changed"] == ["calm"] and second["added"] == []
        rotations(out / "calm-copy.json", 2, also=scrape)
        card_fp = fingerprint_of(out / "card.json")  # (after a run that was in flight at the reload)
        rotations(out / "calm.json", 2)
        metrics_text = d.get("/metrics").text
        samples = parse_metrics(metrics_text)
        assert not [k for k in samples if ("credential", "card") in k[1]], "card's series are gone"
        assert not [k for k in samples if ("target", "local:raw/calm.token") in k[1]], "the dropped target's too"
        assert samples[M("syncd_writes_total", credential="calm", target="local:calm-copy.json", outcome="ok")] >= 2
        assert [c["name"] for c in d.get("/status").json()["credentials"]] == ["calm"]
        assert fingerprint_of(out / "card.json") == card_fp, "a removed credential is no longer written"

        # ---- 4. SIGHUP with a broken config: rejected, named, and the old config keeps rotating
        d.write_config(config(out, calm_v3, card, defaults="refesh_at = 0.5"))
        d.signal(signal.SIGHUP)
        rejected = wait_for(lambda: d.events("reload_rejected"), 10, what="reload_rejected event")[0]
        assert rejected["level"] == "error" and rejected["action"] == "keeping the running configuration"
        assert any("defaults.refesh_at" in p and "unknown key" in p for p in rejected["problems"]), rejected
        rotations(out / "calm.json", 3, also=scrape)
        rotations(out / "calm-copy.json", 2)
        assert len(d.events("reloaded")) == 2, "nothing was applied"
        assert fingerprint_of(out / "card.json") == card_fp, "card (only in the rejected file) did not start"
        assert d.get("/readyz").status_code == 200

        # ---- 5. SIGTERM: drain and exit 0 within 10 s
        assert d.stop(timeout=10) == 0
        assert d.events("stopped")

    gone = cli("status", "--url", d.url)
    assert gone.returncode == 1 and "cannot reach syncd" in gone.stderr

    # logs: one mint event per token issued, one write event per target write, nothing secret
    mints = [e for e in d.events("mint") if e["credential"] == "calm"]
    assert len(mints) == oidc_server.issued("calm") - base["calm"]
    for e in mints:
        assert e["outcome"] == "ok" and {"fingerprint", "expires_at", "duration"} <= set(e)
    writes = d.events("write")
    assert writes and all(
        {"credential", "target", "fingerprint", "expires_at", "duration", "outcome"} <= set(w) for w in writes
    )
    log = d.log_text()
    for secret in SECRETS.values():
        assert secret not in log and all(secret not in t for t in seen_text)
    assert tokens, "raw token values were collected"
    for token in tokens:
        assert token not in log, "a token value reached the log"
        assert all(token not in t for t in seen_text), "a token value reached an endpoint"
        assert fingerprint(token)  # (the fingerprint is what logs and /status show instead)


def test_idp_outage_livez_stays_readyz_follows_expiry_and_recovers(tmp_path):
    """A dedicated IdP, so stopping it cannot disturb the session-wide one other tests use."""
    idp = OidcServer(ttl=3, clients=[OidcClient("calm", SECRETS["CALM_SECRET"], "cards:read")])
    idp.start()
    out = tmp_path / "out"
    try:
        cfg = config(out, credential("calm", idp.token_url, ['{ store = "local", key = "calm.json" }']))
        with SyncdProcess(cfg, tmp_path, env=SECRETS) as d:
            d.wait_http()
            wait_for(lambda: d.get("/readyz").status_code == 200, 10, what="/readyz 200")
            pid = d.proc.pid if d.proc else None
            idp.stop()

            first_503: dict[str, Any] = {}

            def not_ready() -> bool:
                assert d.get("/livez").status_code == 200, "an IdP outage must not fail /livez"
                r = d.get("/readyz")
                if r.status_code == 503:
                    first_503.update(at=time.time(), body=r.json())
                    return True
                return False

            wait_for(not_ready, 10, interval=0.1, what="/readyz 503 once the stored token expired")
            stored = TokenPayload.from_json((out / "calm.json").read_text())
            assert first_503["at"] >= stored.expires_at - 0.05, "503 only once the stored token expired"
            (entry,) = first_503["body"]["not_ready"]
            assert entry["credential"] == "calm" and entry["target"] == "local:calm.json"
            assert entry["reason"] == "expired" and entry["last_error"]

            status = d.get("/status").json()["credentials"][0]
            assert status["state"] == "expired" and status["healthy"] is False
            assert status["consecutive_failures"] >= 1
            assert status["last_error"]["class"] == "TransientMintError" and status["last_error"]["kind"] == "transient"
            metrics = parse_metrics(d.get("/metrics").text)
            assert metrics[M("syncd_mints_total", credential="calm", outcome="transient")] >= 1
            assert metrics[M("syncd_consecutive_failures", credential="calm")] >= 1
            probe = cli("status", "--url", d.url)
            assert probe.returncode == 1 and "expired" in probe.stdout and "0 of 1 credentials ok" in probe.stdout
            for _ in range(5):
                assert d.get("/livez").status_code == 200
                time.sleep(0.2)

            idp.start()  # same port: the daemon needs no restart to find it again
            wait_for(lambda: d.get("/readyz").status_code == 200, 15, what="/readyz 200 after the IdP returned")
            assert d.proc is not None and d.proc.poll() is None and d.proc.pid == pid
            status = d.get("/status").json()["credentials"][0]
            assert status["state"] == "ok" and status["consecutive_failures"] == 0
            assert cli("status", "--url", d.url).returncode == 0
            assert d.stop() == 0
    finally:
        idp.cleanup()


def drain_config(fake_idp, out: Path, drain: str) -> str:
    return f"""
[daemon]
listen = "127.0.0.1:{{port}}"
log_format = "json"
drain_timeout = "{drain}"
http_timeout = "60s"

[defaults]
token_lifetime = "30s"

[stores.local]
type = "file"
directory = "{out}"
{credential("calm", fake_idp.token_url, ['{ store = "local", key = "calm.json" }'])}"""


def test_sigterm_during_a_slow_mint_finishes_the_run_and_exits_0(fake_idp, tmp_path):
    """SIGTERM while a mint is in flight: the run finishes (mint and write), then exit 0.

    Uses the in-process fake IdP: the mint must still be in flight when the signal
    arrives, so the token endpoint answers after 2 s, which the real server cannot do.
    """
    fake_idp.script([delay(2.0, ok(ttl=30))])
    fake_idp.default = ok(ttl=30)
    out = tmp_path / "out"
    with SyncdProcess(drain_config(fake_idp, out, "10s"), tmp_path, env=SECRETS) as d:
        d.wait_http()
        fake_idp.wait_for_requests(1)  # the first mint is in flight (the IdP answers in 2 s)
        assert d.stop(timeout=10) == 0
    stored = TokenPayload.from_json((out / "calm.json").read_text())
    assert stored.fingerprint == fingerprint(fake_idp.tokens[0])
    names = [e["event"] for e in d.events()]
    assert names.index("signal") < names.index("mint") < names.index("write") < names.index("stopped")
    assert not d.events("drain_timeout") and fake_idp.count == 1


def test_sigterm_cuts_off_a_run_longer_than_drain_timeout(fake_idp, tmp_path):
    """SIGTERM while a mint hangs: the daemon waits drain_timeout (1 s), gives up on the run, exits 0.

    Uses the in-process fake IdP: a token endpoint that takes 30 s to answer, which the
    real server cannot be made to do.
    """
    fake_idp.default = delay(30.0, ok(ttl=30))
    out = tmp_path / "out"
    with SyncdProcess(drain_config(fake_idp, out, "1s"), tmp_path, env=SECRETS) as d:
        d.wait_http()
        fake_idp.wait_for_requests(1)
        sent = time.monotonic()
        # Exiting at all before the IdP answers (30 s) shows the run was cut off, not awaited.
        assert d.stop(timeout=10) == 0
        took = time.monotonic() - sent
    assert took >= 1.0, f"exit after {took:.2f}s: the daemon did not wait drain_timeout (1s)"
    names = [e["event"] for e in d.events()]
    assert names.index("signal") < names.index("drain_timeout") < names.index("stopped")
    assert not fake_idp.tokens, "the IdP never answered: the run was cut off, not finished"
    (cut,) = d.events("drain_timeout")
    assert cut["credentials"] == ["calm"] and cut["bound"] == 1.0
    assert not (out / "calm.json").exists()
    assert d.events("stopped")
