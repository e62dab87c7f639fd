"""File store: atomic writes, modes, path safety, and clear errors on disk faults."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from syncd.config import FileStoreConfig, TargetConfig
from syncd.payload import TokenPayload
from syncd.stores.base import FatalStoreError, TransientStoreError, create_store
from syncd.stores.file import FileStore

SYNCD = str(Path(sys.executable).parent / "syncd")


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

    def fail(src, dst, **kw):
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


# --------------------------------------------------------------------------- links, modes, names


async def test_file_swapped_for_a_symlink_is_refused(tmp_path):
    """A token file replaced by a link after start: no write through it, no read through it."""
    s = store(tmp_path)
    await s.write("calm.json", payload("first-token-1234567890"))
    outside = tmp_path / "planted.txt"
    outside.write_text("keep me")
    (tmp_path / "out" / "calm.json").unlink()
    (tmp_path / "out" / "calm.json").symlink_to(outside)
    with pytest.raises(FatalStoreError, match="symbolic link") as info:
        await s.write("calm.json", payload("second-token-1234567890"))
    assert info.value.code == "ELOOP" and "second-token" not in str(info.value)
    with pytest.raises(FatalStoreError, match="symbolic link"):
        await s.read("calm.json")
    assert outside.read_text() == "keep me"
    assert (tmp_path / "out" / "calm.json").is_symlink()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["calm.json"], "temp file left behind"


async def test_directory_swapped_for_a_symlink_is_refused(tmp_path):
    """The store directory renamed away and a link put in its place: refused, the link's target untouched."""
    s = store(tmp_path)
    await s.write("calm.json", payload("first-token-1234567890"))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "out").rename(tmp_path / "moved")
    (tmp_path / "out").symlink_to(outside)
    with pytest.raises(FatalStoreError, match="is a symbolic link .*replaced the directory opened earlier"):
        await s.write("calm.json", payload("second-token-1234567890"))
    with pytest.raises(FatalStoreError, match="symbolic link"):
        await s.read("calm.json")
    assert list(outside.iterdir()) == []
    moved = json.loads((tmp_path / "moved" / "calm.json").read_text())
    assert moved["access_token"] == "first-token-1234567890"


async def test_subdirectory_swapped_for_a_symlink_is_refused(tmp_path):
    s = store(tmp_path)
    await s.write("nested/calm.json", payload())
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "out" / "nested" / "calm.json").unlink()
    (tmp_path / "out" / "nested").rmdir()
    (tmp_path / "out" / "nested").symlink_to(outside)
    with pytest.raises(FatalStoreError, match="symbolic link or not a directory"):
        await s.write("nested/calm.json", payload())
    with pytest.raises(FatalStoreError, match="symbolic link or not a directory"):
        await s.read("nested/calm.json")
    assert list(outside.iterdir()) == []


async def test_directory_recreated_is_reopened(tmp_path):
    """A directory deleted (or replaced by a real one of the same owner) is used again, not the stale one."""
    s = store(tmp_path)
    await s.write("calm.json", payload("first-token-1234567890"))
    (tmp_path / "out" / "calm.json").unlink()
    (tmp_path / "out").rmdir()
    await s.write("calm.json", payload("second-token-1234567890"))
    assert json.loads((tmp_path / "out" / "calm.json").read_text())["access_token"] == "second-token-1234567890"
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o700
    await s.aclose()


async def test_a_configured_symlink_directory_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "out").symlink_to(real)
    s = store(tmp_path)
    with pytest.raises(FatalStoreError, match="is a symbolic link; syncd does not follow"):
        await s.write("calm.json", payload())
    assert [f.level for f in s.plan("calm.json", 600)] == ["error"]
    assert list(real.iterdir()) == []


def test_plan_warns_about_a_group_or_world_writable_directory(tmp_path):
    (tmp_path / "out").mkdir(mode=0o700)
    assert store(tmp_path).plan("calm.json", 600) == []
    (tmp_path / "out").chmod(0o777)
    s = store(tmp_path)
    [finding] = s.plan("calm.json", 600)
    assert finding.level == "warning" and "group/world-writable (mode 0777)" in finding.message
    assert "chmod 0700" in (finding.fix or "")
    assert s.plan("card.json", 600) == [], "said once per store, not once per credential"
    (tmp_path / "out").chmod(0o770)
    assert [f.level for f in store(tmp_path).plan("calm.json", 600)] == ["warning"]


@pytest.mark.parametrize(
    ("key", "fmt", "ok"),
    [
        ("a" * 241, "json", True),  # 241 + ".<8 hex>.tmp" + "." = 255
        ("a" * 242, "json", False),
        ("a" * 229, "raw", True),  # the sidecar's temp file is 12 bytes longer
        ("a" * 230, "raw", False),
        ("d" * 255 + "/calm.json", "json", True),
        ("d" * 256 + "/calm.json", "json", False),
        ("a/./b", "json", False),
        ("a//b", "json", False),
    ],
)
def test_key_problem_table(key, fmt, ok):
    from syncd.stores.file import key_problem

    assert (key_problem(key, fmt) is None) is ok


