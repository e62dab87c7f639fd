"""The garbage collector held off while start-up builds long-lived state.

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

__all__ = ["collector_paused"]


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
