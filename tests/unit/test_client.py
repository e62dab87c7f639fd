"""syncd.client without network: URLs, file sources, the freshness rules, locking, auth flows."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import pickle
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import requests.adapters
from pydantic import SecretStr

from syncd.client import (
    AsyncTokenReader,
    SyncdAuth,
    SyncdRequestsAuth,
    TokenError,
    TokenExpiredError,
    TokenFormatError,
    TokenNotFoundError,
    TokenReader,
    TokenStoreError,
    authorization_header,
)
from syncd.client import sources as sc
from syncd.client.shared import Cache
from syncd.payload import TokenPayload, fingerprint, slot_index_doc
from syncd.stores.reading import Fetched, Source, from_doc

REPO = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def payload(
    token: str = "tok-1",
    *,
    issued: float = T0,
    lifetime: float = 300.0,
    refresh_at: float = 0.5,
    token_type: str = "Bearer",
) -> TokenPayload:
    return TokenPayload(
        credential="calm",
        access_token=SecretStr(token),
        issued_at=issued,
        expires_at=issued + lifetime,
        refresh_after=issued + lifetime * refresh_at,
        token_type=token_type,
        scope="cards:read",
    )


class FakeSource(Source):
    """Hands out scripted results (payloads, payload dicts or exceptions); the last one repeats."""

    def __init__(self, *results: Any, delay: float = 0.0) -> None:
        self.results = list(results)
        self.calls: list[float] = []
        self.delay = delay
        self.description = "fake://calm"
        self.lock = threading.Lock()
        # When set, a fetch holds until the test opens the gate: "the store is slow" without a clock.
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def push(self, *results: Any) -> None:
        self.results.extend(results)

    def fetch(self, now: float) -> Fetched:
        with self.lock:
            self.calls.append(now)
            result = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30), "the test never opened the gate"
        if self.delay:
            time.sleep(self.delay)
        if isinstance(result, BaseException):
            raise result
        if isinstance(result, dict):
            return from_doc(result, self.description)
        return Fetched(result, True)


def reader_with(source: FakeSource, clock: Callable[[], float] | None = None, **kw: Any) -> TokenReader:
    return TokenReader._sharing(Cache.over(source, clock=clock or Clock(), **kw))


def async_reader_with(source: FakeSource, clock: Callable[[], float] | None = None, **kw: Any) -> AsyncTokenReader:
    return AsyncTokenReader._sharing(Cache.over(source, clock=clock or Clock(), **kw))


# --------------------------------------------------------------------------- source URLs


def test_file_url_forms(tmp_path: Path) -> None:
    assert TokenReader(f"file://{tmp_path}/calm.json").source == f"file://{tmp_path}/calm.json"
    assert TokenReader(f"file://localhost{tmp_path}/calm.json").source == f"file://{tmp_path}/calm.json"
    assert TokenReader("file:///var/run/a%20b.json")._cache.source.path == Path("/var/run/a b.json")  # type: ignore[attr-defined]
    assert TokenReader(tmp_path / "calm.json").source == f"file://{tmp_path}/calm.json"


def test_vault_url_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VAULT_ADDR", "BAO_ADDR", "VAULT_NAMESPACE", "BAO_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VAULT_ADDR", "https://vault.internal:8200")
    src = TokenReader("vault://secret/vgs/calm")._cache.source
    assert isinstance(src, sc.VaultSource)
    assert (src.mount, src.path, src.kv_version, src.addr, src.namespace) == (
        "secret",
        "vgs/calm",
        2,
        "https://vault.internal:8200",
        None,
    )
    assert src.description == "vault://secret/vgs/calm"

    src = TokenReader("vault://kv1/vgs/calm?kv=1", vault_addr="http://127.0.0.1:8200/")._cache.source
    assert isinstance(src, sc.VaultSource)
    assert (src.mount, src.kv_version, src.addr, src.description) == (
        "kv1",
        1,
        "http://127.0.0.1:8200",
        "vault://kv1/vgs/calm?kv=1",
    )

    monkeypatch.setenv("VAULT_NAMESPACE", "team-a")
    src = TokenReader("vault://vgs/calm?mount=kv/team&vault_addr=http://10.0.0.1:8200")._cache.source
    assert isinstance(src, sc.VaultSource)
    assert (src.mount, src.path, src.addr, src.namespace) == ("kv/team", "vgs/calm", "http://10.0.0.1:8200", "team-a")


def test_aws_url_forms() -> None:
    src = TokenReader("aws-sm://vgs/calm?region=eu-west-1&endpoint_url=http://127.0.0.1:5000")._cache.source
    assert isinstance(src, sc.SecretsManagerSource)
    assert (src.secret_id, src.region, src.endpoint_url, src.description) == (
        "vgs/calm",
        "eu-west-1",
        "http://127.0.0.1:5000",
        "aws-sm://vgs/calm",
    )
    arn = "arn:aws:secretsmanager:us-east-2:123456789012:secret:vgs/calm-AbCdEf"
    src = TokenReader(f"aws-sm://{arn}")._cache.source
    assert isinstance(src, sc.SecretsManagerSource)
    assert (src.secret_id, src.region) == (arn, "us-east-2")
    assert isinstance(TokenReader("aws-secretsmanager://vgs/calm")._cache.source, sc.SecretsManagerSource)

    src = TokenReader("aws-ssm:///vgs/calm?region=eu-west-1&profile=prod")._cache.source
    assert isinstance(src, sc.SsmSource)
    assert (src.name, src.region, src.profile, src.description) == (
        "/vgs/calm",
        "eu-west-1",
        "prod",
        "aws-ssm:///vgs/calm",
    )
    src = TokenReader("aws-ssm://calm")._cache.source
    assert isinstance(src, sc.SsmSource) and src.name == "calm"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("/var/run/syncd/calm.json", "no scheme (for a file, write file:///absolute/path)"),
        ("calm.json", "no scheme"),
        ("file://var/run/calm.json", "looks like a relative path or a host"),
        ("file:///var/run/", "must be absolute and name a file"),
        ("file:///var/run/calm.json?format=raw", "file sources take no parameters"),
        ("vault://secret", "name the KV mount and the secret path"),
        ("vault://secret/vgs/calm?kv=3", "kv must be 1 or 2"),
        ("vault://secret/vgs/calm?version=2", "unknown parameter 'version'"),
        ("vault://secret/vgs/calm?kv=1&kv=2", "given twice"),
        ("aws-sm://", "name the secret"),
        ("aws-sm://vgs/calm?region=", "is empty"),
        ("aws-sm://vgs/calm?endpoint_url=localhost:5000", "must start with http"),
        ("aws-ssm://vgs/calm", "write aws-ssm:///vgs/calm"),
        ("aws-ssm:///", "name the parameter"),
        ("s3://bucket/calm.json", "unknown scheme 's3'"),
        ("vault://secret/vgs/calm#frag", "fragment"),
    ],
)
def test_bad_urls_name_the_url_and_the_accepted_forms(url: str, why: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:8200")
    with pytest.raises(ValueError) as info:
        TokenReader(url)
    message = str(info.value)
    assert why in message
    assert repr(url) in message
    for form in ("file:///", "vault://<mount>/<path>", "aws-sm://", "aws-ssm:///"):
        assert form in message


def test_vault_url_without_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    monkeypatch.delenv("BAO_ADDR", raising=False)
    with pytest.raises(ValueError, match="no Vault address: set VAULT_ADDR"):
        TokenReader("vault://secret/vgs/calm")
    monkeypatch.setenv("BAO_ADDR", "http://127.0.0.1:8200")
    assert TokenReader("vault://secret/vgs/calm")._cache.source.addr == "http://127.0.0.1:8200"  # type: ignore[attr-defined]


def test_credentials_in_the_url_are_refused_and_not_echoed() -> None:
    with pytest.raises(ValueError) as info:
        TokenReader("vault://secret/vgs/calm?vault_addr=http://x:8200&token=hunter2-secret")
    assert "hunter2" not in str(info.value)
    assert "never put credentials in the URL" in str(info.value)
    with pytest.raises(ValueError) as info:
        TokenReader("aws-sm://vgs/calm?region=eu-west-1&x=hunter2-secret")
    assert "hunter2" not in str(info.value) and "x=***" in str(info.value)


def test_bad_options() -> None:
    for kw in ({"min_reread": -1}, {"expiry_margin": float("nan")}, {"refresh_grace": -0.5}, {"timeout": 0}):
        with pytest.raises(ValueError):
            TokenReader("file:///x/calm.json", **kw)
    with pytest.raises(ValueError, match="must be absolute"):
        TokenReader(Path("relative/calm.json"))
    with pytest.raises(TypeError):
        TokenReader(42)  # type: ignore[arg-type]


def test_imports_stay_lazy(tmp_path: Path) -> None:
    """A file-only consumer never imports boto3 or hvac; vault/aws readers import them only when read."""
    path = tmp_path / "calm.json"
    path.write_text(payload(issued=time.time()).to_json())
    code = f"""
