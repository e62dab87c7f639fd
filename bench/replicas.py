"""The replicas case: N credentials rotated by one syncd, then by three sharing the config (docs/ha.md).

Both runs use the same shared store (the harness's OpenBao: a file store is
pod-local, so every replica would mint everything), the fake IdP and the seeded
steady state of `bench.cases` (every stored token adopted at start-up, first
refreshes already at the steady rate). Each run measures, over one window:

* IdP mints (the fake IdP's count) against one replica's;
* per replica: CPU (seconds and cores), its own mints, and follower reads (the
  targets it read at its wakes as rank 1 or 2, from its ``follow`` log events).

`section` renders the docs/benchmarks.md part from the results.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import analysis
from bench.cases import (
    JITTER,
    REFRESH_AT,
    Log,
    _fresh_dir,
    _start_idp,
    _startup_estimate,
    seed_payloads,
    syncd_config,
    write_config,
)
from bench.procs import Sampler, SyncdProcess
from bench.report import f, table
from bench.stores import StoreAdapter
from tests.peers.servers import free_port


def run_replicas(
    adapter: StoreAdapter,
    workdir: Path,
    log: Log,
    *,
    n: int,
    lifetime: float,
    duration: float,
    replicas: int = 3,
    settle: float = 2.0,
) -> dict[str, Any]:
    """One replica, then ``replicas`` of them, each over a ``duration``-second window; the two runs' figures."""
    out: dict[str, Any] = {
        "n": n,
        "lifetime": lifetime,
        "duration": duration,
        "replicas": replicas,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    for count in (1, replicas):
        log(f"  {count} replica{'s' if count > 1 else ''}: {n} credentials, {lifetime:g}s tokens")
        out[str(count)] = _run(adapter, workdir / f"x{count}", log, n, lifetime, duration, count, settle)
    return out


def _run(
    adapter: StoreAdapter,
    workdir: Path,
    log: Log,
    n: int,
    lifetime: float,
    duration: float,
    count: int,
    settle: float,
) -> dict[str, Any]:
    _fresh_dir(workdir)
    prefix = f"replicas{count}"
    adapter.reset(prefix)
    idp, token_url, issued = _start_idp("fake", lifetime, n, workdir)
    procs: list[SyncdProcess] = []
    samplers: list[Sampler] = []
    try:
        interval = REFRESH_AT * lifetime
        # The replicas start one after the other, each reading every target: one process's estimate, times N,
        # doubled: a seed that comes due before its replica is up is minted at start-up, and thousands of
        # those at once are a mint storm, not the steady state this case measures.
        lead = 2.0 * _startup_estimate(adapter.kind, n) * count + 5
        t_ref = time.time() + lead + JITTER * interval
        adapter.seed(seed_payloads(adapter, prefix, n, lifetime, t_ref, interval), prefix)
        t_ref = max(t_ref, time.time() + 1)
        for k in range(count):
            port = free_port()
            text = syncd_config(adapter, prefix, n, lifetime, token_url, port)
            text = text.replace("[daemon]\n", f"[daemon]\nreplicas = {count}\n", 1)
            cfg = write_config(workdir / f"syncd-{k}.toml", text)
            wd = workdir / f"replica{k}"
            wd.mkdir()
            procs.append(SyncdProcess(cfg, wd, port, env={"SYNCD_DAEMON__REPLICA": str(k)}))
        # Started side by side, as a StatefulSet with parallel pod management starts its pods: one after the
        # other, the last replica would come up N start-ups late, past seeds that were due meanwhile.
        with ThreadPoolExecutor(len(procs)) as pool:
            list(pool.map(lambda p: p.start(), procs))
        samplers = [Sampler(p.syncd_pid).start() for p in procs]
        started = max(analysis.ts(p.events_seen["started"]["timestamp"]) for p in procs)
        adopted = min(int(p.events_seen["started"].get("adopted") or 0) for p in procs)
        if adopted < n:
            # Some seeds came due during a slow start-up and were minted at once, all together: wait one
            # token lifetime, so those mints are spread by their own refresh schedule before measuring.
            log(f"    a replica adopted {adopted} of {n} at start-up: settling {lifetime:g}s before measuring")
            settle = max(settle, lifetime)
        w0 = max(time.time() + 1.0, started + settle, t_ref + JITTER * interval + 0.5)
        while time.time() < w0:
            time.sleep(0.01)
        s0 = [s.read() for s in samplers]
        idp0 = issued()
        log(f"    measuring {duration:g}s ...")
        time.sleep(duration)
        s1 = [s.read() for s in samplers]
        idp1 = issued()
    finally:
        for s in samplers:
            s.stop()
        for p in procs:
            p.stop_and_code()
        idp.stop()
    window = s1[0].t - s0[0].t
    per: list[dict[str, Any]] = []
    for p, a, b in zip(procs, s0, s1, strict=True):
        facts = analysis.parse_log(p.log_path)
        reads, takeovers, adoptions = _follow_counts(p.log_path, a.t, b.t)
        per.append(
            {
                "adopted_at_startup": p.events_seen["started"].get("adopted"),
                "cpu_s": b.cpu - a.cpu,
                "cpu_cores": (b.cpu - a.cpu) / window,
                "mints": analysis.count_between(facts.mints_ok, a.t, b.t),
                "follower_reads": reads,
                "takeovers": takeovers,
                "adoptions": adoptions,
                "mint_failures": len([t for t, _ in facts.mints_failed if a.t <= t < b.t]),
                "write_failures": len(facts.writes_failed),
            }
        )
    return {
        "window_s": window,
        "idp_mints": idp1 - idp0,
        "expected_single_mints": n / interval * window,
        "replicas": per,
    }


def _follow_counts(log_path: Path, t0: float, t1: float) -> tuple[int, int, int]:
    """(targets read, takeovers, adoptions) of the ``follow`` events between t0 and t1."""
    reads = takeovers = adoptions = 0
    with open(log_path, "rb") as fh:
        for raw in fh:
            if b'"follow"' not in raw:
                continue
            try:
                doc = json.loads(raw)
            except ValueError:
                continue
            if doc.get("event") != "follow" or not t0 <= analysis.ts(doc["timestamp"]) < t1:
                continue
            reads += int(doc.get("reads", 0))
            if doc.get("outcome") == "takeover":
                takeovers += 1
            else:
                adoptions += 1
    return reads, takeovers, adoptions


def section(results: dict[str, Any]) -> str:
    """The docs/benchmarks.md section, or "" when the case did not run."""
    r = results.get("replicas")
    if not r or "1" not in r:
        return ""
    one, several = r["1"], r[str(r["replicas"])]
    single_cpu = one["replicas"][0]["cpu_s"]
    first = one["replicas"][0]
    rows = [
        [
            "1 replica",
            f(one["idp_mints"], 0),
            "1.00",
            f(single_cpu, 1),
            f(first["cpu_cores"]),
            "-",
            f"{first.get('adopted_at_startup')} / {first['mint_failures']}",
        ]
    ]
    for k, rep in enumerate(several["replicas"]):
        rows.append(
            [
                f"replica {k} of {r['replicas']}",
                f(rep["mints"], 0),
                "",
                f(rep["cpu_s"], 1),
                f(rep["cpu_cores"]),
                f"{rep['follower_reads']} ({rep['adoptions']} adoptions, {rep['takeovers']} takeovers)",
                f"{rep.get('adopted_at_startup')} / {rep['mint_failures']}",
            ]
        )
    total_cpu = sum(rep["cpu_s"] for rep in several["replicas"])
    ratio = several["idp_mints"] / one["idp_mints"] if one["idp_mints"] else None
    rows.append(
        [
            f"**{r['replicas']} replicas, total**",
            f(several["idp_mints"], 0),
            f(ratio),
            f(total_cpu, 1),
            f(total_cpu / several["window_s"]),
            str(sum(rep["follower_reads"] for rep in several["replicas"])),
            "",
        ]
    )
    return "\n".join(
        [
            "## Several replicas (OpenBao)\n",
            f"{r['n']:,} credentials, {r['lifetime']:g} s tokens (~{r['n'] / (REFRESH_AT * r['lifetime']):.0f} "
            f"rotations/s), {r['duration']:g} s window, rotated by one syncd and then by {r['replicas']} sharing "
            "the configuration (`[daemon] replicas`, ordinals from `SYNCD_DAEMON__REPLICA`, takeover_delay auto). "
            "Tokens are seeded in the store as for the other cases, so every replica adopts them at start-up. "
            "IdP mints are the fake IdP's count in the window; a replica's mints and follower reads are from its "
            "log (`mint`, `follow` events); a replica that did not adopt every seed at start-up, or whose mints "
            "failed, was measured off its steady state (a loaded machine). See [ha.md](ha.md)."
            + (f" Measured {r['date']}." if r.get("date") else "")
            + "\n",
            table(
                ["run", "IdP mints", "vs one replica", "CPU s", "cores", "follower reads", "adopted / failed mints"],
                rows,
            ),
            "",
        ]
    )
