"""syncd.client.core, the reader's decisions, as tables: a state and an event at a time -> a decision and a state.

No reader, no lock, no clock: each row names the state the reader is in, what
happens (a caller wants a token, a read returns, a read fails) and when, and the
decision and next state the core must give. The 401 rule is a table of answers
fed to the generator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from pydantic import SecretStr

from syncd.client.core import (
    Entry,
    Event,
    Fail,
    Note,
    Read,
    ReadDone,
    ReadFailed,
    Reread,
    Rules,
    Send,
    Serve,
    State,
    Want,
    authorization_header,
    expired_error,
    on_401,
)
from syncd.payload import TokenPayload
from syncd.stores.reading import Fetched, TokenError, TokenExpiredError, TokenStoreError

T0 = 1_800_000_000.0
SRC = "fake://calm"


def payload(token: str = "tok-1", *, issued: float = T0, lifetime: float = 300.0) -> TokenPayload:
    """Issued at ``issued``, refresh_after half-way, expiring after ``lifetime``."""
    return TokenPayload(
        credential="calm",
        access_token=SecretStr(token),
        issued_at=issued,
        expires_at=issued + lifetime,
        refresh_after=issued + lifetime / 2,
        token_type="Bearer",
    )


P1 = payload("tok-1")  # refresh_after T0+150, expires T0+300
P2 = payload("tok-2", issued=T0 + 150)  # refresh_after T0+300, expires T0+450
OLD = payload("tok-0", issued=T0 - 400)  # expired at T0-100
DOWN = TokenStoreError(f"{SRC}: down", SRC)

RULES = Rules(SRC, min_reread=1.0, refresh_grace=None, expiry_margin=0.0)
EMPTY = State()
# tok-1 read at T0; default grace = min(20 % of 150 s, 10 s): next read at T0+160.
CACHED = State(entry=Entry(P1, T0, T0 + 160), generation=1, reads=1)
FAILED = State(error=DOWN, error_at=T0, failures=1, generation=1, reads=1, read_errors=1)
EXPIRED_SEEN = State(error=expired_error(SRC, OLD, T0, 0.0), error_at=T0, expired=OLD, generation=1, reads=1)


@dataclass(frozen=True)
class Row:
    state: State
    event: Event
    now: float
    decision: type[Serve | Read | Fail]
    token: str | type[TokenError] | None = None  # the token served, or the error type raised
    changes: dict[str, Any] = field(default_factory=dict)  # the next state, as changes to ``state``
    note: int | None = None  # the logging level of the note to log, if any
    rules: Rules = RULES


def _comparable(state: State) -> tuple[Any, ...]:
    err = state.error
    return (*(getattr(state, f) for f in State.__dataclass_fields__ if f != "error"), type(err), str(err))


ROWS: dict[str, Row] = {
    # -- a caller wants a token ------------------------------------------------------------
    "cold start reads": Row(EMPTY, Want(), T0, Read, changes={"reads": 1}),
    "fresh cache is served": Row(CACHED, Want(), T0 + 159.9, Serve, "tok-1"),
    "due after refresh_after plus grace": Row(CACHED, Want(), T0 + 160, Read, changes={"reads": 2}),
    "expired cache reads": Row(CACHED, Want(), T0 + 300, Read, changes={"reads": 2}),
    "within expiry_margin counts as expired": Row(
        CACHED, Want(), T0 + 295, Read, changes={"reads": 2}, rules=replace(RULES, expiry_margin=5.0)
    ),
    "recent error is replayed for min_reread": Row(FAILED, Want(), T0 + 0.9, Fail, TokenStoreError),
    "error older than min_reread reads again": Row(FAILED, Want(), T0 + 1.0, Read, changes={"reads": 2}),
    "replayed expiry says how long ago now": Row(EXPIRED_SEEN, Want(), T0 + 0.5, Fail, TokenExpiredError),
    # -- a forced re-read (a 401) --------------------------------------------------------
    "401 on a token already replaced: no read": Row(CACHED, Want(True, "tok-0", 1), T0 + 10, Serve, "tok-1"),
    "401 on the cached token reads": Row(CACHED, Want(True, "tok-1", 1), T0 + 10, Read, changes={"reads": 2}),
    "401 joins a read that finished meanwhile": Row(CACHED, Want(True, "tok-1", 0), T0 + 10, Serve, "tok-1"),
    "refresh without a rejected token reads": Row(CACHED, Want(True, None, 1), T0 + 10, Read, changes={"reads": 2}),
    "forced read with nothing valid reads": Row(EMPTY, Want(True, "tok-1", 0), T0, Read, changes={"reads": 1}),
    # -- a read returned ------------------------------------------------------------------
    "first payload: read again at refresh_after + grace": Row(
        EMPTY,
        ReadDone(Fetched(P1, True)),
        T0,
        Serve,
        "tok-1",
        {"entry": Entry(P1, T0, T0 + 160), "generation": 1},
        logging.DEBUG,
    ),
    "grace option is capped at half the window": Row(
        EMPTY,
        ReadDone(Fetched(P1, True)),
        T0,
        Serve,
        "tok-1",
        {"entry": Entry(P1, T0, T0 + 150 + 75), "generation": 1},
        logging.DEBUG,
        replace(RULES, refresh_grace=500.0),
    ),
    "no refresh_after: read when half the rest is gone": Row(
        EMPTY,
        ReadDone(Fetched(P1, False)),
        T0 + 100,
        Serve,
        "tok-1",
        {"entry": Entry(P1, T0 + 100, T0 + 200), "generation": 1},
        logging.DEBUG,
    ),
    "same token after refresh_after: min_reread apart, not logged": Row(
        CACHED,
        ReadDone(Fetched(P1, True)),
        T0 + 170,
        Serve,
        "tok-1",
        {"entry": Entry(P1, T0 + 170, T0 + 171), "generation": 2},
    ),
    "a good read clears the error and the failures": Row(
        replace(FAILED, failures=3),
        ReadDone(Fetched(P2, True)),
        T0 + 160,
        Serve,
        "tok-2",
        {"entry": Entry(P2, T0 + 160, T0 + 310), "generation": 2, "error": None, "failures": 0},
        logging.DEBUG,
    ),
    "store returns an expired token: keep the cached one": Row(
        CACHED,
        ReadDone(Fetched(OLD, True)),
        T0 + 160,
        Serve,
        "tok-1",
        {"entry": Entry(P1, T0, T0 + 161), "generation": 2, "failures": 1},
        logging.WARNING,
    ),
    "store returns an expired token and nothing is cached": Row(
        EMPTY,
        ReadDone(Fetched(OLD, True)),
        T0,
        Fail,
        TokenExpiredError,
        {"generation": 1, "error": expired_error(SRC, OLD, T0, 0.0), "error_at": T0, "expired": OLD},
    ),
    # -- a read failed --------------------------------------------------------------------
    "store down, cached token valid: serve it, back off": Row(
        CACHED,
        ReadFailed(DOWN),
        T0 + 160,
        Serve,
        "tok-1",
        {"entry": Entry(P1, T0, T0 + 161), "generation": 2, "failures": 1, "read_errors": 1},
        logging.WARNING,
    ),
    "third failure in a row: 4 s": Row(
        replace(CACHED, failures=2),
        ReadFailed(DOWN),
        T0 + 160,
        Serve,
        "tok-1",
        {"entry": Entry(P1, T0, T0 + 164), "generation": 2, "failures": 3, "read_errors": 1},
        logging.WARNING,
    ),
    "backoff capped at a quarter of the remaining life": Row(
        replace(CACHED, failures=9),
        ReadFailed(DOWN),
        T0 + 292,
        Serve,
        "tok-1",
        {"entry": Entry(P1, T0, T0 + 294), "generation": 2, "failures": 10, "read_errors": 1},
        logging.WARNING,
    ),
    "backoff capped at 30 s": Row(
        replace(CACHED, failures=9),
        ReadFailed(DOWN),
        T0 + 160,
        Serve,
        "tok-1",
        {"entry": Entry(P1, T0, T0 + 190), "generation": 2, "failures": 10, "read_errors": 1},
        logging.WARNING,
    ),
    "store down and nothing cached: raise, remember": Row(
        EMPTY,
        ReadFailed(DOWN),
        T0,
        Fail,
        TokenStoreError,
        {"generation": 1, "failures": 1, "read_errors": 1, "error": DOWN, "error_at": T0},
    ),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_step(row: Row) -> None:
    before = _comparable(row.state)
    state, decision = row.rules.step(row.state, row.event, row.now)
    assert _comparable(row.state) == before, "the core never mutates a state"
    assert isinstance(decision, row.decision)
    if isinstance(decision, Serve):
        assert decision.payload.access_token.get_secret_value() == row.token
        assert (decision.note.level if decision.note else None) == row.note
    if isinstance(decision, Fail):
        assert isinstance(row.token, type) and type(decision.error) is row.token
        assert "tok-" not in str(decision.error), "errors never carry the token"
    assert _comparable(state) == _comparable(replace(row.state, **row.changes))


def test_replayed_errors_are_copies_and_expiry_is_recomputed() -> None:
    _, first = RULES.step(FAILED, Want(), T0 + 0.5)
    assert isinstance(first, Fail) and first.error is not DOWN and str(first.error) == str(DOWN)
    _, replay = RULES.step(EXPIRED_SEEN, Want(), T0 + 0.5)
    assert isinstance(replay, Fail) and isinstance(replay.error, TokenExpiredError)
    assert replay.error.expired_for == pytest.approx(100.5)


@pytest.mark.parametrize(
    ("name", "value"),
    [("min_reread", -1.0), ("min_reread", float("nan")), ("expiry_margin", float("inf")), ("refresh_grace", -2.0)],
)
def test_rules_reject_bad_settings(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        replace(RULES, **{name: value})


# --------------------------------------------------------------------------- the 401 rule

H1, H2 = authorization_header(P1), authorization_header(P2)

# Each row: the answers the driver gives, in order -> the steps the flow asks for, and its last note.
FLOWS: dict[str, tuple[list[Any], list[Any], int | None]] = {
    "not a 401: done": ([200], [Send(H1)], None),
    "401, store has a new token: resend once": (
        [401, P2, 401],
        [Send(H1), Reread("tok-1"), Send(H2, Note(logging.INFO, "", ()))],
        None,
    ),
    "401, store has the same token: give up": ([401, P1], [Send(H1), Reread("tok-1")], logging.INFO),
    "401, re-read fails: give up": ([401, DOWN], [Send(H1), Reread("tok-1")], logging.WARNING),
}


@pytest.mark.parametrize(("answers", "steps", "last"), FLOWS.values(), ids=FLOWS.keys())
def test_on_401(answers: list[Any], steps: list[Any], last: int | None) -> None:
    flow = on_401(SRC, "api.example", P1)
    seen: list[Any] = [next(flow)]
    note: Note | None = None
    for answer in answers:
        try:
            seen.append(flow.send(answer))
        except StopIteration as done:
            note = done.value
            break
    # Notes are compared by level: their text is for people.
    strip = [replace(s, note=s.note and Note(s.note.level, "", ())) if isinstance(s, Send) else s for s in seen]
    assert strip == steps
    assert (note.level if note else None) == last
    assert all("tok-" not in str(n.args) for n in [note, *(s.note for s in seen if isinstance(s, Send))] if n)