import sys
import syncd.client as c
assert not any(m.split(".")[0] in ("boto3", "botocore", "hvac") for m in sys.modules), "import syncd.client"
r = c.TokenReader("file://{path}")
assert r.get() == "tok-1"
c.TokenReader("vault://secret/vgs/calm", vault_addr="http://127.0.0.1:1")
c.TokenReader("aws-sm://vgs/calm?region=eu-west-1")
c.TokenReader("aws-ssm:///vgs/calm?region=eu-west-1")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore", "hvac"))
assert not loaded, loaded
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# --------------------------------------------------------------------------- file sources


def test_file_fresh_then_cached(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "calm.json"
    path.write_text(payload().to_json())
    r = TokenReader(f"file://{path}", clock=clock)
    assert r.get() == "tok-1"
    info = r.token_info()
    assert info.credential == "calm" and info.scope == "cards:read" and info.expires_at == T0 + 300
    assert "tok-1" not in repr(info) and "tok-1" not in repr(r)
    path.write_text(payload("tok-2").to_json())
    clock.advance(100)
    assert r.get() == "tok-1"  # refresh_after (T0+150) not reached: no read
    assert r.reads == 1


def test_file_stale_but_valid(tmp_path: Path) -> None:
    """refresh_after has passed but the token is valid: it is returned, and re-read at most every min_reread."""
    clock = Clock(T0 + 200)
    path = tmp_path / "calm.json"
    path.write_text(payload().to_json())
    r = TokenReader(f"file://{path}", clock=clock, min_reread=2.0)
    assert r.get() == "tok-1"
    for _ in range(5):
        clock.advance(0.3)
        assert r.get() == "tok-1"
    assert r.reads == 1
    clock.advance(0.6)  # 2.1 s after the read
    assert r.get() == "tok-1"
    assert r.reads == 2
    path.write_text(payload("tok-2", issued=T0 + 202).to_json())
    clock.advance(2.0)
    assert r.get() == "tok-2"
    assert r.reads == 3


def test_file_expired(tmp_path: Path) -> None:
    clock = Clock(T0 + 375.5)
    path = tmp_path / "calm.json"
    path.write_text(payload("very-secret-token").to_json())
    r = TokenReader(f"file://{path}", clock=clock)
    with pytest.raises(TokenExpiredError) as info:
        r.get()
    err = info.value
    assert err.source == f"file://{path}"
    assert err.expired_for == pytest.approx(75.5)
    assert f"file://{path}" in str(err) and "expired 76s ago" in str(err)
    assert "very-secret-token" not in str(err)
    assert isinstance(err, TokenError)


def test_file_missing(tmp_path: Path) -> None:
    r = TokenReader(f"file://{tmp_path}/calm.json")
    with pytest.raises(TokenNotFoundError, match="no such file"):
        r.get()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b'{"credential": "calm", "access_token": "secret-tok"', "not valid JSON"),
        (b"", "empty"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b'{"credential": "calm", "access_token": "secret-tok"}', "missing field"),
        (b"[1, 2]", "expected a JSON object"),
        (json.dumps(slot_index_doc(["k-0", "k-1"])).encode(), "slot index"),
    ],
)
def test_file_corrupt(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "calm.json"
    path.write_bytes(content)
    with pytest.raises(TokenFormatError, match=match) as info:
        TokenReader(f"file://{path}").get()
    assert "secret-tok" not in str(info.value)


def test_file_fingerprint_mismatch_is_corrupt(tmp_path: Path) -> None:
    doc = payload("secret-tok").to_dict()
    doc["access_token"] = "secret-tok-truncat"
    path = tmp_path / "calm.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(TokenFormatError, match="fingerprint") as info:
        TokenReader(f"file://{path}").get()
    assert "secret-tok" not in str(info.value)


def test_file_raw_with_sidecar(tmp_path: Path) -> None:
    clock = Clock()
    p = payload("raw-token-1")
    (tmp_path / "calm.token").write_text(p.render("raw"))
    (tmp_path / ".calm.token.syncd.json").write_text(json.dumps(p.public_dict()))
    r = TokenReader(f"file://{tmp_path}/calm.token", clock=clock)
    assert r.get() == "raw-token-1"
    assert r.token_info().expires_at == p.expires_at


def test_file_raw_without_sidecar(tmp_path: Path) -> None:
    (tmp_path / "calm.token").write_text("raw-token-1")
    with pytest.raises(TokenFormatError, match="sidecar|metadata file") as info:
        TokenReader(f"file://{tmp_path}/calm.token").get()
    assert "raw-token-1" not in str(info.value)


def test_file_raw_torn_read_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """syncd writes the sidecar, then the token: a read in between sees a mismatch and reads again."""
    old, new = payload("raw-old"), payload("raw-new", issued=T0 + 150)
    token_file = tmp_path / "calm.token"
    sidecar = tmp_path / ".calm.token.syncd.json"
    token_file.write_text("raw-old")
    sidecar.write_text(json.dumps(new.public_dict()))  # the writer is between its two renames
    real_read = sc.FileSource._read
    reads = {"n": 0}

    def read(self: sc.FileSource, path: Path) -> str | None:
        reads["n"] += 1
        if path == sidecar and reads["n"] == 2:
            token_file.write_text("raw-new")  # ... and finishes now
        return real_read(self, path)

    monkeypatch.setattr(sc.FileSource, "_read", read)
    r = TokenReader(f"file://{token_file}", clock=Clock(T0 + 151))
    assert r.get() == "raw-new"
    assert old.fingerprint != new.fingerprint


def test_file_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "calm.json"
    path.write_text(payload().to_json())

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)  # root reads any file, so simulate the EACCES
    with pytest.raises(TokenStoreError, match="permission denied reading .* as uid"):
        TokenReader(f"file://{path}").get()


