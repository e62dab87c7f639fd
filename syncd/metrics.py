"""Prometheus collectors (docs/design.md "Metrics").

Each daemon owns one ``CollectorRegistry`` (not the process-global default) so
tests can run several engines in one process and count exactly. Histograms
carry no credential label: 10,000 credentials must not mean 10,000 x buckets
series. Per credential there are 6 + 5 x targets series (gauges, and counters
for the three outcomes), created at 0 when the credential starts (so the first
failure is an increase ``increase()`` sees) and removed when a reload removes
it (so no ghost series keeps an alert firing). docs/operations.md explains each.

The per-credential families are ``syncd.exposition``'s: each series keeps its line of the
text format rendered, so a scrape of 10,000 credentials joins strings instead of rendering
110,000 lines (it is cheap enough to run on the event loop). Histograms, the few series
without labels and the process/platform collectors stay prometheus_client's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from syncd import __version__
from syncd.exposition import LabelledCounter, LabelledGauge, Snapshot

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)

_OUTCOMES = ("ok", "transient", "fatal")

# No ``*_created`` sample beside every counter and histogram: in the text format each is one
# more series per label set (a third more for a large fleet) and nothing here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Registry(CollectorRegistry):
    """A registry that remembers its collectors' order, so a render can treat each on its own."""

    def __init__(self) -> None:
        super().__init__()
        self._ordered: list[Collector] = []

    def register(self, collector: Collector) -> None:
        super().register(collector)
        self._ordered.append(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        self._ordered.remove(collector)

    def in_order(self) -> list[Collector]:
        """The collectors in registration order (the order ``generate_latest`` writes them in)."""
        return list(self._ordered)


class Metrics:
    """All syncd_* series. Label ``target`` is ``<store>:<key>``."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or Registry()
        r = self.registry
        self.token_expiry = LabelledGauge(
            "syncd_token_expiry_timestamp_seconds",
            "Unix time the token the daemon holds for the credential expires (the last good one).",
            ["credential"],
            registry=r,
        )
        self.target_token_expiry = LabelledGauge(
            "syncd_target_token_expiry_timestamp_seconds",
            "Unix time the token last written to (or found in) the target expires.",
            ["credential", "target"],
            registry=r,
        )
        self.target_last_success = LabelledGauge(
            "syncd_target_last_success_timestamp_seconds",
            "Unix time of the last successful write to the target (or of the start-up read that adopted it).",
            ["credential", "target"],
            registry=r,
        )
        self.next_refresh = LabelledGauge(
            "syncd_next_refresh_timestamp_seconds",
            "Unix time the credential's next run is scheduled (refresh, retry or pending write).",
            ["credential"],
            registry=r,
        )
        self.consecutive_failures = LabelledGauge(
            "syncd_consecutive_failures",
            "Failed attempts in a row (mint or a target write; the larger); 0 after a fully successful run.",
            ["credential"],
            registry=r,
        )
        self.mints = LabelledCounter(
            "syncd_mints",
            "Token requests to the IdP by outcome (ok | transient | fatal).",
            ["credential", "outcome"],
            registry=r,
        )
        self.writes = LabelledCounter(
            "syncd_writes",
            "Writes to a target by outcome (ok | transient | fatal).",
            ["credential", "target", "outcome"],
            registry=r,
        )
        self.mint_duration = Histogram(
            "syncd_mint_duration_seconds",
            "Token request latency, all credentials (no credential label by design).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.write_duration = Histogram(
            "syncd_write_duration_seconds",
            "Target write latency by store (no credential label by design).",
            ["store"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.schedule_lateness = Histogram(
            "syncd_schedule_lateness_seconds",
            "How late a credential's run started against its planned time (event loop or scheduler lag).",
            buckets=_LATENESS_BUCKETS,
            registry=r,
        )
        self.mints_waiting = Gauge(
            "syncd_mints_waiting",
            "Mints waiting for one of the token endpoint's max_concurrent_mints slots (most urgent admitted first).",
            ["endpoint"],
            registry=r,
        )
        self.schedule_rearmed = Counter(
            "syncd_schedule_rearmed",
            "Credentials the watchdog found off the schedule (planned run overdue, none armed) and re-armed.",
            registry=r,
        )
        # --- rotation monitoring: what lifetime-relative alert thresholds need (docs/operations.md).
        self.token_lifetime = LabelledGauge(
            "syncd_token_lifetime_seconds",
            "Lifetime (expires_at - issued_at) of the token the daemon holds for the credential.",
            ["credential"],
            registry=r,
        )
        # --- end rotation monitoring
        # --- several replicas (docs/ha.md): no credential label, a fleet-wide rate is what matters.
        self.takeovers = Counter(
            "syncd_takeovers",
            "Follower wakes (rank > 0) that found no fresher token in the targets and minted themselves.",
            registry=r,
        )
        self.adoptions = Counter(
            "syncd_adoptions",
            "Follower wakes (rank > 0) that found a fresher token written by another replica and adopted it.",
            registry=r,
        )
        # --- end several replicas
        self.build_info = Gauge(
            "syncd_build_info", "Always 1; the version label says which syncd runs.", ["version"], registry=r
        )
        self.build_info.labels(version=__version__).set(1)
        # The standard process_* (memory, CPU, open fds, start time: restarts show as a new
        # process_start_time_seconds) and python_info series, on this registry too.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

    def init_credential(self, name: str, targets: list[str]) -> None:
        """Create every outcome series at 0, so the first failure is an increase PromQL can see.

        A counter series that appears for the first time with value 1 is invisible to
        ``increase()``/``rate()``: an alert on fatal mints would miss the first one.
        """
        for outcome in _OUTCOMES:
            self.mints.labels(name, outcome)
            for target in targets:
                self.writes.labels(name, target, outcome)
        self.consecutive_failures.labels(name)

    def forget_credential(self, name: str, targets: list[str]) -> None:
        """Drop a removed credential's series so dashboards do not show a ghost."""
        for gauge in (self.token_expiry, self.next_refresh, self.consecutive_failures, self.token_lifetime):
            _remove(gauge, name)
        for outcome in _OUTCOMES:
            _remove(self.mints, name, outcome)
        for target in targets:
            _remove(self.target_token_expiry, name, target)
            _remove(self.target_last_success, name, target)
            for outcome in _OUTCOMES:
                _remove(self.writes, name, target, outcome)

    def render(self) -> bytes:
        """The text exposition, all at once."""
        return b"".join(self.render_parts())

    def render_parts(self) -> Iterator[bytes]:
        """The text exposition in parts of at most ~100 KB (see `snapshot`)."""
        for piece in self.snapshot():
            yield from piece.parts()

    def snapshot(self) -> Iterator[Snapshot]:
        """The page, one collector at a time, in registration order (``generate_latest``'s).

        A pre-rendered family is taken as its lines (`Snapshot`: a pointer per series), rendered
        into parts of ``PART_SERIES`` lines only as each part is written; the others (histograms,
        process) are rendered here, so a collector that fails raises before anything is sent.
        A caller on the event loop can yield between collectors and between parts, so a scrape
        never holds the loop for long, and the page is never held whole.
        """
        for part in self.registry.in_order():
            if isinstance(part, LabelledGauge | LabelledCounter):
                yield part.snapshot()
            else:
                rendered = generate_latest(part)
                yield Snapshot(rendered, b"", [])


def _remove(metric: LabelledGauge | LabelledCounter, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
