"""What a reload does to each credential (syncd.engine.reload.plan_reload), one row per case.

The plan is decided without I/O: the identity digests a running engine reads from the
secret sources are passed in, so each row says what the held token was minted with and
what the sources hold now.
"""

from __future__ import annotations

import pytest

from syncd.config import load_config
from syncd.engine import Engine
from syncd.engine.reload import plan_reload


def _config(tmp_path, *, names=("calm", "busy"), defaults=None, calm=None):
    def credential(name):
        return {
            "name": name,
            "token_url": "http://127.0.0.1:9/token",
            "client_id": name,
            "client_secret": {"env": "RELOAD_PLAN_SECRET"},
            "targets": [{"store": "local", "key": f"{name}.json"}],
            **((calm or {}) if name == "calm" else {}),
        }

    return load_config(
        data={
            "daemon": {"listen": "127.0.0.1:0"},
            "defaults": defaults or {},
            "stores": {"local": {"type": "file", "directory": str(tmp_path)}},
            "credentials": [credential(n) for n in names],
        }
    )


# row: new configuration, changed stores, calm's held identity digest and the sources' digest now
#      -> the names per outcome (the lists that are not empty)
PLANS = {
    "nothing changed": ({}, set(), None, None, {"unchanged": ["calm", "busy"]}),
    "one removed, one added": (
        {"names": ("calm", "fresh")},
        set(),
        None,
        None,
        {"added": ["fresh"], "removed": ["busy"], "unchanged": ["calm"]},
    ),
    "scopes changed: restart and mint at once": (
        {"calm": {"scopes": ["read"]}},
        set(),
        None,
        None,
        {"changed": ["calm"], "unchanged": ["busy"], "reminted": ["calm"]},
    ),
    "refresh policy changed: restart, keep the token": (
        {"defaults": {"refresh_at": 0.6}},
        set(),
        None,
        None,
        {"changed": ["calm", "busy"]},
    ),
    "their store was rebuilt: restart, keep the token": ({}, {"local"}, None, None, {"changed": ["calm", "busy"]}),
    "same secret reference, new value behind it: mint at once": (
        {},
        set(),
        "digest-minted",
        "digest-now",
        {"changed": ["calm"], "unchanged": ["busy"], "reminted": ["calm"]},
    ),
    "same value: nothing to do": ({}, set(), "digest-minted", "digest-minted", {"unchanged": ["calm", "busy"]}),
    "an adopted token (identity unknown): kept": ({}, set(), None, "digest-now", {"unchanged": ["calm", "busy"]}),
    "sources unreadable now: the mint will tell, kept": (
        {},
        set(),
        "digest-minted",
        None,
        {"unchanged": ["calm", "busy"]},
    ),
}


@pytest.mark.parametrize("row", PLANS.values(), ids=PLANS.keys())
def test_plan_reload(tmp_path, row):
    new_kwargs, changed_stores, minted_with, digest_now, expected = row
    engine = Engine(_config(tmp_path))
    engine.setup()
    engine.credentials["calm"].minted_with = minted_with
    plan = plan_reload(engine.credentials, _config(tmp_path, **new_kwargs), changed_stores, {"calm": digest_now})
    assert {k: v for k, v in plan.summary().items() if v} == expected
