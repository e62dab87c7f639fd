"""The process-wide write limiters of the AWS stores, and the retry rules that charge them.

AWS's limits are per account and region, not per client: one limiter per (API
bucket, region) for the whole process, so ten stores pointing at the same region
still respect the one regional quota (Secrets Manager: 50 writes/s shared by
PutSecretValue, UpdateSecret and UpdateSecretVersionStage; SSM PutParameter: 3/s
by default). botocore's ``standard`` retry mode counts ``LimitExceededException``
as throttling and retries it; for Secrets Manager that error means the version
quota is exhausted, and retrying only burns more of the regional write budget,
so `install_retry_rules` lets a store veto retries of the codes it names.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any


class TokenBucket:
    """A token bucket that an event loop can wait on and worker threads can debit.

    ``acquire()`` reserves the next token and sleeps until it is due: tokens may
    go negative, which is the queue, so waiters are served in order without an
    ``asyncio.Lock`` (which would tie the bucket to one event loop; the bucket is
    process-wide). ``debit()`` charges a token without waiting, for a retry that
    botocore sends on its own inside a worker thread. State changes are guarded
    by a `threading.Lock` held for a few arithmetic operations only.

    ``burst`` defaults to one token: writes are paced evenly, so no one-second
    window holds more than ``rate + 1`` of them, which is what keeps the default
    40/s under Secrets Manager's 50/s even when a whole fleet is due at once.
    """

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be > 0, got {rate!r}")
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self._clock = clock
        self._sleep = sleep  # injectable with the clock, so the pacing is testable without waiting
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._stamp = clock()
        self.acquired = 0
        self.debited = 0
        self.waited = 0.0

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def reserve(self) -> float:
        """Take a token now and return how many seconds to wait before using it."""
        with self._lock:
            self._refill(self._clock())
            self._tokens -= 1.0
            self.acquired += 1
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
            self.waited += wait
            return wait

    def refund(self) -> None:
        """Give back a reserved token that was never used (the waiter was cancelled)."""
        with self._lock:
            self._refill(self._clock())
            self._tokens = min(self.burst, self._tokens + 1.0)

    def debit(self) -> None:
        """Charge a token without waiting: a request that is sent anyway (a retry)."""
        with self._lock:
            self._refill(self._clock())
            self._tokens -= 1.0
            self.debited += 1

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self._refill(self._clock())
            self.rate = float(rate)

    async def acquire(self) -> None:
        wait = self.reserve()
        if wait <= 0:
            return
        try:
            await self._sleep(wait)
        except asyncio.CancelledError:
            self.refund()
            raise


_LIMITERS: dict[tuple[str, str], TokenBucket] = {}
_LIMITERS_LOCK = threading.Lock()


def shared_limiter(bucket: str, region: str, rate: float) -> TokenBucket:
    """The process-wide limiter for one AWS rate bucket in one region.

    Stores that configure different rates for the same bucket get the lowest of
    them: the AWS quota is one number for the account and region, so the most
    careful setting wins.
    """
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get((bucket, region))
        if limiter is None:
            limiter = _LIMITERS[(bucket, region)] = TokenBucket(rate)
        elif rate < limiter.rate:
            limiter.set_rate(rate)
        return limiter


def reset_limiters() -> None:
    """Forget every shared limiter (tests)."""
    with _LIMITERS_LOCK:
        _LIMITERS.clear()


def install_retry_rules(
    client: Any,
    *,
    service_event: str,
    no_retry_codes: frozenset[str] = frozenset(),
    limited: Mapping[str, TokenBucket] | None = None,
) -> None:
    """Veto botocore retries of ``no_retry_codes``; charge retries of ``limited`` operations to their bucket.

    ``needs-retry`` handlers on the operation-specific event run before the
    retry handler botocore registers for the service, and the first answer that
    is not None wins: returning False stops the retry. Retries are sent by
    botocore from the worker thread; ``before-send`` sees every attempt, and an
    attempt after the first costs a token without waiting (the first one was
    acquired by the store before dispatching the call).
    """

    def veto(response: Any = None, **_: Any) -> bool | None:
        if response is None:
            return None
        code = response[1].get("Error", {}).get("Code") if isinstance(response[1], dict) else None
        return False if code in no_retry_codes else None

    if no_retry_codes:
        client.meta.events.register_first(f"needs-retry.{service_event}", veto, unique_id=f"syncd-veto-{service_event}")
    for operation, bucket in (limited or {}).items():

        def charge(request: Any = None, _bucket: TokenBucket = bucket, **_: Any) -> None:
            context = getattr(request, "context", None) or {}
            if context.get("retries", {}).get("attempt", 1) > 1:
                _bucket.debit()

        client.meta.events.register(
            f"before-send.{service_event}.{operation}", charge, unique_id=f"syncd-charge-{service_event}-{operation}"
        )
