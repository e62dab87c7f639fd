"""What one /metrics scrape costs at N credentials: wall per scrape and the longest event-loop stall.

Builds N one-target file-store credentials' worth of daemon state in this process as
bench/memory.py does (config, engine state, every per-credential series, one run job and a
planned read-back per credential, a held ~1 KB token each), so the heap a garbage collection walks
is the daemon's. It then serves that engine with ``syncd.server.HttpServer`` on 127.0.0.1 and
scrapes it from a separate client process (its reads must not take the GIL from the server's
loop), one scrape at a time over one keep-alive connection, as Prometheus does.

On the server's loop a ticker wakes every millisecond and records each gap between wake-ups;
a scrape's stall is the longest gap that overlaps it (minus the tick). Also reported:

* the render in-process: each ``render_parts`` part's time and size (the longest part is the
  smallest stall a part-by-part render can have), and the whole join;
* every garbage collection during the scrapes (generation, milliseconds), from ``gc.callbacks``;
* with ``--churn R``, R rotations' worth of series updates per second run meanwhile (a daemon
  at 67 rotations/s updates ~7 series per rotation), so a scrape meets a changing registry.

Usage: ``python -m bench.scrape_cost [-n 10000] [--scrapes 12] [--gzip] [--freeze] [--churn 67]
[--json out.json]``. Times are wall-clock on a shared machine: compare runs made side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from bench.memory import arm_jobs_as_the_engine_does, write_file_config
from bench.micro import _jwt

TICK = 0.001


def build_engine(n: int) -> tuple[Any, Any]:
    """An engine holding N credentials' state as after a first good run, and its paused scheduler."""
    from pydantic import SecretStr

    from syncd.config import load_config
    from syncd.engine import Engine
    from syncd.engine.report import publish
    from syncd.payload import TokenPayload

    tmp = Path(tempfile.mkdtemp(prefix="syncd-scrape-"))
    engine = Engine(load_config(write_file_config(n, tmp)))
    engine.setup()
    now = time.time()
    for i, st in enumerate(engine.credentials.values()):
        engine.metrics.init_credential(st.name, [ts.label for ts in st.targets])
        st.token = TokenPayload(st.name, SecretStr(_jwt(i)), now, now + 1200, now + 600)
        for ts in st.targets:
            ts.stored_expires_at, ts.last_success = now + 1200, now
            engine.metrics.writes.labels(credential=st.name, target=ts.label, outcome="ok").inc()
        engine.metrics.mints.labels(credential=st.name, outcome="ok").inc()
        engine.metrics.next_refresh.labels(credential=st.name).set(now + 600)
        publish(engine.metrics, st)
    return engine, arm_jobs_as_the_engine_does(engine)


def render_breakdown(metrics: Any, rounds: int = 5) -> dict[str, Any]:
    """Each part of the render (what it starts with, median ms, KB) and all of them, in-process."""
    per_part: list[list[float]] = []
    names: list[str] = []
    sizes: list[int] = []
    whole, whole_cpu = [], []
    for _ in range(rounds):
        cpu_all = time.thread_time()
        t_all = time.perf_counter()
        t = t_all
        chunks = []
        for i, chunk in enumerate(metrics.render_parts()):
            now = time.perf_counter()
            if i == len(per_part):
                per_part.append([])
                names.append(_part_name(chunk))
                sizes.append(0)
            per_part[i].append((now - t) * 1000)
            sizes[i] = len(chunk)
            chunks.append(chunk)
            t = time.perf_counter()
        whole.append((time.perf_counter() - t_all) * 1000)
        whole_cpu.append((time.thread_time() - cpu_all) * 1000)
    parts = [
        {"part": name, "ms": round(statistics.median(ms), 2), "kb": round(size / 1024)}
        for name, ms, size in zip(names, per_part, sizes, strict=True)
    ]
    return {
        "render_ms": round(statistics.median(whole), 2),
        "render_cpu_ms": round(statistics.median(whole_cpu), 2),
        "parts": parts,
        "bytes": sum(sizes),
    }


