"""The benchmark cases: a loaded daemon, an idle/start-up daemon, the floor loop and the naive cron script.

Each ``run_*`` function starts what it needs, measures, stops everything it
started (also on error) and returns a plain dict that goes into the results
JSON as is. They share one idea for short, steady runs:

**Seeding the steady state.** A daemon that mints N tokens at start-up rotates
them in a wave, not at the steady rate, and the wave takes many lifetimes to
smear out. So before syncd starts, the store is filled with N fresh tokens
(written directly, in the wire format) whose ``issued_at`` are spread evenly
over one refresh interval (half a lifetime) ending at ``t_ref``, a moment just
after syncd will have read them. syncd adopts every one (no mint: this is the
start-up adoption path, measured as such) and its first refreshes already
arrive at the steady rate, N / (refresh_at x lifetime). A few of those seeds
are dated up to a few seconds into the future; syncd treats them as any fresh
token, and the reader leaves seeded tokens out of its lateness figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench import analysis
from bench.procs import ROOT, FakeIdpProcess, Sampler, SyncdProcess
from bench.stores import StoreAdapter, dump_spec
from syncd.payload import TokenPayload
from syncd.policy import ADOPT_CLOCK_SKEW
from tests.peers.servers import OidcClient, OidcServer, free_port, http_request

Log = Callable[[str], None]

REFRESH_AT = 0.5
JITTER = 0.1


@dataclass
class ActiveSpec:
    """A loaded daemon: ``n`` credentials with ``lifetime``-second tokens, measured for ``duration`` s."""

    label: str
    store: str
    n: int
    lifetime: float
    duration: float
    idp: str = "fake"  # fake | oidc
    profile: float = 0.0  # seconds of py-spy after the window (0 = none)
    reader: bool = True
    scrape_phase: float = 0.0  # seconds of Prometheus-like scraping after the window (0 = one scrape only)
    scrape_interval: float = 15.0
    patches: tuple[str, ...] = ()  # prototype engine fixes (bench/variant.py), for the "what would fix it" runs
    env: tuple[tuple[str, str], ...] = ()  # e.g. (("SYNCD_DAEMON__LOG_LEVEL", "warning"),)
    # Seconds from syncd's expected start-up to the first seeded refresh; None = a generous margin (see
    # run_active). Only the smoke run shortens it: it costs seconds per case, and its figures do not count.
    startup_lead: float | None = None

    @property
    def rate(self) -> float:
        return self.n / (REFRESH_AT * self.lifetime)


def syncd_config(
    adapter: StoreAdapter,
    prefix: str,
    n: int,
    lifetime: float,
    token_url: str,
    port: int,
    secrets_for: Callable[[int], str] | None = None,
) -> str:
    """The TOML syncd runs with: production defaults, scaled to the lifetime (min_remaining = lifetime / 10)."""
    min_remaining = lifetime / 10  # 30 s for 5-minute tokens: the shipped default
    parts = [
        f'[daemon]\nlisten = "127.0.0.1:{port}"\nlog_format = "json"\nlog_level = "info"\n',
        f'[defaults]\nrefresh_at = {REFRESH_AT}\nmin_remaining = "{min_remaining:g}s"\njitter = {JITTER}\n'
        f'token_lifetime = "{lifetime:g}s"\n',
        adapter.store_toml(prefix),
    ]
    for i in range(n):
        secret = secrets_for(i) if secrets_for else f"bench-secret-{i:05d}"
        parts.append(
            f'[[credentials]]\nname = "c{i:05d}"\ntoken_url = "{token_url}"\nclient_id = "c{i:05d}"\n'
            f'client_secret = "{secret}"\ntargets = [{adapter.target_toml(adapter.key(prefix, i))}]\n'
        )
    return "\n".join(parts)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)  # plaintext secrets are refused in a group/world readable file
    return path


def _seed_token() -> str:
    """A JWT-shaped token of the fake IdP's size (~1 KB), so replacing a seed does not change memory."""
    return "eyJhbGciOiJSUzI1NiJ9.seed" + secrets.token_urlsafe(300) + "." + secrets.token_urlsafe(256)


