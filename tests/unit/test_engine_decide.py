"""The engine's decisions (syncd.engine.decide), one table per rule: inputs -> the decision.

Every time is relative to T0 and passed in: the functions read no clock. The policy
arithmetic they build on (refresh times, backoff, Retry-After) has its own tables and
properties in test_policy.py; these rows pin how a credential's run puts it together.
"""

from __future__ import annotations

import math

import pytest
from pydantic import SecretStr

from syncd import replicas as replicas_mod
from syncd.config import SecretUnavailableError
from syncd.engine import decide
from syncd.oauth import FatalMintError, MintError, TransientMintError
from syncd.payload import TokenPayload
from syncd.policy import RefreshPolicy

T0 = 1_700_000_000.0
# retry_min 1 s, retry_max 60 s, fatal_retry 300 s, min_interval 1 s, min_remaining 30 s, jitter 10 %
POLICY = RefreshPolicy()
GAP = decide.MIN_RUN_GAP


def token(issued: float = 0.0, expires: float = 300.0, refresh: float = 150.0) -> TokenPayload:
    """A held token, its times relative to T0."""
    return TokenPayload("calm", SecretStr("decide-token-abcdef"), T0 + issued, T0 + expires, T0 + refresh)


def at(offset: float | None) -> float | None:
    return None if offset is None else T0 + offset


# ------------------------------------------------------------------ next_run

# (now, held token, mint_retry_at, last_attempt, unwritten targets' retry_at) -> next run; offsets from T0
NEXT_RUN = {
    "no token, never tried: now (never closer than the gap)": (0, None, None, None, [], GAP),
    "no token, mint backing off": (0, None, 10, None, [], 10),
    "no token, backoff shorter than min_interval: min_interval after the last attempt": (0.5, None, 0.7, 0, [], 1),
    "backoff already passed: now, not in the past": (5, None, -5, None, [], 5 + GAP),
    "token not due, every target holds it: its refresh time": (10, token(), None, None, [], 150),
    "token not due, a target backing off: that target first": (10, token(), None, None, [20], 20),
    "token not due, a target without backoff: now": (10, token(), None, None, [None], 10 + GAP),
    "token due, mint backing off, a target sooner": (160, token(), 170, 155, [165], 165),
    "token due, a target later than the mint": (160, token(), 170, 155, [200], 170),
    "expired token: targets are not written, mint after min_interval": (400, token(), None, 399.5, [401], 400.5),
}


@pytest.mark.parametrize("row", NEXT_RUN.values(), ids=NEXT_RUN.keys())
def test_next_run(row):
    now, held, retry_at, last_attempt, unwritten, expected = row
    got = decide.next_run(
        T0 + now,
        held,
        mint_retry_at=at(retry_at),
        last_attempt=at(last_attempt),
        min_interval=POLICY.min_interval,
        unwritten_retry_at=[at(u) for u in unwritten],
    )
    assert got == pytest.approx(T0 + expected)


# (now, held token, mint_retry_at, force) -> mint in this run?
MINT_DUE = {
    "no token": (0, None, None, False, True),
    "token before its refresh time": (10, token(), None, False, False),
    "token at its refresh time": (150, token(), None, False, True),
    "due, but the last attempt's backoff runs": (160, token(), 170, False, False),
    "due, backoff passed": (170, token(), 170, False, True),
    "expired": (300, token(), None, False, True),
    "forced (a re-mint after an identity change), backoff or not": (10, token(), 170, True, True),
}


@pytest.mark.parametrize("row", MINT_DUE.values(), ids=MINT_DUE.keys())
def test_mint_due(row):
    now, held, retry_at, force, expected = row
    assert decide.mint_due(T0 + now, held, at(retry_at), force=force) is expected


# (now, retry_at, force) -> write this target in this pass?
WRITE_DUE = {
    "never failed": (0, None, False, True),
    "backing off": (0, 5, False, False),
    "backoff over": (5, 5, False, True),
    "forced (syncd once)": (0, 5, True, True),
}


@pytest.mark.parametrize("row", WRITE_DUE.values(), ids=WRITE_DUE.keys())
def test_write_due(row):
    now, retry_at, force, expected = row
    assert decide.write_due(T0 + now, at(retry_at), force=force) is expected


# ------------------------------------------------------------------ several replicas (docs/ha.md)

DELAY = 10.0  # takeover_delay between two ranks


