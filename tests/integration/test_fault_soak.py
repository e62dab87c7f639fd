"""A CI-sized fault soak: one ``syncd run`` with 30 credentials through a hostile world.

The daemon serves 30 credentials (40 s tokens refreshed at half-life: about 120
rotations in a run) into the file store, a real OpenBao
(15 of them) and moto's SSM (4 of them), while a consumer thread reads every
target about once a second. The world turns hostile in phases:

    steady -> IdP 5xx burst -> slow IdP answers -> OpenBao restart (empty)
           -> SIGHUP (one credential added, one removed) -> SIGTERM + start (adopts) -> steady

and at the end the test demands 0 expired reads, 0 expired writes, no traceback
and no error event other than the transient mint failures the burst causes.

The IdP is the FakeIdP because the real oidc-provider cannot be made to fail on
cue (5xx bursts, answers held for seconds). Its tokens live 40 s rather than the
real server's 3 s because of the restart: a new Python process importing boto3,
hvac and the rest took up to 16 s to serve on a loaded 2-core machine. Half a
lifetime (20 s) is both what a token has left when it is refreshed (it must
outlive the daemon's absence, as a 5- or 20-minute VGS token does by far) and
how long a stored token stays adoptable (the restart must find one to adopt).

Each fault lasts until enough refresh attempts met it, not for a fixed time,
so the outcome does not depend on where the credentials' refresh times fall.

Documented windows where a read may legitimately find nothing:

* the OpenBao restart: a dev server comes back empty, so every OpenBao target is
  missing (or unreachable) from the stop until the daemon writes it again. The
  daemon believes the target still holds its token, so the target comes back at
  the credential's next rotation: the window must end within one refresh
  interval (plus the write retry pacing) after the server is back.
* a credential added by SIGHUP is read only once its first write is logged.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from syncd.payload import TokenPayload, fingerprint, from_rfc3339
from tests.helpers import SyncdProcess, wait_for
from tests.peers.fake_idp import FakeIdP, Response, delay, error, html, ok, retry_after
from tests.peers.servers import MotoServer, OpenBaoServer

pytestmark = pytest.mark.integration

TTL = 40.0
REFRESH_AT = 0.5
JITTER = 0.1
RETRY_MAX = 1.0
REFRESH_MAX = TTL * REFRESH_AT * (1 + JITTER)  # the longest gap between two rotations of one credential
N = 30
VAULT = range(0, 15)  # credentials that also write to OpenBao
SSM = range(0, 4)  # ... and to SSM (moto), kept few: SSM's write rate is throttled per account
SECRET = "soak-client-secret-0123456789"  # noqa: S105 - a test value, checked never to reach the log
SWEEP_PAUSE = 0.5
BURST = 2.0  # from the first refusal on: far under the 18 s a token has left at its refresh time
BURST_REFUSALS = 8
SLOW_MINTS = 8
SLOW_ANSWER = 1.5  # under the daemon's IdP read timeout (10 s): slow, not failed


# --------------------------------------------------------------------------- configuration


def cred_name(i: int) -> str:
    return f"c{i:02d}"


def targets_of(i: int, ssm_prefix: str) -> dict[str, str]:
    """Daemon target label ("<store>:<key>") -> key, for credential ``i``."""
    name = cred_name(i)
    out = {f"local:{name}.json": f"{name}.json"}
    if i in VAULT or i >= N:
        out[f"bao:soak/{name}"] = f"soak/{name}"
    if i in SSM:
        out[f"ssm:{ssm_prefix}/{name}"] = f"{ssm_prefix}/{name}"
    return out


def config_text(creds: list[int], out: Path, bao: OpenBaoServer, token_file: Path, moto: MotoServer, ssm: str) -> str:
    parts = [
        f"""
[defaults]
refresh_at = {REFRESH_AT}
jitter = {JITTER}
min_remaining = "2s"
retry_min = "0.2s"
retry_max = "{RETRY_MAX}s"
fatal_retry = "2s"
token_lifetime = "{TTL:g}s"

[stores.local]
type = "file"
directory = "{out}"

