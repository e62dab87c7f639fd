"""``[daemon]`` (the process: listener, logs, timeouts, concurrency) and ``[probe]`` (``syncd probe``)."""

from __future__ import annotations

import math
import socket
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from syncd.config.values import Duration, PositiveDuration, _Model


class DaemonConfig(_Model):
    listen: str = "127.0.0.1:9440"
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    drain_timeout: Duration = 10.0  # bound on finishing in-flight writes at SIGTERM
    http_timeout: PositiveDuration = 10.0  # IdP read timeout
    connect_timeout: PositiveDuration = 5.0
    # Total bound on one mint (connect, send, every byte of the answer): http_timeout is per read,
    # so an IdP dripping its answer a byte at a time would otherwise hold a mint for ever.
    mint_timeout: PositiveDuration = 10.0
    # Mints in flight per token endpoint (scheme://host:port), so a hanging IdP cannot hold the
    # slots that credentials on other IdPs need.
    max_concurrent_mints: int = Field(default=32, ge=1, le=1024)
    startup_concurrency: int = Field(default=64, ge=1, le=4096)
    liveness_threshold: PositiveDuration = 30.0  # /livez fails when the loop heartbeat is older

    # Several replicas (docs/ha.md; the rules are in syncd/replicas.py).
    replicas: int = Field(default=1, ge=1, le=1024)  # how many syncd processes share this config
    # This process's ordinal, 0..replicas-1. Unset: the trailing "-N" of the hostname (a
    # StatefulSet pod), else 0. Declared after replicas, so the check below can see it.
    replica: int | None = Field(default=None, ge=0, validate_default=True)
    takeover_delay: float | Literal["auto"] = "auto"  # wait per rank before a follower acts; auto: lifetime/10, <= 60s

    @field_validator("takeover_delay", mode="before")
    @classmethod
    def _takeover_delay(cls, v: Any) -> Any:
        from syncd.replicas.ranking import parse_takeover_delay

        return parse_takeover_delay(v)

    @field_validator("replica")
    @classmethod
    def _replica(cls, v: int | None, info: ValidationInfo) -> int:
        from syncd.replicas.ranking import resolve_replica

        replicas = info.data.get("replicas")
        if not isinstance(replicas, int):
            return v or 0  # replicas itself is invalid and reported
        return resolve_replica(v, replicas, socket.gethostname())

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    @field_validator("mint_timeout")
    @classmethod
    def _mint_timeout(cls, v: float) -> float:
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"mint_timeout must be a finite duration above 0 (e.g. '10s'), got {v!r}")
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{v!r} is not host:port (e.g. 127.0.0.1:9440 or 0.0.0.0:9440)")
        return v

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class ProbeConfig(_Model):
    """``syncd probe``: the read-only exporter of what the stores hold (docs/operations.md)."""

    listen: str = "127.0.0.1:9442"
    interval: Duration = Field(default=30.0, ge=1.0, le=3600.0)  # between two reads of every target

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        return DaemonConfig._listen(v)  # the same host:port rule and message as [daemon].listen

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)