def stored(value: str, issued: float, expires: float, refresh: float) -> TokenPayload:
    """A payload another replica wrote to a target, its times relative to T0."""
    return TokenPayload("calm", SecretStr(f"stored-token-{value}"), T0 + issued, T0 + expires, T0 + refresh)


# (held token, rank, waiting_since) -> this replica's wake (None: the token's own refresh time)
WAKE_AT = {
    "rank 0: the token's refresh_after, as one replica": (token(), 0, None, None),
    "rank 1: refresh_after + 1 x delay": (token(), 1, None, 160),
    "rank 2: refresh_after + 2 x delay": (token(), 2, None, 170),
    "adopted token: from the stored payload's refresh_after, whenever it was adopted": (
        stored("a", 100, 400, 250),
        1,
        None,
        260,
    ),
    "a late rank never acts after the deadline (expires_at - min_remaining)": (token(), 20, None, 270),
    "rank 0 holding nothing: now": (None, 0, 0, None),
    "follower holding nothing since its start: k x delay later": (None, 2, 5, 25),
    "follower holding nothing, no start recorded: now": (None, 2, None, None),
}


@pytest.mark.parametrize("row", WAKE_AT.values(), ids=WAKE_AT.keys())
def test_wake_at(row):
    held, rank, waiting_since, expected = row
    got = decide.wake_at(held, rank=rank, delay=DELAY, pol=POLICY, waiting_since=at(waiting_since))
    assert got == at(expected)


# (credential, replica, replicas, has a shared target) -> rank
CREDENTIAL_RANK = {
    "one replica: rank 0": ("calm", 0, 1, True, 0),
    "pod-local targets only: rank 0 on every replica (each mints for its pod)": ("calm", 2, 3, False, 0),
    "shared target: the rendezvous rank": ("calm", 2, 3, True, None),
}


@pytest.mark.parametrize("row", CREDENTIAL_RANK.values(), ids=CREDENTIAL_RANK.keys())
def test_credential_rank(row):
    name, replica, replicas, shared, expected = row
    if expected is None:
        expected = replicas_mod.ranking(name, replicas).index(replica)
    assert decide.credential_rank(name, replica, replicas, shared=shared) == expected


def test_pod_local_credentials_are_rank_0_on_every_replica_and_shared_ones_have_one_rank_0():
    for name in ("calm", "cards", "payments", "r07"):
        assert {decide.credential_rank(name, k, 3, shared=False) for k in range(3)} == {0}
        assert sorted(decide.credential_rank(name, k, 3, shared=True) for k in range(3)) == [0, 1, 2]


FRESH = stored("fresh", 150, 450, 300)  # what rank 0 wrote at the held token's refresh time
DUE = stored("due", 100, 400, 250)  # fresher than the held token, but rank 1 should already act on it
EXPIRED = stored("expired", -400, -100, -250)

# (now, held, stored payloads found, rank) -> (the payload adopted or None, mint?)
FOLLOWER_STEP = {
    "fresher stored token: adopted, no mint": (160, token(), [FRESH], 1, FRESH, False),
    "the held token is all there is: take over, mint": (160, token(), [token()], 1, None, True),
    "the held token read back, its expiry rounded later: not fresher, mint": (
        160,
        token(),
        [TokenPayload("calm", SecretStr("decide-token-abcdef"), T0, T0 + 300.0004, T0 + 150)],
        1,
        None,
        True,
    ),
    "nothing stored: take over, mint": (160, token(), [], 1, None, True),
    "expired stored token: never adopted, mint": (160, None, [EXPIRED], 1, None, True),
    "holding nothing, a valid stored token: adopted": (160, None, [FRESH], 2, FRESH, False),
    "two fresher tokens: the one expiring last": (160, token(), [DUE, FRESH], 1, FRESH, False),
    "fresher but already due for this rank: adopted and mint": (265, token(), [DUE], 1, DUE, True),
}


@pytest.mark.parametrize("row", FOLLOWER_STEP.values(), ids=FOLLOWER_STEP.keys())
def test_follower_step(row):
    now, held, found, rank, adopt, mint = row
    step = decide.follower_step(T0 + now, held, found, rank=rank, delay=DELAY, pol=POLICY)
    assert step.adopt == adopt
    assert step.mint is mint


