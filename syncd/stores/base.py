"""The one small contract every secret store implements.

Stores are found by type name through the entry point group ``syncd.stores``
(as APScheduler finds job stores), so a third party can ship a store in its own
package. Blocking SDKs (boto3, hvac) run in a bounded thread pool owned by the
store: one client per store, shared by every credential that writes to it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

from syncd.payload import TokenPayload

if TYPE_CHECKING:
    from syncd.config import StoreConfig, TargetConfig

T = TypeVar("T")
ENTRY_POINT_GROUP = "syncd.stores"


class StoreError(Exception):
    """A write or read failed. ``transient`` decides backoff (True) or fatal pace (False).

    The message names the store, the key and what to do; it never contains a token.
    ``code`` carries the vendor's error code (AWS error code, Vault status, errno).
    """

    transient: ClassVar[bool] = True

    def __init__(self, message: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retry_after = retry_after

    @property
    def kind(self) -> Literal["transient", "fatal"]:
        return "transient" if self.transient else "fatal"


class TransientStoreError(StoreError):
    """Outage, throttling, timeout: back off and retry with the same token while it is valid."""

    transient = True


class FatalStoreError(StoreError):
    """Permissions, missing resources, quota: needs a human; retried only at ``fatal_retry`` pace."""

    transient = False


@dataclass(frozen=True)
class WriteResult:
    """What a write did.

    ``written`` is False when the store already held this exact token (skipped).
    ``adopted`` is set when the store holds a fresher token from another writer
    (Vault CAS conflict): the engine adopts it instead of overwriting it.
    """

    written: bool = True
    version: str | None = None
    location: str | None = None
    adopted: TokenPayload | None = None


@dataclass(frozen=True)
class Finding:
    """A plan finding for ``syncd check``: an ``error`` refuses the config (exit 2)."""

    level: Literal["error", "warning", "info"]
    subject: str
    message: str
    fix: str | None = None

    def render(self) -> str:
        text = f"{self.level}: {self.subject}: {self.message}"
        return f"{text}\n    fix: {self.fix}" if self.fix else text


@runtime_checkable
class Store(Protocol):
    """docs/design.md "Store interface". ``target`` carries per-target options (format, mode, slots).

    Optional: ``async def verify(self, key, payload, *, target=None) -> str | None``, the
    reason the target no longer serves ``payload`` to consumers (None: it does). The engine
    calls it between rotations (syncd.verify) when a store has it, else ``read``. A store
    whose ``read`` cannot judge a value (``raw`` without metadata) or that has more than one
    object per target (an index) should implement it, and refresh any "already written"
    memory while doing so, so the rewrite that follows a loss is not skipped.

    ``WriteResult.adopted``: after offering a token, a store must know the path's current
    version, so that writing the same payload again overwrites it; the engine does that
    when it refuses the offered token as implausible (policy.implausible).
    """

    name: str

    async def write(self, key: str, payload: TokenPayload, *, target: TargetConfig | None = None) -> WriteResult: ...

    async def read(self, key: str, *, target: TargetConfig | None = None) -> TokenPayload | None: ...

    async def aclose(self) -> None: ...

    def plan(self, key: str, writes_per_day: float, *, target: TargetConfig | None = None) -> list[Finding]: ...


class ThreadedStore:
    """Base for stores whose SDK blocks: a bounded pool per store, shared by all credentials."""

    def __init__(self, name: str, max_workers: int = 8) -> None:
        self.name = name
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"syncd-{name}")

    async def _run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def aclose(self) -> None:
        # Joined off the loop: an SDK call that never returns must not freeze the event loop,
        # so the caller can bound the close (syncd.engine.Engine.stop) and exit anyway.
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)

    def plan(self, key: str, writes_per_day: float, *, target: TargetConfig | None = None) -> list[Finding]:
        return []


StoreFactory = Callable[[str, "StoreConfig"], Store]


@functools.cache
def available_store_types() -> dict[str, Any]:
    """Store classes by type name, from the ``syncd.stores`` entry point group."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def store_class(store_type: str) -> Any:
    eps = available_store_types()
    if store_type not in eps:
        known = ", ".join(sorted(eps)) or "none"
        raise LookupError(f"no store type {store_type!r} is installed (known: {known})")
    return eps[store_type].load()


def create_store(name: str, config: StoreConfig) -> Store:
    """Build a store from its config; the class decides how (``from_config``)."""
    cls = store_class(config.type)
    store: Store = cls.from_config(name, config)
    return store
