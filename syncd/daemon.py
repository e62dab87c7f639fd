"""``syncd run``: the daemon's life cycle around the engine.

* Start: bind the HTTP server, then adopt the fresh tokens the targets already
  hold and schedule every credential (``Engine.start``).
* SIGTERM/SIGINT drain: stop scheduling, let in-flight runs (a mint and its
  writes) finish up to ``daemon.drain_timeout``, cut off what is still running,
  close the stores and HTTP clients (each bounded), exit 0. Signals that arrive
  while draining are logged and otherwise ignored, so a SIGHUP cannot kill a
  draining daemon. A store call blocked in a worker thread (an SDK waiting on a
  server that does not answer) cannot be cancelled, and Python joins such
  threads at exit: the daemon then exits at once without them
  (``threads_abandoned``), so SIGTERM never hangs beyond ``drain_timeout`` plus
  the close bounds.
* SIGHUP reloads the config file. A new file that does not validate, or whose
  plan has errors (the ones that would refuse a start, such as a Secrets Manager
  version quota), is rejected with a ``reload_rejected`` event naming every
  problem, and the running configuration goes on untouched. A valid one is
  applied by ``Engine.reload``: added credentials start (adopting what their
  targets hold), removed ones stop and their metric series go, changed ones are
  rescheduled at once (a new target is written with the held token, a removed
  one is left as it is), and one whose identity changed mints a new token right
  away (``syncd.identity``). ``daemon.listen`` is bound once and needs a restart
  to change.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from syncd import heap, logs, replicas, shutdown
from syncd.config import Config, ConfigError, load_config
from syncd.engine import Engine, plan_findings
from syncd.server import HttpServer
from syncd.stores.base import Finding, Store, create_store

log = logs.get_logger("syncd.daemon")

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _report_reclaimed(done: heap.Reclaimed) -> None:
    log.info("heap_reclaimed", collected=done.collected, seconds=round(done.seconds, 3))


class StartupRefused(Exception):
    """The plan has errors (e.g. a Secrets Manager version quota): exit 2 instead of running."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        super().__init__("\n".join(f.render() for f in findings))


async def _plan_problems(engine: Engine, new: Config) -> list[str]:
    """The errors that would refuse ``new`` at start-up, checked before it replaces what runs.

    Stores whose configuration is unchanged are asked as they are; new or changed ones are
    built only for the check (no I/O happens at construction) and closed again.
    """
    temporary: dict[str, Store] = {}
    stores: dict[str, Store] = {}
    problems: list[str] = []
    try:
        for name, scfg in new.stores.items():
            if name in engine.stores and engine.config.stores.get(name) == scfg:
                stores[name] = engine.stores[name]
                continue
            try:
                stores[name] = temporary[name] = create_store(name, scfg)
            except Exception as exc:
                problems.append(f"stores.{name}: cannot create the store ({type(exc).__name__}: {exc})")
        if not problems:
            findings = plan_findings(new, stores) + replicas.replica_findings(new)
            problems = [f.render() for f in findings if f.level == "error"]
    finally:
        for store in temporary.values():
            with contextlib.suppress(Exception):
                await store.aclose()
    return problems


async def run_daemon(config: Config, config_file: Path | None) -> int:
    loop = asyncio.get_running_loop()
    before = set(threading.enumerate())
    # The default executor (file store I/O, off-loop joins) with named threads, so that at
    # exit the ones still stuck in a call are known and not waited for.
    io_pool = ThreadPoolExecutor(thread_name_prefix=f"{shutdown.THREAD_PREFIX}io")
    loop.set_default_executor(io_pool)
    code = 1
    try:
        code = await _run(config, config_file)
        return code
    except StartupRefused:
        code = 2
        raise
    finally:
        io_pool.shutdown(wait=False, cancel_futures=True)
        busy = await shutdown.busy_threads(shutdown.THREAD_EXIT_GRACE, before)
        if busy:
            log.warning(
                "threads_abandoned",
                threads=busy,
                action="exiting without them: their calls were cut off (see write_abandoned)",
            )
            shutdown.exit_now(code)
        loop.set_default_executor(ThreadPoolExecutor())  # a caller's loop stays usable


async def _run(config: Config, config_file: Path | None) -> int:
    engine = Engine(config)
    engine.setup()
    findings = engine.plan()
    for f in findings:
        log.warning("plan", level=f.level, subject=f.subject, message=f.message, fix=f.fix)
    errors = [f for f in findings if f.level == "error"]
    if errors:
        await engine.stop(drain_timeout=0)
        raise StartupRefused(errors)
    host, port = config.daemon.host_port
    server = HttpServer(engine, host, port)
    await server.start()
    stop = asyncio.Event()
    started = asyncio.Event()
    loop = asyncio.get_running_loop()
    reloading = asyncio.Lock()
    background: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        await started.wait()  # a SIGHUP during start-up applies once every credential is scheduled
        async with reloading:
            if stop.is_set():
                return
            if config_file is None:
                log.warning("reload_skipped", reason="no config file to re-read")
                return
            try:
                new = load_config(config_file)
            except ConfigError as exc:
                log.error(
                    "reload_rejected",
                    file=str(config_file),
                    problems=[str(p) for p in exc.problems],
                    action="keeping the running configuration",
                )
                return
            problems = await _plan_problems(engine, new)
            if problems:
                log.error(
                    "reload_rejected",
                    file=str(config_file),
                    problems=problems,
                    action="keeping the running configuration",
                )
                return
            old_listen = engine.config.daemon.listen
            try:
                await engine.reload(new)
            except Exception as exc:
                log.error("reload_failed", action="keeping what runs", **logs.error_fields(exc))
                return
            logs.configure(new.daemon.log_level, new.daemon.log_format)
            heap.freeze_long_lived(collect_first=True)
            if new.daemon.listen != old_listen:
                log.warning(
                    "reload_partial",
                    key="daemon.listen",
                    running=old_listen,
                    configured=new.daemon.listen,
                    reason="the HTTP address is bound once; restart syncd to move it",
                )

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.info("signal", signal=sig.name, action="ignored: already draining")
            return
        if sig == signal.SIGHUP:
            log.info("signal", signal="SIGHUP", action="reload")
            task = loop.create_task(reload())
            background.add(task)
            task.add_done_callback(background.discard)
        else:
            log.info("signal", signal=sig.name, action="drain and exit")
            stop.set()

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await engine.start()
        heap.freeze_long_lived(collect_first=False)  # after `started`: not part of the start-up time
        reclaiming = loop.create_task(heap.reclaim_periodically(_report_reclaimed))
        background.add(reclaiming)
        started.set()
        log.info("running", credentials=len(engine.credentials), stores=sorted(engine.stores))
        await stop.wait()
    finally:
        stop.set()
        # A reload still waiting for its turn must not start credentials on a stopping engine.
        for task in list(background):
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        try:
            await engine.stop()
            await server.stop()
        finally:
            for sig in _SIGNALS:
                loop.remove_signal_handler(sig)
            heap.thaw()  # a process that ran the daemon in-process collects as before
        log.info("stopped")
    return 0
