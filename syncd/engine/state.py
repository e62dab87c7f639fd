"""What the engine knows about each credential and each of its targets: plain records.

The rotation (`syncd.engine.rotation`) and the daemon around it (`syncd.engine.lifecycle`)
change these; the decisions (`syncd.engine.decide`) only read the values they are given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from syncd import logs, policy, verify
from syncd.config import CredentialConfig, Defaults, TargetConfig
from syncd.payload import TokenPayload, holds_token
from syncd.stores.base import Store

State = Literal["starting", "ok", "degraded", "retrying", "fatal", "expired", "stopped"]
Outcome = Literal["ok", "transient", "fatal"]
Held = Literal["minted", "adopted"]
LIVE_STATES = ("ok", "degraded", "retrying")


def error_view(exc: BaseException) -> dict[str, Any]:
    """The error as /status shows it: class, vendor code, message. Never a secret."""
    out: dict[str, Any] = {"class": type(exc).__name__, "message": logs.scrub_text(str(exc))}
    for attr in ("status", "error", "code"):
        value = getattr(exc, attr, None)
        if value is not None:
            out[attr] = value
    kind = getattr(exc, "kind", None)
    out["kind"] = kind if kind in ("transient", "fatal") else "fatal"
    return out


class Retired(list[tuple[logs.SecretHandle, float]]):
    """The replaced tokens a credential still redacts, (handle, expires_at), oldest first (a handful at most).

    Each kept as the redactor's handle (`logs.secret_handle`: hashes, not the token). A list with
    ``popleft``: an empty one costs 56 bytes where a deque allocates a 600-byte block up front,
    once per credential."""

    __slots__ = ()

    def popleft(self) -> tuple[logs.SecretHandle, float]:
        return self.pop(0)

    def handles(self) -> list[logs.SecretHandle]:
        return [handle for handle, _ in self]


# Slots: a credential's state has more fields than CPython shares the keys of in an instance
# dict (30), so with a __dict__ each one cost ~2 KiB; at 100,000 credentials that counts.
@dataclass(slots=True)
class TargetState:
    cfg: TargetConfig
    store: Store
    #: ``<store>:<key>``, the ``target`` metric label: one string per target, shared by its series.
    label: str = field(init=False)
    stored_fingerprint: str | None = None
    stored_expires_at: float | None = None
    last_success: float | None = None
    failures: int = 0
    retry_at: float | None = None
    last_error: dict[str, Any] | None = None
    last_outcome: Outcome | None = None
    verify_at: float | None = None  # next read-back of the target between rotations
    missing: str | None = None  # why the last read-back did not find our token there
    missing_since: float | None = None

    def __post_init__(self) -> None:
        self.label = self.cfg.label

    def holds(self, token: TokenPayload) -> bool:
        """Whether this target already has ``token`` with its expiry (see `holds_token`)."""
        return holds_token(self.stored_fingerprint, self.stored_expires_at, token)


@dataclass(slots=True)
class CredentialState:
    cfg: CredentialConfig
    policy: policy.RefreshPolicy
    lifetime_fallback: float
    targets: list[TargetState]
    max_lifetime: float = 86_400.0  # [defaults] max_lifetime
    verify_interval: verify.Interval = "auto"
    seen_lifetime: float | None = None  # the longest lifetime this process has minted for it
    token: TokenPayload | None = None
    state: State = "starting"
    mint_failures: int = 0
    consecutive_failures: int = 0
    mint_retry_at: float | None = None
    last_mint: float | None = None
    last_attempt: float | None = None
    minting_since: float | None = None  # a mint is in flight (shown on /status while it hangs)
    slot_wait_since: float | None = None  # that mint waits for one of its endpoint's slots (`admission`)
    last_mint_outcome: Outcome | None = None
    last_error: dict[str, Any] | None = None
    next_run: float | None = None
    adopted: bool = False
    mints: int = 0
    running: bool = False
    verifying: bool = False  # a read-back of the targets is in progress (syncd.verify)
    vault_id: str | None = None
    generation: int = 0
    minted_with: str | None = None  # identity digest of the held token's mint (syncd.identity)
    rearmed: int = 0  # times the watchdog found the credential off the schedule
    last_rearmed: float | None = None
    retired: Retired = field(default_factory=Retired)  # replaced token values, still redacted
    # Several replicas (docs/ha.md; set by syncd.engine.takeover.place).
    ranked: bool = False  # replicas share it through a shared target: refresh times are the stored payload's
    rank: int = 0  # 0 refreshes at refresh_after; rank k wakes k x takeover_delay later (decide.wake_at)
    takeover_delay: float = 0.0
    waiting_since: float | None = None  # a follower holding no token since then (start-up)
    held: Held | None = None  # whether the token held was minted here or adopted from a target

    @property
    def name(self) -> str:
        return self.cfg.name

    @classmethod
    def for_config(cls, cfg: CredentialConfig, defaults: Defaults, stores: Mapping[str, Store]) -> CredentialState:
        """A new credential's state (no token yet), its targets on ``stores``."""
        return cls(
            cfg=cfg,
            policy=_shared(cfg.policy(defaults)),
            lifetime_fallback=cfg.lifetime_fallback_for(defaults),
            max_lifetime=cfg.max_lifetime_for(defaults),
            verify_interval=cfg.verify_interval_for(defaults),
            targets=[TargetState(cfg=t, store=stores[t.store]) for t in cfg.targets],
        )


#: Credentials with the same refresh policy share one (frozen) record of it.
_POLICIES: dict[policy.RefreshPolicy, policy.RefreshPolicy] = {}


def _shared(rp: policy.RefreshPolicy) -> policy.RefreshPolicy:
    return _POLICIES.setdefault(rp, rp)


@dataclass
class RunReport:
    """What one ``once`` pass did for a credential."""

    credential: str
    ok: bool
    minted: bool
    errors: list[str] = field(default_factory=list)
