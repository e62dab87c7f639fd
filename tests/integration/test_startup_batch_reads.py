"""Start-up adoption reads targets in batches (syncd.stores.batch): each item's result is what ``read`` says.

File store (one thread hop per batch), Secrets Manager (BatchGetSecretValue against
moto_server) and OpenBao (KV GETs over aiohttp, anything but a plain answer read again
through hvac) are compared item by item with their own ``read``, over fresh, missing,
broken, deleted, denied and slotted targets; and a start-up with many credentials adopts
every readable token and names the one target it could not read.
"""

from __future__ import annotations

import asyncio
import io
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from syncd import logs
from syncd.config import AwsSecretsManagerStoreConfig, FileStoreConfig, TargetConfig, load_config
from syncd.engine import Engine
from syncd.payload import TokenPayload
from syncd.stores import _aws
from syncd.stores.aws_secretsmanager import SecretsManagerStore
from syncd.stores.batch import read_many
from syncd.stores.file import FileStore
from syncd.stores.vault import VaultStore
from tests.integration.test_vault_kv import RequestCounter, enable_kv, policy_token, store_for, syncd_policy
from tests.peers.servers import OpenBaoServer

pytestmark = pytest.mark.integration


def payload(credential: str, token: str, life: float = 3600.0) -> TokenPayload:
    now = time.time()
    return TokenPayload(
        credential=credential,
        access_token=SecretStr(token),
        issued_at=now,
        expires_at=now + life,
        refresh_after=now + life / 2,
    )


def same(batch: Any, single: Any) -> bool:
    """The same outcome: the same token, nothing, or the same kind of error."""
    if isinstance(single, Exception):
        return type(batch) is type(single) and getattr(batch, "code", None) == getattr(single, "code", None)
    if single is None:
        return batch is None
    return isinstance(batch, TokenPayload) and batch.fingerprint == single.fingerprint


async def one_by_one(store: Any, items: list[tuple[str, TargetConfig]]) -> list[Any]:
    out: list[Any] = []
    for key, tgt in items:
        try:
            out.append(await store.read(key, target=tgt))
        except Exception as exc:
            out.append(exc)
    return out


async def test_file_store_batch_reads_say_what_read_says(tmp_path):
    store = FileStore("local", FileStoreConfig(type="file", directory=str(tmp_path)))
    items = [(f"c{i}.json", TargetConfig(store="local", key=f"c{i}.json")) for i in range(25)]
    for i in range(20):
        await store.write(f"c{i}.json", payload(f"c{i}", f"tok-file-{i:04d}-abcdefghijkl"))
    (tmp_path / "c20.json").mkdir()  # a directory where a token file should be
    (tmp_path / "c21.json").write_bytes(b"\xff\xfe not utf-8")
    (tmp_path / "c22.json").write_text("{not json")
    raw = TargetConfig(store="local", key="raw.json", format="raw")
    await store.write("raw.json", payload("raw", "tok-raw-0123456789abcdef"), target=raw)
    items.append(("raw.json", raw))
    batch = await read_many(store, items)
    single = await one_by_one(store, items)
    assert len(batch) == len(items)
    for (key, _), b, s in zip(items, batch, single, strict=True):
        assert same(b, s), f"{key}: batch {b!r}, read {s!r}"
    assert sum(isinstance(b, TokenPayload) for b in batch) == 21
    assert sum(isinstance(b, Exception) for b in batch) == 3 and batch[23] is None
    await store.aclose()


