"""Several replicas sharing one configuration, with no leader: who acts for which credential, and when.

Pure functions (no I/O, no clock): the engine and ``syncd check`` pass in the
hostname, the times and the configuration. DESIGN.md "Several replicas:
failover and scale-out without a leader" is the contract; docs/ha.md explains it.

Each credential ranks the replicas by rendezvous (highest-random-weight)
hashing of (credential name, ordinal). Rank 0 refreshes at the stored
``refresh_after``; rank k wakes at ``refresh_after + k * takeover_delay``, reads
the targets and adopts a fresher token, or mints. Rendezvous hashing, rather
than ``hash(name) % replicas``, is what keeps a change of ``replicas`` cheap:
removing a replica only moves the credentials it ranked first, so a rollout
that changes N re-mints little. The hash is blake2b, never Python's ``hash()``,
whose value changes with every process (PYTHONHASHSEED) and so would differ
between replicas.
"""

from __future__ import annotations

from syncd.replicas.plan import (
    CredentialPlan,
    credential_plan,
    latest_takeover_delay,
    plan_totals,
    replica_findings,
)
from syncd.replicas.ranking import (
    AUTO_DELAY_CAP,
    AUTO_DELAY_SHARE,
    POD_LOCAL_STORES,
    effective_takeover_delay,
    ordinal_from_hostname,
    parse_takeover_delay,
    rank,
    ranking,
    resolve_replica,
    wake_time,
)

__all__ = [
    "AUTO_DELAY_CAP",
    "AUTO_DELAY_SHARE",
    "POD_LOCAL_STORES",
    "CredentialPlan",
    "credential_plan",
    "effective_takeover_delay",
    "latest_takeover_delay",
    "ordinal_from_hostname",
    "parse_takeover_delay",
    "plan_totals",
    "rank",
    "ranking",
    "replica_findings",
    "resolve_replica",
    "wake_time",
]