# (now, held token, rank, waiting_since) -> next run, through next_run(due_at=wake_at(...))
FOLLOWER_NEXT_RUN = {
    "rank 1, before its wake: refresh_after + delay": (155, token(), 1, None, 160),
    "rank 1, wake reached: now": (165, token(), 1, None, 165 + GAP),
    "follower holding nothing since its start": (0, None, 2, 0, 20),
    "rank 0 holding nothing: now": (0, None, 0, 0, GAP),
}


@pytest.mark.parametrize("row", FOLLOWER_NEXT_RUN.values(), ids=FOLLOWER_NEXT_RUN.keys())
def test_follower_next_run(row):
    now, held, rank, waiting_since, expected = row
    due_at = decide.wake_at(held, rank=rank, delay=DELAY, pol=POLICY, waiting_since=at(waiting_since))
    got = decide.next_run(
        T0 + now, held, mint_retry_at=None, last_attempt=None, min_interval=POLICY.min_interval, due_at=due_at
    )
    assert got == pytest.approx(T0 + expected)


@pytest.mark.parametrize("row", NEXT_RUN.values(), ids=NEXT_RUN.keys())
def test_one_replica_schedule_unchanged(row):
    """replicas = 1: rank 0 everywhere, no wake of its own, so every next_run row holds as before."""
    now, held, retry_at, last_attempt, unwritten, expected = row
    rank = decide.credential_rank("calm", 0, 1, shared=True)
    due_at = decide.wake_at(held, rank=rank, delay=DELAY, pol=POLICY, waiting_since=T0)
    assert due_at is None
    got = decide.next_run(
        T0 + now,
        held,
        mint_retry_at=at(retry_at),
        last_attempt=at(last_attempt),
        min_interval=POLICY.min_interval,
        unwritten_retry_at=[at(u) for u in unwritten],
        due_at=due_at,
    )
    assert got == pytest.approx(T0 + expected)


# ------------------------------------------------------------------ minting

# (configured mint_timeout, held token, now) -> the bound used
MINT_TIMEOUT = {
    "no token: as configured": (10.0, None, 0, 10.0),
    "a 20 s token held: a quarter of its lifetime": (10.0, token(0, 20, 10), 5, 5.0),
    "a long token held: as configured": (10.0, token(), 5, 10.0),
    "the held token expired: nothing to protect, as configured": (10.0, token(0, 20, 10), 20, 10.0),
}


@pytest.mark.parametrize("row", MINT_TIMEOUT.values(), ids=MINT_TIMEOUT.keys())
def test_mint_timeout(row):
    configured, held, now, expected = row
    assert decide.mint_timeout(configured, held, T0 + now) == pytest.approx(expected)


# (held token, now) -> the urgency of its mint while it waits for a slot (lowest admitted first)
MINT_URGENCY = {
    "no token: before any held one": (None, 0, -math.inf),
    "the held token expired: as urgent as none": (token(0, 20, 10), 20, -math.inf),
    "a valid token: its refresh deadline, expiry minus min_remaining": (token(), 100, T0 + 300 - 30),
    "due or not, the deadline counts, not the refresh time": (token(0, 300, 10), 100, T0 + 300 - 30),
}


@pytest.mark.parametrize("row", MINT_URGENCY.values(), ids=MINT_URGENCY.keys())
def test_mint_urgency(row):
    held, now, expected = row
    assert decide.mint_urgency(held, T0 + now, POLICY) == pytest.approx(expected)


def test_mint_urgency_orders_the_token_that_runs_out_first_before_a_longer_one():
    short, long = token(0, 60, 30), token(0, 3600, 1800)
    assert decide.mint_urgency(None, T0, POLICY) < decide.mint_urgency(short, T0, POLICY)
    assert decide.mint_urgency(short, T0, POLICY) < decide.mint_urgency(long, T0, POLICY)


# (mint_timeout, held token, now) -> how long the mint may wait for a slot
SLOT_PATIENCE = {
    "no token: mint_timeout, so a hung IdP shows as failed mints": (10.0, None, 0, 10.0),
    "the held token expired: mint_timeout": (10.0, token(0, 20, 10), 20, 10.0),
    "a valid token: until mint_timeout before its refresh deadline": (10.0, token(), 100, 300 - 30 - 100 - 10.0),
    "near the deadline: never less than mint_timeout": (10.0, token(), 265, 10.0),
    "past the deadline, still valid: mint_timeout": (10.0, token(), 290, 10.0),
}