@pytest.mark.usefixtures("aws_env")
async def test_secrets_manager_batch_reads_say_what_read_says(moto_server):
    _aws.reset_limiters()
    prefix = f"vgs/{uuid.uuid4().hex[:8]}"

    def make() -> SecretsManagerStore:
        cfg = AwsSecretsManagerStoreConfig(
            type="aws-secretsmanager", region="eu-west-1", endpoint_url=moto_server.endpoint_url, create_missing=True
        )
        return SecretsManagerStore("aws", cfg)

    writer = make()
    items: list[tuple[str, TargetConfig]] = []
    for i in range(23):  # more than one BatchGetSecretValue call of 20
        key = f"{prefix}/c{i}"
        items.append((key, TargetConfig(store="aws", key=key)))
        if i < 20:
            await writer.write(key, payload(f"c{i}", f"tok-sm-{i:04d}-abcdefghijkl"))
    slotted = TargetConfig(store="aws", key=f"{prefix}/slotted", slots=2)
    await writer.write(f"{prefix}/slotted", payload("slotted", "tok-slot-0123456789abcd"), target=slotted)
    items.append((f"{prefix}/slotted", slotted))
    # the index read as a plain target: read follows it to the slots
    items.append((f"{prefix}/slotted", TargetConfig(store="aws", key=f"{prefix}/slotted")))
    raw = TargetConfig(store="aws", key=f"{prefix}/raw", format="raw")
    await writer.write(f"{prefix}/raw", payload("raw", "tok-raw-0123456789abcdef"), target=raw)
    items.append((f"{prefix}/raw", raw))
    items.append(("bad name!", TargetConfig(store="aws", key="bad name!")))
    await writer.aclose()

    reader = make()  # a fresh store, as at start-up
    batch = await read_many(reader, items)
    single = await one_by_one(make(), items)
    for (key, _), b, s in zip(items, batch, single, strict=True):
        assert same(b, s), f"{key}: batch {b!r}, read {s!r}"
    assert sum(isinstance(b, TokenPayload) for b in batch) == 22
    await reader.aclose()


@pytest.mark.parametrize("kv_version", [2, 1])
async def test_vault_batch_reads_say_what_read_says(openbao_session: OpenBaoServer, tmp_path, kv_version):
    bao = openbao_session
    mount = enable_kv(bao, kv_version)
    # read on vgs/* only: vgs-denied/* answers 403, which the bulk path leaves to read (log in again, then fatal)
    token_file = policy_token(bao, tmp_path, syncd_policy(mount, kv_version=kv_version))
    writer = store_for(bao, mount, token_file, kv_version=kv_version)
    items: list[tuple[str, TargetConfig]] = []
    for i in range(23):
        key = f"vgs/c{i}"
        items.append((key, TargetConfig(store="vault", key=key)))
        if i < 20:
            await writer.write(key, payload(f"c{i}", f"tok-bao-{i:04d}-abcdefghijkl"))
    raw = TargetConfig(store="vault", key="vgs/raw", format="raw")
    await writer.write("vgs/raw", payload("raw", "tok-raw-0123456789abcdef"), target=raw)
    items.append(("vgs/raw", raw))
    root = bao.client()
    if kv_version == 2:
        root.secrets.kv.v2.create_or_update_secret(path="vgs/foreign", secret={"hello": "world"}, mount_point=mount)
        await writer.write("vgs/deleted", payload("deleted", "tok-deleted-0123456789ab"))
        root.secrets.kv.v2.delete_latest_version_of_secret(path="vgs/deleted", mount_point=mount)
        items.append(("vgs/deleted", TargetConfig(store="vault", key="vgs/deleted")))
    else:
        root.secrets.kv.v1.create_or_update_secret(path="vgs/foreign", secret={"hello": "world"}, mount_point=mount)
    items.append(("vgs/foreign", TargetConfig(store="vault", key="vgs/foreign")))
    items.append(("vgs-denied/c0", TargetConfig(store="vault", key="vgs-denied/c0")))
    items.append(("/bad//key", TargetConfig(store="vault", key="/bad//key")))
    await writer.aclose()

    reader: VaultStore = store_for(bao, mount, token_file, kv_version=kv_version)  # fresh, as at start-up
    batch = await read_many(reader, items[:3])  # the first read logs in and checks the mount
    through_hvac = RequestCounter(reader)
    batch += await read_many(reader, items[3:])
    # Only the denied path went through hvac (its read, the log-in again, its retry): the others were bulk GETs.
    assert {path for _, path, _ in through_hvac.seen if "/vgs" in path} == {
        f"/v1/{mount}/" + ("data/" if kv_version == 2 else "") + "vgs-denied/c0"
    }
    single_store = store_for(bao, mount, token_file, kv_version=kv_version)
    single = await one_by_one(single_store, items)
    for (key, _), b, s in zip(items, batch, single, strict=True):
        assert same(b, s), f"{key}: batch {b!r}, read {s!r}"
        if isinstance(s, Exception):
            assert str(b) == str(s)
    assert sum(isinstance(b, TokenPayload) for b in batch) == 21
    assert sum(isinstance(b, Exception) for b in batch) == 3
    await reader.aclose()
    await single_store.aclose()


