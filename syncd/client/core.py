"""The reader's decisions, with no I/O: when to read the store, what to hand out, what to raise.

Everything here is a pure function of the reader's :class:`State`, one event and
the time, which the caller passes in. Nothing reads a clock, takes a lock, logs
or calls a store: :class:`Rules.step` returns the next state and a decision
(:class:`Serve`, :class:`Read` or :class:`Fail`), and the shells in ``sync.py``
and ``aio.py`` do the reading, locking and logging. A :class:`State` is never
mutated, only replaced, so a shell can look at the one it holds without a lock.

The 401 retry decision lives here too (:func:`on_401`), as a generator that the
httpx and requests adapters in ``auth.py`` drive.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Final

from syncd.payload import TokenPayload, fingerprint, to_rfc3339
from syncd.stores.reading import Fetched, TokenError, TokenExpiredError

#: The automatic grace after refresh_after is this fraction of the time between
#: refresh_after and expiry, capped at ``GRACE_CAP`` seconds (see ``Rules.grace``).
GRACE_FRACTION: Final = 0.2
GRACE_CAP: Final = 10.0
#: Longest pause between re-reads after store errors while the cached token is valid.
ERROR_BACKOFF_CAP: Final = 30.0


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class Entry:
    """The cached payload and when to read the store again."""

    payload: TokenPayload
    read_at: float
    next_read: float


@dataclass(frozen=True)
class State:
    """All the reader remembers. ``generation`` counts finished reads (a forced re-read joins one)."""

    entry: Entry | None = None
    error: TokenError | None = None  # the last failure with nothing valid cached, replayed for min_reread
    error_at: float = 0.0
    expired: TokenPayload | None = None  # the expired payload behind a remembered TokenExpiredError
    failures: int = 0  # failed reads in a row, for the backoff
    generation: int = 0
    reads: int = 0
    read_errors: int = 0


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Want:
    """A caller holding the lock wants a token.

    ``force``: read even if the cache is fresh (a 401). ``rejected``: the token the
    server refused, so that a read someone else already made is not repeated.
    ``generation``: the state's generation when the caller started waiting.
    """

    force: bool = False
    rejected: str | None = None
    generation: int = 0


@dataclass(frozen=True)
class ReadDone:
    """The store answered with a payload."""

    fetched: Fetched


@dataclass(frozen=True)
class ReadFailed:
    """The store read failed."""

    error: TokenError


Event = Want | ReadDone | ReadFailed


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Note:
    """A line for the shell to log (the core does not log): ``logging`` level, %-format and args."""

    level: int
    message: str
    args: tuple[object, ...] = ()


@dataclass(frozen=True)
class Serve:
    """Hand out ``payload``; log ``note`` first if there is one."""

    payload: TokenPayload
    note: Note | None = None


@dataclass(frozen=True)
class Read:
    """Read the store now, then report a :class:`ReadDone` or :class:`ReadFailed`."""


@dataclass(frozen=True)
class Fail:
    """Raise ``error``."""

    error: TokenError


Decision = Serve | Read | Fail


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rules:
    """The reader's settings, and the transitions that follow from them."""

    source: str  # the source as shown in messages
    min_reread: float
    refresh_grace: float | None
    expiry_margin: float

    def __post_init__(self) -> None:
        for name, value in (("min_reread", self.min_reread), ("expiry_margin", self.expiry_margin)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        grace = self.refresh_grace
        if grace is not None and not (math.isfinite(grace) and grace >= 0):
            raise ValueError(f"refresh_grace must be None or a finite number of seconds >= 0, got {grace!r}")

    # -- queries (the shells call these without the lock) ------------------------------

    def usable(self, state: State, now: float) -> TokenPayload | None:
        """The cached payload if it may still be handed out (outside the expiry margin)."""
        entry = state.entry
        if entry is not None and now < entry.payload.expires_at - self.expiry_margin:
            return entry.payload
        return None

    def fresh(self, state: State, now: float) -> TokenPayload | None:
        """The cached payload if it is usable and not yet due for a re-read."""
        entry = state.entry
        if entry is not None and now < entry.next_read:
            return self.usable(state, now)
        return None

    # -- transitions (the shells call this under the lock) -----------------------------

    def step(self, state: State, event: Event, now: float) -> tuple[State, Decision]:
        """The state after ``event`` at ``now``, and what the shell must do next."""
        if isinstance(event, Want):
            return self._want(state, event, now)
        if isinstance(event, ReadDone):
            return self._read_done(state, event.fetched, now)
        return self._read_failed(state, event.error, now)

    def _want(self, state: State, want: Want, now: float) -> tuple[State, Decision]:
        valid = self.usable(state, now)
        if want.force:
            if valid is not None:
                if want.rejected is not None and valid.fingerprint != fingerprint(want.rejected):
                    return state, Serve(valid)  # someone already replaced the rejected token
                if state.generation != want.generation:
                    return state, Serve(valid)  # a read finished while we waited for the lock
        else:
            payload = self.fresh(state, now)
            if payload is not None:
                return state, Serve(payload)
            if valid is None and state.error is not None and now < state.error_at + self.min_reread:
                return state, Fail(self._replay(state, now))
        return replace(state, reads=state.reads + 1), Read()

    def _replay(self, state: State, now: float) -> TokenError:
        err = state.error
        assert err is not None
        if isinstance(err, TokenExpiredError) and state.expired is not None:
            return expired_error(self.source, state.expired, now, self.expiry_margin)  # a fresh "ago"
        return copy.copy(err)

    def _read_done(self, state: State, fetched: Fetched, now: float) -> tuple[State, Decision]:
        state = replace(state, generation=state.generation + 1)
        payload = fetched.payload
        previous = state.entry
        if now >= payload.expires_at - self.expiry_margin:
            err = expired_error(self.source, payload, now, self.expiry_margin)
            valid = self.usable(state, now)
            if valid is None or previous is None:
                return replace(state, error=err, error_at=now, expired=payload), Fail(err)
            state = replace(state, failures=state.failures + 1)
            delay = self.backoff(state.failures, valid, now)
            kept = Note(
                logging.WARNING,
                "%s: the store returned an expired token (%s); keeping the cached %s, valid %s more; "
                "next read in %.1fs",
                (self.source, payload.fingerprint, valid.fingerprint, human(valid.expires_at - now), delay),
            )
            return replace(state, entry=replace(previous, next_read=now + delay)), Serve(valid, kept)
        if fetched.explicit_refresh:
            point = payload.refresh_after + self.grace(payload)
        else:
            # No refresh_after from the writer: read again when half of what was left is gone.
            point = now + (payload.expires_at - now) / 2
        next_read = max(point, now + self.min_reread)
        note: Note | None = None
        if previous is None or previous.payload.fingerprint != payload.fingerprint:
            note = Note(
                logging.DEBUG,
                "%s: token %s, expires in %s; next read in %s",
                (self.source, payload.fingerprint, human(payload.expires_at - now), human(next_read - now)),
            )
        state = replace(state, entry=Entry(payload, now, next_read), error=None, failures=0)
        return state, Serve(payload, note)

    def _read_failed(self, state: State, exc: TokenError, now: float) -> tuple[State, Decision]:
        state = replace(
            state, generation=state.generation + 1, read_errors=state.read_errors + 1, failures=state.failures + 1
        )
        valid = self.usable(state, now)
        entry = state.entry
        if valid is None or entry is None:
            return replace(state, error=exc, error_at=now, expired=None), Fail(exc)
        delay = self.backoff(state.failures, valid, now)
        note = Note(
            logging.WARNING,
            "%s: re-read failed (%s); using the cached token %s, valid %s more; next read in %.1fs",
            (self.source, exc, valid.fingerprint, human(valid.expires_at - now), delay),
        )
        return replace(state, entry=replace(entry, next_read=now + delay)), Serve(valid, note)

    # -- arithmetic ---------------------------------------------------------------------

    def grace(self, payload: TokenPayload) -> float:
        """How long after refresh_after to read again: syncd's new token lands a moment after it."""
        window = max(payload.expires_at - payload.refresh_after, 0.0)
        if self.refresh_grace is None:
            return min(GRACE_FRACTION * window, GRACE_CAP)
        return min(self.refresh_grace, window / 2)

    def backoff(self, failures: int, valid: TokenPayload, now: float) -> float:
        """The pause before the next read after ``failures`` failed reads while ``valid`` is cached."""
        step = self.min_reread * 2.0 ** min(failures - 1, 16)
        return max(self.min_reread, min(step, ERROR_BACKOFF_CAP, (valid.expires_at - now) / 4))


# --------------------------------------------------------------------------- the 401 retry


@dataclass(frozen=True)
class Send:
    """Log ``note`` if any, send the request with this ``Authorization``; answer with the status code."""

    authorization: str
    note: Note | None = None


@dataclass(frozen=True)
class Reread:
    """Read the store again, bypassing the cache; answer with the payload, or the TokenError raised."""

    rejected: str


Step = Send | Reread
Answer = int | TokenPayload | TokenError


def on_401(source: str, host: str, sent: TokenPayload) -> Generator[Step, Answer, Note | None]:
    """One request's authorization: send, and on a 401 re-read once and resend only with a new token.

    Never more than one retry. Returns a note for the driver to log when it gives up on a 401.
    """
    status = yield Send(authorization_header(sent))
    if status != 401:
        return None
    fresh = yield Reread(sent.access_token.get_secret_value())
    if isinstance(fresh, TokenError):
        return Note(logging.WARNING, "%s: 401 from %s, and the re-read failed: %s", (source, host, fresh))
    if not isinstance(fresh, TokenPayload) or fresh.fingerprint == sent.fingerprint:
        return Note(
            logging.INFO,
            "%s: 401 from %s and the store still holds the token that was sent (%s); not retrying",
            (source, host, sent.fingerprint),
        )
    retrying = Note(
        logging.INFO,
        "%s: 401 from %s with %s; retrying once with %s",
        (source, host, sent.fingerprint, fresh.fingerprint),
    )
    yield Send(authorization_header(fresh), retrying)
    return None


def authorization_header(payload: TokenPayload) -> str:
    """The ``Authorization`` value for ``payload``: ``<token_type> <token>``.

    ``bearer`` in any case is sent as ``Bearer`` (Keycloak may answer ``bearer``;
    RFC 6750 says ``Bearer`` and some servers compare it case-sensitively).
    """
    scheme = payload.token_type.strip() or "Bearer"
    if scheme.lower() == "bearer":
        scheme = "Bearer"
    return f"{scheme} {payload.access_token.get_secret_value()}"


# --------------------------------------------------------------------------- messages


def expired_error(source: str, payload: TokenPayload, now: float, margin: float) -> TokenExpiredError:
    """The error for a stored token that is expired, or within ``margin`` of it."""
    ago = now - payload.expires_at
    when = to_rfc3339(payload.expires_at)
    if ago >= 0:
        what = f"the stored token ({payload.fingerprint}) expired {human(ago)} ago, at {when}"
    else:
        what = (
            f"the stored token ({payload.fingerprint}) expires in {human(-ago)}, at {when}, "
            f"within the reader's expiry_margin of {margin:g}s"
        )
    return TokenExpiredError(
        f"{source}: {what}; syncd has not written a newer one. Check the daemon (`syncd status`) "
        "and its /readyz endpoint for this credential.",
        source,
        expires_at=payload.expires_at,
        expired_for=ago,
    )


def human(seconds: float) -> str:
    """A duration for log lines: 4.2s, 37s, 12.5m, 3.0h."""
    s = abs(seconds)
    if s < 10:
        return f"{s:.1f}s"
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.1f}m"
    return f"{s / 3600:.1f}h"
