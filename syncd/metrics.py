"""Prometheus collectors (DESIGN.md "Metrics").

Each daemon owns one ``CollectorRegistry`` (not the process-global default) so
tests can run several engines in one process and count exactly. Histograms
carry no credential label: 10,000 credentials must not mean 10,000 x buckets
series.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from syncd import __version__

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """All syncd_* series. Label ``target`` is ``<store>:<key>``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.token_expiry = Gauge(
            "syncd_token_expiry_timestamp_seconds",
            "Expiry of the last good token held, per credential.",
            ["credential"],
            registry=r,
        )
        self.target_token_expiry = Gauge(
            "syncd_target_token_expiry_timestamp_seconds",
            "Expiry of the token stored in each target.",
            ["credential", "target"],
            registry=r,
        )
        self.target_last_success = Gauge(
            "syncd_target_last_success_timestamp_seconds",
            "Last successful write (or verified read) per target.",
            ["credential", "target"],
            registry=r,
        )
        self.next_refresh = Gauge(
            "syncd_next_refresh_timestamp_seconds",
            "When the credential's job runs next.",
            ["credential"],
            registry=r,
        )
        self.consecutive_failures = Gauge(
            "syncd_consecutive_failures",
            "Failed runs since the last fully successful one.",
            ["credential"],
            registry=r,
        )
        self.mints = Counter(
            "syncd_mints",
            "Token requests by outcome (ok | transient | fatal).",
            ["credential", "outcome"],
            registry=r,
        )
        self.writes = Counter(
            "syncd_writes",
            "Target writes by outcome (ok | transient | fatal).",
            ["credential", "target", "outcome"],
            registry=r,
        )
        self.mint_duration = Histogram(
            "syncd_mint_duration_seconds",
            "Token request latency.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.write_duration = Histogram(
            "syncd_write_duration_seconds",
            "Store write latency by store.",
            ["store"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.schedule_lateness = Histogram(
            "syncd_schedule_lateness_seconds",
            "How late a job fired against its planned time.",
            buckets=_LATENESS_BUCKETS,
            registry=r,
        )
        self.build_info = Gauge("syncd_build_info", "Build information.", ["version"], registry=r)
        self.build_info.labels(version=__version__).set(1)

    def forget_credential(self, name: str, targets: list[str]) -> None:
        """Drop a removed credential's series so dashboards do not show a ghost."""
        for gauge in (self.token_expiry, self.next_refresh, self.consecutive_failures):
            _remove(gauge, name)
        for outcome in ("ok", "transient", "fatal"):
            _remove(self.mints, name, outcome)
        for target in targets:
            _remove(self.target_token_expiry, name, target)
            _remove(self.target_last_success, name, target)
            for outcome in ("ok", "transient", "fatal"):
                _remove(self.writes, name, target, outcome)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _remove(metric: Gauge | Counter, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