[stores.bao]
type = "vault"
url = "{bao.url}"
mount = "secret"
max_versions = 3
timeout = "2s"
auth = {{ method = "token", token_file = "{token_file}" }}

[stores.ssm]
type = "aws-ssm"
endpoint_url = "{moto.endpoint_url}"
region = "eu-west-1"
max_writes_per_second = 20
"""
    ]
    for i in creds:
        labels = targets_of(i, ssm)
        targets = ", ".join(f'{{ store = "{label.split(":", 1)[0]}", key = "{key}" }}' for label, key in labels.items())
        parts.append(
            f"""
[[credentials]]
name = "{cred_name(i)}"
token_url = "{{token_url}}"
client_id = "{cred_name(i)}"
client_secret = {{ env = "SOAK_SECRET" }}
targets = [{targets}]
"""
        )
    return "".join(parts)


# --------------------------------------------------------------------------- the consumer


@dataclass(frozen=True)
class Read:
    """One read by the consumer: ``at`` is when the answer was in hand."""

    at: float
    target: str
    payload: TokenPayload | None
    problem: str | None  # "missing", or the exception class of a failed read


class Consumer:
    """Reads every registered target in a loop, as a consumer service would, and records each read."""

    def __init__(self) -> None:
        self.readers: dict[str, Callable[[], TokenPayload | None]] = {}
        self.reads: list[Read] = []
        self.sweeps = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-consumer", daemon=True)

    def add(self, target: str, reader: Callable[[], TokenPayload | None]) -> None:
        with self._lock:
            self.readers[target] = reader

    def remove(self, target: str) -> None:
        with self._lock:
            self.readers.pop(target, None)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                readers = list(self.readers.items())
            for target, reader in readers:
                try:
                    payload = reader()
                    problem = None if payload is not None else "missing"
                except Exception as exc:  # recorded, judged by the test
                    payload, problem = None, type(exc).__name__
                self.reads.append(Read(time.time(), target, payload, problem))
            self.sweeps += 1
            self._stop.wait(SWEEP_PAUSE)

    def last_bad(self, target: str, since: float, until: float) -> float | None:
        bad = [r.at for r in self.reads if r.target == target and since <= r.at <= until and r.payload is None]
        return max(bad) if bad else None

    def recovered(self, target: str, since: float) -> bool:
        """The latest read of ``target``, made after ``since``, found a token."""
        latest = next((r for r in reversed(self.reads) if r.target == target), None)
        return latest is not None and latest.at > since and latest.payload is not None


def file_reader(path: Path) -> Callable[[], TokenPayload | None]:
    def read() -> TokenPayload | None:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        return TokenPayload.from_json(text, source=str(path))

    return read


def vault_reader(http: httpx.Client, key: str) -> Callable[[], TokenPayload | None]:
    def read() -> TokenPayload | None:
        r = http.get(f"/v1/secret/data/{key}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return TokenPayload.from_dict(r.json()["data"]["data"], source=key)

    return read


def ssm_reader(client: Any, name: str) -> Callable[[], TokenPayload | None]:
    def read() -> TokenPayload | None:
        try:
            value = client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        except client.exceptions.ParameterNotFound:
            return None
        return TokenPayload.from_json(value, source=name)

    return read


# --------------------------------------------------------------------------- log helpers


class LogTail:
    """The daemon's JSON events, parsed once each as the log grows (polling stays cheap)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.all: list[dict[str, Any]] = []

    def events(self, event: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        if self.path.exists():
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self.offset += len(complete)
            for line in complete.decode(errors="replace").splitlines():
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue  # judged at the end: every line must be a JSON event
                if isinstance(doc, dict):
                    self.all.append(doc)
        return [
            e
            for e in self.all
            if (event is None or e.get("event") == event) and all(e.get(k) == v for k, v in fields.items())
        ]


def ts(event: dict[str, Any]) -> float:
    return from_rfc3339(event["timestamp"])


# --------------------------------------------------------------------------- the soak


def test_fault_soak(
    openbao: OpenBaoServer, moto_server: MotoServer, fake_idp: FakeIdP, aws_env: None, tmp_path: Path
) -> None:
    """Steady, 5xx burst, slow IdP, OpenBao restart, SIGHUP, restart, steady: no expired read or write."""
    idp = fake_idp
    idp.default = ok(ttl=TTL)
    out = tmp_path / "out"
    token_file = tmp_path / "bao.token"
    token_file.write_text(openbao.root_token)
    token_file.chmod(0o600)
    ssm_prefix = f"/soak-{uuid.uuid4().hex[:8]}"

    def render(creds: list[int]) -> str:
        text = config_text(creds, out, openbao, token_file, moto_server, ssm_prefix)
        return text.replace("{token_url}", idp.token_url)

    first = list(range(N))
    second = [*range(N - 1), N]  # c29 removed, c30 added
    phases: list[tuple[str, float, float]] = []
    http = httpx.Client(base_url=openbao.url, headers={"X-Vault-Token": openbao.root_token}, timeout=2.0)
    ssm = boto3.client("ssm", endpoint_url=moto_server.endpoint_url, region_name="eu-west-1")
    consumer = Consumer()

    def reader_for(label: str, key: str) -> Callable[[], TokenPayload | None]:
        store = label.split(":", 1)[0]
        if store == "local":
            return file_reader(out / key)
        if store == "bao":
            return vault_reader(http, key)
        return ssm_reader(ssm, key)

    def all_labels(creds: list[int]) -> dict[str, str]:
        return {label: key for i in creds for label, key in targets_of(i, ssm_prefix).items()}

    def refused() -> int:
        return idp.count - len(idp.tokens)

    def phase(name: str, start: float) -> None:
        phases.append((name, start, time.time()))

    def recovered_mints(since: float) -> bool:
        """Every credential has minted since ``since`` (none fell off the schedule)."""
        return {e["credential"] for e in log.events("mint", outcome="ok") if ts(e) > since} >= {
            cred_name(i) for i in running
        }

    running = first
    d = SyncdProcess(render(first), tmp_path, env={"SOAK_SECRET": SECRET})
    log = LogTail(d.log_path)

    def written() -> set[str]:
        return {e["target"] for e in log.events("write", outcome="ok")}

    try:
        d.start()
        d.wait_http(60)
        start = time.time()
        wait_for(lambda: written() >= set(all_labels(first)), 60, 0.2, "every target written once")
        for label, key in all_labels(first).items():
            consumer.add(label, reader_for(label, key))
        consumer.start()
        phase("warm-up", start)

        # ---- steady
        start = time.time()
        time.sleep(8)
        phase("steady", start)

        # ---- IdP 5xx burst: the errors a gateway or Keycloak sends, cycling. It lasts until
        # enough refresh attempts met it (and their retries, backed off, met it again), so it
        # does not depend on where the credentials' refresh times fall.
        burst_start = start = time.time()
        faults: list[Response] = [error(500), html(502), retry_after(503, "1"), error(503), error(504)]
        refused_before = refused()
        first_refusal: float | None = None
        k = 0
        while True:
            idp.default = faults[k % len(faults)]
            k += 1
            time.sleep(0.25)
            hits = refused() - refused_before
            if first_refusal is None and hits:
                first_refusal = time.time()
            if first_refusal is not None and hits >= BURST_REFUSALS and time.time() >= first_refusal + BURST:
                break
            assert time.time() < start + REFRESH_MAX + 10, "no refresh met the burst"
        idp.default = ok(ttl=TTL)
        burst_end = time.time()
        phase("5xx-burst", start)

        # ---- slow IdP answers, until enough mints met one
        start = time.time()
        asked_before = idp.count
        idp.default = delay(SLOW_ANSWER, ok(ttl=TTL))
        wait_for(lambda: idp.count - asked_before >= SLOW_MINTS, REFRESH_MAX + 10, 0.1, "mints during slow answers")
        idp.default = ok(ttl=TTL)
        slow_end = time.time()
        # No credential fell off the schedule after either fault.
        wait_for(lambda: recovered_mints(slow_end), REFRESH_MAX + 10, 0.2, "every credential minting after the faults")
        phase("slow-idp", start)

        # ---- OpenBao restart: the dev server comes back empty
        down = time.time()
        openbao.stop()
        # Down until a rotation met the outage: its write fails and is retried with backoff.
        wait_for(
            lambda: [e for e in log.events("write", outcome="transient") if e["target"].startswith("bao:")],
            REFRESH_MAX + 10,
            0.1,
            "a write to the stopped OpenBao",
        )
        openbao.start()
        back = time.time()
        vault_labels = [label for label in all_labels(running) if label.startswith("bao:")]
        wait_for(
            lambda: all(consumer.recovered(label, back) for label in vault_labels),
            REFRESH_MAX + 15,
            0.2,
            "every OpenBao target written again",
        )
        outage_end = time.time()
        phase("openbao-restart", down)

        # ---- SIGHUP: c29 removed, c30 added
        start = time.time()
        for label in targets_of(N - 1, ssm_prefix):
            consumer.remove(label)
        d.write_config(render(second))
        d.signal(signal.SIGHUP)
        reloaded = wait_for(lambda: log.events("reloaded"), 15, 0.1, "reloaded event")[0]
        assert reloaded["added"] == [cred_name(N)] and reloaded["removed"] == [cred_name(N - 1)], reloaded
        assert reloaded["changed"] == [], reloaded
        running = second
        added = targets_of(N, ssm_prefix)
        wait_for(lambda: written() >= set(added), 15, 0.1, "the added credential written")
        for label, key in added.items():
            consumer.add(label, reader_for(label, key))
        phase("sighup", start)

        # ---- SIGTERM right after c30's first rotation, then start again: its token (and any
        # other not yet due) is adopted, not minted again
        start = stopping = time.time()
        assert d.stop(30) == 0
        stopped = time.time()
        d.start()
        d.wait_http(30)
        started = wait_for(
            lambda: [e for e in log.events("started") if ts(e) > stopped], 30, 0.1, "the new process started"
        )[0]
        phase("restart", start)

        # ---- steady again, until every credential rotated once more: none fell off the schedule
        start = time.time()
        wait_for(lambda: recovered_mints(stopped), REFRESH_MAX + 10, 0.2, "every credential minting after restart")
        time.sleep(2)
        ready = d.get("/readyz")
        assert ready.status_code == 200, ready.text
        phase("steady", start)
    finally:
        consumer.stop()
        http.close()
        code = d.stop(30) if d.proc is not None and d.proc.poll() is None else None
    assert code == 0

    # ------------------------------------------------------------------ judging the reads
    outage_bound = back + REFRESH_MAX + RETRY_MAX + 1.0  # + the consumer's sweep and the write itself
    expired = [r for r in consumer.reads if r.payload is not None and r.payload.expires_at <= r.at]

    def in_window(r: Read) -> bool:
        return r.target.startswith("bao:") and down <= r.at <= outage_end

    in_outage = [r for r in consumer.reads if r.payload is None and in_window(r)]
    missing = [r for r in consumer.reads if r.payload is None and not in_window(r)]
    recovery = {label: (consumer.last_bad(label, down, outage_end) or back) - back for label in vault_labels}
    late = {label: round(s, 2) for label, s in recovery.items() if back + s > outage_bound}

    # ------------------------------------------------------------------ judging the writes
    writes_ok = log.events("write", outcome="ok")
    expired_writes = [e for e in writes_ok if from_rfc3339(e["expires_at"]) <= ts(e)]
    written_at: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in writes_ok:
        written_at.setdefault((e["target"], e["fingerprint"]), []).append(e)
    read_payloads = {(r.target, r.payload.fingerprint): r.payload for r in consumer.reads if r.payload is not None}
    unexplained = [key for key in read_payloads if key not in written_at]
    # Every token a consumer read was unexpired when it went in (logged after the write, so stricter).
    read_but_expired_at_write = [
        key
        for key in read_payloads
        if key in written_at and min(ts(e) for e in written_at[key]) >= read_payloads[key].expires_at
    ]
    failed_writes = [e for e in log.events("write") if e.get("outcome") != "ok"]
    outside_outage = [e for e in failed_writes if not (e["target"].startswith("bao:") and down <= ts(e) <= outage_end)]

    # ------------------------------------------------------------------ judging the log
    text = d.log_text()
    events = log.events()
    unparsed = [line for line in text.splitlines() if line.strip() and not line.startswith("{")]
    errors = [e for e in events if e.get("level") in ("error", "critical", "exception")]
    unexpected_errors = [e for e in errors if not (e.get("event") == "mint" and e.get("outcome") == "transient")]
    minted_ok = log.events("mint", outcome="ok")
    minted_bad = [e for e in log.events("mint") if e.get("outcome") != "ok"]
    issued = list(idp.tokens)
    refusals = idp.count - len(issued)
    leaked = set(re.findall(r"[A-Za-z0-9_-]{43}", text)) & set(issued)
    warnings = Counter(e.get("event") for e in events if e.get("level") == "warning")

    def phase_of(at: float) -> str:
        return next((n for n, s, e in phases if s <= at <= e), "between")

    gap = ts(started) - stopped
    summary = (
        f"soak: {len(consumer.reads)} reads in {consumer.sweeps} sweeps, {len(minted_ok)} rotations, "
        f"{len(minted_bad)} failed mints, {len(writes_ok)} ok writes, {len(failed_writes)} failed writes, "
        f"{len(in_outage)} reads in the OpenBao window (recovered within {max(recovery.values()):.2f}s of restart), "
        f"restart: stop {stopped - stopping:.1f}s, start {gap:.1f}s, "
        f"adopted {started['adopted']}/{started['credentials']}, warnings {dict(warnings)}, "
        f"phases {' '.join(f'{n}={e - s:.1f}s' for n, s, e in phases)}"
    )
    print(summary)

    assert expired == [], f"{len(expired)} expired reads {Counter(phase_of(r.at) for r in expired)}: {expired[:3]}"
    assert missing == [], f"{len(missing)} missing reads outside the OpenBao window, first: {missing[:5]}"
    assert late == {}, f"OpenBao targets not re-created within a refresh interval of the restart: {late}"
    assert in_outage, "the OpenBao restart should have emptied the store for a while"
    assert expired_writes == [], f"{len(expired_writes)} writes of an expired token: {expired_writes[:3]}"
    assert unexplained == [], f"tokens read that no logged write put there: {unexplained[:5]}"
    assert read_but_expired_at_write == [], read_but_expired_at_write[:5]
    assert outside_outage == [], f"write failures outside the OpenBao window: {outside_outage[:5]}"
    assert failed_writes and {e.get("error_code") for e in failed_writes} == {"connection"}, failed_writes[:5]

    assert "Traceback" not in text, text[text.index("Traceback") - 500 :][:3000] if "Traceback" in text else ""
    assert unparsed == [], f"log lines that are not JSON events: {unparsed[:5]}"
    assert unexpected_errors == [], f"error events besides the burst's mint failures: {unexpected_errors[:5]}"
    # Refusals end with the burst; one sent in its last moment may be logged a little after (load).
    assert all(burst_start <= ts(e) <= burst_end + 5.0 for e in minted_bad), "a mint failed outside the burst"
    # Every answer of the IdP is accounted for: one logged mint per token, one failure per refusal.
    assert len(minted_ok) == len(issued), (len(minted_ok), len(issued))
    assert {e["fingerprint"] for e in minted_ok} == {fingerprint(t) for t in issued}
    assert len(minted_bad) == refusals > 0, (len(minted_bad), refusals)
    assert any(e["duration"] >= SLOW_ANSWER for e in minted_ok), "no mint met a slow answer"

    assert started["credentials"] == N and started["adopted"] + started["to_mint"] == N, started
    adopted = {
        e["credential"] for e in log.events("adopted") if ts(e) > stopped and e["reason"] == "fresh token in store"
    }
    assert cred_name(N) in adopted and len(adopted) == started["adopted"], (adopted, started)
    assert leaked == set(), "an access token reached the log"
    assert SECRET not in text
