"""``syncd run`` with *prototype* fixes patched in at start, to measure what a proposed engine fix would gain.

The benchmark's headline numbers always come from unmodified syncd (the
``syncd`` console script). This launcher exists only for the "what would fix
it" section: it applies, in this process only, small monkeypatches that mirror
the fixes proposed in docs/benchmarks.md, then runs the real CLI. Nothing in
``syncd/`` is changed.

Patches (``--patch a,b,c``):

``timers``
    ``Engine._schedule`` arms one ``loop.call_at`` timer per credential instead
    of adding an APScheduler job with a DateTrigger on every run (APScheduler
    keeps the heartbeat job). Each ``add_job`` builds a Job, validates the
    callable's signature and wakes the scheduler through
    ``call_soon_threadsafe`` (a self-pipe write and read) to re-scan its store.
    The patch keeps its timer handles and tasks on attributes of its own
    (``_bench_timers``, ``_bench_tasks``); it used to put the tasks in the
    engine's ``_tasks`` set, which the engine no longer has, so every timer
    callback failed (logged by asyncio, not fatal). What it relies on is listed
    in ``TIMER_METHODS``/``TIMER_ATTRIBUTES`` and checked at start.
``sniffio``
    Make ``import sniffio`` succeed, as installing the tiny ``sniffio`` package
    would: httpcore imports it twice per request, and when it is absent every
    attempt is a failed import that stats each ``sys.path`` entry.
``probe``
    Diagnostics only: on SIGUSR1 append the redaction registry's size, the number of live objects and the
    time spent in the garbage collector (per generation, so far) to ``$BENCH_PROBE_FILE``.

Usage (by the harness): ``python -m bench.variant --patch timers,sniffio -- run -c syncd.toml``
"""

from __future__ import annotations

import asyncio
import os
import sys
import types
from typing import Any

# What patch_timers relies on in syncd's Engine. Checked when the patch is applied (methods) and when an
# Engine is built (attributes): an engine refactor then stops the variant at start with the name to fix,
# instead of an error inside a timer callback that asyncio only logs while the run goes on.
TIMER_METHODS = ("_schedule", "_remove_job", "_next_run", "run_credential")
TIMER_ATTRIBUTES = ("scheduler", "metrics", "clock", "_stopping")


class VariantError(RuntimeError):
    """A prototype patch no longer fits the engine it patches."""


def patch_timers() -> None:
    from syncd.engine import Engine

    missing = [m for m in TIMER_METHODS if not callable(getattr(Engine, m, None))]
    if missing:
        raise VariantError(f"--patch timers: syncd.engine.Engine has no {', '.join(missing)}; update bench/variant.py")
    original_init = Engine.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        gone = [a for a in TIMER_ATTRIBUTES if not hasattr(self, a)]
        if gone:
            raise VariantError(f"--patch timers: an Engine has no {', '.join(gone)}; update bench/variant.py")
        # The timers' tasks are held here, not in an engine attribute: the engine keeps no task set of its
        # own (it found its runs through asyncio.all_tasks in stop(), which finds these too, by coroutine).
        self._bench_timers = {}
        self._bench_tasks = set()

    def _schedule(self: Any, st: Any, at: float | None = None) -> None:
        when = at if at is not None else self._next_run(st)
        st.next_run = when
        self.metrics.next_refresh.labels(credential=st.name).set(when)
        if self.scheduler is None:
            return
        loop = asyncio.get_running_loop()
        handles: dict[str, asyncio.TimerHandle] = self._bench_timers
        old = handles.pop(st.name, None)
        if old is not None:
            old.cancel()

        def fire(name: str = st.name, planned: float = when) -> None:
            try:
                handles.pop(name, None)
                if self._stopping:
                    return
                task = loop.create_task(self.run_credential(name, planned))
                self._bench_tasks.add(task)
                task.add_done_callback(self._bench_tasks.discard)
            except BaseException as exc:
                # asyncio would only log this and the credential would never run again: stop the
                # variant instead, so the harness records a failed case rather than a quiet one.
                print(f"bench.variant --patch timers: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                os._exit(70)

        handles[st.name] = loop.call_later(max(0.0, when - self.clock()), fire)

    original_remove = Engine._remove_job

    def _remove_job(self: Any, name: str) -> None:
        handle = self._bench_timers.pop(name, None)
        if handle is not None:
            handle.cancel()
        original_remove(self, name)

    Engine.__init__ = __init__  # type: ignore[method-assign]
    Engine._schedule = _schedule  # type: ignore[method-assign]
    Engine._remove_job = _remove_job  # type: ignore[method-assign]


def patch_sniffio() -> None:
    if "sniffio" in sys.modules:
        return
    try:
        import sniffio  # noqa: F401
    except ImportError:
        module = types.ModuleType("sniffio")
        module.current_async_library = lambda: "asyncio"  # type: ignore[attr-defined]
        sys.modules["sniffio"] = module


def patch_probe() -> None:
    """On SIGUSR1, append the size of a few structures that could grow to $BENCH_PROBE_FILE (diagnostics)."""
    import gc
    import json
    import os
    import signal
    import time

    gc_time = [0.0, 0.0, 0.0]
    gc_runs = [0, 0, 0]
    started: list[float] = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            gen = info.get("generation", 0)
            gc_time[gen] += time.perf_counter() - started[0]
            gc_runs[gen] += 1

    gc.callbacks.append(on_gc)

    def dump(*_: Any) -> None:
        from syncd import logs

        doc = {
            "t": time.time(),
            "registry_regular": len(logs._SECRETS._regular),
            "registry_irregular": len(logs._SECRETS._irregular),
            "registry_bytes": sum(sys.getsizeof(v) for v in list(logs._SECRETS._regular)),
            "gc_objects": len(gc.get_objects()),
            "gc_seconds": list(gc_time),
            "gc_runs": list(gc_runs),
        }
        with open(os.environ.get("BENCH_PROBE_FILE", "probe.jsonl"), "a") as f:
            f.write(json.dumps(doc) + "\n")

    signal.signal(signal.SIGUSR1, dump)


PATCHES = {
    "probe": patch_probe,
    "timers": patch_timers,
    "sniffio": patch_sniffio,
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    patches: list[str] = []
    if args[:1] == ["--patch"]:
        patches = [p for p in args[1].split(",") if p]
        args = args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    unknown = [p for p in patches if p not in PATCHES]
    if unknown:
        raise SystemExit(f"bench.variant: unknown patch {', '.join(unknown)}; known: {', '.join(PATCHES)}")
    for name in patches:
        PATCHES[name]()
    from syncd.cli import app

    sys.argv = ["syncd", *args]
    app()
    return 0


if __name__ == "__main__":
    sys.exit(main())