def test_sm_slots_fall_back_to_single_reads_when_batch_is_denied(caplog: pytest.LogCaptureFixture) -> None:
    from botocore.exceptions import ClientError

    docs = {
        "vgs/card": json.dumps(slot_index_doc(["vgs/card-0", "vgs/card-1"])),
        "vgs/card-0": payload("slot-0", issued=T0 - 100).to_json(),
        "vgs/card-1": payload("slot-1", issued=T0 - 10).to_json(),
    }
    calls: list[str] = []

    class StubClient:
        def get_secret_value(self, SecretId: str) -> dict[str, str]:
            calls.append(f"get {SecretId}")
            return {"SecretString": docs[SecretId]}

        def batch_get_secret_value(self, **kwargs: Any) -> dict[str, Any]:
            calls.append("batch")
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "BatchGetSecretValue")

    r = TokenReader("aws-sm://vgs/card?region=eu-west-1", clock=Clock(), min_reread=0)
    r._cache.source._client = StubClient()  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="syncd.client"):
        assert r.get() == "slot-1"
    assert "BatchGetSecretValue is denied" in caplog.text
    assert calls == ["get vgs/card", "batch", "get vgs/card-0", "get vgs/card-1"]
    calls.clear()
    r.refresh()
    assert calls == ["get vgs/card", "get vgs/card-0", "get vgs/card-1"]  # no second batch attempt


