"""Who acts for which credential, and when: the ordinal, the rendezvous rank, takeover delays and wake times.

Pure functions with no I/O and no clock; nothing here imports the configuration,
so ``[daemon]``'s validators can use them.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Literal

from syncd.config.values import parse_duration

#: ``takeover_delay = "auto"``: this share of the token lifetime per rank ...
AUTO_DELAY_SHARE = 0.1
#: ... but never more than this: a follower of a day-long token need not wait hours.
AUTO_DELAY_CAP = 60.0

_TRAILING_ORDINAL = re.compile(r"-(\d+)$")

#: Pod-local store types: a token written there is seen by this replica's pod only.
POD_LOCAL_STORES = frozenset({"file"})


def parse_takeover_delay(value: object) -> float | Literal["auto"]:
    """``[daemon] takeover_delay``: ``"auto"`` or a duration above 0 (the rules of every duration key)."""
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