def seed_payloads(adapter: StoreAdapter, prefix: str, n: int, lifetime: float, t_ref: float, spread: float):
    """N fresh payloads, ``issued_at`` evenly spread over ``spread`` seconds ending at ``t_ref``."""
    rng = random.Random(n)
    order = list(range(n))
    rng.shuffle(order)  # credential i is not always the oldest
    items = []
    for rank, i in enumerate(order):
        issued = t_ref - spread * (rank + 0.5) / n
        items.append(
            (
                adapter.key(prefix, i),
                TokenPayload(
                    credential=f"c{i:05d}",
                    access_token=SecretStr(_seed_token()),
                    issued_at=issued,
                    expires_at=issued + lifetime,
                    refresh_after=issued + REFRESH_AT * lifetime,
                    scope="bench:seed",
                ),
            )
        )
    return items


def _startup_estimate(store: str, n: int) -> float:
    """Seconds from spawning syncd to it having read every target (generous, from quick runs)."""
    per_cred = {"file": 0.002, "openbao": 0.003, "moto-ssm": 0.03, "moto-secretsmanager": 0.01}.get(store, 0.01)
    return 2.0 + per_cred * n


def _fresh_dir(path: Path) -> None:
    """An empty case directory (logs are appended to, so an old one would mix runs)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def _scrape(url: str) -> tuple[str, float]:
    t = time.perf_counter()
    # Generous: a render of 100,000 credentials takes minutes on a busy machine, and its figures are needed.
    status, body = http_request("GET", f"{url}/metrics", timeout=300)
    if status != 200:
        raise RuntimeError(f"/metrics -> {status}")
    return body.decode(), time.perf_counter() - t


def _start_idp(spec_idp: str, lifetime: float, n: int, workdir: Path) -> tuple[Any, str, Callable[[], int]]:
    if spec_idp == "oidc":
        clients = [OidcClient(f"c{i:05d}", f"bench-secret-{i:05d}", "cards:read") for i in range(n)]
        oidc = OidcServer(ttl=round(lifetime), clients=clients)
        oidc.start()

        def issued() -> int:
            return int(oidc.stats()["total"])

        return oidc, oidc.token_url, issued
    fake = FakeIdpProcess(lifetime, workdir)
    fake.start()
    return fake, fake.token_url, fake.issued


def run_active(spec: ActiveSpec, adapter: StoreAdapter, workdir: Path, log: Log) -> dict[str, Any]:
    """A daemon under load: rotations/s, CPU per rotation, RSS, lateness, freshness, optionally a profile."""
    _fresh_dir(workdir)
    prefix = spec.label
    adapter.reset(prefix)
    result: dict[str, Any] = {"spec": asdict(spec), "target_rate": spec.rate}
    idp, token_url, issued = _start_idp(spec.idp, spec.lifetime, spec.n, workdir)
    syncd: SyncdProcess | None = None
    sampler: Sampler | None = None
    reader: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        cfg = write_config(
            workdir / "syncd.toml", syncd_config(adapter, prefix, spec.n, spec.lifetime, token_url, port)
        )
        interval = REFRESH_AT * spec.lifetime
        # No refresh may come due before syncd is up and idle again: the earliest seeded refresh is at
        # t_ref - jitter x interval, so the lateness histogram (read once, cumulated since start) holds
        # steady-state runs only, not jobs that waited for the start-up to finish.
        lead = 1.3 * _startup_estimate(spec.store, spec.n) + 2 if spec.startup_lead is None else spec.startup_lead
        t_ref = time.time() + lead + JITTER * interval
        # syncd refuses to adopt a token issued more than ADOPT_CLOCK_SKEW in the future (it would mint
        # instead): with a long start-up (100,000 credentials) the newest seeds are issued at that limit,
        # and the refreshes that come due before the start-up ends run late (in the lateness histogram).
        t_ref = min(t_ref, time.time() + ADOPT_CLOCK_SKEW - 10)
        t_seed = time.time()
        adapter.seed(seed_payloads(adapter, prefix, spec.n, spec.lifetime, t_ref, interval), prefix)
        result["seed_seconds"] = time.time() - t_seed
        t_ref = max(t_ref, time.time() + 1)
        (workdir / "keys.txt").write_text("\n".join(adapter.key(prefix, i) for i in range(spec.n)) + "\n")

        quiet = any(k == "SYNCD_DAEMON__LOG_LEVEL" and v != "info" for k, v in spec.env)
        probe_file = workdir / "probe.jsonl"
        env = {**dict(spec.env), "BENCH_PROBE_FILE": str(probe_file)}
        syncd = SyncdProcess(
            cfg,
            workdir,
            port,
            patches=spec.patches,
            env=env,
            ready="readyz" if quiet else "log",
            startup_timeout=max(300.0, 4 * _startup_estimate(spec.store, spec.n)),
        )
        syncd.start()
        pid = syncd.syncd_pid
        sampler = Sampler(pid).start()
        started = analysis.ts(syncd.events_seen["started"]["timestamp"])
        result["startup"] = {
            "seconds": started - syncd.spawned_at,
            "adopted": syncd.events_seen["started"].get("adopted"),
            "to_mint": syncd.events_seen["started"].get("to_mint"),
            "idp_requests_at_started": issued(),
        }
        log(
            f"  syncd up in {started - syncd.spawned_at:.1f}s, adopted {result['startup']['adopted']}/{spec.n}, "
            f"IdP requests so far {result['startup']['idp_requests_at_started']}"
        )
        # The window opens once start-up has settled (2 s after `started`; the lead instead, if one is set).
        settle = 2.0 if spec.startup_lead is None else spec.startup_lead
        w0 = max(time.time() + min(1.0, settle), started + settle, t_ref + JITTER * interval + 0.5)
        if spec.reader:
            reader = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.reader",
                    "--spec",
                    dump_spec(adapter.spec(prefix)),
                    "--keys",
                    str(workdir / "keys.txt"),
                    "--start-at",
                    f"{w0:.3f}",
                    "--duration",
                    f"{spec.duration:g}",
                    "--poll",
                    f"{adapter.poll_interval:g}",
                    "--random-rate",
                    f"{adapter.random_read_rate:g}",
                    "--out",
                    str(workdir / "reader.json"),
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        # No /metrics scrape before or during the window: a scrape blocks the event loop (its cost is
        # measured below), and the jobs it delays would count as lateness. The one scrape after the
        # window reads the lateness histogram cumulated since start-up, untouched by any scrape.
        while time.time() < w0:
            time.sleep(0.005)
        s0 = sampler.read()
        idp0 = issued()
        if "probe" in spec.patches:
            os.kill(pid, signal.SIGUSR1)  # bench/variant.py's probe: registry size now ...
        log(f"  measuring {spec.duration:g}s at ~{spec.rate:.0f} rotations/s ...")
        time.sleep(spec.duration / 2)
        if "probe" in spec.patches:
            os.kill(pid, signal.SIGUSR1)  # ... at half-time (growth is judged over the second half) ...
        time.sleep(spec.duration / 2)
        s1 = sampler.read()
        idp1 = issued()
        if "probe" in spec.patches:
            os.kill(pid, signal.SIGUSR1)  # ... and at the end of the window
            time.sleep(0.5)
            lines = probe_file.read_text().splitlines() if probe_file.exists() else []
            result["probe"] = [json.loads(x) for x in lines[-3:]]
        # The one scrape that reads the window's lateness histogram (cumulated since start-up). Rendering
        # may overlap a few rotations; the scrape phase below measures what scraping does to the loop.
        with LoopProbe(syncd.url) as probe:
            text_b, scrape_wall = _scrape(syncd.url)
        scrapes = [{"wall_s": scrape_wall, "bytes": len(text_b), "loop_stall_s": probe.max_latency}]
        if reader is not None:
            reader.wait(timeout=spec.duration + 60)
        if spec.profile > 0:
            result["profile"] = _profile(pid, spec.profile, workdir, log)
        if spec.scrape_phase > 0:
            log(f"  {spec.scrape_phase:g}s more with /metrics scraped every {spec.scrape_interval:g}s ...")
            result["scraped"] = _scrape_phase(syncd.url, spec.scrape_phase, spec.scrape_interval)
        peak = sampler.peak_rss()
        sampler.stop()
        t_stop = time.time()
        code = syncd.stop_and_code()
        result["stop"] = {"exit_code": code, "seconds": time.time() - t_stop}
        result["idp_requests_total"] = issued()
    finally:
        if reader is not None and reader.poll() is None:
            reader.kill()
        if sampler is not None:
            sampler.stop()
        if syncd is not None:
            syncd.stop()
        idp.stop()

    facts = analysis.parse_log(syncd.log_path)
    t0, t1 = s0.t, s1.t
    window = t1 - t0
    rotations = analysis.count_between(facts.writes_ok, t0, t1)
    counted_at = "syncd's write events"
    if rotations == 0 and idp1 > idp0:  # info events filtered (a log-level variant): count mints at the IdP
        rotations, counted_at = idp1 - idp0, "IdP requests"
    cpu = s1.cpu - s0.cpu
    hist = analysis.histogram_facts(analysis.lateness_buckets(text_b))
    late_log = [lat for fired, lat in facts.lateness if t0 <= fired < t1]
    # Growth is judged over the window's second half: the first half may still hold the first refresh of
    # every adopted credential (one-off allocations); a leak shows in both halves.
    rss_window = [(s.t, s.rss) for s in sampler.samples if t0 <= s.t <= t1]
    rss_late = [(t, r) for t, r in rss_window if t >= t0 + window / 2]
    # CPU per rotation in 6 equal slices of the window: the spread says how noisy the machine was.
    slices = []
    for k in range(6):
        a, b = t0 + window * k / 6, t0 + window * (k + 1) / 6
        pts = [s for s in sampler.samples if a <= s.t <= b]
        n_rot = analysis.count_between(facts.writes_ok, pts[0].t, pts[-1].t) if len(pts) >= 2 else 0
        if n_rot:
            slices.append((pts[-1].cpu - pts[0].cpu) / n_rot)
        elif len(pts) >= 2 and counted_at == "IdP requests":  # evenly spread: prorate the window's count
            slices.append((pts[-1].cpu - pts[0].cpu) / (rotations * (pts[-1].t - pts[0].t) / window))
    result.update(
        {
            "window_s": window,
            "rotations": rotations,
            "rotations_per_s": rotations / window,
            "rotations_counted_from": counted_at,
            "idp_requests_in_window": idp1 - idp0,
            "mints_ok_in_window": analysis.count_between(facts.mints_ok, t0, t1),
            "cpu_s": cpu,
            "cpu_cores": cpu / window,
            "cpu_per_rotation_ms": 1000 * cpu / rotations if rotations else None,
            "cpu_system_share": (s1.sys - s0.sys) / cpu if cpu else None,
            "cpu_per_rotation_ms_slices": [1000 * s for s in slices],
            "rss_start_mb": s0.rss / 2**20,
            "rss_end_mb": s1.rss / 2**20,
            "rss_growth_mb_per_h": (analysis.slope_per_hour(rss_late) or 0.0) / 2**20,
            "rss_growth_whole_window_mb_per_h": (analysis.slope_per_hour(rss_window) or 0.0) / 2**20,
            "peak_rss_mb": peak / 2**20,
            "rss_per_credential_kb": s1.rss / 1024 / spec.n,
            "lateness_hist": hist,
            "lateness_log": analysis.summary(late_log),
            "failures": {
                "mints": len(facts.mints_failed),
                "writes": len(facts.writes_failed),
                "first": (facts.mints_failed + facts.writes_failed)[:3],
                "warnings": dict(facts.warnings),
            },
            "writes_total_metric": analysis.writes_ok_total(text_b),
            "writes_logged_before_scrape": len([t for t in facts.writes_ok if t <= t1 + scrape_wall]),
            "scrape": {
                "wall_ms": 1000 * scrapes[0]["wall_s"],
                "loop_stall_ms": 1000 * scrapes[0]["loop_stall_s"],
                "kb": scrapes[0]["bytes"] / 1024,
                "reading_scrape_overlapped_rotations": analysis.count_between(
                    facts.mints_ok, t1, t1 + scrapes[0]["wall_s"] + 0.5
                ),
            },
            "log_lines": facts.lines,
        }
    )
    if spec.reader:
        try:
            result["reader"] = json.loads((workdir / "reader.json").read_text())
        except (OSError, ValueError) as exc:
            result["reader"] = {"error": f"reader produced no result: {exc}"}
    return result


class LoopProbe:
    """Polls /livez every 10 ms in a thread: the longest answer time is how long the event loop was stuck."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loop-probe", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            with contextlib.suppress(OSError):
                http_request("GET", f"{self.url}/livez", timeout=30)
            self.latencies.append(time.perf_counter() - t)
            self._stop.wait(0.01)

    @property
    def max_latency(self) -> float:
        return max(self.latencies, default=0.0)

    def __enter__(self) -> LoopProbe:
        self._thread.start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.05)
        self._stop.set()
        self._thread.join(35)


