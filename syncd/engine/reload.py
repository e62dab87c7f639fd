"""``Engine.reload``: apply a new configuration to a running engine.

Added credentials start (adopting what their targets hold), removed ones stop and
forget their series, changed ones restart with the token they hold; a credential whose
identity changed (a new client, a new secret value behind the same reference) mints a
new token at once. Stores whose settings did not change are kept, with their clients.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from syncd import identity, logs
from syncd.config import Config
from syncd.engine.state import CredentialState

if TYPE_CHECKING:
    from syncd.engine.lifecycle import Engine

log = logs.get_logger("syncd.engine")


async def apply_reload(engine: Engine, new: Config) -> dict[str, list[str]]:
    """Apply ``new`` to ``engine``; returns the credential names per outcome."""
    old_stores = engine.stores
    stores = engine._build_stores(new, reuse=old_stores)
    changed_stores = {n for n in new.stores if stores[n] is not old_stores.get(n)}
    engine.config = new
    summary: dict[str, list[str]] = {"added": [], "removed": [], "changed": [], "unchanged": [], "reminted": []}
    new_names = {c.name for c in new.credentials}
    # A changed secret value hides behind an unchanged reference: read the sources (off the loop).
    known = [c for c in new.credentials if (o := engine.credentials.get(c.name)) is not None and o.minted_with]
    current = await asyncio.to_thread(lambda: {c.name: identity.digest(c) for c in known})
    for name in list(engine.credentials):
        if name not in new_names:
            st = engine.credentials.pop(name)
            st.generation += 1
            engine._remove_job(name)
            engine.metrics.forget_credential(name, [ts.label for ts in st.targets])
            for value in (*st.retired, *([st.token.access_token.get_secret_value()] if st.token else [])):
                logs.forget_secret(value)
            summary["removed"].append(name)
    to_start: list[CredentialState] = []
    for cfg in new.credentials:
        old = engine.credentials.get(cfg.name)
        uses_changed = any(t.store in changed_stores for t in cfg.targets)
        reasons = identity.remint_reasons(old.cfg, cfg, old.minted_with, current.get(cfg.name)) if old else []
        if (
            old is not None
            and not reasons
            and old.cfg == cfg
            and not uses_changed
            and old.policy == cfg.policy(new.defaults)
        ):
            summary["unchanged"].append(cfg.name)
            continue
        st = engine._new_state(cfg, stores)
        if old is not None:
            old.generation += 1
            engine._remove_job(cfg.name)
            st.token, st.minted_with, st.retired = old.token, old.minted_with, old.retired
            if reasons:
                summary["reminted"].append(cfg.name)
                log.info("identity_changed", credential=cfg.name, changed=reasons, action="minting a new token now")
            summary["changed"].append(cfg.name)
            engine.metrics.forget_credential(cfg.name, [ts.label for ts in old.targets])
        else:
            summary["added"].append(cfg.name)
        engine.credentials[cfg.name] = st
        to_start.append(st)
    engine.stores = stores
    engine._store_configs = dict(new.stores)
    for name, store in old_stores.items():
        if store is not stores.get(name):
            with contextlib.suppress(Exception):
                await store.aclose()
    if to_start:
        await engine._start_credentials(to_start, remint=summary["reminted"])
    log.info("reloaded", **{k: v for k, v in summary.items() if k != "unchanged"}, unchanged=len(summary["unchanged"]))
    return summary
