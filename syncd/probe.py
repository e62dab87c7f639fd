"""``syncd probe``: what ``syncd inspect`` judges, on an interval, as a Prometheus exporter.

The daemon's metrics say what it believes it wrote. The probe reads every target as a
consumer would (read-only store credentials; client secrets are never read, so its
deployment need not have them) and exports what is really there. The chart's stored-token
alerts use these series when the probe runs: they keep paging when the daemon is dead (its
own series go stale with it) and they catch a store that silently lost or changed a token.
The judging is :func:`syncd.audit.inspect_targets`, the same code as ``syncd inspect``.

Series (docs/operations.md "Metrics"), per ``credential`` and ``target``:

* expiry / refresh_after / lifetime of the stored token; kept at the last value read while a
  read fails (the store being unreadable for the probe says nothing about the token), removed
  when nothing of this credential is stored (missing, unparseable, foreign);
* ``syncd_probe_read_errors_total``: reads that failed (status ``error``);
* ``syncd_probe_target_status{status}``: 1 for the current status, 0 for the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from syncd import __version__, logs
from syncd.audit import TargetReport, inspect_targets, open_stores
from syncd.config import Config, ProbeConfig
from syncd.metrics import CONTENT_TYPE

log = logs.get_logger("syncd.probe")

STATUSES = ("fresh", "stale", "expired", "missing", "unparseable", "foreign", "error", "unverifiable")
# A read failure keeps the last known token facts; these statuses mean there is no token of
# this credential at the key, so its expiry must not linger (or an alert would watch a ghost).
_NO_TOKEN = frozenset({"missing", "unparseable", "foreign", "unverifiable"})


class ProbeMetrics:
    """The probe's own registry: syncd_probe_* only."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        labels = ["credential", "target"]
        self.expiry = Gauge(
            "syncd_probe_target_expiry_timestamp_seconds",
            "Unix time the token stored in the target expires, as read by the probe.",
            labels,
            registry=r,
        )
        self.refresh_after = Gauge(
            "syncd_probe_target_refresh_after_timestamp_seconds",
            "refresh_after of the token stored in the target: when consumers should re-read it.",
            labels,
            registry=r,
        )
        self.lifetime = Gauge(
            "syncd_probe_target_lifetime_seconds",
            "Lifetime (expires_at - issued_at) of the token stored in the target.",
            labels,
            registry=r,
        )
        self.read_errors = Counter(
            "syncd_probe_read_errors",
            "Reads of the target that failed (store unreachable, permission denied).",
            labels,
            registry=r,
        )
        self.status = Gauge(
            "syncd_probe_target_status",
            "1 for the target's current status as syncd inspect judges it, 0 for the others.",
            [*labels, "status"],
            registry=r,
        )
        self.last_run = Gauge(
            "syncd_probe_last_run_timestamp_seconds",
            "Unix time the probe last finished reading every target.",
            registry=r,
        )
        self.build_info = Gauge(
            "syncd_probe_build_info",
            "Always 1; the version label says which syncd runs the probe.",
            ["version"],
            registry=r,
        )
        self.build_info.labels(version=__version__).set(1)

    def apply(self, reports: Iterable[TargetReport], now: float) -> None:
        """Publish one round of reports."""
        for r in reports:
            ids = (r.credential, r.target)
            self.read_errors.labels(*ids)  # created at 0: the first error is an increase
            for status in STATUSES:
                self.status.labels(*ids, status).set(1 if status == r.status else 0)
            if r.status == "error":
                self.read_errors.labels(*ids).inc()
            elif r.status in _NO_TOKEN or r.expires_at is None:
                for gauge in (self.expiry, self.refresh_after, self.lifetime):
                    with contextlib.suppress(KeyError):
                        gauge.remove(*ids)
            else:
                self.expiry.labels(*ids).set(r.expires_at)
                if r.refresh_after is not None:
                    self.refresh_after.labels(*ids).set(r.refresh_after)
                if r.issued_at is not None:
                    self.lifetime.labels(*ids).set(max(r.expires_at - r.issued_at, 0.0))
        self.last_run.set(now)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _changes(before: dict[tuple[str, str], str], reports: list[TargetReport]) -> list[TargetReport]:
    """Reports whose status differs from the previous round (what is worth a log line)."""
    return [r for r in reports if before.get((r.credential, r.target)) != r.status]


async def run_probe(config: Config, host: str, port: int, interval: float, stop: asyncio.Event | None = None) -> None:
    """Serve /metrics and /livez on host:port and read every target every `interval` seconds until `stop`."""
    stop = stop or asyncio.Event()
    metrics = ProbeMetrics()

    async def metrics_view(_: web.Request) -> web.Response:
        resp = web.Response(body=await asyncio.to_thread(metrics.render), headers={"Cache-Control": "no-store"})
        resp.headers["Content-Type"] = CONTENT_TYPE
        return resp

    async def livez(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/livez", livez)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(
            exc.errno,
            f"cannot listen on {host}:{port} ({exc.strerror}): another process holds the port, "
            "or set [probe] listen (or --listen) to a free address",
        ) from None
    log.info("probe_started", address=f"http://{host}:{port}", interval=interval, targets=_count_targets(config))
    seen: dict[tuple[str, str], str] = {}
    # Opened once: a store logs in once (a Vault login every round would pile up tokens), and
    # one that could not be created is retried by inspect_targets at every round.
    stores, _ = open_stores(config)
    try:
        while not stop.is_set():
            reports = await inspect_targets(config, stores=stores)
            metrics.apply(reports, time.time())
            for r in _changes(seen, reports):
                event = log.info if r.ok and r.status != "stale" else log.warning
                event(
                    "probe_status",
                    credential=r.credential,
                    target=r.target,
                    status=r.status,
                    problem=r.problem or r.warning,
                )
            seen = {(r.credential, r.target): r.status for r in reports}
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
    finally:
        for store in stores.values():
            with contextlib.suppress(Exception):
                await store.aclose()
        await runner.cleanup()
        log.info("probe_stopped")


def _count_targets(config: Config) -> int:
    return sum(len(c.targets) for c in config.credentials)


def main(config: Config, options: ProbeConfig) -> None:
    """``syncd probe`` until SIGTERM/SIGINT; `options` is [probe] with the command line's overrides."""
    host, port = options.host_port

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_probe(config, host, port, options.interval, stop)

    asyncio.run(go())