def _scrape_phase(url: str, duration: float, interval: float) -> dict[str, Any]:
    """Scrape /metrics every ``interval`` s for ``duration`` s, as Prometheus would, probing the loop meanwhile.

    Lateness under scraping = the histogram's growth between the first and the last scrape: every job that ran
    in between, including those that ran while a scrape was rendering.
    """
    texts, walls = [], []
    with LoopProbe(url) as probe:
        start = time.time()
        k = 0
        while True:
            body, wall = _scrape(url)
            texts.append(body)
            walls.append(wall)
            k += 1
            if k * interval > duration:
                break
            time.sleep(max(0.0, start + k * interval - time.time()))
    lat = sorted(probe.latencies)
    return {
        "duration_s": time.time() - start,
        "interval_s": interval,
        "scrapes": len(texts),
        "scrape_wall_ms": [1000 * w for w in walls],
        "lateness_hist": analysis.histogram_facts(
            analysis.bucket_diff(analysis.lateness_buckets(texts[0]), analysis.lateness_buckets(texts[-1]))
        ),
        "livez_max_ms": 1000 * lat[-1] if lat else None,
        "livez_p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))] if lat else None,
        "livez_probes": len(lat),
    }


def _profile(pid: int, seconds: float, workdir: Path, log: Log) -> dict[str, Any]:
    """py-spy on the running daemon (non-blocking: it does not pause syncd), summarised by cost category."""
    out = workdir / "profile.speedscope.json"
    pyspy = Path(sys.executable).parent / "py-spy"
    log(f"  profiling syncd with py-spy for {seconds:g}s ...")
    proc = subprocess.run(
        [
            str(pyspy),
            "record",
            "--pid",
            str(pid),
            "--duration",
            f"{seconds:g}",
            "--rate",
            "200",
            "--nonblocking",
            "--gil",
            "--format",
            "speedscope",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    if proc.returncode != 0 or not out.exists():
        return {"error": (proc.stderr or proc.stdout)[-500:]}
    summary = analysis.analyse_speedscope(out)
    summary["file"] = str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out)
    summary["seconds"] = seconds
    return summary


# --------------------------------------------------------------------------- idle / start-up


def _startup_figures(syncd: SyncdProcess, fake: FakeIdpProcess) -> dict[str, Any]:
    """A started syncd's start-up: spawn to `started`, split at `listening`, and what it adopted."""
    ev = syncd.events_seen
    started = analysis.ts(ev["started"]["timestamp"])
    listening = analysis.ts(ev["listening"]["timestamp"]) if "listening" in ev else None
    return {
        "seconds": started - syncd.spawned_at,
        "config_and_setup_s": (listening - syncd.spawned_at) if listening else None,
        "adoption_s": (started - listening) if listening else None,
        "adopted": ev["started"].get("adopted"),
        "to_mint": ev["started"].get("to_mint"),
        "idp_requests_at_started": fake.issued(),
    }


def run_startup(
    store: str,
    adapter: StoreAdapter,
    n: int,
    workdir: Path,
    log: Log,
    *,
    lifetime: float = 3600.0,
    settle: float = 3,
    repeats: int = 1,
) -> dict[str, Any]:
    """N credentials whose targets already hold fresh long-lived tokens: adoption time, mints, idle RSS and CPU.

    With ``repeats`` > 1 syncd is started again that many times in all, on the same stored tokens, and
    the start-up figures are the run with the median time (``each_s`` lists them all): one start-up
    on this machine varies by 10-20% from one minute to the next, as much as a target's margin.
    """
    _fresh_dir(workdir)
    prefix = f"idle-{n}"
    adapter.reset(prefix)
    result: dict[str, Any] = {"store": store, "n": n, "lifetime": lifetime}
    fake = FakeIdpProcess(lifetime, workdir)
    fake.start()
    syncd: SyncdProcess | None = None
    sampler: Sampler | None = None
    try:
        port = free_port()
        cfg = write_config(workdir / "syncd.toml", syncd_config(adapter, prefix, n, lifetime, fake.token_url, port))
        t = time.time()
        # issued within the last tenth of the lifetime: fresh, and no refresh due for minutes
        adapter.seed(seed_payloads(adapter, prefix, n, lifetime, t, lifetime / 10), prefix)
        result["seed_seconds"] = time.time() - t
        syncd = SyncdProcess(cfg, workdir, port)
        syncd.start()
        pid = syncd.syncd_pid
        sampler = Sampler(pid, interval=0.25).start()
        result["startup"] = _startup_figures(syncd, fake)
        ready = _readyz(syncd.url)
        result["startup"]["readyz_status"] = ready
        time.sleep(settle)
        a = sampler.read()
        time.sleep(settle)
        b = sampler.read()
        result.update(
            {
                "rss_mb": b.rss / 2**20,
                "peak_rss_mb": sampler.peak_rss() / 2**20,
                "idle_cpu_cores": (b.cpu - a.cpu) / (b.t - a.t),
                "idp_requests_after_settle": fake.issued(),
            }
        )
        sampler.stop()
        log(
            f"  {store} start-up with {n} fresh stored tokens: {result['startup']['seconds']:.1f}s, "
            f"adopted {result['startup']['adopted']}, IdP requests {result['idp_requests_after_settle']}, "
            f"RSS {result['rss_mb']:.0f} MB"
        )
        result["exit_code"] = syncd.stop_and_code()
        if repeats > 1:
            runs = [result["startup"]]
            for k in range(1, repeats):
                port = free_port()
                again_cfg = write_config(
                    workdir / f"syncd-again-{k}.toml", syncd_config(adapter, prefix, n, lifetime, fake.token_url, port)
                )
                syncd = SyncdProcess(again_cfg, workdir / f"again-{k}", port)
                syncd.start()
                runs.append(_startup_figures(syncd, fake))
                syncd.stop()
            median = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
            result["startup"] = {**median, "each_s": [r["seconds"] for r in runs], "readyz_status": ready}
            result["idp_requests_after_settle"] = fake.issued()
            each = ", ".join(f"{r['seconds']:.1f}" for r in runs)
            log(f"  ... started {repeats} times: {each} s (the median is taken)")
    finally:
        if sampler is not None:
            sampler.stop()
        if syncd is not None:
            syncd.stop()
        fake.stop()
    return result


def _readyz(url: str) -> int:
    status, _ = http_request("GET", f"{url}/readyz", timeout=30)
    return status


# --------------------------------------------------------------------------- floor and naive


def run_floor(
    adapter: StoreAdapter,
    workdir: Path,
    log: Log,
    *,
    lifetime: float,
    keys: int,
    count: int,
    repeats: int,
    rate: float | None = None,
) -> dict[str, Any]:
    """The floor loop (bench/floor.py) in its own process, ``repeats`` times; the median is the figure."""
    workdir.mkdir(parents=True, exist_ok=True)
    prefix = "floor"
    adapter.reset(prefix)
    fake = FakeIdpProcess(lifetime, workdir)
    fake.start()
    runs = []
    try:
        cfg = write_config(
            workdir / "floor.toml", syncd_config(adapter, prefix, keys, lifetime, fake.token_url, free_port())
        )
        for r in range(repeats):
            out = workdir / f"floor-{r}.json"
            paced = ["--rate", f"{rate:g}"] if rate else []
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.floor",
                    "--config",
                    str(cfg),
                    "--count",
                    str(count),
                    "--out",
                    str(out),
                    *paced,
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                check=True,
                timeout=600,
            )
            runs.append(json.loads(out.read_text()))
    finally:
        fake.stop()
    per = [r["cpu_per_rotation_ms"] for r in runs]
    what = f"floor paced at {rate:g}/s" if rate else "floor"
    log(f"  {what}: {statistics.median(per):.3f} ms CPU/rotation (runs: {', '.join(f'{p:.3f}' for p in per)})")
    return {
        "runs": runs,
        "cpu_per_rotation_ms": statistics.median(per),
        "rotations_per_s": statistics.median(r["rotations_per_s"] for r in runs),
    }