async def test_the_longest_allowed_key_really_writes(tmp_path):
    s = store(tmp_path)
    tgt = TargetConfig(store="local", key="a" * 229, format="raw")
    await s.write(tgt.key, payload(), target=tgt)
    assert (await s.read(tgt.key, target=tgt)) is not None


@pytest.mark.parametrize(
    ("err", "text"),
    [
        (errno.EACCES, "permission denied \\(EACCES\\) for uid \\d+ \\(\\w+\\); the directory has mode 0700"),
        (errno.EPERM, "permission denied \\(EPERM\\) for uid \\d+"),
        (errno.EROFS, "read-only \\(EROFS\\); mount a writable volume"),
    ],
)
async def test_permission_errors_are_fatal_and_name_path_user_mode(tmp_path, monkeypatch, err, text):
    """Root bypasses directory modes, so EACCES/EPERM/EROFS are injected at the store's os.open seam."""
    s = store(tmp_path)
    await s.write("calm.json", payload())
    real_open = os.open

    def refuse(path, flags, mode=0o777, *, dir_fd=None):
        if flags & os.O_CREAT:
            raise OSError(err, os.strerror(err))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(FatalStoreError, match=text) as info:
        await s.write("calm.json", payload("new-token-1234567890"))
    assert str(tmp_path / "out" / "calm.json") in str(info.value)
    assert info.value.transient is False and info.value.code == errno.errorcode[err]
    assert "new-token" not in str(info.value)


async def test_enospc_on_create_stays_transient(tmp_path, monkeypatch):
    """ENOSPC injected at the os.open seam (a full disk cannot be made on demand): retried with backoff."""
    s = store(tmp_path)
    real_open = os.open

    def full(path, flags, mode=0o777, *, dir_fd=None):
        if flags & os.O_CREAT:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", full)
    with pytest.raises(TransientStoreError, match="disk is full"):
        await s.write("calm.json", payload())


def _check(tmp_path, targets: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(
        f"""
[stores.local]
type = "file"
directory = "{tmp_path / "out"}"

[[credentials]]
name = "calm"
token_url = "http://127.0.0.1:9/token"
client_id = "calm"
client_secret = {{ env = "FILE_STORE_TEST_SECRET" }}
targets = [{targets}]
"""
    )
    cfg.chmod(0o600)
    # `check` reads the secret it names (a missing one is a finding of its own).
    env = {**os.environ, "FILE_STORE_TEST_SECRET": "file-store-test-secret"}
    return subprocess.run([SYNCD, "check", "-c", str(cfg)], capture_output=True, text=True, timeout=60, env=env)


def test_too_long_key_is_a_configuration_error(tmp_path):
    """Not a write that fails every second: `syncd check` exits 2 naming the key path and the limit."""
    done = _check(tmp_path, f'{{ store = "local", key = "{"k" * 242}" }}')
    assert done.returncode == 2, done.stdout + done.stderr
    assert "credentials[0].targets[0].key" in done.stderr and "255-byte" in done.stderr
    assert _check(tmp_path, f'{{ store = "local", key = "{"k" * 241}" }}').returncode == 0


def test_check_warns_about_a_world_writable_directory(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out").chmod(0o777)
    done = _check(tmp_path, '{ store = "local", key = "calm.json" }')
    assert done.returncode == 0
    assert "group/world-writable (mode 0777)" in done.stdout


async def test_permission_error_opening_the_directory_names_its_mode(tmp_path, monkeypatch):
    """EACCES on the directory itself (injected at os.open: root bypasses modes): path, user and mode named."""
    (tmp_path / "out").mkdir(mode=0o500)
    s = store(tmp_path)
    real_open = os.open

    def refuse(path, flags, mode=0o777, *, dir_fd=None):
        if flags & os.O_DIRECTORY and dir_fd is None:
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(
        FatalStoreError, match=r"open directory .*out: permission denied \(EACCES\) for uid \d+"
    ) as info:
        await s.write("calm.json", payload())
    assert "mode 0500" in str(info.value)


def test_the_writability_check_finds_the_nearest_existing_ancestor_of_a_relative_directory(tmp_path, monkeypatch):
    """A relative store directory that does not exist yet: the plan judges the nearest directory that
    exists (here the working directory), where it would be created. ``os.access`` is replaced in-process:
    these tests run as root, for whom every directory is writable."""
    from syncd.stores.file import plan as file_plan

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(file_plan.os, "access", lambda path, mode: False)
    cfg = FileStoreConfig(type="file", directory="not/there")
    found = file_plan.findings("local", cfg, Path("not/there"), "calm.json", None, with_directory=True)
    assert [(f.level, f.message.split(" is not writable")[0]) for f in found] == [("warning", str(tmp_path))]
