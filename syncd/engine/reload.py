"""What a reload does to each credential, decided from the old states and the new configuration.

Added credentials start (adopting what their targets hold), removed ones stop, changed
ones restart with the token they hold; a credential whose identity changed (a new client,
a new secret value behind the same reference) mints a new token at once. Pure: the
identity digests of the new configuration are read (off the loop) by the caller,
`Engine.reload`, which then applies the plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from syncd import identity
from syncd.config import Config, CredentialConfig
from syncd.engine.state import CredentialState


@dataclass(frozen=True)
class Restart:
    """A credential (re)started by the reload."""

    cfg: CredentialConfig
    added: bool
    remint: list[str]  # what changed in its identity: mint a new token at once (empty: keep the token)


@dataclass(frozen=True)
class ReloadPlan:
    removed: list[str]
    unchanged: list[str]
    restart: list[Restart]  # in configuration order

    def summary(self) -> dict[str, list[str]]:
        """The credential names per outcome, as ``Engine.reload`` returns and logs them."""
        return {
            "added": [r.cfg.name for r in self.restart if r.added],
            "removed": list(self.removed),
            "changed": [r.cfg.name for r in self.restart if not r.added],
            "unchanged": list(self.unchanged),
            "reminted": [r.cfg.name for r in self.restart if r.remint],
        }


def needs_digest(credentials: Mapping[str, CredentialState], new: Config) -> list[CredentialConfig]:
    """The new credentials whose held token's identity must be compared (a changed secret value
    hides behind an unchanged reference, so the sources are read again)."""
    return [c for c in new.credentials if (o := credentials.get(c.name)) is not None and o.minted_with]


def plan_reload(
    credentials: Mapping[str, CredentialState],
    new: Config,
    changed_stores: Set[str],
    digests: Mapping[str, str | None],
) -> ReloadPlan:
    """``changed_stores``: stores rebuilt for the new configuration; ``digests``: identity digests
    of the credentials `needs_digest` named, read from the new configuration."""
    new_names = {c.name for c in new.credentials}
    removed = [name for name in credentials if name not in new_names]
    unchanged: list[str] = []
    restart: list[Restart] = []
    for cfg in new.credentials:
        old = credentials.get(cfg.name)
        if old is None:
            restart.append(Restart(cfg, added=True, remint=[]))
            continue
        reasons = identity.remint_reasons(old.cfg, cfg, old.minted_with, digests.get(cfg.name))
        uses_changed = any(t.store in changed_stores for t in cfg.targets)
        if not reasons and old.cfg == cfg and not uses_changed and old.policy == cfg.policy(new.defaults):
            unchanged.append(cfg.name)
        else:
            restart.append(Restart(cfg, added=False, remint=reasons))
    return ReloadPlan(removed, unchanged, restart)
