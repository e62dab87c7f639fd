"""syncd.replicas: ordinals, rendezvous ranking, takeover delays, wake times and the plan's refusals."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.config import load_config
from syncd.policy import RefreshPolicy
from syncd.replicas import (
    effective_takeover_delay,
    latest_takeover_delay,
    ordinal_from_hostname,
    parse_takeover_delay,
    plan_totals,
    rank,
    ranking,
    replica_findings,
    resolve_replica,
    wake_time,
)

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=1, max_size=40)


@pytest.mark.parametrize(
    ("hostname", "ordinal"),
    [
        ("syncd-0", 0),
        ("syncd-2", 2),
        ("syncd-12", 12),
        ("my-release-syncd-3", 3),
        ("syncd-2.syncd-headless.ns.svc.cluster.local", 2),
        ("syncd", 0),
        ("syncd-", 0),
        ("syncd-2a", 0),
        ("laptop", 0),
        ("", 0),
        ("10-0-0-1", 1),
    ],
)
def test_ordinal_from_hostname(hostname: str, ordinal: int) -> None:
    assert ordinal_from_hostname(hostname) == ordinal


@pytest.mark.parametrize(
    ("replica", "replicas", "hostname", "expected"),
    [
        (None, 1, "syncd-7", 0),  # one replica: the hostname is not consulted
        (None, 1, "syncd-5d8f6c-24567", 0),  # a Deployment pod ending in digits
        (None, 3, "syncd-2", 2),
        (None, 3, "syncd", 0),
        (1, 3, "syncd-2", 1),  # given wins over the hostname
        (0, 1, "anything-9", 0),
    ],
)
def test_resolve_replica(replica: int | None, replicas: int, hostname: str, expected: int) -> None:
    assert resolve_replica(replica, replicas, hostname) == expected


@pytest.mark.parametrize(
    ("replica", "replicas", "hostname", "words"),
    [
        (3, 3, "x", ["ordinal 3 (given)", "0..2", "SYNCD_DAEMON__REPLICA"]),
        (1, 1, "x", ["ordinal 1 (given)", "replicas = 1"]),
        (None, 3, "syncd-3", ["ordinal 3 (taken from the hostname 'syncd-3')", "replicaCount"]),
        (-1, 3, "x", ["0 or more"]),
    ],
)
def test_resolve_replica_refuses(replica: int | None, replicas: int, hostname: str, words: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        resolve_replica(replica, replicas, hostname)
    for word in words:
        assert word in str(info.value)


def test_ranking_is_stable_across_processes() -> None:
    # Fixed expectations: a hash seeded per process (Python's hash()) would break these.
    assert ranking("calm", 3) == ranking("calm", 3)
    assert sorted(ranking("calm", 3)) == [0, 1, 2]
    assert ranking("calm", 1) == [0]
    assert [rank("calm", k, 3) for k in ranking("calm", 3)] == [0, 1, 2]


@settings(max_examples=200, deadline=None)
@given(name=NAMES, replicas=st.integers(min_value=1, max_value=12))
def test_ranks_are_a_permutation(name: str, replicas: int) -> None:
    ranks = [rank(name, k, replicas) for k in range(replicas)]
    assert sorted(ranks) == list(range(replicas))


@settings(max_examples=200, deadline=None)
@given(name=NAMES, replicas=st.integers(min_value=2, max_value=12), data=st.data())
def test_removing_a_replica_keeps_the_order_of_the_others(name: str, replicas: int, data: Any) -> None:
    """Rendezvous property: dropping the highest ordinal (a scale-down) changes only the names it ranked above others."""
    before = ranking(name, replicas)
    after = ranking(name, replicas - 1)
    assert after == [k for k in before if k != replicas - 1]
    # So a credential whose first replica survives keeps it.
    if before[0] != replicas - 1:
        assert after[0] == before[0]


@pytest.mark.parametrize("replicas", [2, 3, 5])
def test_each_replica_is_first_for_about_one_nth_of_the_names(replicas: int) -> None:
    names = [f"cred-{i}" for i in range(10_000)]
    firsts = Counter(ranking(name, replicas)[0] for name in names)
    for k in range(replicas):
        assert abs(firsts[k] / len(names) - 1 / replicas) < 0.03, firsts


def test_scale_down_moves_only_the_removed_replicas_names() -> None:
    names = [f"cred-{i}" for i in range(10_000)]
    moved = [n for n in names if ranking(n, 4)[0] != ranking(n, 3)[0]]
    assert all(ranking(n, 4)[0] == 3 for n in moved)
    assert abs(len(moved) / len(names) - 0.25) < 0.03


@pytest.mark.parametrize("bad", [(0, 0), (3, 3), (-1, 3)])
def test_rank_refuses_an_ordinal_out_of_range(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        rank("calm", *bad)


@pytest.mark.parametrize(
    ("setting", "lifetime", "delay"),
    [
        ("auto", 300.0, 30.0),
        ("auto", 20.0, 2.0),
        ("auto", 600.0, 60.0),
        ("auto", 86_400.0, 60.0),  # capped
        (5.0, 300.0, 5.0),
        (120.0, 20.0, 120.0),  # explicit: as given (the plan check refuses it if too late)
    ],
)
def test_effective_takeover_delay(setting: Any, lifetime: float, delay: float) -> None:
    assert effective_takeover_delay(setting, lifetime) == delay


@pytest.mark.parametrize("lifetime", [0.0, -1.0, math.inf, math.nan])
def test_auto_delay_needs_a_lifetime(lifetime: float) -> None:
    with pytest.raises(ValueError):
        effective_takeover_delay("auto", lifetime)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("auto", "auto"), (" AUTO ", "auto"), ("5s", 5.0), (2, 2.0), ("1m30s", 90.0), ("250ms", 0.25)],
)
def test_parse_takeover_delay(value: Any, parsed: Any) -> None:
    assert parse_takeover_delay(value) == parsed


@pytest.mark.parametrize("value", [0, "0s", "nan", "inf", math.inf, math.nan, "-3s", "soon", True, "4000d"])
def test_parse_takeover_delay_refuses(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_takeover_delay(value)


@pytest.mark.parametrize(
    ("refresh_after", "rank_", "delay", "wake"),
    [(1000.0, 0, 30.0, 1000.0), (1000.0, 1, 30.0, 1030.0), (1000.0, 2, 30.0, 1060.0), (5.5, 4, 0.5, 7.5)],
)
def test_wake_time_counts_from_the_stored_refresh_after(refresh_after: float, rank_: int, delay: float, wake: float):
    assert wake_time(refresh_after, rank_, delay) == wake


def test_wake_time_refuses_a_negative_rank() -> None:
    with pytest.raises(ValueError):
        wake_time(0.0, -1, 1.0)


@pytest.mark.parametrize(
    ("lifetime", "replicas", "allowed"),
    [
        (300.0, 1, math.inf),
        # default policy: latest refresh 165 s (150 + 10 % jitter), deadline 270 s
        (300.0, 2, 105.0),
        (300.0, 3, 52.5),
        (300.0, 8, 15.0),
    ],
)
def test_latest_takeover_delay(lifetime: float, replicas: int, allowed: float) -> None:
    assert latest_takeover_delay(lifetime, RefreshPolicy(), replicas) == pytest.approx(allowed)


def _config(daemon: dict[str, Any], *targets: dict[str, Any], **defaults: Any) -> Any:
    stores = {
        "local": {"type": "file", "directory": "/nonexistent/out"},
        "ssm": {"type": "aws-ssm", "region": "us-east-1"},
        "sm": {"type": "aws-secretsmanager", "region": "us-east-1"},
    }
    creds = [
        {"name": f"c{i}", "client_id": "x", "client_secret": {"env": "X"}, "targets": [tgt]}
        for i, tgt in enumerate(targets or ({"store": "ssm", "key": "/c0"},))
    ]
    return load_config(data={"daemon": daemon, "defaults": defaults, "stores": stores, "credentials": creds})


@pytest.mark.parametrize(
    ("daemon", "defaults", "refused"),
    [
        ({"replicas": 1, "takeover_delay": "1h"}, {}, False),  # one replica: nothing to wait for
        ({"replicas": 3}, {}, False),  # auto: 30 s per rank, last rank at 225 s < 270 s
        ({"replicas": 3, "takeover_delay": "52s"}, {}, False),
        ({"replicas": 3, "takeover_delay": "53s"}, {}, True),
        ({"replicas": 5}, {}, True),  # auto: last rank at 285 s > 270 s
        ({"replicas": 5}, {"token_lifetime": "1h"}, False),  # auto: 60 s per rank, 1980 s < 3570 s
        ({"replicas": 2}, {"token_lifetime": "30s", "min_remaining": "10s"}, False),
    ],
)
def test_plan_refuses_a_last_rank_after_the_deadline(
    daemon: dict[str, Any], defaults: dict[str, Any], refused: bool
) -> None:
    findings = replica_findings(_config({"replica": 0, **daemon}, **defaults))
    errors = [f for f in findings if f.level == "error"]
    assert bool(errors) == refused, findings
    if refused:
        assert errors[0].subject == "daemon.takeover_delay"
        assert "'c0'" in errors[0].message and "takeover_delay to at most" in (errors[0].fix or "")


def test_pod_local_credentials_are_a_note_not_a_refusal() -> None:
    cfg = _config(
        {"replicas": 3, "replica": 0, "takeover_delay": "2m"},
        {"store": "local", "key": "only-local.json"},
        {"store": "ssm", "key": "/shared"},
    )
    findings = replica_findings(cfg)
    notes = [f for f in findings if f.level == "info"]
    assert len(notes) == 1 and "'c0'" in notes[0].message and "every one of the 3 replicas" in notes[0].message
    errors = [f for f in findings if f.level == "error"]
    assert len(errors) == 1 and "'c1'" in errors[0].message and "'c0'" not in errors[0].message


@pytest.mark.parametrize(
    ("daemon", "defaults", "warned"),
    [
        ({"replicas": 3}, {}, False),  # auto: 30 s > the default mint_timeout of 10 s
        ({"replicas": 3}, {"token_lifetime": "60s", "min_remaining": "5s"}, True),  # auto: 6 s < 10 s
        ({"replicas": 3, "mint_timeout": "5s"}, {"token_lifetime": "60s", "min_remaining": "5s"}, False),
        ({"replicas": 3, "takeover_delay": "10s"}, {}, False),  # equal: the mint has given up by then
        ({"replicas": 1, "takeover_delay": "1s"}, {}, False),  # one replica: no follower
    ],
)
def test_plan_warns_of_a_takeover_delay_below_mint_timeout(
    daemon: dict[str, Any], defaults: dict[str, Any], warned: bool
) -> None:
    findings = replica_findings(_config({"replica": 0, **daemon}, **defaults))
    warnings = [f for f in findings if f.level == "warning"]
    assert bool(warnings) == warned, findings
    if warned:
        assert warnings[0].subject == "daemon.takeover_delay" and "'c0'" in warnings[0].message
        assert "mint_timeout (10s)" in warnings[0].message and "above 10s" in (warnings[0].fix or "")


def test_pod_local_credentials_get_no_takeover_warning() -> None:
    cfg = _config({"replicas": 3, "replica": 0, "takeover_delay": "1s"}, {"store": "local", "key": "a.json"})
    assert [f.level for f in replica_findings(cfg)] == ["info"]


def test_plan_totals_do_not_multiply_shared_writes() -> None:
    cfg = _config({"replicas": 3, "replica": 0}, {"store": "sm", "key": "a"}, {"store": "local", "key": "b.json"})
    w1, r1, v1 = plan_totals(cfg, 1)
    w3, r3, v3 = plan_totals(cfg, 3)
    per_target = w1 / 2
    assert r1 == 0.0 and v1 == v3 == pytest.approx(per_target)
    assert w3 == pytest.approx(per_target * (1 + 3))  # the pod-local target is written by each replica
    # Followers read the shared target once per refresh cycle each: 2 followers x 86400/150.
    assert r3 == pytest.approx(2 * 86_400 / 150)