def run_bare_floor(
    adapter: StoreAdapter, workdir: Path, log: Log, *, lifetime: float, keys: int, count: int, repeats: int
) -> dict[str, Any]:
    """The bare floor (bench/bare_floor.py: aiohttp POST + bare store write, no syncd code), ``repeats`` times."""
    workdir.mkdir(parents=True, exist_ok=True)
    prefix = "bare"
    adapter.reset(prefix)
    fake = FakeIdpProcess(lifetime, workdir)
    fake.start()
    runs = []
    try:
        spec = workdir / "bare.json"
        names = [adapter.key(prefix, i) for i in range(keys)]
        spec.write_text(json.dumps({"token_url": fake.token_url, "keys": names, "store": adapter.spec(prefix)}))
        for r in range(repeats):
            out = workdir / f"bare-{r}.json"
            cmd = [sys.executable, "-m", "bench.bare_floor", "--spec", str(spec), "--count", str(count)]
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, env=env, check=True, timeout=600)
            runs.append(json.loads(out.read_text()))
    finally:
        fake.stop()
    per = [r["cpu_per_rotation_ms"] for r in runs]
    shown = ", ".join(f"{p:.3f}" for p in per)
    log(f"  bare aiohttp floor: {statistics.median(per):.3f} ms CPU/rotation (runs: {shown})")
    return {
        "runs": runs,
        "cpu_per_rotation_ms": statistics.median(per),
        "rotations_per_s": statistics.median(r["rotations_per_s"] for r in runs),
    }


