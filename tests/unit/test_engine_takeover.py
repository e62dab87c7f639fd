"""A follower's wake (syncd.engine.takeover) without the daemon: real file stores, the mint stubbed.

Two file stores stand for the two kinds of target: ``shared`` is a directory a
second "replica" (its own FileStore on the same directory) writes to, as a Vault
path or an SSM parameter would be shared; ``pod`` is this replica's own file.
Ranks are set by hand: `takeover.place` would make every file-only credential
rank 0 (pod-local), which is what `test_place_*` checks.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from syncd.config import Config, load_config
from syncd.engine import CredentialState, Rotation, takeover
from syncd.metrics import Metrics
from syncd.payload import TokenPayload
from syncd.stores.base import Store, create_store

DELAY = 2.0


def _config(tmp_path: Path, daemon: dict[str, object] | None = None) -> Config:
    return load_config(
        data={
            "daemon": {"listen": "127.0.0.1:0", **(daemon or {})},
            "defaults": {"min_remaining": 5.0, "token_lifetime": 60.0},
            "stores": {
                "shared": {"type": "file", "directory": str(tmp_path / "shared")},
                "pod": {"type": "file", "directory": str(tmp_path / "pod")},
                "bao": {"type": "vault", "url": "http://127.0.0.1:9"},
            },
            "credentials": [
                {
                    "name": "calm",
                    "token_url": "http://127.0.0.1:9/token",
                    "client_id": "x",
                    "client_secret": {"env": "TAKEOVER_SECRET"},
                    "targets": [{"store": "shared", "key": "calm.json"}, {"store": "pod", "key": "calm.json"}],
                },
                {
                    "name": "vaulted",
                    "token_url": "http://127.0.0.1:9/token",
                    "client_id": "x",
                    "client_secret": {"env": "TAKEOVER_SECRET"},
                    "targets": [{"store": "bao", "key": "vaulted"}, {"store": "pod", "key": "vaulted.json"}],
                },
            ],
        }
    )


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAKEOVER_SECRET", "takeover-secret-value")


class CountingMinter:
    """Stands in for the IdP exchange (in-process): hands out ``token`` and counts the mints."""

    def __init__(self, token: TokenPayload) -> None:
        self.token = token
        self.calls = 0

    async def mint(self, st: CredentialState) -> TokenPayload:
        self.calls += 1
        return self.token


def payload(value: str, issued: float, lifetime: float = 60.0) -> TokenPayload:
    return TokenPayload("calm", SecretStr(f"takeover-{value}-abcdef"), issued, issued + lifetime, issued + lifetime / 2)


def stored(tmp_path: Path, where: str) -> TokenPayload:
    return TokenPayload.from_json((tmp_path / where / "calm.json").read_text())


class Follower:
    """Rank 1 of ``calm`` with a real rotation over the two file stores."""

    def __init__(self, tmp_path: Path, minted: TokenPayload) -> None:
        self.config = _config(tmp_path)
        cfg = self.config.credentials[0]
        self.stores: dict[str, Store] = {n: create_store(n, self.config.stores[n]) for n in ("shared", "pod")}
        self.st = CredentialState.for_config(cfg, self.config.defaults, self.stores)
        self.st.ranked, self.st.rank, self.st.takeover_delay = True, 1, DELAY
        self.metrics = Metrics()
        self.minter = CountingMinter(minted)
        self.rotation = Rotation(
            minter=self.minter,
            settings=lambda: self.config,
            metrics=self.metrics,
            clock=time.time,
            rng=random.Random(1),
        )

    async def hold(self, token: TokenPayload) -> None:
        """This replica holds ``token`` and wrote it to both targets (its last rotation)."""
        self.rotation.set_token(self.st, token)
        self.st.held = "minted"
        await self.rotation.write_pending(self.st)

    def counter(self, name: str) -> float:
        return self.metrics.registry.get_sample_value(name) or 0.0

    async def aclose(self) -> None:
        for store in self.stores.values():
            await store.aclose()


async def test_a_follower_adopts_the_fresher_token_another_replica_wrote(tmp_path: Path) -> None:
    now = time.time()
    old = payload("old", now - 40)  # refresh_after now - 10: rank 1 is due since now - 8
    fresh = payload("fresh", now - 9)  # rank 0 refreshed on time
    follower = Follower(tmp_path, minted=payload("unused", now))
    other = create_store("shared", follower.config.stores["shared"])  # the second replica's own client
    try:
        await follower.hold(old)
        assert stored(tmp_path, "pod").fingerprint == old.fingerprint
        await other.write("calm.json", fresh)
        fresh = stored(tmp_path, "shared")  # as written (times to the millisecond)

        await follower.rotation.run(follower.st)

        st = follower.st
        assert follower.minter.calls == 0
        assert st.token is not None and st.token.fingerprint == fresh.fingerprint
        assert st.held == "adopted" and st.state == "ok"
        # The next wake counts from the refresh_after rank 0 stored, not from the adoption.
        assert st.token.refresh_after == fresh.refresh_after
        assert takeover.due_at(st) == fresh.refresh_after + DELAY
        # Copied to its own target, which held an older valid token.
        assert stored(tmp_path, "pod").fingerprint == fresh.fingerprint
        assert follower.counter("syncd_adoptions_total") == 1
        assert follower.counter("syncd_takeovers_total") == 0
    finally:
        await other.aclose()
        await follower.aclose()


async def test_a_follower_takes_over_when_nothing_fresher_is_stored(tmp_path: Path) -> None:
    now = time.time()
    old = payload("old", now - 40)
    minted = payload("minted", now)
    follower = Follower(tmp_path, minted=minted)
    try:
        await follower.hold(old)

        await follower.rotation.run(follower.st)

        st = follower.st
        assert follower.minter.calls == 1 and st.held == "minted"
        assert stored(tmp_path, "shared").fingerprint == minted.fingerprint
        assert stored(tmp_path, "pod").fingerprint == minted.fingerprint
        assert follower.counter("syncd_takeovers_total") == 1
        assert follower.counter("syncd_adoptions_total") == 0
    finally:
        await follower.aclose()


async def test_a_follower_before_its_wake_neither_reads_nor_mints(tmp_path: Path) -> None:
    now = time.time()
    held = payload("held", now - 31)  # refresh_after now - 1, rank 1 wakes at now + 1
    follower = Follower(tmp_path, minted=payload("unused", now))
    other = create_store("shared", follower.config.stores["shared"])
    try:
        await follower.hold(held)
        await other.write("calm.json", payload("fresh", now))

        await follower.rotation.run(follower.st)

        assert follower.minter.calls == 0
        assert follower.st.token is not None and follower.st.token.fingerprint == held.fingerprint
        assert stored(tmp_path, "pod").fingerprint == held.fingerprint
    finally:
        await other.aclose()
        await follower.aclose()


def test_place_ranks_shared_credentials_and_leaves_pod_local_ones_at_rank_0(tmp_path: Path) -> None:
    config = _config(tmp_path, {"replicas": 3, "replica": 2, "takeover_delay": "3s"})
    stores = {n: create_store(n, config.stores[n]) for n in config.stores}
    states = {c.name: CredentialState.for_config(c, config.defaults, stores) for c in config.credentials}
    for st in states.values():
        takeover.place(st, config)
    calm, vaulted = states["calm"], states["vaulted"]
    assert (calm.ranked, calm.rank, calm.takeover_delay) == (False, 0, 0.0)  # two file stores: pod-local
    from syncd.replicas import ranking

    assert vaulted.ranked and vaulted.rank == ranking("vaulted", 3).index(2) and vaulted.takeover_delay == 3.0
    one = _config(tmp_path)
    takeover.place(vaulted, one)
    assert (vaulted.ranked, vaulted.rank) == (False, 0)


def test_status_shows_rank_held_and_the_replica(tmp_path: Path) -> None:
    from syncd.engine import Engine
    from syncd.replicas import ranking

    engine = Engine(_config(tmp_path, {"replicas": 3, "replica": 1}))
    engine.setup()
    status = engine.status()
    assert (status["replicas"], status["replica"]) == (3, 1)
    creds = {c["name"]: c for c in status["credentials"]}
    assert creds["calm"]["rank"] == 0 and creds["calm"]["held"] is None
    assert creds["vaulted"]["rank"] == ranking("vaulted", 3).index(1)
