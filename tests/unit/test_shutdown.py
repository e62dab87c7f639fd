"""syncd.shutdown: which targets a run cut off at SIGTERM leaves unwritten (table-driven)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from syncd.shutdown import unwritten_targets


@dataclass
class Tok:
    fingerprint: str
    expires_at: float

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


@dataclass
class Tgt:
    label: str
    stored_fingerprint: str | None
    retry_at: float | None = None


NOW = 100.0
NEW = Tok("sha256:new", 200.0)

# held token, targets -> labels named in write_abandoned
CASES = [
    (NEW, [Tgt("a", "sha256:new"), Tgt("b", "sha256:old")], ["b"]),  # a took it, b was being written
    (NEW, [Tgt("a", None)], ["a"]),  # never written yet
    (NEW, [Tgt("a", "sha256:old", retry_at=150.0)], []),  # failed, waiting out its backoff: not being written
    (NEW, [Tgt("a", "sha256:old", retry_at=90.0)], ["a"]),  # backoff over: written by this run
    (Tok("sha256:new", 50.0), [Tgt("a", "sha256:old")], []),  # an expired token is never written
    (None, [Tgt("a", None)], []),  # nothing to write (the cut-off run was minting the first token)
    (NEW, [Tgt("a", "sha256:new"), Tgt("b", "sha256:new")], []),  # cut off after every write (or while minting)
]


@pytest.mark.parametrize(("token", "targets", "labels"), CASES)
def test_unwritten_targets(token, targets, labels):
    assert [t.label for t in unwritten_targets(token, targets, NOW)] == labels
