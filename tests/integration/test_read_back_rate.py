"""How often the engine reads a target back with ``verify_interval = "auto"``: once per rotation.

In-process, so the file store can count its reads (a file store registered as a
plugin type that counts its file reads); the IdP is the real oidc-provider with
8 s tokens. The read-back schedule used to halve the remaining gap after every
check (halfway, then three quarters, seven eighths, ... down to MIN_VERIFY_GAP):
about log2(interval / 0.5 s) reads per rotation, eleven for a 20-minute token,
each one a paid API call on Secrets Manager.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from syncd.config import FileStoreConfig, load_config
from syncd.engine import Engine
from syncd.payload import TokenPayload
from syncd.stores import base as stores_base
from syncd.stores.base import TransientStoreError
from syncd.stores.file import FileStore
from tests.peers.servers import OidcClient, OidcServer

pytestmark = pytest.mark.integration

TTL = 8
REFRESH_AT = 0.8  # a write every 6.4 s; "auto" reads back once, 3.2 s after each write
CLIENT = OidcClient("readback", "readback-secret-0123456789", "cards:read")


class CountingFileStore(FileStore):
    """``type = "counting-file"``: a file store that counts its reads and writes."""

    reads = 0
    writes = 0
    batches: list[int] = []  # the size of each read_many call
    fail_reads = False  # after the first write, every read fails as an unreachable store's would

    @classmethod
    def from_config(cls, name: str, config: Any) -> CountingFileStore:
        return cls(name, FileStoreConfig(type="file", **dict(config.model_extra or {})))

    def _read_sync(self, key, target):  # type: ignore[no-untyped-def]
        # Under ``read`` and ``read_many`` both: read-backs and adoption go through the batch read.
        CountingFileStore.reads += 1
        if CountingFileStore.fail_reads and CountingFileStore.writes:
            raise TransientStoreError("read failed (the test's store is unreachable for reads)", code="EIO")
        return super()._read_sync(key, target)

    async def read_many(self, items):  # type: ignore[no-untyped-def]
        CountingFileStore.batches.append(len(items))
        return await super().read_many(items)

    async def write(self, key, payload, *, target=None):  # type: ignore[no-untyped-def]
        CountingFileStore.writes += 1
        return await super().write(key, payload, target=target)


@pytest.fixture
def oidc8(peers_installed: None) -> Iterator[OidcServer]:
    server = OidcServer(ttl=TTL, clients=[CLIENT])
    server.start()
    yield server
    server.cleanup()


def _counting_engine(
    oidc8: OidcServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, fail_reads: bool, n: int = 1
) -> Engine:
    """``n`` credentials on the real IdP (the first named "readback"), one target each on a
    CountingFileStore in ``tmp_path`` (counts reset)."""
    real = stores_base.store_class
    monkeypatch.setattr(stores_base, "store_class", lambda t: CountingFileStore if t == "counting-file" else real(t))
    monkeypatch.setenv("READBACK_SECRET", CLIENT.client_secret)
    CountingFileStore.reads = CountingFileStore.writes = 0
    CountingFileStore.batches = []
    CountingFileStore.fail_reads = fail_reads
    cfg = load_config(
        data={
            "daemon": {"listen": "127.0.0.1:0"},
            "defaults": {"refresh_at": REFRESH_AT, "jitter": 0, "min_remaining": "1s", "verify_interval": "auto"},
            "stores": {"out": {"type": "counting-file", "directory": str(tmp_path)}},
            "credentials": [
                {
                    "name": name,
                    "token_url": oidc8.token_url,
                    "client_id": CLIENT.client_id,
                    "client_secret": {"env": "READBACK_SECRET"},
                    "token_lifetime": f"{TTL}s",
                    "targets": [{"store": "out", "key": f"{name}.json"}],
                }
                for name in ["readback", *(f"readback{i:02d}" for i in range(1, n))]
            ],
        }
    )
    return Engine(cfg)


@pytest.mark.parametrize("reads_fail", [False, True], ids=["reads-succeed", "reads-fail"])
async def test_auto_reads_a_target_back_once_per_rotation(
    oidc8: OidcServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reads_fail: bool
) -> None:
    """One read-back per rotation; when reads fail (store unreachable), the check and one retry."""
    engine = _counting_engine(oidc8, tmp_path, monkeypatch, fail_reads=reads_fail)
    await engine.start()
    try:
        # Until the fourth write: three whole rotations, each with its one read-back.
        for _ in range(400):
            if CountingFileStore.writes >= 4:
                break
            await asyncio.sleep(0.05)
        reads, writes = CountingFileStore.reads, CountingFileStore.writes
    finally:
        await engine.stop()
    assert writes >= 4, f"only {writes} writes in 20 s"
    # Start-up may read the (empty) target once; then one read-back per rotation between writes.
    per_rotation = 2 if reads_fail else 1
    assert reads <= per_rotation * writes + 1, (
        f"{reads} reads for {writes} writes: more than {per_rotation} per rotation"
    )
    assert reads >= writes - 1, f"{reads} reads for {writes} writes: the read-back did not run"


async def test_a_token_adopted_at_start_up_is_not_read_again_before_its_next_write(
    oidc8: OidcServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adoption read the target and found the token: with "auto" that was the rotation's read-back.

    Planned as after a write, every adopted credential read its targets again within half a refresh
    interval of start-up (at 100,000 credentials, twice the rotations' own reads, in the minutes the
    start-up's backlog of mints needs the loop).
    """
    now = time.time()
    stored = TokenPayload(
        credential="readback",
        access_token=SecretStr("adopted-token-0123456789abcdef"),
        issued_at=now,
        expires_at=now + TTL,
        refresh_after=now + REFRESH_AT * TTL,
    )
    (tmp_path / "readback.json").write_text(stored.to_json())
    engine = _counting_engine(oidc8, tmp_path, monkeypatch, fail_reads=False)
    await engine.start()
    adoption_reads = CountingFileStore.reads  # the adoption's own read of the target
    try:
        assert engine.credentials["readback"].adopted, "the stored token was adopted"
        assert engine.credentials["readback"].targets[0].verify_at is None
        for _ in range(400):  # until the first write, at the adopted token's refresh (~6.4 s)
            if CountingFileStore.writes >= 1:
                break
            await asyncio.sleep(0.05)
        reads_before_write = CountingFileStore.reads - adoption_reads
        for _ in range(200):  # ... and the read-back that write plans (3.2 s later)
            if CountingFileStore.reads - adoption_reads > reads_before_write:
                break
            await asyncio.sleep(0.05)
        reads_after_write = CountingFileStore.reads - adoption_reads
    finally:
        await engine.stop()
    assert CountingFileStore.writes >= 1
    assert reads_before_write == 0, f"{reads_before_write} read-backs between adoption and the first write"
    assert reads_after_write >= 1, "the first write planned no read-back"


async def test_read_backs_due_together_are_read_together(
    oidc8: OidcServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twelve credentials minted together at start-up fall due for their read-back together: the
    engine reads them in a few batch reads (one thread hop each for the file store), not one each."""
    n = 12
    engine = _counting_engine(oidc8, tmp_path, monkeypatch, fail_reads=False, n=n)
    await engine.start()
    try:
        for _ in range(100):  # the start-up mints: every target written
            if CountingFileStore.writes >= n:
                break
            await asyncio.sleep(0.05)
        at_start = len(CountingFileStore.batches)  # the adoption's reads (nothing there yet)
        for _ in range(200):  # their read-backs, 3.2 s after the writes
            if sum(CountingFileStore.batches[at_start:]) >= n:
                break
            await asyncio.sleep(0.05)
        read_backs = CountingFileStore.batches[at_start:]
    finally:
        await engine.stop()
    assert sum(read_backs) >= n, f"read-backs of {sum(read_backs)} targets in batches {read_backs}"
    assert max(read_backs) >= 2 and len(read_backs) < sum(read_backs), f"batches {read_backs}"
