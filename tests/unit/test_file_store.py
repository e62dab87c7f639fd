"""File store: atomic writes, modes, path safety, and clear errors on disk faults."""

from __future__ import annotations

import errno
import json
import os
import time

import pytest
from pydantic import SecretStr

from syncd.config import FileStoreConfig, TargetConfig
from syncd.payload import TokenPayload
from syncd.stores.base import FatalStoreError, TransientStoreError, create_store
from syncd.stores.file import FileStore


def payload(token: str = "tok-abcdefghijklmnop", credential: str = "calm", life: float = 300.0) -> TokenPayload:
    now = time.time()
    return TokenPayload(
        credential=credential,
        access_token=SecretStr(token),
        issued_at=now,
        expires_at=now + life,
        refresh_after=now + life / 2,
        scope="cards:read",
    )


def store(tmp_path, **kw) -> FileStore:
    cfg = FileStoreConfig(type="file", directory=tmp_path / "out", **kw)
    s = create_store("local", cfg)
    assert isinstance(s, FileStore)
    return s


async def test_round_trip_json(tmp_path):
    s = store(tmp_path)
    p = payload()
    result = await s.write("calm.json", p)
    assert result.written and result.location == str(tmp_path / "out" / "calm.json")
    doc = json.loads((tmp_path / "out" / "calm.json").read_text())
    assert doc["access_token"] == "tok-abcdefghijklmnop"
    assert set(doc) == {
        "version",
        "credential",
        "access_token",
        "token_type",
        "scope",
        "issued_at",
        "expires_at",
        "refresh_after",
        "fingerprint",
    }
    back = await s.read("calm.json")
    assert back is not None and back.fingerprint == p.fingerprint
    assert abs(back.expires_at - p.expires_at) < 0.001
    assert (tmp_path / "out" / "calm.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o700


async def test_raw_format_with_sidecar_and_mode(tmp_path):
    s = store(tmp_path)
    tgt = TargetConfig(store="local", key="nested/calm.token", format="raw", mode="0640")
    p = payload()
    await s.write(tgt.key, p, target=tgt)
    path = tmp_path / "out" / "nested" / "calm.token"
    assert path.read_text() == "tok-abcdefghijklmnop"
    assert path.stat().st_mode & 0o777 == 0o640
    back = await s.read(tgt.key, target=tgt)
    assert back is not None and back.fingerprint == p.fingerprint and back.credential == "calm"
    assert "tok-" not in (path.parent / ".calm.token.syncd.json").read_text()


async def test_missing_and_corrupt(tmp_path):
    s = store(tmp_path)
    assert await s.read("none.json") is None
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "bad.json").write_text("{not json")
    with pytest.raises(FatalStoreError, match="not valid JSON") as info:
        await s.read("bad.json")
    assert info.value.code == "payload"
    (tmp_path / "out" / "half.json").write_text(json.dumps({"credential": "calm"}))
    with pytest.raises(FatalStoreError, match="missing field"):
        await s.read("half.json")


@pytest.mark.parametrize("key", ["../escape.json", "a/../../escape", "/etc/passwd", ""])
async def test_key_cannot_escape_directory(tmp_path, key):
    s = store(tmp_path)
    with pytest.raises(FatalStoreError):
        await s.write(key, payload())
    assert not (tmp_path / "escape.json").exists()


async def test_full_disk_keeps_old_token(tmp_path, monkeypatch):
    """ENOSPC cannot be produced on demand here: os.write is patched to fail (in-process fault)."""
    s = store(tmp_path)
    old = payload("old-token-1234567890")
    await s.write("calm.json", old)
    real_write = os.write

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(TransientStoreError, match="disk is full") as info:
        await s.write("calm.json", payload("new-token-1234567890"))
    monkeypatch.setattr(os, "write", real_write)
    assert info.value.code == "ENOSPC"
    assert "new-token" not in str(info.value)
    back = await s.read("calm.json")
    assert back is not None and back.fingerprint == old.fingerprint
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["calm.json"], "temp file left behind"


@pytest.mark.parametrize(
    ("err", "cls", "text"),
    [
        (errno.EROFS, FatalStoreError, "read-only"),
        (errno.EACCES, FatalStoreError, "permission denied"),
        (errno.EIO, TransientStoreError, "EIO"),
    ],
)
async def test_rename_errors_are_classified(tmp_path, monkeypatch, err, cls, text):
    """Read-only mounts and permission errors are injected by patching os.replace (root bypasses modes)."""
    s = store(tmp_path)

    def fail(src, dst):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(cls, match=text):
        await s.write("calm.json", payload())


async def test_directory_not_created_when_disabled(tmp_path):
    s = store(tmp_path, create_directory=False)
    with pytest.raises(FatalStoreError, match="does not exist and create_directory is false"):
        await s.write("calm.json", payload())


def test_plan_warns_about_world_readable_mode(tmp_path):
    s = store(tmp_path)
    tgt = TargetConfig(store="local", key="calm.json", mode="0644")
    findings = s.plan("calm.json", 600, target=tgt)
    assert any(f.level == "warning" and "every user" in f.message for f in findings)
    assert s.plan("calm.json", 600) == []
    assert [f.level for f in s.plan("../x", 600)] == ["error"]