@pytest.mark.parametrize("row", SLOT_PATIENCE.values(), ids=SLOT_PATIENCE.keys())
def test_slot_patience(row):
    configured, held, now, expected = row
    assert decide.slot_patience(configured, held, T0 + now, POLICY) == pytest.approx(expected)


MINT_OUTCOME = {
    "transient mint error": (TransientMintError("503", credential="calm"), "transient"),
    "fatal mint error": (FatalMintError("invalid_client", credential="calm"), "fatal"),
    "unclassified mint error is fatal": (MintError("bad answer", credential="calm"), "fatal"),
    "missing secret": (SecretUnavailableError("ENV_X is not set"), "fatal"),
    "bad request values": (ValueError("scope"), "fatal"),
    "anything unexpected is retried": (RuntimeError("bug"), "transient"),
}


@pytest.mark.parametrize("row", MINT_OUTCOME.values(), ids=MINT_OUTCOME.keys())
def test_mint_outcome(row):
    exc, expected = row
    assert decide.mint_outcome(exc) == expected


# (outcome, attempt, rand, now, Retry-After, held token) -> (delay, asked, capped)
MINT_RETRY = {
    "fatal: fatal_retry, jitter at its middle": ("fatal", 0, 0.5, 0, None, None, (300.0, None, False)),
    "first transient retry, no jitter": ("transient", 0, 0.0, 0, None, None, (1.0, None, False)),
    "fourth transient retry, full jitter: the doubled cap": ("transient", 3, 1.0, 0, None, None, (8.0, None, False)),
    "Retry-After honoured": ("transient", 0, 0.0, 0, 30.0, None, (30.0, 30.0, False)),
    "Retry-After cut at the held token's refresh deadline": (
        "transient",
        0,
        0.0,
        200,
        3600.0,
        token(),
        (70.0, 3600.0, True),
    ),
    "Retry-After with the held token expired: cut at max(retry_max, fatal_retry) only": (
        "transient",
        0,
        0.0,
        400,
        3600.0,
        token(),
        (300.0, 3600.0, True),
    ),
}


@pytest.mark.parametrize("row", MINT_RETRY.values(), ids=MINT_RETRY.keys())
def test_mint_retry(row):
    outcome, attempt, rand, now, retry_after, held, (delay, asked, capped) = row
    plan = decide.mint_retry(outcome, attempt, POLICY, rand, now=T0 + now, retry_after=retry_after, held=held)
    assert (plan.delay, plan.asked, plan.capped) == (pytest.approx(delay), asked, capped)


# (minted expiry, expected lifetime, held token, now) -> verdict; times relative to T0
MINTED_VERDICT = {
    "a full token": (300, 300, None, 0, "fresh"),
    "less than min_remaining left": (10, 300, None, 0, "short"),
    "expired on arrival": (-1, 300, None, 0, "short"),
    "older than the valid token held": (100, 300, token(0, 200, 100), 0, "stale"),
    "the held token expired: not compared": (300, 300, token(-300, -1, -150), 0, "fresh"),
    "short-lived tokens configured as such": (10, 20, None, 0, "fresh"),
}


@pytest.mark.parametrize("row", MINTED_VERDICT.values(), ids=MINTED_VERDICT.keys())
def test_minted_verdict(row):
    expires, expected_lifetime, held, now, verdict = row
    got = decide.minted_verdict(T0 + expires, T0 + now, POLICY, expected_lifetime=expected_lifetime, held=held)
    assert got == verdict


# (verdict, minted expiry, held token, attempt, rand) -> (take, delay); now is T0
SHORT_TOKEN = {
    "short and valid: served, next mint after the backoff": ("short", 10, None, 0, 0.0, (True, 1.0)),
    "short and valid: backoff never past its expiry": ("short", 10, token(0, 5, 2), 5, 1.0, (True, 10.0)),
    "expired on arrival: not served, min_interval floor": ("short", -1, None, 0, 0.0, (False, 1.0)),
    "stale: keep the held token, backoff until its expiry at most": (
        "stale",
        100,
        token(0, 200),
        5,
        1.0,
        (False, 32.0),
    ),
}


@pytest.mark.parametrize("row", SHORT_TOKEN.values(), ids=SHORT_TOKEN.keys())
def test_short_token(row):
    verdict, expires, held, attempt, rand, (take, delay) = row
    minted = TokenPayload("calm", SecretStr("short-token-abcdef"), T0 - 290, T0 + expires, T0)
    plan = decide.short_token(verdict, minted, held, now=T0, attempt=attempt, pol=POLICY, rand=rand)
    assert (plan.take, plan.delay) == (take, pytest.approx(delay))