# --------------------------------------------------------------------------- freshness rules


def test_rereads_after_refresh_after_plus_grace() -> None:
    clock = Clock()
    src = FakeSource(payload("tok-1"), payload("tok-2", issued=T0 + 150))
    r = reader_with(src, clock)
    assert r.get() == "tok-1"
    # Default grace: 20 % of (expires_at - refresh_after) = 30 s, capped at 10 s.
    clock.now = T0 + 159.9
    assert r.get() == "tok-1"
    assert len(src.calls) == 1
    clock.now = T0 + 160.0
    assert r.get() == "tok-2"
    assert len(src.calls) == 2


def test_grace_scales_for_short_tokens_and_can_be_set() -> None:
    clock = Clock()
    src = FakeSource(payload("tok-1", lifetime=3.0), payload("tok-2", issued=T0 + 1.5, lifetime=3.0))
    r = reader_with(src, clock, min_reread=0.1)
    r.get()
    clock.now = T0 + 1.5 + 0.29  # grace = 0.2 * 1.5 = 0.3
    r.get()
    assert len(src.calls) == 1
    clock.now = T0 + 1.5 + 0.3
    assert r.get() == "tok-2"

    clock = Clock()
    src = FakeSource(payload("tok-1"), payload("tok-2", issued=T0 + 150))
    r = reader_with(src, clock, refresh_grace=0.0)
    r.get()
    clock.now = T0 + 150
    assert r.get() == "tok-2"

    clock = Clock()
    src = FakeSource(payload("tok-1"))
    r = reader_with(src, clock, refresh_grace=1000.0)  # capped at half the window: 75 s
    r.get()
    clock.now = T0 + 224.9
    r.get()
    clock.now = T0 + 225
    r.get()
    assert len(src.calls) == 2


