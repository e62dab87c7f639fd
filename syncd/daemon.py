"""``syncd run``: the daemon's life cycle around the engine.

SIGTERM/SIGINT drain: stop scheduling, let in-flight writes finish up to
``daemon.drain_timeout``, close clients, exit 0. SIGHUP reloads the config
file: an invalid new file is logged and the running configuration goes on.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from syncd import logs
from syncd.config import Config, ConfigError, load_config
from syncd.engine import Engine
from syncd.server import HttpServer
from syncd.stores.base import Finding

log = logs.get_logger("syncd.daemon")


class StartupRefused(Exception):
    """The plan has errors (e.g. a Secrets Manager version quota): exit 2 instead of running."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        super().__init__("\n".join(f.render() for f in findings))


async def run_daemon(config: Config, config_file: Path | None) -> int:
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
    loop = asyncio.get_running_loop()
    reloading = asyncio.Lock()
    background: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        async with reloading:
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
            try:
                await engine.reload(new)
            except Exception as exc:
                log.error("reload_failed", action="keeping what runs", **logs.error_fields(exc))
                return
            logs.configure(new.daemon.log_level, new.daemon.log_format)

    def on_signal(sig: signal.Signals) -> None:
        if sig == signal.SIGHUP:
            log.info("signal", signal="SIGHUP", action="reload")
            task = loop.create_task(reload())
            background.add(task)
            task.add_done_callback(background.discard)
        else:
            log.info("signal", signal=sig.name, action="drain and exit")
            stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await engine.start()
        log.info("running", credentials=len(engine.credentials), stores=sorted(engine.stores))
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await engine.stop()
        await server.stop()
        log.info("stopped")
    return 0