def _part_name(chunk: bytes) -> str:
    """The family a part starts with (its first sample's name after a HELP line or without one)."""
    first = chunk[: chunk.find(b"\n")].decode()
    return first.split()[2] if first.startswith("# HELP ") else first.split("{")[0] + " (continued)"


class GcLog:
    """Every collection (monotonic start, generation, ms) while installed."""

    def __init__(self) -> None:
        self.events: list[tuple[float, int, float]] = []
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.monotonic()
        else:
            self.events.append((self._t0, info["generation"], (time.monotonic() - self._t0) * 1000))


async def serve_and_scrape(engine: Any, scrapes: int, gzip: bool, churn: float) -> dict[str, Any]:
    from syncd.server import HttpServer

    server = HttpServer(engine, "127.0.0.1", 0)
    await server.start()
    # (wake-up time, gap before it, the loop thread's CPU seconds in that gap) for every tick: under
    # load the wall gap includes time the OS ran other processes; the CPU gap is the loop's own work.
    gaps: list[tuple[float, float, float]] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last, last_cpu = time.monotonic(), time.thread_time()
        while not stop.is_set():
            await asyncio.sleep(TICK)
            now, cpu = time.monotonic(), time.thread_time()
            gaps.append((now, max(0.0, now - last - TICK), cpu - last_cpu))
            last, last_cpu = now, cpu

    async def churner() -> None:
        # What a rotation changes: its gauges and one ok counter per target and for the mint.
        m = engine.metrics
        names = list(engine.credentials)
        rng = random.Random(1)
        while not stop.is_set():
            await asyncio.sleep(1 / churn)
            name = names[rng.randrange(len(names))]
            now = time.time()
            m.mints.labels(credential=name, outcome="ok").inc()
            m.writes.labels(credential=name, target=engine.credentials[name].targets[0].label, outcome="ok").inc()
            for gauge in (m.token_expiry, m.next_refresh):
                gauge.labels(credential=name).set(now + 600)

    tasks = [asyncio.create_task(ticker())]
    if churn > 0:
        tasks.append(asyncio.create_task(churner()))
    gc_log = GcLog()
    gc.callbacks.append(gc_log)
    try:
        args = [sys.executable, "-m", "bench.scrape_cost", "--client", f"{server.port}", "--scrapes", str(scrapes)]
        proc = await asyncio.create_subprocess_exec(*args, *(["--gzip"] if gzip else []), stdout=subprocess.PIPE)
        out, _ = await proc.communicate()
    finally:
        gc.callbacks.remove(gc_log)
        stop.set()
        await asyncio.gather(*tasks)
        await server.stop()
    rows = [json.loads(line) for line in out.decode().splitlines()]
    for row in rows:
        t0, t1 = row["t0"], row["t1"]
        during = [(g, c) for t, g, c in gaps if t - g - TICK <= t1 and t >= t0]
        row["stall_ms"] = round(1000 * max((g for g, _ in during), default=0.0), 1)
        row["stall_cpu_ms"] = round(1000 * max((c for _, c in during), default=0.0), 1)
        row["server_cpu_ms"] = round(1000 * sum(c for _, c in during), 1)
        row["gc"] = [(gen, round(ms, 1)) for t, gen, ms in gc_log.events if t0 <= t <= t1]
    return {
        "scrapes": rows,
        **{
            key: _spread([r[key] for r in rows])
            for key in ("wall_ms", "stall_ms", "stall_cpu_ms", "server_cpu_ms", "livez_ms")
        },
        "gc_during_scrapes": sum(len(r["gc"]) for r in rows),
    }


def _full_collection_ms() -> float:
    t = time.perf_counter()
    gc.collect()
    return (time.perf_counter() - t) * 1000


def _spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": round(statistics.median(values), 1), "max": max(values)}