def _file_credentials(tmp_path: Path, n: int, **daemon: Any) -> Any:
    """``n`` one-hour credentials c00.. with one file target each in ``tmp_path`` (their secret: $BATCH_SECRET)."""
    return load_config(
        data={
            "daemon": {"listen": "127.0.0.1:0", **daemon},
            "stores": {"local": {"type": "file", "directory": str(tmp_path)}},
            "credentials": [
                {
                    "name": f"c{i:02d}",
                    "token_url": "http://127.0.0.1:9/token",
                    "client_id": f"c{i:02d}",
                    "client_secret": {"env": "BATCH_SECRET"},
                    "token_lifetime": "1h",
                    "targets": [{"store": "local", "key": f"c{i:02d}.json"}],
                }
                for i in range(n)
            ],
        }
    )


async def test_startup_adopts_every_readable_target_and_names_the_unreadable_one(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCH_SECRET", "batch-secret-0123456789")
    n = 45
    cfg = _file_credentials(tmp_path, n, startup_concurrency=16)
    seed = FileStore("seed", FileStoreConfig(type="file", directory=str(tmp_path)))
    for i in range(n - 1):
        await seed.write(f"c{i:02d}.json", payload(f"c{i:02d}", f"tok-adopt-{i:04d}-abcdefghijkl"))
    (tmp_path / f"c{n - 1:02d}.json").mkdir()
    await seed.aclose()
    # Logs to a buffer of this test's own: an earlier test in the same process may have sent them elsewhere.
    buf = io.StringIO()
    logs.configure("info", "json", stream=buf)
    engine = Engine(cfg)
    try:
        await engine.start()
        adopted = [st.name for st in engine.credentials.values() if st.adopted]
        assert len(adopted) == n - 1 and f"c{n - 1:02d}" not in adopted
    finally:
        await engine.stop()
        logs.configure("info", "json", stream=sys.__stderr__)
    logged = buf.getvalue()
    assert "adopt_read" in logged and f"c{n - 1:02d}" in logged


async def test_startup_lets_the_loop_turn_while_it_judges_and_schedules(tmp_path, monkeypatch):
    """At 10,000 credentials judging and scheduling are seconds of CPU: /livez and the heartbeats run between."""
    from syncd.engine import adopt, lifecycle

    monkeypatch.setenv("BATCH_SECRET", "batch-secret-0123456789")
    monkeypatch.setattr(adopt, "YIELD_EVERY", 4)
    monkeypatch.setattr(lifecycle, "YIELD_EVERY", 4)
    n = 20
    cfg = _file_credentials(tmp_path, n)
    seed = FileStore("seed", FileStoreConfig(type="file", directory=str(tmp_path)))
    for i in range(n):
        await seed.write(f"c{i:02d}.json", payload(f"c{i:02d}", f"tok-turn-{i:04d}-abcdefghijkl"))
    await seed.aclose()
    turns = 0

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    judged: list[int] = []
    scheduled: list[int] = []
    real_adopt_found = adopt.adopt_found
    monkeypatch.setattr(adopt, "adopt_found", lambda *a: (judged.append(turns), real_adopt_found(*a))[1])
    engine = Engine(cfg)
    real_schedule = engine._schedule
    monkeypatch.setattr(engine, "_schedule", lambda st, at=None: (scheduled.append(turns), real_schedule(st, at))[1])
    tick = asyncio.get_running_loop().create_task(ticker())
    try:
        await engine.start()
    finally:
        tick.cancel()
        await engine.stop()
    assert len(judged) == n and len(scheduled) == n
    assert judged[-1] > judged[0] and scheduled[-1] > scheduled[0]
