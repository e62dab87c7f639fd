"""The Python heap one credential costs, by component and by allocating module (tracemalloc).

Builds N one-target file-store credentials' worth of daemon state in this process, step by
step as the daemon holds it, and takes a tracemalloc snapshot after each step:

* config: ``load_config`` of a generated file (what stays alive is the loaded ``Config``);
* engine state: ``Engine.setup`` (stores, one ``CredentialState`` and its targets per credential);
* Prometheus series: every per-credential series the daemon keeps (``init_credential`` and the
  gauges a rotation sets), as one credential shows them after its first good run;
* scheduler: one run job per credential and its planned read-back (`Sweep`), as the engine keeps them;
* held token: the ``TokenPayload`` of a ~1 KB JWT per credential.

Each step's growth is divided by N (KiB per credential) and split by the file that allocated it,
so a cut can be aimed and its effect re-measured. One ``/metrics`` render is timed at the end
(wall time of the join; target 2 wants <= 50 ms at 10,000 credentials).

With ``--rss`` the steps are measured as resident-set growth instead (no tracemalloc: fast enough
for 100,000 credentials, allocator slack included, no split by site).

Usage: ``python -m bench.memory [-n 10000] [--top 6] [--frames 8] [--rss] [--json out.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import tempfile
import time
import tracemalloc
from collections import defaultdict
from datetime import UTC
from pathlib import Path
from typing import Any

from bench.micro import _jwt

FRAMES = 8  # deep enough to name the syncd frame behind an allocation inside a library (--frames)


def arm_jobs_as_the_engine_does(engine: Any) -> Any:
    """A paused scheduler holding one job per credential for its runs and a planned read-back each
    (`Sweep`), an hour out."""
    from syncd.schedule import CredentialJobs, LoopScheduler  # imported late, as every syncd module here

    sched = LoopScheduler(timezone=UTC)
    sched.start(paused=True)
    runs = CredentialJobs(sched, engine.run_credential)
    engine.readbacks.start(sched)  # the sweep's job holds it
    reads = engine.readbacks.sweep
    far = time.time() + 3600
    for name in engine.credentials:
        runs.arm(name, far)
        reads.arm(name, far)
    return sched


def write_file_config(n: int, tmp: Path) -> Path:
    """A config of ``n`` file-store credentials in ``tmp`` (their targets there too); its path."""
    parts = ['[daemon]\nlisten = "127.0.0.1:0"\n', f'[stores.bench]\ntype = "file"\ndirectory = "{tmp}"\n']
    for i in range(n):
        parts.append(
            f'[[credentials]]\nname = "c{i:06d}"\ntoken_url = "http://127.0.0.1:9/t"\nclient_id = "c{i:06d}"\n'
            f'client_secret = "bench-secret-{i:06d}"\ntargets = [{{ store = "bench", key = "c{i:06d}.json" }}]\n'
        )
    path = tmp / "syncd.toml"
    path.write_text("\n".join(parts))
    path.chmod(0o600)
    return path


def _where(tb: tracemalloc.Traceback, root: str) -> str:
    """The allocating module: the innermost syncd frame if any (a library allocating for syncd
    is charged to the syncd line that asked), else the innermost frame's file."""
    for frame in reversed(tb):  # tracemalloc's traceback: most recent call last once reversed
        if frame.filename.startswith(root) and "/bench/" not in frame.filename:
            return f"{frame.filename[len(root) :]}:{frame.lineno}"
    frame = tb[-1] if tb else None
    if frame is None:
        return "?"
    name = frame.filename
    cut = name.find("site-packages/")
    return name[cut + len("site-packages/") :] if cut >= 0 else name


class Steps:
    """tracemalloc snapshots between steps, each step's growth split by allocating site."""

    def __init__(self, n: int, root: str, frames: int) -> None:
        self.n = n
        self.root = root
        self.out: dict[str, dict[str, Any]] = {}
        tracemalloc.start(frames)
        gc.collect()
        self.snap = tracemalloc.take_snapshot()

    def done(self, name: str) -> None:
        gc.collect()
        snap = tracemalloc.take_snapshot()
        by_site: dict[str, int] = defaultdict(int)
        for stat in snap.compare_to(self.snap, "traceback"):
            by_site[_where(stat.traceback, self.root)] += stat.size_diff
        total = sum(by_site.values())
        sites = sorted(by_site.items(), key=lambda kv: -kv[1])
        self.out[name] = {
            "kib": round(total / self.n / 1024, 3),
            "sites": [(site, round(size / self.n / 1024, 3)) for site, size in sites if abs(size) >= self.n * 16],
        }
        self.snap = snap

    def stop(self) -> None:
        tracemalloc.stop()


