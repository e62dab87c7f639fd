"""HTTP endpoints /livez /readyz /metrics /status, served in the daemon's own event loop.

aiohttp.web is used because it runs as a plain coroutine (``AppRunner`` +
``TCPSite``) inside the loop that APScheduler and the mints already use: no
second thread, no ASGI server to configure, and a stuck loop makes /livez stop
answering, which is exactly what a liveness probe should see. It is also
already a dependency of many Python services, well kept, and small.

/livez never depends on the IdP or a store (that must not restart the pod): it
fails only when the loop heartbeat or the scheduler heartbeat is older than
``daemon.liveness_threshold`` (both beat every second, on the loop itself).
/readyz is about the targets: 503 names every credential/target without an
unexpired token. /status is the engine's view per credential, fingerprints
only; as a second line of defence its JSON (and /readyz's) passes through the
same redaction as the logs before it leaves the process.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from syncd import __version__, logs
from syncd.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from syncd.engine import Engine

log = logs.get_logger("syncd.server")


_NO_STORE = {"Cache-Control": "no-store"}
#: How long a /metrics render may hold the event loop before it lets other work run (seconds).
SCRAPE_SLICE = 0.002


def _json(data: Any, status: int = 200) -> web.Response:
    text = logs.scrub_text(json.dumps(data, indent=2, sort_keys=False, default=str))
    return web.Response(text=text + "\n", status=status, content_type="application/json", headers=_NO_STORE)


async def _let_the_loop_run() -> None:
    """Give every callback and timer that is due a turn before the caller goes on.

    One ``sleep(0)`` is not enough: asyncio queues the timers that fell due (the scheduler's
    jobs) behind the task's own wake-up, so they would wait for the caller's next slice too.
    The second ``sleep(0)`` resumes behind them."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def build_app(engine: Engine) -> web.Application:
    app = web.Application()

    async def livez(_: web.Request) -> web.Response:
        now = engine.clock()
        limit = engine.config.daemon.liveness_threshold
        loop_age = now - engine.loop_heartbeat
        sched_age = now - engine.scheduler_heartbeat
        scheduler_running = engine.scheduler is not None and engine.scheduler.running
        ok = loop_age < limit and sched_age < limit and scheduler_running
        body = {
            "status": "ok" if ok else "stuck",
            "loop_heartbeat_age": round(loop_age, 3),
            "scheduler_heartbeat_age": round(sched_age, 3),
            "scheduler_running": scheduler_running,
        }
        return _json(body, 200 if ok else 503)

    async def readyz(_: web.Request) -> web.Response:
        missing = engine.not_ready()
        if missing:
            return _json({"status": "not ready", "not_ready": missing}, 503)
        return _json({"status": "ready", "credentials": len(engine.credentials)})

    # Per-credential series keep their exposition lines rendered as bytes (syncd.exposition), so a
    # scrape is a join: ~20 ms at 10,000 credentials for a ~9 MB page. First the page is taken
    # (`Metrics.snapshot`: each family's lines as they are now, a pointer per series; the few other
    # collectors rendered), so a collector that fails is a 500 as for any handler, and the length
    # is known (Content-Length, no chunked encoding). Then it is rendered and written in parts of
    # ~100 KB, waiting whenever the socket is full: the page is never held whole (92 MB at 100,000
    # credentials), nor buffered whole in the transport. The loop gets a turn whenever the scrape
    # has held it for SCRAPE_SLICE: short stalls, and only a few turns to wait for (a congested
    # loop cannot make a scrape take a turn per part).
    async def metrics(request: web.Request) -> web.StreamResponse:
        pieces = []
        since = time.perf_counter()
        for piece in engine.metrics.snapshot():
            pieces.append(piece)
            if time.perf_counter() - since >= SCRAPE_SLICE:
                await _let_the_loop_run()
                since = time.perf_counter()
        stream = web.StreamResponse(headers=_NO_STORE)
        stream.headers["Content-Type"] = CONTENT_TYPE
        stream.content_length = sum(piece.length for piece in pieces)
        await stream.prepare(request)
        if request.method == "HEAD":  # aiohttp sends a HEAD's headers only, Content-Length included
            return stream
        since = time.perf_counter()
        pieces.reverse()
        while pieces:
            piece = pieces.pop()  # let what is sent go
            for part in piece.parts():
                # This waits only while the transport holds over 64 KB: a client that keeps up
                # would have every part sent in one go (a send() each), so slice it too.
                await stream.write(part)
                if time.perf_counter() - since >= SCRAPE_SLICE:
                    await _let_the_loop_run()
                    since = time.perf_counter()
        await stream.write_eof()
        return stream

    async def status(_: web.Request) -> web.Response:
        return _json({"version": __version__, **engine.status()})

    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    return app


class HttpServer:
    """The endpoints on ``daemon.listen``; ``port`` is the bound port (useful with port 0)."""

    def __init__(self, engine: Engine, host: str, port: int) -> None:
        self.engine = engine
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(build_app(self.engine), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(
                exc.errno,
                f"cannot listen on {self.host}:{self.port} ({exc.strerror}): another process holds the port, "
                "or set [daemon] listen to a free address",
            ) from None
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("listening", address=f"http://{self.host}:{self.port}", endpoints="/livez /readyz /metrics /status")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
