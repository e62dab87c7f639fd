"""The garbage collector and the daemon's long-lived state: held off while start-up builds it, frozen after.

Loading 10,000 credentials and adopting their tokens allocates millions of objects that
all live as long as the daemon (config sections, states, payloads, metric series, jobs),
and almost none of them in reference cycles. Each automatic full collection meanwhile
walks every object made so far: about a tenth of the start-up's CPU, for nothing
found. Reference counting still frees what start-up drops; a cycle it leaves waits for
the first collection after it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["collector_paused", "freeze_long_lived", "thaw"]


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


def freeze_long_lived(*, collect_first: bool) -> None:
    """Keep what start-up (or a reload) built out of every later garbage collection.

    At 10,000 credentials the heap holds ~400,000 objects the collector tracks (config,
    per-credential state and series, jobs), and they live until a reload drops them. A full
    (generation-2) collection walks every one with the event loop held: 120 to 340 ms measured,
    about every 75 s at 67 rotations/s, a stall far longer than any run or scrape. Frozen, they
    are never walked again; reference counting still frees them when a reload drops them. A
    cycle among them would never be collected, so a reload unfreezes and collects once first.
    """
    if collect_first:
        gc.unfreeze()
        gc.collect()
    gc.freeze()


def thaw() -> None:
    """Undo `freeze_long_lived`: what it froze is collected as usual again."""
    gc.unfreeze()
