"""``syncd check`` and start-up: what the configured fleet costs each store (quotas, write rates)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from syncd import policy
from syncd.config import Config
from syncd.stores.base import Finding, Store, StoreError


def plan_findings(config: Config, stores: Mapping[str, Store]) -> list[Finding]:
    """Ask every store about every target's write volume (versions per day, quotas, cost).

    Also sums the average write rate per store against its ``max_writes_per_second``
    (e.g. SSM PutParameter allows 3/s by default): a fleet whose rotations need more
    than the limiter lets through would queue until tokens expire.
    """
    findings: list[Finding] = []
    # AWS write quotas are per account and region, whatever the number of stores: group
    # AWS stores by (type, region); other stores stand alone. The strictest limit applies.
    groups: dict[str, str] = {}
    limits: dict[str, float] = {}
    strictest: dict[str, str] = {}  # group -> the store whose limit applies: the key path to fix
    for name, scfg in config.stores.items():
        limit = getattr(scfg, "max_writes_per_second", None)
        if not isinstance(limit, int | float):
            continue
        region = getattr(scfg, "region", None)
        group = f"{scfg.type} region {region or '(default)'}" if scfg.type.startswith("aws-") else f"store {name}"
        groups[name] = group
        if group not in limits or float(limit) < limits[group]:
            limits[group], strictest[group] = float(limit), name
    rate: dict[str, float] = {}
    # Each credential's policy once (a validated record, ~10 us): both passes below read it.
    policies = [cred.policy(config.defaults) for cred in config.credentials]
    for cred, pol in zip(config.credentials, policies, strict=True):
        life = cred.token_lifetime_for(config.defaults)
        average_interval = max(policy.refresh_time(0.0, life, 0.0, pol, 0.5), pol.min_interval)
        for tgt in cred.targets:
            if tgt.store in groups:
                rate[groups[tgt.store]] = rate.get(groups[tgt.store], 0.0) + 1.0 / average_interval
    for name, per_second in sorted(rate.items()):
        limit = limits[name]
        if per_second <= 0.8 * limit:
            continue
        level: Literal["error", "warning"] = "error" if per_second > limit else "warning"
        findings.append(
            Finding(
                level,
                f"stores.{strictest[name]}.max_writes_per_second",
                f"{name}: the credentials need {per_second:.2f} writes/s on average against a limit of {limit:g}/s"
                f"{'; writes would queue until tokens expire' if level == 'error' else ''}",
                "spread credentials over more stores/regions, use longer-lived tokens or a later refresh_at, "
                "or raise the limit where the service allows it (e.g. SSM higher throughput)",
            )
        )
    for cred, pol in zip(config.credentials, policies, strict=True):
        lifetime = cred.token_lifetime_for(config.defaults)
        if pol.min_remaining >= lifetime:
            findings.append(
                Finding(
                    "warning",
                    cred.name,
                    f"min_remaining ({pol.min_remaining:g}s) is not shorter than the token lifetime ({lifetime:g}s); "
                    f"refreshing at refresh_at ({pol.refresh_at:g}) of the lifetime instead",
                    "lower min_remaining for this credential",
                )
            )
        mint_timeout = config.daemon.mint_timeout
        used = policy.effective_mint_timeout(mint_timeout, lifetime)
        if used < mint_timeout:
            findings.append(
                Finding(
                    "warning",
                    cred.name,
                    f"[daemon] mint_timeout ({mint_timeout:g}s) is more than {policy.MINT_TIMEOUT_SHARE:.0%} of the "
                    f"token lifetime ({lifetime:g}s); its mints are cut off after {used:g}s instead",
                    f'set mint_timeout to at most "{used:g}s", or token_lifetime to the real lifetime',
                )
            )
        wpd = policy.writes_per_day(lifetime, pol)
        for tgt in cred.targets:
            store = stores.get(tgt.store)
            if store is None:
                continue
            try:
                found = store.plan(tgt.key, wpd, target=tgt)
            except StoreError as exc:
                found = [Finding("error", tgt.label, str(exc))]
            findings.extend(Finding(f.level, f"{cred.name} -> {f.subject}", f.message, f.fix) for f in found)
    return findings
