"""The plan of several replicas for ``syncd check`` and ``syncd run``: writes, reads and versions per
replica count, and the findings that refuse a takeover delay the last rank cannot honour."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from syncd import policy
from syncd.policy import SECONDS_PER_DAY, RefreshPolicy
from syncd.replicas.ranking import POD_LOCAL_STORES, effective_takeover_delay, wake_time
from syncd.stores.base import Finding

if TYPE_CHECKING:
    from syncd.config import Config, CredentialConfig


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
    hasty: list[tuple[str, CredentialPlan]] = []
    mint_timeout = config.daemon.mint_timeout
    for cred in config.credentials:
        plan = credential_plan(cred, config, replicas)
        if not plan.minted_by_every_replica and plan.delay < mint_timeout:
            hasty.append((cred.name, plan))
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
    if hasty:
        # Not an error: tokens stay fresh. But rank 1 wakes while rank 0 may still be waiting for a
        # slow IdP, finds nothing fresher, and mints too: a slow IdP gets more load, not less.
        _, plan = min(hasty, key=lambda item: item[1].delay)
        findings.append(
            Finding(
                "warning",
                "daemon.takeover_delay",
                f"a takeover delay of {plan.delay:g}s is shorter than mint_timeout ({mint_timeout:g}s) for "
                f"{_names([n for n, _ in hasty])}: when the IdP answers slower than the delay, a follower wakes "
                f"while rank 0's mint is still in flight and mints too (up to {replicas}x the IdP's load)",
                f"set [daemon] takeover_delay above {mint_timeout:g}s if the deadline allows, or lower "
                "[daemon] mint_timeout to the IdP's slowest normal answer",
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