class RssSteps:
    """The process's resident set between steps: fast enough for 100,000 credentials, and what
    the 1 GB target counts (allocator slack included), but with no split by site."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.out: dict[str, dict[str, Any]] = {}
        gc.collect()
        self.start = self.last = _rss()

    def done(self, name: str) -> None:
        gc.collect()
        now = _rss()
        self.out[name] = {"kib": round((now - self.last) / self.n / 1024, 3), "sites": []}
        self.last = now

    def stop(self) -> None:
        self.out["process RSS at the end (MiB)"] = {"kib": 0.0, "sites": [], "mib": round(self.last / 2**20, 1)}


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(n: int, frames: int = FRAMES, rss: bool = False) -> dict[str, Any]:
    return asyncio.run(_measure(n, frames, rss))


async def _measure(n: int, frames: int, rss: bool) -> dict[str, Any]:
    import syncd
    from syncd.config import load_config
    from syncd.engine import Engine
    from syncd.engine.report import publish
    from syncd.payload import TokenPayload

    root = str(Path(syncd.__file__).parent.parent) + "/"
    tmp = Path(tempfile.mkdtemp(prefix="syncd-memory-"))
    cfg_path = write_file_config(n, tmp)
    steps: Steps | RssSteps = RssSteps(n) if rss else Steps(n, root, frames)
    config = load_config(cfg_path)
    steps.done("config")
    engine = Engine(config)
    engine.setup()
    steps.done("engine state")
    now = time.time()
    for st in engine.credentials.values():
        labels = [ts.label for ts in st.targets]
        engine.metrics.init_credential(st.name, labels)
        # What a first good run leaves: every gauge set, the ok counters counted once.
        st.token = TokenPayload(st.name, _secret("x"), now, now + 1200, now + 600)
        for ts in st.targets:
            ts.stored_expires_at, ts.last_success = now + 1200, now
            engine.metrics.writes.labels(credential=st.name, target=ts.label, outcome="ok").inc()
        engine.metrics.mints.labels(credential=st.name, outcome="ok").inc()
        engine.metrics.next_refresh.labels(credential=st.name).set(now + 600)
        publish(engine.metrics, st)
        st.token = None
    steps.done("Prometheus series")
    sched = arm_jobs_as_the_engine_does(engine)
    steps.done("scheduler (run job, read-back plan)")
    for i, st in enumerate(engine.credentials.values()):
        st.token = TokenPayload(st.name, _secret(_jwt(i)), now, now + 1200, now + 600)
    steps.done("held token (~1 KB JWT)")
    steps.stop()
    scrape = []
    for _ in range(5):
        t = time.perf_counter()
        engine.metrics.render()
        scrape.append((time.perf_counter() - t) * 1000)
    size = len(engine.metrics.render())
    sched.shutdown(wait=False)
    total = round(sum(s["kib"] for s in steps.out.values()), 2)
    return {"n": n, "kib_per_credential": total, "components": steps.out, "render_ms": sorted(scrape)[2], "bytes": size}


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--top", type=int, default=6, help="allocating sites shown per component")
    ap.add_argument("--frames", type=int, default=FRAMES, help="traceback depth (fewer is faster at large n)")
    ap.add_argument("--rss", action="store_true", help="resident set growth per step instead of tracemalloc")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    res = measure(args.n, args.frames, args.rss)
    what = "RSS growth" if args.rss else "Python heap"
    print(f"{res['n']:,} credentials: {res['kib_per_credential']:.2f} KiB per credential ({what})")
    for name, comp in res["components"].items():
        if "mib" in comp:
            print(f"  {name:36s} {comp['mib']:6.1f}")
            continue
        print(f"  {name:36s} {comp['kib']:6.2f} KiB")
        for site, kib in comp["sites"][: args.top]:
            print(f"      {kib:6.2f}  {site}")
    print(f"/metrics render (median of 5): {res['render_ms']:.1f} ms, {res['bytes'] / 1024:,.0f} KiB")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
