"""Turning what was recorded (syncd's JSON log, /metrics scrapes, samples, profiles) into numbers.

Pure functions over text and lists, so they can be checked by eye and re-run on
a kept log (``.bench-out/<run>/<case>/syncd.log``) without running anything.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------- small stats


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def quantile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile of already collected values (no interpolation: a real observation)."""
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(q * (len(v) - 1))))]


def summary(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "n": len(values),
        "p50": quantile(values, 0.5) or 0.0,
        "p99": quantile(values, 0.99) or 0.0,
        "max": max(values),
    }


def median(values: Iterable[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t seconds, value) in value per hour."""
    if len(points) < 3:
        return None
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    if den == 0:
        return None
    return 3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


# --------------------------------------------------------------------------- syncd's log


@dataclass
class LogFacts:
    writes_ok: list[float] = field(default_factory=list)  # timestamps
    writes_failed: list[tuple[float, str]] = field(default_factory=list)
    mints_ok: list[float] = field(default_factory=list)
    mints_failed: list[tuple[float, str]] = field(default_factory=list)
    #: (fired time, lateness) from consecutive mints of one credential
    lateness: list[tuple[float, float]] = field(default_factory=list)
    warnings: Counter[str] = field(default_factory=Counter)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # first of each life-cycle event
    lines: int = 0


def parse_log(path: Path) -> LogFacts:
    """Reads syncd's JSON log: rotations, failures, and lateness per consecutive mint.

    Lateness from the log: a mint event carries its end time (timestamp), its
    duration and the new token's ``refresh_after``; the next mint of that
    credential started at ``timestamp - duration``, and was planned for the
    previous token's ``refresh_after`` (what ``Engine._next_run`` schedules).
    So lateness = (timestamp - duration) - previous refresh_after, to the
    millisecond (refresh_after is written with ms). The first mint after an
    adopted token has no logged plan and is not counted here; the histogram
    counts it.
    """
    facts = LogFacts()
    last_refresh: dict[str, float] = {}
    with open(path, "rb") as f:
        for raw in f:
            facts.lines += 1
            if not raw.startswith(b"{"):
                continue
            try:
                doc = json.loads(raw)
            except ValueError:
                continue
            event = doc.get("event")
            level = doc.get("level", "info")
            when = ts(doc["timestamp"]) if "timestamp" in doc else 0.0
            if event == "write":
                if doc.get("outcome") == "ok":
                    facts.writes_ok.append(when)
                else:
                    facts.writes_failed.append((when, str(doc.get("error", ""))[:200]))
            elif event == "mint":
                cred = doc.get("credential", "")
                if doc.get("outcome") == "ok":
                    facts.mints_ok.append(when)
                    fired = when - float(doc.get("duration", 0.0))
                    if cred in last_refresh:
                        facts.lateness.append((fired, fired - last_refresh[cred]))
                    if doc.get("refresh_after"):
                        last_refresh[cred] = ts(doc["refresh_after"])
                else:
                    facts.mints_failed.append((when, str(doc.get("error", ""))[:200]))
                    last_refresh.pop(cred, None)
            elif event == "adopted":
                last_refresh.pop(doc.get("credential", ""), None)
            if level in ("warning", "error", "critical") and event not in ("write", "mint"):
                facts.warnings[str(event)] += 1
            if event in ("listening", "started", "running", "stopped") and event not in facts.events:
                facts.events[event] = doc
    return facts


def count_between(times: Iterable[float], t0: float, t1: float) -> int:
    return sum(1 for t in times if t0 <= t < t1)


# --------------------------------------------------------------------------- /metrics


_BUCKET_RE = re.compile(r'^syncd_schedule_lateness_seconds_bucket\{le="([^"]+)"\}\s+(\S+)', re.MULTILINE)
_WRITES_RE = re.compile(r'^syncd_writes_total\{[^}]*outcome="ok"[^}]*\}\s+(\S+)', re.MULTILINE)


def lateness_buckets(text: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) pairs of syncd_schedule_lateness_seconds."""
    out = []
    for le, value in _BUCKET_RE.findall(text):
        out.append((float("inf") if le == "+Inf" else float(le), float(value)))
    return sorted(out)


def writes_ok_total(text: str) -> float:
    return sum(float(v) for v in _WRITES_RE.findall(text))


def bucket_diff(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    before = dict(a)
    return [(le, n - before.get(le, 0.0)) for le, n in b]


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding the rank."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_n = 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return prev_le
            if n == prev_n:
                return le
            return prev_le + (le - prev_le) * (rank - prev_n) / (n - prev_n)
        prev_le, prev_n = le, n
    return prev_le


def histogram_facts(buckets: list[tuple[float, float]]) -> dict[str, Any] | None:
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    nonempty = [le for (le, n), (_, p) in zip(buckets, [(0.0, 0.0), *buckets], strict=False) if n > p]
    within = dict(buckets).get(0.25, 0.0)
    return {
        "n": int(total),
        "p50": histogram_quantile(buckets, 0.5),
        "p99": histogram_quantile(buckets, 0.99),
        "max_le": max(nonempty) if nonempty else None,  # the max lies in the bucket ending here
        "within_250ms": within / total,
    }


# --------------------------------------------------------------------------- py-spy profile

#: First match walking from the sampled frame toward the root names the cost.
CATEGORIES: list[tuple[str, str]] = [
    ("syncd/logs.py", "logging: redaction (syncd.logs)"),
    ("structlog/", "logging: structlog chain + JSON render"),
    ("/logging/", "logging: stdlib"),
    ("prometheus_client/", "metrics (prometheus_client)"),
    ("apscheduler/", "scheduler (APScheduler)"),
    ("tzlocal/", "scheduler (APScheduler)"),
    ("h11/", "HTTP client (httpx/httpcore/h11)"),
    ("httpcore/", "HTTP client (httpx/httpcore/h11)"),
    ("httpx/", "HTTP client (httpx/httpcore/h11)"),
    ("anyio/", "HTTP client (httpx/httpcore/h11)"),
    # aiohttp's client side carries syncd's token requests (syncd/oauth/transport.py); its parser and
    # streams are shared with the server and stay charged to it below.
    ("aiohttp/client", "HTTP client (httpx/httpcore/h11)"),
    ("aiohttp/connector.py", "HTTP client (httpx/httpcore/h11)"),
    ("syncd/oauth/transport.py", "HTTP client (httpx/httpcore/h11)"),
    ("syncd/oauth/", "mint: request/response handling (syncd.oauth)"),
    ("hvac/", "store SDK (hvac/requests/urllib3)"),
    ("requests/", "store SDK (hvac/requests/urllib3)"),
    ("urllib3/", "store SDK (hvac/requests/urllib3)"),
    ("botocore/", "store SDK (boto3/botocore)"),
    ("boto3/", "store SDK (boto3/botocore)"),
    ("syncd/stores/", "store write (syncd.stores)"),
    ("syncd/payload.py", "payload render/parse (syncd.payload)"),
    ("syncd/policy/", "engine + policy (syncd.engine)"),
    ("syncd/engine/", "engine + policy (syncd.engine)"),
    ("pydantic", "pydantic"),
    ("aiohttp/", "HTTP server (aiohttp: /metrics etc.)"),
    ("syncd/server.py", "HTTP server (aiohttp: /metrics etc.)"),
    ("concurrent/futures/", "thread pool hand-off"),
    ("threading.py", "thread pool hand-off"),
    ("asyncio/", "event loop (asyncio)"),
    ("selectors.py", "event loop (asyncio)"),
]


def _category(stack: Sequence[dict[str, Any]]) -> str:
    for frame in reversed(stack):  # leaf first
        file = frame.get("file") or ""
        for needle, name in CATEGORIES:
            if needle in file:
                return name
    return "other"


def _short(frame: dict[str, Any]) -> str:
    file = frame.get("file") or "?"
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            if marker == "/lib/python3":
                file = "stdlib:" + file.split("/", 1)[-1]
            break
    return f"{frame.get('name', '?')} ({file}:{frame.get('line', '?')})"


def analyse_speedscope(path: Path, top: int = 15) -> dict[str, Any]:
    """Cost by category, and the top functions by inclusive and by self time, over all threads."""
    doc = json.loads(path.read_text())
    frames = doc["shared"]["frames"]
    total = 0.0
    by_cat: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    self_t: Counter[str] = Counter()
    by_thread: dict[str, float] = defaultdict(float)
    for prof in doc["profiles"]:
        if prof.get("type") != "sampled":
            continue
        for sample, weight in zip(prof["samples"], prof["weights"], strict=True):
            stack = [frames[i] for i in sample]
            if not stack:
                continue
            total += weight
            by_thread[prof.get("name", "?")] += weight
            by_cat[_category(stack)] += weight
            self_t[_short(stack[-1])] += weight
            for name in {_short(f) for f in stack}:
                incl[name] += weight
    if total == 0:
        return {"samples": 0}

    def pct(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(n)]

    return {
        "samples": total,
        "categories": pct(by_cat, 30),
        "inclusive": pct(incl, top * 3),
        "self": pct(self_t, top),
        "threads": sorted(((k, round(100 * v / total, 1)) for k, v in by_thread.items()), key=lambda kv: -kv[1]),
    }
