"""In-process micro-measurements: what each piece syncd adds around mint + write costs, in microseconds.

The end-to-end cases say *how much* syncd costs over the floor; py-spy says
*where* the time goes; this module prices each suspect directly, with syncd's
own code and configuration, so a proposed fix comes with an expected gain:

* the two info log events of a rotation (``mint``, ``write``) through the real
  structlog chain (redaction + JSON), and how redaction scales with the number
  of registered secrets (syncd registers every minted token);
* the Prometheus updates of one rotation, and one ``/metrics`` render at N
  credentials (with and without the ``*_created`` series);
* re-scheduling one credential with APScheduler (``Engine._schedule``: a new
  Job with a DateTrigger, ``replace_existing``, and the wake-up it triggers) at
  N jobs, against a bare ``loop.call_at`` timer;
* whether the redaction registry stays bounded when one credential is refreshed many times;
* the file store's write as the engine awaits it, and a bare ``asyncio.to_thread`` hand-off;
* the Python heap each credential costs, by component (tracemalloc);
* one token request through syncd's ``mint`` (httpx) against a bare aiohttp POST;
* one client assertion per mint (private_key_jwt RS256 / ES256 / EdDSA, client_secret_jwt HS256)
  and the one-off parse of a rotated key;
* small per-mint helpers on the hot path (a failed ``import sniffio`` that
  httpcore performs on every request when sniffio is not installed, the
  per-character token check, RFC 3339 formatting).

CPU time is ``time.process_time()``; each figure is the median of 5 repeats.

Usage: ``python -m bench.micro --out micro.json [--quick | --smoke]`` (sizes per mode: ``SCALES``)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Scale:
    """Every size the measurements use, per mode, in one place: a mode's run time is bounded by these alone."""

    log_calls: int  # rotation log events per repeat
    registry_sizes: tuple[int, ...]  # minted JWTs registered with the redactor, in steps
    encoded_sizes: tuple[int, ...]  # secrets with a percent-encoded or an irregular spelling, in steps
    metric_calls: int
    render_sizes: tuple[int, ...]  # credentials in one /metrics render
    scheduler_jobs: tuple[int, ...]
    reschedules: int
    memory_credentials: int
    mints: int  # token requests per repeat
    writes: int  # file writes per repeat


SCALES = {
    "full": Scale(
        2000,
        (1_000, 10_000, 50_000),
        (200, 2_000, 10_000),
        5000,
        (100, 1000, 10000),
        (1000, 10000),
        1000,
        5000,
        600,
        300,
    ),
    "quick": Scale(500, (1_000, 10_000), (200, 2_000), 2000, (100, 1000), (1000,), 300, 2000, 200, 100),
    "smoke": Scale(50, (100, 1_000), (20, 200), 200, (10, 100), (100,), 50, 50, 20, 20),
}


def _per_call_us(fn: Callable[[], Any], n: int, repeats: int = 5) -> float:
    results = []
    for _ in range(repeats):
        t = time.process_time()
        for _ in range(n):
            fn()
        results.append((time.process_time() - t) / n * 1e6)
    return statistics.median(results)