def client(port: int, scrapes: int, gzip: bool) -> None:
    """Scrape /metrics ``scrapes`` times over one connection, a quarter second apart; a JSON line each.

    Meanwhile a thread asks /livez every 10 ms on a new connection each time, as the harness's
    probe does (its longest answer is the harness's "stall"), and each line says the longest
    answer that overlapped the scrape."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Accept-Encoding": "gzip"} if gzip else {}
    probes: list[tuple[float, float]] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            t = time.monotonic()
            one = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            one.request("GET", "/livez")
            one.getresponse().read()
            one.close()
            probes.append((t, time.monotonic()))
            done.wait(0.01)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    for _ in range(scrapes):
        time.sleep(0.25)
        t0 = time.monotonic()
        conn.request("GET", "/metrics", headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        t1 = time.monotonic()
        if resp.status != 200:
            raise SystemExit(f"/metrics -> {resp.status}")
        size = len(body)
        if resp.getheader("Content-Encoding") == "gzip":
            body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
        row = {"t0": t0, "t1": t1, "wall_ms": round((t1 - t0) * 1000, 1), "kb_wire": round(size / 1024)}
        time.sleep(0.02)  # the probe that was waiting when the scrape ended has answered
        row["livez_ms"] = round(1000 * max((b - a for a, b in list(probes) if a <= t1 and b >= t0), default=0.0), 1)
        print(json.dumps({**row, "kb": round(len(body) / 1024)}), flush=True)
    done.set()
    prober.join()


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    t = time.perf_counter()
    engine, sched = build_engine(args.n)  # the scheduler needs a running loop
    built = time.perf_counter() - t
    gc.collect()
    full_gc_ms = _full_collection_ms()  # what a generation-2 collection holds the loop for
    if args.freeze:
        gc.freeze()  # start-up's objects move to a generation no collection walks
        full_gc_ms = _full_collection_ms()
    objects = len(gc.get_objects())
    print(f"{args.n:,} credentials built in {built:.1f} s; {objects:,} objects a collection walks")
    print(f"a full collection: {full_gc_ms:.0f} ms{' (after gc.freeze())' if args.freeze else ''}")
    res: dict[str, Any] = {"n": args.n, "gzip": args.gzip, "freeze": args.freeze, "churn": args.churn}
    res.update(gc_objects=objects, full_gc_ms=round(full_gc_ms, 1))
    res["render"] = render_breakdown(engine.metrics)
    res.update(await serve_and_scrape(engine, args.scrapes, args.gzip, args.churn))
    sched.shutdown(wait=False)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--scrapes", type=int, default=12)
    ap.add_argument("--gzip", action="store_true", help="ask for gzip, as Prometheus does")
    ap.add_argument("--freeze", action="store_true", help="gc.freeze() after building the state")
    ap.add_argument("--churn", type=float, default=0.0, help="rotations per second updating series meanwhile")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--client", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        client(args.client, args.scrapes, args.gzip)
        return
    res = asyncio.run(_run(args))
    r = res["render"]
    top = sorted(r["parts"], key=lambda p: -p["ms"])[:4]
    print(
        f"in-process render {r['render_ms']:.1f} ms ({r['render_cpu_ms']:.1f} ms CPU), "
        f"{r['bytes'] / 1024:,.0f} KB in {len(r['parts'])} parts; longest:"
    )
    for p in top:
        print(f"    {p['ms']:6.2f} ms  {p['kb']:6,} KB  {p['part']}")
    print(
        "scrape  wall ms  stall ms (wall / loop CPU)  /livez ms  server CPU ms  KB on the wire  collections (gen, ms)"
    )
    for i, row in enumerate(res["scrapes"]):
        print(
            f"{i:6d}  {row['wall_ms']:7.1f}  {row['stall_ms']:10.1f} / {row['stall_cpu_ms']:5.1f}       "
            f"{row['livez_ms']:9.1f}  {row['server_cpu_ms']:11.1f}  {row['kb_wire']:14,}  {row['gc']}"
        )
    for key in ("wall_ms", "stall_ms", "stall_cpu_ms", "server_cpu_ms", "livez_ms"):
        v = res[key]
        print(f"{key:14s} min {v['min']:6.1f}  median {v['median']:6.1f}  max {v['max']:6.1f}")
    print(f"load average {os.getloadavg()[0]:.1f} (on {os.cpu_count()} CPUs)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
