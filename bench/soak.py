"""The soak: one daemon at ~67 rotations/s for a long time, scraped as Prometheus would, RSS sampled.

``python -m bench --soak 30m`` runs it alone; the full run includes it. The daemon
(file store, 1,000 credentials x 30 s tokens by default) starts like every loaded
case (bench/cases.py: seeded targets, all adopted), then runs for the whole
duration while

* a thread scrapes ``/metrics`` every ``scrape_interval`` seconds,
* psutil samples its RSS and CPU every ``sample_interval`` seconds (10 s),
* the reader (bench/reader.py) reads the targets and counts expired reads.

What counts is the slope of RSS over the second half (the last 15 minutes of a
30-minute soak), in MB/h, and its spread over that half cut in three windows: a
leak is a slope that every window shows; noise is a slope whose sign changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import analysis
from bench.cases import (
    JITTER,
    REFRESH_AT,
    Log,
    _fresh_dir,
    _scrape,
    _start_idp,
    _startup_estimate,
    seed_payloads,
    syncd_config,
    write_config,
)
from bench.procs import ROOT, Sampler, SyncdProcess
from bench.stores import StoreAdapter, dump_spec
from tests.peers.servers import free_port


@dataclass(frozen=True)
class SoakSpec:
    n: int = 1000
    lifetime: float = 30.0
    duration: float = 1800.0
    sample_interval: float = 10.0
    scrape_interval: float = 15.0
    startup_lead: float | None = None

    @property
    def rate(self) -> float:
        return self.n / (REFRESH_AT * self.lifetime)


def parse_duration(text: str) -> float:
    """``30m``, ``90s``, ``1h`` or plain seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    text = text.strip().lower()
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def rss_slopes(points: list[tuple[float, float]]) -> dict[str, Any]:
    """Slope (MB/h) of the second half of ``points`` (t, MB), and of that half cut in three windows."""
    if len(points) < 6:
        return {"late_half_mb_per_h": None, "windows_mb_per_h": []}
    t0, t1 = points[0][0], points[-1][0]
    mid = t0 + (t1 - t0) / 2
    late = [p for p in points if p[0] >= mid]
    thirds = []
    for k in range(3):
        a, b = mid + (t1 - mid) * k / 3, mid + (t1 - mid) * (k + 1) / 3
        thirds.append(analysis.slope_per_hour([p for p in late if a <= p[0] <= b]))
    return {
        "late_half_s": t1 - mid,
        "late_half_mb_per_h": analysis.slope_per_hour(late),
        "windows_mb_per_h": thirds,
        "late_half_mean_mb": sum(p[1] for p in late) / len(late),
    }


def run_soak(spec: SoakSpec, adapter: StoreAdapter, workdir: Path, log: Log) -> dict[str, Any]:
    _fresh_dir(workdir)
    prefix = "soak"
    adapter.reset(prefix)
    result: dict[str, Any] = {"spec": spec.__dict__ | {"rate": spec.rate}}
    idp, token_url, issued = _start_idp("fake", spec.lifetime, spec.n, workdir)
    syncd: SyncdProcess | None = None
    sampler: Sampler | None = None
    reader: subprocess.Popen[bytes] | None = None
    stop_scraping = threading.Event()
    scrapes: list[float] = []
    try:
        port = free_port()
        cfg = write_config(
            workdir / "syncd.toml", syncd_config(adapter, prefix, spec.n, spec.lifetime, token_url, port)
        )
        interval = REFRESH_AT * spec.lifetime
        lead = 1.3 * _startup_estimate("file", spec.n) + 2 if spec.startup_lead is None else spec.startup_lead
        t_ref = time.time() + lead + JITTER * interval
        adapter.seed(seed_payloads(adapter, prefix, spec.n, spec.lifetime, t_ref, interval), prefix)
        (workdir / "keys.txt").write_text("\n".join(adapter.key(prefix, i) for i in range(spec.n)) + "\n")
        syncd = SyncdProcess(cfg, workdir, port)
        syncd.start()
        sampler = Sampler(syncd.syncd_pid, interval=spec.sample_interval).start()
        w0 = max(time.time() + 1.0, t_ref + JITTER * interval + 0.5)
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
        while time.time() < w0:
            time.sleep(0.01)
        url = syncd.url

        def scrape_loop() -> None:
            while not stop_scraping.wait(spec.scrape_interval):
                try:
                    scrapes.append(_scrape(url)[1])
                except (OSError, RuntimeError):
                    scrapes.append(float("nan"))

        scraper = threading.Thread(target=scrape_loop, name="soak-scraper", daemon=True)
        log(f"  soak: {spec.duration:g}s at ~{spec.rate:.0f} rotations/s, /metrics every {spec.scrape_interval:g}s")
        s0, idp0 = sampler.read(), issued()
        scraper.start()
        time.sleep(spec.duration)
        s1, idp1 = sampler.read(), issued()
        stop_scraping.set()
        scraper.join(70)
        reader.wait(timeout=120)
        sampler.stop()
        points = [(s.t, s.rss / 2**20) for s in sampler.samples if s0.t <= s.t <= s1.t]
        window = s1.t - s0.t
        result.update(
            {
                "window_s": window,
                "rotations": idp1 - idp0,
                "rotations_per_s": (idp1 - idp0) / window,
                "cpu_cores": (s1.cpu - s0.cpu) / window,
                "cpu_per_rotation_ms": 1000 * (s1.cpu - s0.cpu) / (idp1 - idp0) if idp1 > idp0 else None,
                "rss_start_mb": s0.rss / 2**20,
                "rss_end_mb": s1.rss / 2**20,
                "peak_rss_mb": sampler.peak_rss() / 2**20,
                "rss_samples": [(round(t - s0.t, 1), round(mb, 2)) for t, mb in points],
                "scrapes": len(scrapes),
                "scrape_wall_ms_max": 1000 * max(scrapes, default=0.0),
                **rss_slopes(points),
            }
        )
        try:
            result["reader"] = json.loads((workdir / "reader.json").read_text())
        except (OSError, ValueError) as exc:
            result["reader"] = {"error": f"reader produced no result: {exc}"}
        result["exit_code"] = syncd.stop_and_code()
        slope = result["late_half_mb_per_h"]
        log(
            f"  soak: RSS {result['rss_start_mb']:.0f} -> {result['rss_end_mb']:.0f} MB, slope of the second half "
            f"{slope if slope is None else round(slope, 1)} MB/h, CPU {result['cpu_cores']:.3f} core"
        )
    finally:
        stop_scraping.set()
        if reader is not None and reader.poll() is None:
            reader.kill()
        if sampler is not None:
            sampler.stop()
        if syncd is not None:
            syncd.stop()
        idp.stop()
    return result
