"""Helpers shared by tests that run ``syncd`` as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.peers.servers import free_port

SYNCD = str(Path(sys.executable).parent / "syncd")


def wait_for(
    predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class SyncdProcess:
    """``syncd run -c <file>`` with JSON logs captured to a file and a known HTTP port."""

    def __init__(self, config_text: str, workdir: Path, *, env: dict[str, str] | None = None, name: str = "syncd"):
        self.workdir = workdir
        self.port = free_port()
        self.config_path = workdir / f"{name}.toml"
        self.log_path = workdir / f"{name}.log"
        self.write_config(config_text)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self, config_text: str) -> None:
        text = config_text.replace("{port}", str(self.port)) if "{port}" in config_text else config_text
        if "[daemon]" not in text:
            text = f'[daemon]\nlisten = "127.0.0.1:{self.port}"\nlog_format = "json"\n\n' + text
        self.config_path.write_text(text)
        self.config_path.chmod(0o600)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SyncdProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [SYNCD, "run", "-c", str(self.config_path)], stdout=log, stderr=subprocess.STDOUT, env=self.env
        )
        log.close()
        return self

    def wait_http(self, timeout: float = 15.0) -> None:
        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"syncd exited {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                return httpx.get(self.url + "/livez", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout, what="syncd /livez")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5.0)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and (event is None or doc.get("event") == event):
                out.append(doc)
        return out

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"syncd did not exit within {timeout}s of SIGTERM") from None

    def __enter__(self) -> SyncdProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