def test_payload_without_refresh_after_rereads_at_half_the_remaining_lifetime() -> None:
    clock = Clock(T0 + 100)  # 200 s left at the read: read again at T0 + 200
    doc = payload().to_dict()
    del doc["refresh_after"]
    src = FakeSource(doc)
    r = reader_with(src, clock)
    r.get()
    clock.now = T0 + 199.9
    r.get()
    assert len(src.calls) == 1
    clock.now = T0 + 200
    r.get()
    assert len(src.calls) == 2


def test_same_token_after_refresh_after_is_reread_at_most_every_min_reread() -> None:
    clock = Clock()
    src = FakeSource(payload("tok-1"))
    r = reader_with(src, clock, min_reread=1.0)
    r.get()
    clock.now = T0 + 160
    for _ in range(50):
        assert r.get() == "tok-1"
        clock.advance(0.1)  # 5 s of calls every 100 ms
    assert len(src.calls) == 1 + 5
    gaps = [b - a for a, b in zip(src.calls[1:], src.calls[2:], strict=False)]
    assert all(g >= 1.0 - 1e-9 for g in gaps)


def test_cached_token_expiring_forces_a_read_even_within_min_reread() -> None:
    clock = Clock()
    src = FakeSource(payload("tok-1", lifetime=3), payload("tok-2", issued=T0 + 2.9, lifetime=3))
    r = reader_with(src, clock, min_reread=5.0)
    r.get()
    clock.now = T0 + 3.0  # expired; the next planned read was T0 + 5
    assert r.get() == "tok-2"


def test_never_returns_an_expired_token_and_does_not_hammer_the_store() -> None:
    clock = Clock()
    src = FakeSource(payload("tok-1", lifetime=3))
    r = reader_with(src, clock, min_reread=1.0)
    r.get()
    clock.now = T0 + 3.0
    for _ in range(10):
        with pytest.raises(TokenExpiredError, match="expired"):
            r.get()
        clock.advance(0.05)
    assert len(src.calls) == 2  # one read at expiry; then the error is replayed for min_reread
    clock.now = T0 + 4.0
    with pytest.raises(TokenExpiredError, match="expired 1.0s ago"):
        r.get()
    assert len(src.calls) == 3


def test_expiry_margin() -> None:
    clock = Clock(T0 + 295)
    src = FakeSource(payload("tok-1"))
    r = reader_with(src, clock, expiry_margin=10.0)
    with pytest.raises(TokenExpiredError, match="within the reader's expiry_margin of 10s"):
        r.get()


def test_store_error_falls_back_to_the_cached_token_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    src = FakeSource(payload("tok-1"), TokenStoreError("fake://calm: connection refused", "fake://calm"))
    r = reader_with(src, clock, min_reread=1.0)
    r.get()
    clock.now = T0 + 160
    with caplog.at_level(logging.WARNING, logger="syncd.client"):
        assert r.get() == "tok-1"
    assert r.read_errors == 1
    record = caplog.records[-1]
    assert record.name == "syncd.client" and record.levelno == logging.WARNING
    assert "connection refused" in record.getMessage() and "using the cached token" in record.getMessage()
    assert "tok-1" not in record.getMessage()
    # Backoff: 1 s, 2 s, 4 s ... between the failing reads.
    for _ in range(40):
        clock.advance(0.25)
        assert r.get() == "tok-1"
    assert [round(b - a, 2) for a, b in zip(src.calls[1:], src.calls[2:], strict=False)] == [1.0, 2.0, 4.0]
    src.results = [payload("tok-2", issued=T0 + 165)]
    clock.advance(8.0)
    assert r.get() == "tok-2"


def test_store_error_without_a_cached_token_raises_and_is_not_retried_at_once() -> None:
    clock = Clock()
    src = FakeSource(TokenStoreError("fake://calm: access denied", "fake://calm"), payload("tok-1"))
    r = reader_with(src, clock, min_reread=1.0)
    with pytest.raises(TokenStoreError, match="access denied"):
        r.get()
    clock.advance(0.5)
    with pytest.raises(TokenStoreError, match="access denied"):
        r.get()
    assert len(src.calls) == 1
    clock.advance(0.5)
    assert r.get() == "tok-1"


