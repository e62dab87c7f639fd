"""``syncd inspect``: read every target straight from the stores and judge what is there.

This is the blackbox check a team runs from a CronJob: it needs no running
daemon, only read access to the stores, so it verifies rotation independently
of the process doing it.

Each target gets one status:

* ``fresh``        a payload of this credential, not yet past its refresh time (+ slack)
* ``stale``        still valid, but more than max(25 % of its lifetime, 5 s) past
                   ``refresh_after``: the writer is late (a warning; a problem with ``--strict``)
* ``expired``      past ``expires_at``: consumers read a dead token
* ``missing``      nothing at the key
* ``unparseable``  something is there but it is not a syncd payload (corrupt, truncated, edited)
* ``foreign``      a payload written for another credential (two configs share a key)
* ``error``        the store could not be read (permissions, outage) or not even created
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from syncd.config import Config
from syncd.logs import scrub_text
from syncd.payload import to_rfc3339
from syncd.stores.base import Store, StoreError, create_store


@dataclass(frozen=True)
class TargetReport:
    credential: str
    target: str
    status: str  # fresh | stale | expired | missing | unparseable | foreign | error | unverifiable
    problem: str | None = None  # set for every status but fresh and stale: exit 1
    warning: str | None = None  # stale: still valid but past its refresh time (exit 1 only with --strict)
    fingerprint: str | None = None
    issued_at: float | None = None
    expires_at: float | None = None
    refresh_after: float | None = None
    remaining: float | None = None
    remaining_fraction: float | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "credential": self.credential,
            "target": self.target,
            "status": self.status,
            "problem": self.problem,
            "warning": self.warning,
            "fingerprint": self.fingerprint,
            "issued_at": to_rfc3339(self.issued_at) if self.issued_at else None,
            "expires_at": to_rfc3339(self.expires_at) if self.expires_at else None,
            "refresh_after": to_rfc3339(self.refresh_after) if self.refresh_after else None,
            "remaining_seconds": round(self.remaining, 1) if self.remaining is not None else None,
            "remaining_fraction": round(self.remaining_fraction, 3) if self.remaining_fraction is not None else None,
        }


def open_stores(config: Config, skip: Iterable[str] = ()) -> tuple[dict[str, Store], dict[str, str]]:
    """Create every store (but those in `skip`): (stores, {name: why it could not be created})."""
    stores: dict[str, Store] = {}
    broken: dict[str, str] = {}
    for name, scfg in config.stores.items():
        if name in skip:
            continue
        try:
            stores[name] = create_store(name, scfg)
        except Exception as exc:  # reported on each of its targets instead of a traceback
            broken[name] = f"cannot create store {name!r}: {type(exc).__name__}: {exc}"
    return stores, broken


async def inspect_targets(
    config: Config, *, now: float | None = None, stores: dict[str, Store] | None = None
) -> list[TargetReport]:
    """One report per configured target, in config order. Never raises for a store problem.

    With `stores` (from :func:`open_stores`), those are used and left open, so a caller that
    inspects on an interval (``syncd probe``) logs in to each store once, not every round.
    A store missing from `stores` is created for this round and closed after it.
    """
    own, broken = open_stores(config, skip=stores or {})
    stores = {**(stores or {}), **own}
    sem = asyncio.Semaphore(32)
    try:

        async def one(cred_name: str, store: Store | None, tgt: Any) -> TargetReport:
            if store is None:
                return TargetReport(cred_name, tgt.label, "error", problem=broken[tgt.store])
            async with sem:
                try:
                    payload = await store.read(tgt.key, target=tgt)
                except StoreError as exc:
                    unparseable = getattr(exc, "code", None) == "payload"
                    return TargetReport(
                        cred_name,
                        tgt.label,
                        "unparseable" if unparseable else "error",
                        problem=("unparseable: " if unparseable else "read failed: ") + scrub_text(str(exc)),
                    )
                except Exception as exc:
                    return TargetReport(
                        cred_name,
                        tgt.label,
                        "error",
                        problem=f"read failed: {type(exc).__name__}: {scrub_text(str(exc))}",
                    )
            t = time.time() if now is None else now
            if payload is None and tgt.format == "raw" and config.stores[tgt.store].type.startswith("aws-"):
                # A bare token in AWS carries no expiry, so the store cannot tell missing from present.
                return TargetReport(
                    cred_name,
                    tgt.label,
                    "unverifiable",
                    warning="raw format in AWS carries no expiry: freshness cannot be checked (use format json)",
                )
            if payload is None:
                return TargetReport(cred_name, tgt.label, "missing", problem="missing: nothing stored at this key")
            base: dict[str, Any] = {
                "fingerprint": payload.fingerprint,
                "issued_at": payload.issued_at,
                "expires_at": payload.expires_at,
                "refresh_after": payload.refresh_after,
                "remaining": payload.remaining(t),
                "remaining_fraction": payload.remaining_fraction(t),
            }
            if payload.credential != cred_name:
                return TargetReport(
                    cred_name,
                    tgt.label,
                    "foreign",
                    problem=f"written by a different credential ({payload.credential!r})",
                    **base,
                )
            if payload.expired(t):
                ago = t - payload.expires_at
                return TargetReport(
                    cred_name, tgt.label, "expired", problem=f"expired {ago:.0f}s ago: rotation has stopped", **base
                )
            late = t - payload.refresh_after
            if late > max(payload.lifetime * 0.25, 5.0):
                return TargetReport(
                    cred_name,
                    tgt.label,
                    "stale",
                    warning=f"still valid but {late:.0f}s past its refresh time: rotation is late",
                    **base,
                )
            return TargetReport(cred_name, tgt.label, "fresh", **base)

        jobs = [one(cred.name, stores.get(tgt.store), tgt) for cred in config.credentials for tgt in cred.targets]
        return list(await asyncio.gather(*jobs))
    finally:
        for store in own.values():
            with contextlib.suppress(Exception):
                await store.aclose()
