"""Argument checks shared by the rules: each message names the value, so the caller can point at its key."""

from __future__ import annotations

import math


def _require(ok: bool, name: str, value: float, rule: str) -> None:
    # Messages name the field so the config layer can point at the right key.
    if not ok:
        raise ValueError(f"{name} {rule}, got {value!r}")


def _finite_nonnegative(value: float) -> bool:
    return math.isfinite(value) and value >= 0.0


def _finite_positive(value: float) -> bool:
    return math.isfinite(value) and value > 0.0


def _check_rand(rand: float) -> None:
    # 1.0 is accepted: random.uniform(0, 1) may return it and the formulas stay in bounds.
    _require(0.0 <= rand <= 1.0, "rand", rand, "must be in [0, 1)")


def _check_times(**times: float) -> None:
    # A NaN or infinite time would silently compare false everywhere and
    # produce a schedule that never fires; fail loudly at the source instead.
    for name, value in times.items():
        _require(math.isfinite(value), name, value, "must be a finite epoch time")
