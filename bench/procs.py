"""The processes a benchmark case runs: the fake IdP, syncd itself, and a sampler watching syncd from outside.

Every server is started through ``tests/peers/servers.PeerProcess``, i.e. under
the small guard process that kills it when the harness dies (even on SIGKILL),
bound to 127.0.0.1, with its log in the case directory. syncd runs under the
same guard; its own pid (the guard's child) is what psutil watches, so the
numbers are syncd's alone: not the guard's, not the IdP's, not a store's.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from tests.peers.servers import HOST, PeerError, PeerProcess, http_request

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SYNCD = VENV_BIN / "syncd"


def _adopt_workdir(peer: PeerProcess, workdir: Path, name: str) -> None:
    """Keep a peer's log in the case directory instead of a temporary one."""
    old = peer.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    peer.workdir = workdir
    peer.log_path = workdir / f"{name}.log"
    with contextlib.suppress(OSError):
        old.rmdir()


class FakeIdpProcess(PeerProcess):
    """``python -m bench.fake_idp`` in its own process (its CPU is never syncd's)."""

    name = "fake-idp"
    _ready_re = re.compile(r"^READY http://127\.0\.0\.1:(\d+)\s*$", re.MULTILINE)

    def __init__(self, ttl: float, workdir: Path, *, opaque: bool = False) -> None:
        super().__init__(0)
        _adopt_workdir(self, workdir, "fake-idp")
        self.ttl = ttl
        self.opaque = opaque

    def _pick_port(self) -> int:
        return 0  # binds port 0 itself and reports it

    def _env(self) -> dict[str, str]:
        env = super()._env()
        env["PYTHONPATH"] = str(ROOT)
        return env

    def _command(self) -> list[str]:
        cmd = [sys.executable, "-m", "bench.fake_idp", "--port", "0", "--ttl", f"{self.ttl:g}"]
        return [*cmd, "--opaque"] if self.opaque else cmd

    def _probe(self) -> bool:
        match = self._ready_re.search(self.log_text(since_start=True))
        if match is None:
            return False
        self.port = int(match.group(1))
        return True

    @property
    def token_url(self) -> str:
        return f"http://{HOST}:{self.port}/auth/realms/vgs/protocol/openid-connect/token"

    def issued(self) -> int:
        status, body = http_request("GET", f"http://{HOST}:{self.port}/_stats")
        if status != 200:
            raise PeerError(f"fake IdP /_stats -> {status}")
        return int(json.loads(body)["total"])


class SyncdProcess(PeerProcess):
    """``syncd run -c <config>`` under the guard; ready once its ``started`` event is logged."""

    name = "syncd"

    def __init__(
        self,
        config_path: Path,
        workdir: Path,
        port: int,
        *,
        startup_timeout: float = 300.0,
        patches: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        ready: str = "log",
    ) -> None:
        super().__init__(port, startup_timeout=startup_timeout)
        _adopt_workdir(self, workdir, "syncd")
        self.config_path = config_path
        self.patches = patches
        self.extra_env = env or {}
        self.ready = ready  # "log": the `started` event; "readyz": /readyz 200 (when info events are filtered)
        self.spawned_at = 0.0
        self._syncd_pid: int | None = None
        self._scan_offset = 0
        self.events_seen: dict[str, dict[str, Any]] = {}

    def _command(self) -> list[str]:
        self.spawned_at = time.time()
        if self.patches:  # prototype fixes (bench/variant.py); headline numbers never use this
            return [
                sys.executable,
                "-m",
                "bench.variant",
                "--patch",
                ",".join(self.patches),
                "--",
                "run",
                "-c",
                str(self.config_path),
            ]
        return [str(SYNCD), "run", "-c", str(self.config_path)]

    def _env(self) -> dict[str, str]:
        env = super()._env()
        env.update(self.extra_env)
        if self.patches:
            env["PYTHONPATH"] = str(ROOT)
        return env

    def _pick_port(self) -> int:  # the port is in the config already
        return self.port

    def _probe(self) -> bool:
        self._scan_events()
        if self.ready == "readyz" and "started" not in self.events_seen:
            status, _ = http_request("GET", f"http://{HOST}:{self.port}/readyz", timeout=5)
            if status == 200:
                stamp = datetime.fromtimestamp(time.time(), UTC).isoformat().replace("+00:00", "Z")
                self.events_seen["started"] = {"event": "started", "timestamp": stamp, "via": "/readyz"}
        return "started" in self.events_seen

    def _scan_events(self) -> None:
        """Remember the first occurrence of the life-cycle events (listening, started)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._scan_offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        cut = chunk.rfind(b"\n") + 1
        self._scan_offset += cut
        for line in chunk[:cut].splitlines():
            if b'"listening"' not in line and b'"started"' not in line and b'"plan"' not in line:
                continue
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                self.events_seen.setdefault(doc.get("event", ""), doc)

    @property
    def syncd_pid(self) -> int:
        """The syncd process itself (the guard's only child)."""
        if self._syncd_pid is None:
            assert self.pid is not None
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                kids = psutil.Process(self.pid).children()
                if kids:
                    self._syncd_pid = kids[0].pid
                    break
                time.sleep(0.01)
            else:
                raise PeerError("syncd did not start under its guard")
        return self._syncd_pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop_and_code(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (syncd drains and exits); returns syncd's exit code as the guard relays it."""
        proc = self._proc
        code = None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                code = None
        self.stop(timeout=5.0)
        return code


@dataclass
class Sample:
    t: float
    cpu: float  # user + system seconds, all threads
    rss: int
    sys: float = 0.0  # the system (kernel) part of cpu


@dataclass
class Sampler:
    """Samples a pid's CPU time and RSS from outside (psutil), every ``interval`` seconds, in a thread."""

    pid: int
    interval: float = 0.5
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.proc = psutil.Process(self.pid)

    def read(self) -> Sample:
        with self.proc.oneshot():
            ct = self.proc.cpu_times()
            rss = self.proc.memory_info().rss
        return Sample(time.time(), ct.user + ct.system, rss, ct.system)

    def start(self) -> Sampler:
        def run() -> None:
            while not self._stop.is_set():
                try:
                    self.samples.append(self.read())
                except psutil.Error:
                    return
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=run, name="sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def peak_rss(self) -> int:
        """VmHWM: the kernel's high-water mark of the resident set, so short peaks between samples count."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return max((s.rss for s in self.samples), default=0)