def test_store_returning_an_expired_token_keeps_the_valid_cached_one(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    src = FakeSource(payload("tok-1"), payload("tok-0", issued=T0 - 400))
    r = reader_with(src, clock)
    r.get()
    clock.now = T0 + 200
    with caplog.at_level(logging.WARNING, logger="syncd.client"):
        assert r.get() == "tok-1"
    assert "returned an expired token" in caplog.text


def test_missing_then_written() -> None:
    clock = Clock()
    src = FakeSource(TokenNotFoundError("fake://calm: no such file", "fake://calm"), payload("tok-1"))
    r = reader_with(src, clock, min_reread=0.5)
    with pytest.raises(TokenNotFoundError):
        r.get()
    clock.advance(0.5)
    assert r.get() == "tok-1"


def test_unexpected_exceptions_become_store_errors(caplog: pytest.LogCaptureFixture) -> None:
    src = FakeSource(KeyError("boom"))
    r = reader_with(src)
    with (
        caplog.at_level(logging.ERROR, logger="syncd.client"),
        pytest.raises(TokenStoreError, match="unexpected KeyError"),
    ):
        r.get()
    assert "unexpected KeyError" in caplog.text


def test_refresh_forces_a_read_but_joins_a_replacement() -> None:
    clock = Clock()
    src = FakeSource(payload("tok-1"), payload("tok-2", issued=T0 + 10), payload("tok-3", issued=T0 + 20))
    r = reader_with(src, clock)
    r.get()
    assert r.refresh(rejected="tok-1").access_token.get_secret_value() == "tok-2"
    assert len(src.calls) == 2
    # Another caller that still holds tok-1 gets tok-2 without a read.
    assert r.refresh(rejected="tok-1").access_token.get_secret_value() == "tok-2"
    assert len(src.calls) == 2
    # Without a rejected token, refresh always reads.
    assert r.refresh().access_token.get_secret_value() == "tok-3"
    assert len(src.calls) == 3


def test_errors_copy_and_pickle() -> None:
    err = TokenExpiredError("x: expired", "x", expires_at=5.0, expired_for=2.0)
    for clone in (copy.copy(err), pickle.loads(pickle.dumps(err))):
        assert isinstance(clone, TokenExpiredError)
        assert (str(clone), clone.source, clone.expires_at, clone.expired_for) == ("x: expired", "x", 5.0, 2.0)
    assert issubclass(TokenNotFoundError, TokenError) and issubclass(TokenFormatError, TokenError)
    assert issubclass(TokenStoreError, TokenError) and issubclass(TokenExpiredError, TokenError)


def test_authorization_header() -> None:
    assert authorization_header(payload("abc", token_type="bearer")) == "Bearer abc"
    assert authorization_header(payload("abc", token_type="DPoP")) == "DPoP abc"


# --------------------------------------------------------------------------- concurrency


def _run_threads(n: int, target: Callable[[], Any]) -> list[Any]:
    results: list[Any] = [None] * n
    barrier = threading.Barrier(n)

    def work(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return results


def test_threads_cold_start_wait_for_one_read() -> None:
    src = FakeSource(payload("tok-1", issued=time.time()), delay=0.2)
    r = reader_with(src, time.time)
    results = _run_threads(16, r.get)
    assert results == ["tok-1"] * 16
    assert len(src.calls) == 1


def test_threads_use_the_cached_token_while_one_rereads() -> None:
    """While one thread re-reads a slow store, the other 15 return the cached token without waiting.

    The store holds the re-read until the test opens a gate, and the gate opens only after
    15 threads have returned: a thread that waited for the store would never return, so the
    test fails on the queue timeout instead of measuring how long anyone took.
    """
    now = time.time()
    src = FakeSource(payload("tok-1", issued=now - 200), payload("tok-2", issued=now))
    r = reader_with(src, time.time, min_reread=0.0)
    assert r.get() == "tok-1"  # stale but valid: due for a re-read
    src.gate, src.entered = threading.Event(), threading.Event()
    done: queue.Queue[Any] = queue.Queue()
    barrier = threading.Barrier(16)

    def work() -> None:
        barrier.wait()
        try:
            done.put(r.get())
        except Exception as exc:
            done.put(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    early: list[Any] = []
    try:
        for _ in range(15):
            try:
                early.append(done.get(timeout=15))
            except queue.Empty:
                raise AssertionError(f"only {len(early)} of 15 threads returned while the store was held") from None
        assert src.entered.is_set() and not src.gate.is_set()
    finally:
        src.gate.set()
        for t in threads:
            t.join(10)
    assert early == ["tok-1"] * 15, "nobody but the reader waited for the store"
    assert done.get(timeout=1) == "tok-2"  # the reader, once the store answered
    assert len(src.calls) == 2
    assert r.get() == "tok-2"


def test_async_reader_one_read_for_many_tasks_and_loop_not_blocked() -> None:
    async def main() -> None:
        src = FakeSource(payload("tok-1", issued=time.time()))
        src.gate = threading.Event()
        r = async_reader_with(src, time.time)
        readers = asyncio.gather(*(r.get() for _ in range(16)))
        # The store holds the read until this coroutine opens the gate: if the blocking fetch
        # ran on the event loop, this code could not run, and the fetch would time out.
        while not src.entered.is_set():
            await asyncio.sleep(0.01)
        assert not readers.done()
        src.gate.set()
        tokens = await asyncio.wait_for(readers, 30)
        assert tokens == ["tok-1"] * 16
        assert len(src.calls) == 1
        info = await r.token_info()
        assert info.fingerprint == fingerprint("tok-1")

    asyncio.run(main())


def test_async_reader_rules_match_the_sync_one() -> None:
    async def main() -> None:
        clock = Clock()
        src = FakeSource(payload("tok-1"), TokenStoreError("fake://calm: down", "fake://calm"))
        r = async_reader_with(src, clock)
        assert await r.get() == "tok-1"
        clock.now = T0 + 160
        assert await r.get() == "tok-1"  # store error: cached token while valid
        clock.now = T0 + 300
        with pytest.raises(TokenStoreError):
            await r.get()
        src.results = [payload("tok-2", issued=T0 + 299)]
        clock.advance(1.0)
        assert (await r.refresh(rejected="tok-1")).access_token.get_secret_value() == "tok-2"

    asyncio.run(main())


# --------------------------------------------------------------------------- httpx auth


class Tokens:
    """A scripted resource server: accepts only the tokens in ``valid``."""

    def __init__(self, *valid: str) -> None:
        self.valid = set(valid)
        self.seen: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        self.seen.append(auth)
        if auth.startswith("Bearer ") and auth[7:] in self.valid:
            return httpx.Response(200, json={"ok": True, "body": request.content.decode()})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def test_httpx_sets_the_header_and_retries_once_with_a_new_token() -> None:
    src = FakeSource(payload("tok-1", issued=time.time()), payload("tok-2", issued=time.time()))
    r = reader_with(src, time.time)
    server = Tokens("tok-1")
    with httpx.Client(transport=httpx.MockTransport(server), auth=SyncdAuth(r)) as http:
        assert http.get("https://api.example/x").status_code == 200
        assert server.seen == ["Bearer tok-1"]
        server.valid = {"tok-2"}  # tok-1 revoked; the store has tok-2
        resp = http.post("https://api.example/x", content=b"payload-body")
        assert resp.status_code == 200 and resp.json()["body"] == "payload-body"
        assert server.seen[1:] == ["Bearer tok-1", "Bearer tok-2"]
        assert [h.status_code for h in resp.history] == [401]
    assert len(src.calls) == 2


def test_httpx_returns_the_401_when_the_store_has_the_same_token() -> None:
    src = FakeSource(payload("tok-1", issued=time.time()))
    r = reader_with(src, time.time)
    server = Tokens()
    with httpx.Client(transport=httpx.MockTransport(server), auth=SyncdAuth(r)) as http:
        assert http.get("https://api.example/x").status_code == 401
    assert server.seen == ["Bearer tok-1"]
    assert len(src.calls) == 2  # the first read, and one forced re-read


def test_httpx_never_loops_even_if_every_token_is_refused() -> None:
    counter = iter(range(100))
    src = FakeSource(payload("tok-0", issued=time.time()))
    src.fetch = lambda now: Fetched(payload(f"tok-{next(counter)}", issued=time.time()), True)  # type: ignore[method-assign]
    r = reader_with(src, time.time)
    server = Tokens()
    with httpx.Client(transport=httpx.MockTransport(server), auth=SyncdAuth(r)) as http:
        assert http.get("https://api.example/x").status_code == 401
    assert server.seen == ["Bearer tok-0", "Bearer tok-1"]


def test_httpx_401_and_a_failing_reread_returns_the_401(caplog: pytest.LogCaptureFixture) -> None:
    src = FakeSource(payload("tok-1", issued=time.time()))
    r = reader_with(src, time.time, min_reread=0.0)
    server = Tokens()
    src.results = [payload("tok-1", issued=time.time()), TokenStoreError("fake://calm: down", "fake://calm")]
    with httpx.Client(transport=httpx.MockTransport(server), auth=SyncdAuth(r)) as http:
        assert http.get("https://api.example/x").status_code == 401


def test_httpx_async_flow_and_shared_cache() -> None:
    async def main() -> None:
        src = FakeSource(payload("tok-1", issued=time.time()), payload("tok-2", issued=time.time()))
        r = async_reader_with(src, time.time)
        server = Tokens("tok-1")
        auth = SyncdAuth(r)
        async with httpx.AsyncClient(transport=httpx.MockTransport(server), auth=auth) as http:
            assert (await http.get("https://api.example/x")).status_code == 200
            server.valid = {"tok-2"}
            resp = await http.get("https://api.example/x")
            assert resp.status_code == 200
        assert server.seen == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]
        # The sync twin shares the cache: no new read.
        assert auth.reader.get() == "tok-2"
        assert len(src.calls) == 2

    asyncio.run(main())


def test_syncd_auth_from_a_url(tmp_path: Path) -> None:
    path = tmp_path / "calm.json"
    path.write_text(payload("tok-1", issued=time.time()).to_json())
    auth = SyncdAuth(f"file://{path}", min_reread=0.5)
    server = Tokens("tok-1")
    with httpx.Client(transport=httpx.MockTransport(server), auth=auth) as http:
        assert http.get("https://api.example/x").status_code == 200
    assert auth.reader._cache.rules.min_reread == 0.5
    with pytest.raises(TypeError):
        SyncdAuth(auth.reader, min_reread=1.0)


# --------------------------------------------------------------------------- requests auth


class FakeAdapter(requests.adapters.BaseAdapter):
    def __init__(self, server: Tokens) -> None:
        super().__init__()
        self.server = server
        self.bodies: list[bytes] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        body = request.body
        if hasattr(body, "read"):
            body = body.read()  # type: ignore[union-attr]
        elif body is not None and not isinstance(body, bytes | str):
            body = b"".join(body)
        self.bodies.append(body if isinstance(body, bytes) else (body or "").encode())
        got = self.server(httpx.Request("GET", "https://x", headers=dict(request.headers)))
        resp = requests.Response()
        resp.status_code = got.status_code
        resp._content = got.content
        resp.request = request
        resp.url = request.url or ""
        resp.connection = self  # type: ignore[assignment]
        resp.raw = None
        return resp

    def close(self) -> None:
        pass


def _session(auth: SyncdRequestsAuth, server: Tokens) -> tuple[requests.Session, FakeAdapter]:
    s = requests.Session()
    adapter = FakeAdapter(server)
    s.mount("https://", adapter)
    s.auth = auth
    return s, adapter


def test_requests_retry_once_with_a_new_token(tmp_path: Path) -> None:
    src = FakeSource(payload("tok-1", issued=time.time()), payload("tok-2", issued=time.time()))
    r = reader_with(src, time.time)
    server = Tokens("tok-1")
    s, adapter = _session(SyncdRequestsAuth(r), server)
    assert s.get("https://api.example/x").status_code == 200
    server.valid = {"tok-2"}
    seen_by_hook: list[int] = []
    body = tmp_path / "body.bin"
    body.write_bytes(b"file-body")
    with body.open("rb") as fh:
        resp = s.post(
            "https://api.example/x", data=fh, hooks={"response": lambda r, **kw: seen_by_hook.append(r.status_code)}
        )
    assert resp.status_code == 200
    assert [h.status_code for h in resp.history] == [401]
    assert server.seen == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]
    assert adapter.bodies[1:] == [b"file-body", b"file-body"]  # the file body was rewound
    assert seen_by_hook == [200]  # the caller's own hook sees the final response


def test_requests_returns_the_401_after_one_reread_when_the_token_is_the_same() -> None:
    src = FakeSource(payload("tok-1", issued=time.time()))
    r = reader_with(src, time.time)
    server = Tokens()
    s, _ = _session(SyncdRequestsAuth(r), server)
    assert s.get("https://api.example/x").status_code == 401
    assert server.seen == ["Bearer tok-1"]
    assert len(src.calls) == 2


def test_requests_never_loops() -> None:
    counter = iter(range(100))
    src = FakeSource(payload("tok-0", issued=time.time()))
    src.fetch = lambda now: Fetched(payload(f"tok-{next(counter)}", issued=time.time()), True)  # type: ignore[method-assign]
    r = reader_with(src, time.time)
    server = Tokens()
    s, _ = _session(SyncdRequestsAuth(r), server)
    resp = s.get("https://api.example/x")
    assert resp.status_code == 401
    assert server.seen == ["Bearer tok-0", "Bearer tok-1"]


def test_requests_stream_body_is_not_resent() -> None:
    src = FakeSource(payload("tok-1", issued=time.time()), payload("tok-2", issued=time.time()))
    r = reader_with(src, time.time)
    server = Tokens()
    s, adapter = _session(SyncdRequestsAuth(r), server)
    resp = s.post("https://api.example/x", data=(chunk for chunk in [b"a", b"b"]))
    assert resp.status_code == 401
    assert len(server.seen) == 1