def run_naive(
    adapter: StoreAdapter, workdir: Path, log: Log, *, lifetime: float, runs: int, repeats: int
) -> dict[str, Any]:
    """One fresh interpreter per rotation (bench/naive_rotate.py); children's CPU from getrusage."""
    workdir.mkdir(parents=True, exist_ok=True)
    prefix = "naive"
    adapter.reset(prefix)
    keys = [adapter.key(prefix, i) for i in range(runs)]
    fake = FakeIdpProcess(lifetime, workdir)
    fake.start()
    batches = []
    try:
        now = time.time()
        adapter.seed(seed_payloads(adapter, prefix, runs, lifetime, now, 1.0), prefix)  # secrets must exist
        script = str(ROOT / "bench" / "naive_rotate.py")
        for _ in range(repeats):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            for i, key in enumerate(keys):
                spec = {
                    "token_url": fake.token_url,
                    "client_id": f"c{i:05d}",
                    "client_secret": f"bench-secret-{i:05d}",
                    "credential": f"c{i:05d}",
                    "key": key,
                    "store": adapter.spec(prefix),
                }
                subprocess.run([sys.executable, script, json.dumps(spec)], check=True, timeout=120)
            wall = time.perf_counter() - t
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            batches.append({"runs": runs, "cpu_s": cpu, "wall_s": wall, "cpu_per_rotation_ms": 1000 * cpu / runs})
    finally:
        fake.stop()
    per = [b["cpu_per_rotation_ms"] for b in batches]
    log(f"  naive: {statistics.median(per):.0f} ms CPU/rotation (batches: {', '.join(f'{p:.0f}' for p in per)})")
    return {
        "batches": batches,
        "cpu_per_rotation_ms": statistics.median(per),
        "wall_per_rotation_ms": 1000 * statistics.median(b["wall_s"] / b["runs"] for b in batches),
    }
