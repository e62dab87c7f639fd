"""Start-up adoption, timed in-process and broken down: config, set-up, target reads, judging, scheduling.

``python -m bench.startup --store file --n 10000`` seeds N fresh tokens (the harness's own
``seed_payloads`` and store adapters), then runs syncd's start-up in this process the way
``syncd run`` does (load the config, ``Engine.setup``, ``plan``, ``start``) and times each
step. The reads of ``start`` (``adopt.read_targets``) and the adoption that follows are
timed by wrapping them, so the scheduling is what remains; the garbage collector's time,
part of every step's, is also given on its own. Every seeded token must be
adopted, and the fake IdP (its own process) must have counted 0 token requests.

``--spawn`` also times ``syncd run`` as a process, from spawn to its ``started`` event
(``bench.cases.run_startup``, the figure docs/benchmarks.md records).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import cases
from bench.procs import FakeIdpProcess
from bench.stores import ADAPTERS, StoreAdapter
from tests.peers.servers import free_port

LIFETIME = 3600.0


class _Collections:
    """Time spent in the garbage collector while installed (``gc.callbacks``): part of every step's time."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.count += 1
            self.seconds += time.perf_counter() - self._started


class _Clock:
    """Wall and CPU seconds (this process, every thread) of the steps of a start-up, in order."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def add(self, name: str, wall: float, cpu: float) -> None:
        self.wall[name] = self.wall.get(name, 0.0) + wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        w, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - w, time.process_time() - c)


@contextlib.contextmanager
def _timed(module: Any, name: str, clock: _Clock) -> Iterator[None]:
    """Replace the coroutine function ``module.name`` with one that adds its time to ``clock`` as ``name``."""
    original = getattr(module, name)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        with clock.step(name):
            return await original(*args, **kwargs)

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


async def _start_in_process(config_path: Path, n: int, profile: Path | None, log_file: Path) -> dict[str, Any]:
    from syncd import logs
    from syncd.config import load_config
    from syncd.engine import Engine, adopt, lifecycle

    clock = _Clock()
    collections = _Collections()
    gc.callbacks.append(collections)
    with clock.step("config_load"):
        config = load_config(config_path)
    stream = log_file.open("a", encoding="utf-8")
    logs.configure(config.daemon.log_level, config.daemon.log_format, stream=stream)  # as `syncd run` logs
    with clock.step("setup"):
        engine = Engine(config)
        engine.setup()
    with clock.step("plan"):
        engine.plan()
    profiler = cProfile.Profile() if profile else None
    with _timed(adopt, "read_targets", clock), _timed(lifecycle, "adopt_all", clock), clock.step("start"):
        if profiler is not None:
            profiler.enable()
        await engine.start()
        if profiler is not None:
            profiler.disable()
    phases: dict[str, dict[str, float]] = {}
    for kind, got in (("wall_s", clock.wall), ("cpu_s", clock.cpu)):
        phases[kind] = {
            "config_load": got["config_load"],
            "setup": got["setup"],
            "plan": got["plan"],
            "reads": got["read_targets"],
            "judging": got["adopt_all"] - got["read_targets"],  # what each credential makes of its reads
            "scheduling": got["start"] - got["adopt_all"],  # gauges and jobs
            "start": got["start"],  # Engine.start: what the `started` event waits for after set-up
            "total": got["config_load"] + got["setup"] + got["plan"] + got["start"],
        }
    gc.callbacks.remove(collections)
    adopted = sum(1 for st in engine.credentials.values() if st.adopted)
    jobs = len(engine.scheduler.get_jobs()) if engine.scheduler is not None else 0
    await asyncio.sleep(1.0)  # a credential due at once would be minting now
    await engine.stop(drain_timeout=1.0)
    stream.close()
    if profiler is not None and profile is not None:
        profiler.dump_stats(profile)
    gc_info = {"collections": collections.count, "seconds": collections.seconds}
    return {**phases, "gc": gc_info, "adopted": adopted, "n": n, "scheduler_jobs": jobs}


def measure(
    store: str, n: int, workdir: Path, log: Callable[[str], None], *, spawn: bool = False, profile: bool = False
) -> dict[str, Any]:
    """Seed ``n`` fresh tokens in ``store``, then time syncd's start-up over them (see the module docstring)."""
    adapter: StoreAdapter = ADAPTERS[store](workdir / "store")
    adapter.start()
    result: dict[str, Any] = {"store": store, "n": n}
    try:
        prefix = f"startup-{n}"
        adapter.reset(prefix)
        fake = FakeIdpProcess(LIFETIME, workdir / "idp")
        fake.start()
        try:
            now = time.time()
            t = time.perf_counter()
            adapter.seed(cases.seed_payloads(adapter, prefix, n, LIFETIME, now, LIFETIME / 10), prefix)
            result["seed_s"] = time.perf_counter() - t
            text = cases.syncd_config(adapter, prefix, n, LIFETIME, fake.token_url, free_port())
            cfg = cases.write_config(workdir / "syncd.toml", text)
            prof = workdir / f"startup-{store}-{n}.pstats" if profile else None
            result["in_process"] = asyncio.run(_start_in_process(cfg, n, prof, workdir / "syncd-in-process.log"))
            result["mints"] = fake.issued()
            if prof is not None:
                result["profile"] = str(prof)
                pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(40)
        finally:
            fake.stop()
        if spawn:
            spawned = cases.run_startup(store, adapter, n, workdir / "spawn", log, lifetime=LIFETIME, settle=1)
            result["spawned"] = spawned.get("startup")
            result["spawned_mints"] = spawned.get("idp_requests_after_settle")
    finally:
        adapter.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["file", "openbao"], action="append")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--spawn", action="store_true", help="also time `syncd run` from spawn to `started`")
    parser.add_argument("--profile", action="store_true", help="cProfile the in-process start (pstats file)")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    out = []
    with tempfile.TemporaryDirectory(prefix="syncd-startup-") as tmp:
        base = args.workdir or Path(tmp)
        for store in args.store or ["file", "openbao"]:
            res = measure(store, args.n, base / store, log, spawn=args.spawn, profile=args.profile)
            wall, cpu = res["in_process"]["wall_s"], res["in_process"]["cpu_s"]
            log(
                f"{store} n={args.n}: in-process {wall['total']:.2f}s wall / {cpu['total']:.2f}s CPU ("
                + ", ".join(f"{k} {v:.2f}/{cpu[k]:.2f}" for k, v in wall.items() if k != "total")
                + f"; gc {res['in_process']['gc']['seconds']:.2f}s in {res['in_process']['gc']['collections']}"
                + f"), adopted {res['in_process']['adopted']}, mints {res['mints']}"
                + (f"; spawned {res['spawned']['seconds']:.2f}s" if res.get("spawned") else "")
            )
            out.append(res)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