def _jwt(i: int) -> str:
    head = base64.urlsafe_b64encode(b'{"alg":"RS256","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps({"i": i, "pad": "x" * 300}).encode()).rstrip(b"=").decode()
    sig = base64.urlsafe_b64encode(os.urandom(256)).rstrip(b"=").decode()
    return f"{head}.{body}.{sig}"


def logging_costs(sc: Scale) -> dict[str, Any]:
    """Per rotation: mint + write info events, as Engine logs them, through the configured chain."""
    from syncd import logs
    from syncd.payload import fingerprint, to_rfc3339

    devnull = open(os.devnull, "w")  # noqa: SIM115 - kept open for the module's lifetime
    logs.configure("info", "json", stream=devnull)
    log = logs.get_logger("syncd.engine")
    token = _jwt(0)
    logs.register_secret("bench-secret-00001")
    logs.register_secret(token)
    fp = fingerprint(token)
    now = time.time()

    def rotation_logs() -> None:
        log.info(
            "mint",
            credential="c00001",
            outcome="ok",
            fingerprint=fp,
            expires_at=to_rfc3339(now + 30),
            refresh_after=to_rfc3339(now + 15),
            lifetime=30.0,
            duration=0.0031,
        )
        log.info(
            "write",
            credential="c00001",
            target="bench:c00001.json",
            fingerprint=fp,
            expires_at=to_rfc3339(now + 30),
            duration=0.0021,
            outcome="ok",
            written=True,
            version=None,
            adopted=False,
        )

    n = sc.log_calls
    out: dict[str, Any] = {"rotation_logs_us": _per_call_us(rotation_logs, n)}
    logs.configure("warning", "json", stream=devnull)
    out["rotation_logs_filtered_us"] = _per_call_us(rotation_logs, n)  # log_level = warning
    logs.configure("info", "json", stream=devnull)

    # The secret registry: every minted token is registered; what does it cost as it grows?
    registry = logs._SECRETS
    before_regular, before_irregular = set(registry._regular), set(registry._irregular)
    sizes = sc.registry_sizes
    scaling = []
    added = 0
    for size in sizes:
        for _ in range(size - added):
            added += 1
            logs.register_secret(_jwt(added))
        scaling.append({"registered": size, "rotation_logs_us": _per_call_us(rotation_logs, n // 2)})
    per_token = sum(sys.getsizeof(s) for s in registry._regular) / max(len(registry._regular), 1)
    out["registry_growth"] = scaling
    out["registry_bytes_per_token"] = per_token
    # Secrets in standard base64 ('+', '/', '=') have a percent-encoded spelling. Registering a fixed number
    # of them and recording where their forms land (set lookup or the linear-scan "irregular" set) prices
    # redaction for such a fleet without assuming where the registry puts them: a loop that waited for the
    # scan set to reach a size spun forever (and ate memory) once those forms moved to the set lookup.
    out["irregular_growth"] = _redaction_growth(
        registry,
        rotation_logs,
        sc.encoded_sizes,
        n,
        lambda: base64.b64encode(os.urandom(30)).decode() + "+/=",
    )
    # Values with a character outside the candidate class (a client secret with '!' or '*') are the ones
    # that still go to the scan set: how much each of them adds to every logged string.
    out["scan_set_growth"] = _redaction_growth(
        registry,
        rotation_logs,
        sc.encoded_sizes,
        n,
        lambda: "s!" + base64.urlsafe_b64encode(os.urandom(24)).decode() + "*",
    )
    registry._regular.intersection_update(before_regular)
    registry._irregular.intersection_update(before_irregular)
    return out


def _redaction_growth(
    registry: Any, rotation_logs: Callable[[], None], sizes: tuple[int, ...], n: int, make_secret: Callable[[], str]
) -> list[dict[str, Any]]:
    """Register ``sizes[-1]`` secrets from ``make_secret`` in steps; per step, where they went and what logging costs.

    Bounded by construction: it registers a fixed number of values and then measures, whatever the
    registry does with them. The registrations are removed again before returning.
    """
    base_regular, base_irregular = len(registry._regular), len(registry._irregular)
    made: list[str] = []
    rows = []
    for size in sizes:
        for _ in range(size - len(made)):
            secret = make_secret()
            made.append(secret)
            registry.add(secret)
        rows.append(
            {
                "registered": size,
                "regular_entries": len(registry._regular) - base_regular,
                "irregular_entries": len(registry._irregular) - base_irregular,
                "rotation_logs_us": _per_call_us(rotation_logs, max(20, n // (size // 100 + 1))),
            }
        )
    for secret in made:
        registry.discard(secret)
    return rows


def metrics_costs(sc: Scale) -> dict[str, Any]:
    """Per rotation Prometheus updates (as Engine does them), and one /metrics render at N credentials."""
    from syncd.metrics import Metrics

    m = Metrics()
    creds = [f"c{i:05d}" for i in range(1000)]
    i = [0]

    def rotation_metrics() -> None:
        c = creds[i[0] % 1000]
        t = f"bench:{c}.json"
        i[0] += 1
        m.schedule_lateness.observe(0.002)
        m.mint_duration.observe(0.003)
        m.mints.labels(credential=c, outcome="ok").inc()
        m.write_duration.labels(store="bench").observe(0.002)
        m.writes.labels(credential=c, target=t, outcome="ok").inc()
        m.target_last_success.labels(credential=c, target=t).set(1.0)
        m.target_token_expiry.labels(credential=c, target=t).set(2.0)
        m.consecutive_failures.labels(credential=c).set(0)
        m.token_expiry.labels(credential=c).set(2.0)
        m.target_token_expiry.labels(credential=c, target=t).set(2.0)
        m.next_refresh.labels(credential=c).set(3.0)

    out: dict[str, Any] = {"rotation_metrics_us": _per_call_us(rotation_metrics, sc.metric_calls)}
    renders = []
    for n in sc.render_sizes:
        reg = _populated_metrics(n)
        body = reg.render()
        renders.append(
            {
                "credentials": n,
                "ms": _per_call_us(reg.render, 1, 3 if n >= 10000 else 5) / 1000,
                "kb": len(body) / 1024,
                "lines": body.count(b"\n"),
                "created_lines": body.count(b"_created"),
            }
        )
    out["render"] = renders
    return out


def _populated_metrics(n: int) -> Any:
    """A Metrics registry holding every per-credential series of n one-target credentials, as the daemon does."""
    from syncd.metrics import Metrics

    reg = Metrics()
    for k in range(n):
        c, t = f"c{k:05d}", f"bench:c{k:05d}.json"
        if hasattr(reg, "init_credential"):
            reg.init_credential(c, [t])
        reg.mints.labels(credential=c, outcome="ok").inc()
        reg.writes.labels(credential=c, target=t, outcome="ok").inc()
        reg.target_last_success.labels(credential=c, target=t).set(1.0)
        reg.target_token_expiry.labels(credential=c, target=t).set(2.0)
        reg.consecutive_failures.labels(credential=c).set(0)
        reg.token_expiry.labels(credential=c).set(2.0)
        reg.next_refresh.labels(credential=c).set(3.0)
    return reg


def memory_per_credential(n: int) -> dict[str, float]:
    """Python heap per credential, by component (tracemalloc), for n one-target file credentials."""
    import tempfile
    import tracemalloc
    from pathlib import Path

    from bench.memory import write_file_config
    from syncd.config import load_config
    from syncd.engine import Engine

    tmp = Path(tempfile.mkdtemp(prefix="syncd-micro-"))
    cfg_path = write_file_config(n, tmp)
    out: dict[str, float] = {}
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    config = load_config(cfg_path)
    step = tracemalloc.get_traced_memory()[0]
    out["config (pydantic models)"] = (step - base) / n
    engine = Engine(config)
    engine.setup()
    now = tracemalloc.get_traced_memory()[0]
    out["engine state + gauges set at setup"] = (now - step) / n
    step = now
    for st in engine.credentials.values():
        if hasattr(engine.metrics, "init_credential"):
            engine.metrics.init_credential(st.name, [ts.label for ts in st.targets])
        m = engine.metrics
        for ts in st.targets:
            m.writes.labels(credential=st.name, target=ts.label, outcome="ok")
            m.target_last_success.labels(credential=st.name, target=ts.label).set(1.0)
            m.target_token_expiry.labels(credential=st.name, target=ts.label).set(1.0)
        m.mints.labels(credential=st.name, outcome="ok")
        m.token_expiry.labels(credential=st.name).set(1.0)
        m.next_refresh.labels(credential=st.name).set(1.0)
    now = tracemalloc.get_traced_memory()[0]
    out["Prometheus series"] = (now - step) / n
    step = now

    async def jobs() -> None:
        from bench.memory import arm_jobs_as_the_engine_does

        sched = arm_jobs_as_the_engine_does(engine)
        nonlocal step
        now = tracemalloc.get_traced_memory()[0]
        out["APScheduler (run job, read-back plan)"] = (now - step) / n
        step = now
        sched.shutdown(wait=False)

    asyncio.run(jobs())
    step = tracemalloc.get_traced_memory()[0]  # the jobs are gone again
    from pydantic import SecretStr

    from syncd.payload import TokenPayload

    held = []
    for i, name in enumerate(engine.credentials):
        token = _jwt(i)
        held.append(TokenPayload(name, SecretStr(token), time.time(), time.time() + 300, time.time() + 150))
    now = tracemalloc.get_traced_memory()[0]
    out["held token payload (1 KB JWT)"] = (now - step) / n
    tracemalloc.stop()
    del held
    return {k: round(v / 1024, 2) for k, v in out.items()}  # KiB per credential


async def _scheduler_costs(sc: Scale) -> dict[str, Any]:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.date import DateTrigger

    async def job(name: str, planned: float) -> None:
        return None

    out: list[dict[str, Any]] = []
    for n in sc.scheduler_jobs:
        sched = AsyncIOScheduler(timezone=UTC, job_defaults={"misfire_grace_time": None, "coalesce": True})
        sched.start()
        far = time.time() + 3600

        def add(k: int, when: float, s: Any = sched) -> None:
            s.add_job(
                job,
                DateTrigger(run_date=datetime.fromtimestamp(when, UTC)),
                args=[f"c{k:05d}", when],
                id=f"cred:c{k:05d}",
                replace_existing=True,
                misfire_grace_time=None,
                coalesce=True,
                max_instances=1,
            )

        for k in range(n):
            add(k, far + k * 0.01)
        await asyncio.sleep(0.05)
        reps = []
        count = sc.reschedules
        for _ in range(5):
            t = time.process_time()
            for r in range(count):
                add(r % n, far + (r % n) * 0.01 + 1)
                await asyncio.sleep(0)  # let the wake-up add_job requested run, as it does in the daemon
            reps.append((time.process_time() - t) / count * 1e6)
        sched.shutdown(wait=False)
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        handles: dict[int, asyncio.TimerHandle] = {}
        base = []
        for _ in range(5):
            t = time.process_time()
            for r in range(count):
                k = r % n
                old = handles.get(k)
                if old is not None:
                    old.cancel()
                handles[k] = loop.call_at(loop.time() + 3600 + k * 0.01, lambda: None)
                await asyncio.sleep(0)
            base.append((time.process_time() - t) / count * 1e6)
        for h in handles.values():
            h.cancel()
        # What the engine does now (syncd.schedule): the credential's one job is moved, not replaced.
        from syncd.schedule import CredentialJobs, LoopScheduler

        moving = LoopScheduler(timezone=UTC, job_defaults={"misfire_grace_time": None, "coalesce": True})
        moving.start()
        jobs = CredentialJobs(moving, job)
        for k in range(n):
            jobs.arm(f"c{k:05d}", far + k * 0.01)
        await asyncio.sleep(0.05)
        moves = []
        for _ in range(5):
            t = time.process_time()
            for r in range(count):
                jobs.arm(f"c{r % n:05d}", far + (r % n) * 0.01 + 1)
                await asyncio.sleep(0)
            moves.append((time.process_time() - t) / count * 1e6)
        moving.shutdown(wait=False)
        await asyncio.sleep(0.05)
        out.append(
            {
                "jobs": n,
                "reschedule_us": statistics.median(reps),
                "move_us": statistics.median(moves),
                "loop_call_at_us": statistics.median(base),
            }
        )
    return {"scheduler": out}


def http_client_costs(sc: Scale) -> dict[str, Any]:
    """CPU per token request: syncd's httpx client (mint()) against aiohttp's client, same fake IdP."""
    import tempfile
    from pathlib import Path

    import aiohttp
    from pydantic import SecretStr

    from bench.procs import FakeIdpProcess
    from syncd.oauth import MintRequest, build_http_client, mint

    idp = FakeIdpProcess(30.0, Path(tempfile.mkdtemp(prefix="syncd-micro-idp-")))
    idp.start()
    n = sc.mints
    form = {"grant_type": "client_credentials", "client_id": "c00001", "client_secret": "bench-secret-00001"}

    async def run() -> dict[str, float]:
        client = build_http_client()
        req = MintRequest(
            credential="c00001",
            token_url=idp.token_url,
            client_id="c00001",
            client_secret=SecretStr(form["client_secret"]),
        )
        for _ in range(20):
            await mint(client, req)
        reps = []
        for _ in range(3):
            t = time.process_time()
            for _ in range(n):
                await mint(client, req)
            reps.append((time.process_time() - t) / n * 1e6)
        out = {"httpx_mint_us": statistics.median(reps)}
        reps = []
        for _ in range(3):
            t = time.process_time()
            for _ in range(n):
                resp = await client.post(idp.token_url, data=form)
                resp.json()
            reps.append((time.process_time() - t) / n * 1e6)
        out["httpx_post_us"] = statistics.median(reps)
        if "sniffio" not in sys.modules:  # what installing sniffio would change (bench/variant.py's stand-in)
            import types

            stub = types.ModuleType("sniffio")
            stub.current_async_library = lambda: "asyncio"  # type: ignore[attr-defined]
            sys.modules["sniffio"] = stub
            try:
                reps = []
                for _ in range(3):
                    t = time.process_time()
                    for _ in range(n):
                        await mint(client, req)
                    reps.append((time.process_time() - t) / n * 1e6)
                out["httpx_mint_with_sniffio_us"] = statistics.median(reps)
            finally:
                del sys.modules["sniffio"]
        await client.aclose()
        async with aiohttp.ClientSession() as session:
            for _ in range(20):
                async with session.post(idp.token_url, data=form) as resp:
                    await resp.read()
            reps = []
            for _ in range(3):
                t = time.process_time()
                for _ in range(n):
                    async with session.post(idp.token_url, data=form) as resp:
                        json.loads(await resp.read())
                reps.append((time.process_time() - t) / n * 1e6)
        out["aiohttp_post_us"] = statistics.median(reps)
        return out

    try:
        return asyncio.run(run())
    finally:
        idp.cleanup()


def _one_credential_engine(lifetime: float, clock: Callable[[], float]) -> Any:
    import tempfile
    from pathlib import Path

    from syncd.config import load_config
    from syncd.engine import Engine

    tmp = Path(tempfile.mkdtemp(prefix="syncd-micro-"))
    cfg = tmp / "syncd.toml"
    cfg.write_text(
        f'[defaults]\ntoken_lifetime = "{lifetime:g}s"\nmin_remaining = "{lifetime / 10:g}s"\n'
        f'[stores.bench]\ntype = "file"\ndirectory = "{tmp}"\n'
        '[[credentials]]\nname = "c00001"\ntoken_url = "http://127.0.0.1:9/t"\nclient_id = "c00001"\n'
        'client_secret = "bench-secret-00001"\ntargets = [{ store = "bench", key = "c00001.json" }]\n'
    )
    cfg.chmod(0o600)
    engine = Engine(load_config(cfg), clock=clock)
    engine.setup()
    return engine


def registry_bound(refreshes: int = 20) -> dict[str, Any]:
    """Is the redaction registry bounded? Refresh one credential many times (at half-life, on a fake clock)
    through the engine's own ``_set_token`` and count how many of its tokens the registry still holds."""
    from pydantic import SecretStr

    from syncd import logs
    from syncd.payload import TokenPayload

    lifetime = 30.0
    now = [time.time()]
    try:
        engine = _one_credential_engine(lifetime, lambda: now[0])
        st = next(iter(engine.credentials.values()))
        tokens = []
        for i in range(refreshes):
            now[0] += lifetime / 2
            token = _jwt(10_000 + i)
            tokens.append(token)
            logs.register_secret(token)  # what Engine._mint does with every minted token
            engine._set_token(
                st, TokenPayload(st.name, SecretStr(token), now[0], now[0] + lifetime, now[0] + lifetime / 2)
            )
        kept = sum(1 for t in tokens if t in logs._SECRETS._regular)
        for t in tokens:
            logs.forget_secret(t)
        return {"refreshes": refreshes, "tokens_still_registered": kept}
    except Exception as exc:  # private API: report, do not fail the run
        return {"error": f"{type(exc).__name__}: {exc}"}


def store_costs(sc: Scale) -> dict[str, Any]:
    """The file store's write as the engine awaits it (thread hand-off, atomic write, two fsyncs)."""
    import tempfile
    from pathlib import Path

    from pydantic import SecretStr

    from syncd.config import FileStoreConfig
    from syncd.payload import TokenPayload
    from syncd.stores.file import FileStore

    tmp = Path(tempfile.mkdtemp(prefix="syncd-micro-store-"))
    store = FileStore("bench", FileStoreConfig(type="file", directory=tmp))
    now = time.time()
    payload = TokenPayload("c00001", SecretStr(_jwt(1)), now, now + 30, now + 15)
    n = sc.writes

    async def run() -> dict[str, float]:
        for _ in range(10):
            await store.write("c00001.json", payload)
        reps = []
        for _ in range(3):
            t = time.process_time()
            for i in range(n):
                await store.write(f"c{i % 50:05d}.json", payload)
            reps.append((time.process_time() - t) / n * 1e6)
        out = {"file_write_us": statistics.median(reps)}
        reps = []
        for _ in range(3):
            t = time.process_time()
            for _ in range(n):
                await asyncio.to_thread(int)
            reps.append((time.process_time() - t) / n * 1e6)
        out["to_thread_noop_us"] = statistics.median(reps)
        out["path_for_us"] = _per_call_us(lambda: store.path_for("c00001.json"), 2000)
        return out

    return asyncio.run(run())


def hot_path_costs() -> dict[str, Any]:
    from syncd import oauth
    from syncd.payload import to_rfc3339

    token = _jwt(1)
    now = time.time()

    def failed_import() -> None:
        with contextlib.suppress(ImportError):
            import sniffio  # noqa: F401

    out = {
        "sniffio_import_us": _per_call_us(failed_import, 300),
        "is_vschar_1kb_token_us": _per_call_us(lambda: oauth._is_vschar(token), 2000),
        "to_rfc3339_us": _per_call_us(lambda: to_rfc3339(now), 5000),
        "isoformat_us": _per_call_us(lambda: datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"), 5000),
    }
    out["sniffio_installed"] = "sniffio" in sys.modules
    return out


def client_auth_costs(sc: Scale) -> dict[str, Any]:
    """One client assertion per mint (private_key_jwt: RS256, ES256, EdDSA; client_secret_jwt: HS256).

    Measured through ``assertion_for``, as the engine calls it: the key file is read and its
    parsed key found in the cache (a rotated file would be parsed once), then a JWT is signed.
    Parsing a key from PEM, which happens once per key change, is priced separately.
    """
    import tempfile
    from pathlib import Path

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from pydantic import SecretStr

    from syncd.client_auth import assertion_for, load_signing_key
    from syncd.config import CredentialConfig

    n = max(20, sc.mints)
    keys = {
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
    }
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for alg, key in keys.items():
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            path = Path(tmp) / f"{alg}.key"
            path.write_bytes(pem)
            cfg = CredentialConfig(
                name="bench",
                token_url="https://idp.example/token",
                client_id="bench",
                auth_method="private_key_jwt",
                private_key={"file": path},
                targets=[{"store": "s", "key": "k"}],
            )
            assertion_for(cfg, "bench", SecretStr(""), time.time())  # parse once, as the first mint does
            out[f"{alg}_assertion_us"] = _per_call_us(
                lambda c=cfg: assertion_for(c, "bench", SecretStr(""), time.time()), n
            )
            out[f"{alg}_key_parse_us"] = _per_call_us(
                lambda p=pem: load_signing_key(p, None, alg=None, key_id=None), 20
            )
        secret_cfg = CredentialConfig(
            name="bench",
            token_url="https://idp.example/token",
            client_id="bench",
            client_secret="bench-secret-0123456789abcdef",
            auth_method="client_secret_jwt",
            targets=[{"store": "s", "key": "k"}],
        )
        secret = SecretStr("bench-secret-0123456789abcdef")
        out["HS256_assertion_us"] = _per_call_us(lambda: assertion_for(secret_cfg, "bench", secret, time.time()), n)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.micro")
    ap.add_argument("--out", required=True)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smaller sizes (python -m bench --quick)")
    mode.add_argument(
        "--smoke", action="store_true", help="tiny sizes: every measurement runs, no figure is meaningful"
    )
    args = ap.parse_args(argv)
    sc = SCALES["smoke" if args.smoke else "quick" if args.quick else "full"]
    result: dict[str, Any] = {}
    result["logging"] = logging_costs(sc)
    result["metrics"] = metrics_costs(sc)
    result.update(asyncio.run(_scheduler_costs(sc)))
    result["memory_kib_per_credential"] = memory_per_credential(sc.memory_credentials)
    result["hot_path"] = hot_path_costs()
    result["http_client"] = http_client_costs(sc)
    result["store"] = store_costs(sc)
    result["client_auth"] = client_auth_costs(sc)
    result["registry"] = registry_bound()
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
