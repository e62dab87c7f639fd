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

import hashlib
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from syncd import policy
from syncd.policy import SECONDS_PER_DAY, RefreshPolicy
from syncd.stores.base import Finding

if TYPE_CHECKING:  # config imports this module for its validation rules
    from syncd.config import Config, CredentialConfig

__all__ = [
    "AUTO_DELAY_CAP",
    "AUTO_DELAY_SHARE",
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

#: ``takeover_delay = "auto"``: this share of the token lifetime per rank ...
AUTO_DELAY_SHARE = 0.1
#: ... but never more than this: a follower of a day-long token need not wait hours.
AUTO_DELAY_CAP = 60.0

_TRAILING_ORDINAL = re.compile(r"-(\d+)$")

#: Pod-local store types: a token written there is seen by this replica's pod only.
POD_LOCAL_STORES = frozenset({"file"})


def parse_takeover_delay(value: object) -> float | Literal["auto"]:
    """``[daemon] takeover_delay``: ``"auto"`` or a duration above 0 (the rules of every duration key)."""
    from syncd.config import parse_duration  # config validates through this module: import when called

    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValueError(f'{exc}; or "auto" (the default)') from None
    if seconds <= 0:
        raise ValueError('must be above 0 (or "auto"): with no delay every rank would act at once')
    return seconds


def ordinal_from_hostname(hostname: str) -> int:
    """The trailing ``-<digits>`` of a hostname (StatefulSet pod ``syncd-2`` -> 2), else 0.

    Only the first label counts: a fully qualified ``syncd-2.syncd.ns.svc`` is pod 2.
    """
    first = hostname.strip().split(".", 1)[0]
    match = _TRAILING_ORDINAL.search(first)
    return int(match.group(1)) if match else 0


def resolve_replica(replica: int | None, replicas: int, hostname: str) -> int:
    """This process's ordinal: ``replica`` when given, else from the hostname.

    With one replica the hostname is not consulted: the only ordinal is 0, and a
    Deployment's pod (``syncd-5d8f-24567``) or a laptop (``dev-2``) may well end
    in digits. Raises ValueError (message for ``daemon.replica``) when the
    ordinal is not below ``replicas``.
    """
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    if replica is None:
        if replicas == 1:
            return 0
        ordinal = ordinal_from_hostname(hostname)
        source = f"taken from the hostname {hostname!r}"
    else:
        ordinal = replica
        source = "given"
    if ordinal < 0:
        raise ValueError(f"must be 0 or more, got {ordinal}")
    if ordinal >= replicas:
        raise ValueError(
            f"ordinal {ordinal} ({source}) is not below replicas = {replicas}: ordinals run 0..{replicas - 1}; "
            f"raise [daemon] replicas (the chart sets it from replicaCount) or set replica "
            f"(SYNCD_DAEMON__REPLICA) to 0..{replicas - 1}"
        )
    return ordinal


def _weight(credential: str, ordinal: int) -> int:
    digest = hashlib.blake2b(f"{credential}\x00{ordinal}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def ranking(credential: str, replicas: int) -> list[int]:
    """The ordinals 0..replicas-1 in rank order for ``credential``: the first refreshes it."""
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    # Ties (a 64-bit collision) fall back to the ordinal, so every replica agrees anyway.
    return sorted(range(replicas), key=lambda k: (-_weight(credential, k), k))


def rank(credential: str, replica: int, replicas: int) -> int:
    """This replica's rank for ``credential``, 0..replicas-1 (0 refreshes on the normal schedule)."""
    if not 0 <= replica < replicas:
        raise ValueError(f"replica must be in 0..{replicas - 1}, got {replica}")
    return ranking(credential, replicas).index(replica)


def effective_takeover_delay(setting: float | Literal["auto"], lifetime: float) -> float:
    """Seconds between two ranks: ``"auto"`` is ``lifetime / 10``, at most 60 s; a duration as given."""
    if setting != "auto":
        return float(setting)
    if not (math.isfinite(lifetime) and lifetime > 0):
        raise ValueError(f"lifetime must be a finite duration above 0, got {lifetime!r}")
    return min(lifetime * AUTO_DELAY_SHARE, AUTO_DELAY_CAP)


def wake_time(refresh_after: float, rank_: int, delay: float) -> float:
    """When rank ``rank_`` acts: the stored payload's ``refresh_after`` plus ``rank_ x delay``.

    Always from the ``refresh_after`` written in the stored payload, never from
    the moment this replica adopted it: re-basing would push every follower
    later at each adoption until the last one acts after the deadline.
    """
    if rank_ < 0:
        raise ValueError(f"rank must be 0 or more, got {rank_}")
    return refresh_after + rank_ * delay


def _latest_refresh(lifetime: float, pol: RefreshPolicy) -> tuple[float, float]:
    """(the latest refresh_after rank 0 may store, the refresh deadline), seconds after issue."""
    latest = policy.refresh_time(0.0, lifetime, 0.0, pol, 1.0)  # jitter at its late end
    return latest, policy.effective_deadline(0.0, lifetime, pol)


def latest_takeover_delay(lifetime: float, pol: RefreshPolicy, replicas: int) -> float:
    """The longest takeover delay that lets the last rank act by the deadline (inf for one replica)."""
    if replicas <= 1:
        return math.inf
    latest, deadline = _latest_refresh(lifetime, pol)
    return max(0.0, deadline - latest) / (replicas - 1)


@dataclass(frozen=True)
class CredentialPlan:
    """What one credential costs with ``replicas`` replicas, per day (upper estimates)."""

    replicas: int
    delay: float
    """Takeover delay between ranks, seconds."""
    last_wake: float
    """When the last rank acts, seconds after issue (jitter at its late end)."""
    deadline: float
    """``expires_at - min_remaining`` (see `policy.effective_deadline`), seconds after issue."""
    writes_per_target: float
    """Writes per target per 24 h: the single-replica figure, not multiplied by N."""
    follower_reads: float
    """Reads of shared targets per 24 h by ranks 1..N-1, one per target at each takeover wake."""
    minted_by_every_replica: bool
    """Only pod-local targets: no replica can see another's token, so each mints its own."""

    @property
    def late(self) -> bool:
        return self.last_wake > self.deadline


def credential_plan(
    cred: CredentialConfig,
    config: Config,
    replicas: int,
) -> CredentialPlan:
    pol = cred.policy(config.defaults)
    lifetime = cred.token_lifetime_for(config.defaults)
    delay = effective_takeover_delay(config.daemon.takeover_delay, lifetime)
    latest, deadline = _latest_refresh(lifetime, pol)
    shared = [t for t in cred.targets if _store_type(config, t.store) not in POD_LOCAL_STORES]
    cycles_per_day = SECONDS_PER_DAY / max(policy.refresh_time(0.0, lifetime, 0.0, pol, 0.5), pol.min_interval)
    return CredentialPlan(
        replicas=replicas,
        delay=delay,
        last_wake=wake_time(latest, replicas - 1, delay),
        deadline=deadline,
        writes_per_target=policy.writes_per_day(lifetime, pol),
        follower_reads=(replicas - 1) * cycles_per_day * len(shared),
        minted_by_every_replica=replicas > 1 and not shared,
    )


def _store_type(config: Config, store: str) -> str:
    scfg = config.stores.get(store)
    return scfg.type if scfg is not None else ""


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def replica_findings(config: Config) -> list[Finding]:
    """`syncd check` findings for ``[daemon] replicas``: a last rank acting too late (error), pod-local credentials.

    Grouped into one finding each, so 10,000 credentials do not mean 10,000 lines.
    """
    replicas = config.daemon.replicas
    if replicas <= 1:
        return []
    late: list[tuple[str, CredentialPlan, float]] = []
    local: list[str] = []
    for cred in config.credentials:
        plan = credential_plan(cred, config, replicas)
        # A credential every replica mints for its own pod has no followers to wait for.
        if plan.late and not plan.minted_by_every_replica:
            lifetime = cred.token_lifetime_for(config.defaults)
            late.append((cred.name, plan, latest_takeover_delay(lifetime, cred.policy(config.defaults), replicas)))
        if plan.minted_by_every_replica:
            local.append(cred.name)
    findings: list[Finding] = []
    if late:
        # The tightest credential speaks for the group: its limit is the one the fix must meet.
        _, plan, allowed = min(late, key=lambda item: item[2])
        fix = (
            f"set [daemon] takeover_delay to at most {allowed:.3g}s, lower replicas, or give these credentials an "
            f"earlier refresh_at or a smaller min_remaining"
            if allowed > 0
            else "lower refresh_at or min_remaining for these credentials: their refresh already sits at the deadline"
        )
        findings.append(
            Finding(
                "error",
                "daemon.takeover_delay",
                f"with replicas = {replicas} and a takeover delay of {plan.delay:g}s the last rank would act "
                f"{plan.last_wake:g}s after issue, after the refresh deadline ({plan.deadline:g}s: expires_at - "
                f"min_remaining for the expected token_lifetime) of {_names([n for n, _, _ in late])}",
                fix,
            )
        )
    if local:
        findings.append(
            Finding(
                "info",
                "daemon.replicas",
                f"{_names(local)} write{'s' if len(local) == 1 else ''} only to pod-local targets (file stores): "
                f"every one of the {replicas} replicas mints {'it' if len(local) == 1 else 'them'} for its own pod",
                "add a shared target (Vault, SSM, Secrets Manager) if the mints should be shared",
            )
        )
    return findings


def plan_totals(config: Config, replicas: int) -> tuple[float, float, float]:
    """(writes/day over every target, follower reads/day, most versions/24 h in one Secrets Manager secret)."""
    writes = reads = versions = 0.0
    for cred in config.credentials:
        plan = credential_plan(cred, config, replicas)
        for target in cred.targets:
            kind = _store_type(config, target.store)
            # A pod-local target is written by every replica; a shared one once, whatever N.
            writes += plan.writes_per_target * (replicas if kind in POD_LOCAL_STORES else 1)
            if kind == "aws-secretsmanager":
                slots = target.slots if isinstance(target.slots, int) else 1
                versions = max(versions, plan.writes_per_target / slots)
        reads += plan.follower_reads
    return writes, reads, versions
