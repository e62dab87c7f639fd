"""The garbage collector and the daemon's long-lived state: held off while start-up builds it, frozen after.

Loading 10,000 credentials and adopting their tokens allocates millions of objects that
all live as long as the daemon (config sections, states, payloads, metric series, jobs),
and almost none of them in reference cycles. Each automatic full collection meanwhile
walks every object made so far: about a tenth of the start-up's CPU, for nothing
found. Reference counting still frees what start-up drops; a cycle it leaves waits for
the first collection after it.

The same holds in the steady state: every rotation replaces a credential's token state,
payload and a few records, and those replacements live until the next rotation. Over one
rotation cycle they add up to one more copy of the per-credential state outside the
frozen part, and each automatic full collection walks all of it: at 100,000 credentials
the loop stalled over a second 23 times in 20 minutes (lateness p99 1.2 s). So after
every full collection, what survived it is frozen too, and a full collection only walks
what was made since the last one. A reference cycle that dies after it was frozen is
never found by those collections, so every `RECLAIM_INTERVAL` (6 hours) everything is thawed,
collected once and frozen again (`reclaim`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "RECLAIM_INTERVAL",
    "Reclaimed",
    "collector_paused",
    "freeze_long_lived",
    "reclaim",
    "reclaim_periodically",
    "thaw",
]

# Seconds between two full walks of the frozen heap. A walk holds the loop for as long as
# it takes: ~0.3 s at 10,000 credentials, 3.1 s at 100,000 (measured). What it frees is
# small: 60 objects after 10 minutes at 100,000 credentials, 167 rotations/s (dead cycles
# are made by rare paths, errors mostly). Six hours keeps the stall under 0.015% of the
# time while no dead cycle is kept for longer.
RECLAIM_INTERVAL = 6 * 3600.0


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collection inside; the collector is as it was afterwards (nested use is harmless)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _freeze_after_full_collection(phase: str, info: dict[str, Any]) -> None:
    # A gc callback: "stop" comes after a collection, whose survivors sit in the oldest
    # generation (a full collection merges the younger ones into it first).
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


def freeze_long_lived(*, collect_first: bool) -> None:
    """Keep what start-up (or a reload) built, and what survives each full collection, out of later ones.

    At 10,000 credentials the heap holds ~400,000 objects the collector tracks (config,
    per-credential state and series, jobs), and they live until a reload drops them. A full
    (generation-2) collection walks every one with the event loop held: 120 to 340 ms measured,
    about every 75 s at 67 rotations/s, a stall far longer than any run or scrape. Frozen, they
    are never walked again; reference counting still frees them when a reload drops them. A
    cycle among them would never be collected, so a reload unfreezes and collects once first.
    """
    if collect_first:
        reclaim()
    else:
        gc.freeze()
    if _freeze_after_full_collection not in gc.callbacks:
        gc.callbacks.append(_freeze_after_full_collection)


def thaw() -> None:
    """Undo `freeze_long_lived`: what it froze, and what is made later, is collected as usual again."""
    with contextlib.suppress(ValueError):
        gc.callbacks.remove(_freeze_after_full_collection)
    gc.unfreeze()


@dataclass(frozen=True, slots=True)
class Reclaimed:
    collected: int  # unreachable objects found (dead cycles, mostly among frozen objects)
    seconds: float  # how long the collection held the loop


def reclaim(*, clock: Callable[[], float] = time.perf_counter) -> Reclaimed:
    """Thaw, collect everything once and freeze again: frees the dead cycles freezing kept."""
    started = clock()
    gc.unfreeze()
    collected = gc.collect()
    gc.freeze()
    return Reclaimed(collected, clock() - started)


async def reclaim_periodically(report: Callable[[Reclaimed], None], interval: float | None = None) -> None:
    """`reclaim` every ``interval`` (default `RECLAIM_INTERVAL`) seconds until cancelled, reporting each."""
    while True:
        await asyncio.sleep(RECLAIM_INTERVAL if interval is None else interval)
        report(reclaim())