# (transient, attempt, rand, Retry-After) -> delay before writing the target again
WRITE_RETRY = {
    "transient, first retry": (True, 0, 0.0, None, 1.0),
    "transient, the store's Retry-After": (True, 0, 0.0, 20.0, 20.0),
    "fatal: fatal_retry": (False, 0, 0.5, None, 300.0),
}


@pytest.mark.parametrize("row", WRITE_RETRY.values(), ids=WRITE_RETRY.keys())
def test_write_retry_delay(row):
    transient, attempt, rand, retry_after, expected = row
    assert decide.write_retry_delay(transient, attempt, POLICY, rand, retry_after) == pytest.approx(expected)


# ------------------------------------------------------------------ standing and readiness

# (held token, mint failures, last mint outcome, targets' (failures, outcome)) -> (state, consecutive failures); now T0+10
STANDING = {
    "all written": (token(), 0, "ok", [(0, "ok")], ("ok", 0)),
    "no token yet, no failure": (None, 0, None, [(0, None)], ("retrying", 0)),
    "no token, fatal mint": (None, 2, "fatal", [(0, None)], ("fatal", 2)),
    "expired token, transient mints": (token(-400, -100, -250), 3, "transient", [(0, "ok")], ("expired", 3)),
    "valid token, mint failing": (token(), 1, "transient", [(0, "ok")], ("retrying", 1)),
    "valid token, mint failing fatally": (token(), 1, "fatal", [(0, "ok")], ("fatal", 1)),
    "a target failing": (token(), 0, "ok", [(4, "transient"), (0, "ok")], ("degraded", 4)),
    "a target failing fatally": (token(), 0, "ok", [(1, "fatal"), (2, "transient")], ("fatal", 2)),
    "mint and a target failing: the mint decides, the worst count shows": (
        token(),
        1,
        "transient",
        [(3, "transient")],
        ("retrying", 3),
    ),
}


@pytest.mark.parametrize("row", STANDING.values(), ids=STANDING.keys())
def test_standing(row):
    held, mint_failures, last_outcome, targets, (state, consecutive) = row
    got = decide.standing(T0 + 10, held, mint_failures=mint_failures, last_mint_outcome=last_outcome, targets=targets)
    assert got == decide.Standing(state, consecutive)


# (state after the last run, held token, now) -> the state /status shows
SHOWN_STATE = {
    "ok and valid": ("ok", token(), 10, "ok"),
    "ok, but expired since the run": ("ok", token(), 300, "expired"),
    "degraded, expired since": ("degraded", token(), 300, "expired"),
    "fatal stays fatal": ("fatal", token(), 300, "fatal"),
    "starting, no token": ("starting", None, 300, "starting"),
}


@pytest.mark.parametrize("row", SHOWN_STATE.values(), ids=SHOWN_STATE.keys())
def test_shown_state(row):
    state, held, now, expected = row
    assert decide.shown_state(state, held, T0 + now) == expected


# (stored expiry, missing) -> (ready at T0, /readyz reason)
READINESS = {
    "holds a valid token": (100, None, True, None),
    "never written": (None, None, False, "no token written yet"),
    "its token expired": (0, None, False, "expired"),
    "found missing by a read-back": (None, "deleted", False, "missing: deleted"),
}


@pytest.mark.parametrize("row", READINESS.values(), ids=READINESS.keys())
def test_readiness(row):
    stored, missing, ready, reason = row
    assert decide.target_ready(at(stored), T0) is ready
    if reason is not None:
        assert decide.not_ready_reason(at(stored), missing) == reason


# (now, verify_at, stored fingerprint is ours) -> read the target back now?
VERIFY_DUE = {
    "no read-back planned": (10, None, True, False),
    "planned later": (10, 20, True, False),
    "due": (20, 20, True, True),
    "due, but the target holds another token as far as we know": (20, 20, False, False),
}


@pytest.mark.parametrize("row", VERIFY_DUE.values(), ids=VERIFY_DUE.keys())
def test_verify_due(row):
    now, verify_at, ours, expected = row
    held = token()
    stored = held.fingerprint if ours else "sha256:0000000000000000"
    assert decide.verify_due(T0 + now, at(verify_at), stored, held) is expected
