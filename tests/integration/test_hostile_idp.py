"""Minting under a hostile IdP: dripping, hanging, Retry-After far ahead, caching IdPs.

The real oidc-provider answers promptly and correctly, so it is the healthy IdP
here; the hostile behaviours (an answer dripped a byte at a time, a request
that is never answered, a 429 asking for an hour, a cache handing back the same
token) cannot be produced by it and come from the scriptable FakeIdP. The
stores that receive a caching IdP's later expiry are the real ones: the file
store, OpenBao, and Secrets Manager and SSM on moto_server.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from syncd import logs
from syncd.config import AwsSecretsManagerStoreConfig, AwsSsmStoreConfig, TargetConfig, load_config
from syncd.engine import Engine
from syncd.oauth import MintRequest, TransientMintError, build_http_client, mint
from syncd.payload import TokenPayload
from syncd.stores import _aws
from syncd.stores.aws_secretsmanager import SecretsManagerStore
from syncd.stores.aws_ssm import SsmStore
from syncd.stores.file import FileStore
from syncd.stores.vault import VaultStore
from tests.peers.fake_idp import FakeIdP, cached, delay, drip, hang, ok, retry_after
from tests.peers.servers import OidcServer, OpenBaoServer

SECRET = "hostile-secret-0123456789"


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTILE_SECRET", SECRET)


@pytest.fixture
def events() -> Iterator[Callable[[str], list[dict[str, Any]]]]:
    """The engine's JSON log events of this test."""
    buf = io.StringIO()
    logs.configure("info", "json", stream=buf)

    def parsed(name: str) -> list[dict[str, Any]]:
        out = [json.loads(line) for line in buf.getvalue().splitlines() if line.startswith("{")]
        return [e for e in out if e.get("event") == name]

    yield parsed
    logs.configure("info", "json", stream=sys.__stderr__)


def cred(
    name: str,
    token_url: str,
    key: str,
    *,
    client_id: str | None = None,
    secret_env: str = "HOSTILE_SECRET",
    store: str = "local",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "name": name,
        "token_url": token_url,
        "client_id": client_id or name,
        "client_secret": {"env": secret_env},
        "targets": [{"store": store, "key": key}],
        **extra,
    }


def engine_config(
    out: Path,
    credentials: list[dict[str, Any]],
    *,
    daemon: dict[str, Any] | None = None,
    stores: dict[str, Any] | None = None,
    **defaults: Any,
):
    d = {
        "min_remaining": 1.0,
        "retry_min": 0.2,
        "retry_max": 1.0,
        "fatal_retry": 1.5,
        "token_lifetime": 3.0,
        "jitter": 0.0,
    }
    d.update(defaults)
    return load_config(
        data={
            "daemon": {"listen": "127.0.0.1:0", "drain_timeout": 0.5, **(daemon or {})},
            "defaults": d,
            "stores": {"local": {"type": "file", "directory": str(out)}, **(stores or {})},
            "credentials": credentials,
        }
    )


async def until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``predicate`` on the running loop (the engine keeps working meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def mint_counts(engine: Engine, credential: str) -> dict[str, float]:
    samples = engine.metrics.mints.collect()[0].samples
    return {
        s.labels["outcome"]: s.value
        for s in samples
        if s.name.endswith("_total") and s.labels["credential"] == credential
    }


# --------------------------------------------------------------------------- 1. total deadline


async def test_dripping_idp_is_cut_off_at_mint_timeout(fake_idp: FakeIdP) -> None:
    """Each byte arrives within the read timeout, so only the total deadline ends the mint (FakeIdP: drip)."""
    fake_idp.clients = {"calm": SECRET}
    fake_idp.default = drip(0.1, ok(ttl=300))
    client = build_http_client(timeout=5.0, connect_timeout=2.0)
    req = MintRequest(
        credential="calm",
        token_url=fake_idp.token_url,
        client_id="calm",
        client_secret=SecretStr(SECRET),
        mint_timeout=1.0,
    )
    try:
        with pytest.raises(TransientMintError) as info:
            await mint(client, req)
    finally:
        await client.aclose()
    message = str(info.value)
    assert "did not answer within mint_timeout=1s" in message
    assert SECRET not in message and "calm" in message
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert fake_idp.count == 1


# --------------------------------------------------------------------------- 2. no starvation


async def test_hanging_idp_does_not_starve_a_healthy_one(
    fake_idp: FakeIdP, oidc_server: OidcServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six credentials on an IdP that never answers (FakeIdP: hang) hold every slot of their endpoint;
    the credential on the real oidc-provider keeps rotating, and /status shows the hung mints in flight."""
    fake_idp.default = hang()
    hanging = [cred(f"stuck{i}", fake_idp.token_url, f"stuck{i}.json", token_lifetime="1h") for i in range(6)]
    healthy = cred("calm", oidc_server.token_url, "calm.json", secret_env="HOSTILE_OIDC_SECRET")
    cfg = engine_config(
        tmp_path,
        [*hanging, healthy],
        daemon={"max_concurrent_mints": 2, "mint_timeout": "60s", "http_timeout": "60s"},
    )
    monkeypatch.setenv("HOSTILE_OIDC_SECRET", oidc_server.client("calm").client_secret)
    engine = Engine(cfg)
    await engine.start()
    try:
        await until(lambda: fake_idp.count >= 2, what="the hanging IdP to hold both slots")
        before = engine.credentials["calm"].mints
        await until(lambda: engine.credentials["calm"].mints >= before + 3, what="three rotations of calm")
        status = {c["name"]: c for c in engine.status()["credentials"]}
        assert status["calm"]["healthy"] and status["calm"]["last_error"] is None
        for i in range(6):
            assert status[f"stuck{i}"]["minting_since"] is not None, f"stuck{i} shows no mint in flight"
        assert fake_idp.count == 2, "max_concurrent_mints bounds the requests to the hanging endpoint"
    finally:
        await engine.stop(drain_timeout=0.1)


async def test_waiting_mints_get_the_slot_most_urgent_first(fake_idp: FakeIdP, tmp_path: Path) -> None:
    """Five credentials due at once share one mint slot (max_concurrent_mints = 1) while the IdP takes a
    second over the first answer (FakeIdP: delay; a real IdP cannot be made slow on cue). The others
    wait and are admitted by urgency: the one with nothing stored, then by the stored token's deadline,
    not in the order they came due."""
    now = time.time()
    stored = {"soon": 60.0, "later": 200.0, "latest": 400.0, "spare": 500.0}  # seconds left
    for name, left in stored.items():
        token = TokenPayload(
            credential=name,
            access_token=SecretStr(f"stored-{name}-0123456789abcdef"),
            issued_at=now + left - 600.0,
            expires_at=now + left,
            refresh_after=now + left - 300.0,
        )
        (tmp_path / f"{name}.json").write_text(token.to_json())
    fake_idp.script([delay(1.0, ok(ttl=600))])
    fake_idp.default = ok(ttl=600)
    # Declared least urgent first, so arrival order and urgency order differ.
    names = ["spare", "latest", "later", "soon", "blank"]
    cfg = engine_config(
        tmp_path,
        [cred(n, fake_idp.token_url, f"{n}.json") for n in names],
        daemon={"max_concurrent_mints": 1, "mint_timeout": "30s"},
        token_lifetime=600.0,
        refresh_at=0.1,  # every stored token is past its refresh time: all five mint at start
    )
    engine = Engine(cfg)
    await engine.start()
    try:
        await until(lambda: all(engine.credentials[n].mints >= 1 for n in names), what="a mint for each")
    finally:
        await engine.stop(drain_timeout=0.1)
    order = [r.client_id for r in fake_idp.requests[:5]]
    first, rest = order[0], order[1:]
    urgent_first = [n for n in ["blank", "soon", "later", "latest", "spare"] if n != first]
    assert rest == urgent_first, f"admitted {order} (the first took the free slot)"


async def test_a_mint_holding_a_valid_token_waits_for_its_slot_past_mint_timeout(
    fake_idp: FakeIdP, tmp_path: Path
) -> None:
    """Three credentials due at once with valid tokens share one slot; each answer takes 1 s (FakeIdP:
    delay; a real IdP cannot be made slow on cue) and mint_timeout is 1.5 s. The third waits ~2 s for its
    slot: with a valid token it waits its turn (its deadline is minutes away) instead of failing and
    coming back; the waiting gauge and /status (waiting_for_slot_since) show the queue while it lasts."""
    now = time.time()
    names = ["one", "two", "three"]
    for name in names:
        token = TokenPayload(
            credential=name,
            access_token=SecretStr(f"stored-{name}-0123456789abcdef"),
            issued_at=now - 300.0,
            expires_at=now + 300.0,
            refresh_after=now,
        )
        (tmp_path / f"{name}.json").write_text(token.to_json())
    fake_idp.default = delay(1.0, ok(ttl=600))
    cfg = engine_config(
        tmp_path,
        [cred(n, fake_idp.token_url, f"{n}.json") for n in names],
        daemon={"max_concurrent_mints": 1, "mint_timeout": "1.5s"},
        token_lifetime=600.0,
        refresh_at=0.1,
    )
    engine = Engine(cfg)
    waiting_seen: list[float] = []
    shown_waiting: set[str] = set()

    def waiting() -> float:
        samples = engine.metrics.mints_waiting.collect()[0].samples
        return sum(s.value for s in samples)

    await engine.start()
    try:

        def minted() -> bool:
            waiting_seen.append(waiting())
            shown_waiting.update(c["name"] for c in engine.status()["credentials"] if c["waiting_for_slot_since"])
            return all(engine.credentials[n].mints >= 1 for n in names)

        await until(minted, what="a mint for each")
        assert waiting() == 0
        assert not [c for c in engine.status()["credentials"] if c["waiting_for_slot_since"]]
    finally:
        await engine.stop(drain_timeout=0.1)
    for n in names:
        counted = {k: v for k, v in mint_counts(engine, n).items() if v}
        assert counted == {"ok": 1.0}, f"{n}: {counted}"
    assert max(waiting_seen) >= 1, "the gauge never showed a waiting mint"
    assert shown_waiting, "/status never showed a mint waiting for its slot"
    times = sorted(r.time for r in fake_idp.requests[:3])
    assert times[2] - times[0] > 1.5, "the last request waited less than mint_timeout: nothing was tested"


async def test_hung_mints_fail_as_transient_while_the_idp_hangs(fake_idp: FakeIdP, tmp_path: Path) -> None:
    """With the IdP still hanging (FakeIdP: hang), every credential on it, queued ones included, reports the
    mint_timeout error on /status and in the transient mint counter as soon as its deadline passes."""
    fake_idp.default = hang()
    creds = [cred(f"stuck{i}", fake_idp.token_url, f"stuck{i}.json", token_lifetime="1h") for i in range(3)]
    cfg = engine_config(
        tmp_path, creds, daemon={"max_concurrent_mints": 1, "mint_timeout": "1s", "http_timeout": "60s"}
    )
    engine = Engine(cfg)
    await engine.start()
    try:

        def all_failed() -> bool:
            return all(
                (c["last_error"] or {}).get("kind") == "transient" and "mint_timeout=1s" in c["last_error"]["message"]
                for c in engine.status()["credentials"]
            )

        await until(all_failed, what="every hung credential to show the mint_timeout error")
        for i in range(3):
            assert mint_counts(engine, f"stuck{i}").get("transient", 0) >= 1
            assert engine.credentials[f"stuck{i}"].state == "retrying"
        assert not engine.not_ready() == []  # nothing was ever written
    finally:
        await engine.stop(drain_timeout=0.1)


# --------------------------------------------------------------------------- 3. Retry-After


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_retry_after_an_hour_is_capped_by_the_held_token(
    fake_idp: FakeIdP, tmp_path: Path, events: Callable[[str], list[dict[str, Any]]], form: str
) -> None:
    """A 429 asking for an hour (FakeIdP: retry_after) is retried before the held token's refresh deadline,
    and the cap is logged with what was asked and what was used."""
    value: str | datetime = "3600" if form == "seconds" else datetime.now(UTC) + timedelta(hours=1)
    fake_idp.script([ok(ttl=8), retry_after(429, value)])
    fake_idp.default = ok(ttl=8)
    cfg = engine_config(
        tmp_path,
        [cred("calm", fake_idp.token_url, "calm.json")],
        min_remaining=3.0,
        token_lifetime=8.0,
        refresh_at=0.25,
        fatal_retry=3600.0,
        retry_max=3600.0,
    )
    engine = Engine(cfg)
    await engine.start()
    try:
        await until(lambda: fake_idp.count >= 3, timeout=20, what="the retry after the 429")
    finally:
        await engine.stop(drain_timeout=0.1)
    first = fake_idp.requests[0].time
    retried = fake_idp.requests[2].time
    # the first token lives 8 s from its request; its refresh deadline is 3 s before that
    assert retried < first + 8.0, "the retry came after the held token expired"
    capped = events("retry_after_capped")
    assert len(capped) == 1
    assert capped[0]["asked"] == pytest.approx(3600, abs=5) and capped[0]["used"] < 8
    assert capped[0]["credential"] == "calm"


# --------------------------------------------------------------------------- 4. caching IdP


async def test_same_token_with_later_expiry_reaches_every_target(
    fake_idp: FakeIdP, openbao: OpenBaoServer, tmp_path: Path
) -> None:
    """A caching IdP (FakeIdP: the same token, then a later expiry) gets the new expiry written to the file
    store and to OpenBao KV v2, instead of being skipped as a duplicate."""
    token = "cached-token-0123456789abcdef"
    fake_idp.script([ok(ttl=4, token=token)])
    fake_idp.default = ok(ttl=120, token=token)
    token_file = tmp_path / "bao.token"
    token_file.write_text(openbao.root_token)
    token_file.chmod(0o600)
    bao = {
        "type": "vault",
        "url": openbao.url,
        "mount": "secret",
        "auth": {"method": "token", "token_file": str(token_file)},
    }
    credential = cred("calm", fake_idp.token_url, "calm.json", token_lifetime="2m")
    credential["targets"].append({"store": "bao", "key": "syncd/calm"})
    out = tmp_path / "out"
    out.mkdir()
    cfg = engine_config(out, [credential], stores={"bao": bao}, min_remaining=1.0)
    engine = Engine(cfg)
    await engine.start()
    try:
        await until(lambda: fake_idp.count >= 2, what="the second mint")
        ts = engine.credentials["calm"].targets
        await until(lambda: all((t.stored_expires_at or 0) > time.time() + 60 for t in ts), what="new expiry")
    finally:
        await engine.stop(drain_timeout=1.0)
    second_expiry = engine.credentials["calm"].token.expires_at
    file_payload = await FileStore.from_config("x", cfg.stores["local"]).read("calm.json")
    vault = VaultStore("check", cfg.stores["bao"])
    try:
        bao_payload = await vault.read("syncd/calm")
    finally:
        await vault.aclose()
    for stored in (file_payload, bao_payload):
        assert stored is not None
        assert stored.access_token.get_secret_value() == token
        assert stored.expires_at == pytest.approx(second_expiry, abs=0.01)


async def test_caching_idp_near_expiry_backs_off_and_reports(
    fake_idp: FakeIdP, tmp_path: Path, events: Callable[[str], list[dict[str, Any]]]
) -> None:
    """A caching IdP (FakeIdP: cached) hands back its token with less than min_remaining left: the engine
    reports it and backs off (no mints closer than retry_min) instead of re-minting every min_interval."""
    fake_idp.default = cached(ttl=6.0)
    cfg = engine_config(
        tmp_path,
        [cred("calm", fake_idp.token_url, "calm.json")],
        min_remaining=4.0,
        token_lifetime=6.0,
        refresh_at=0.5,
        min_interval=0.05,
        retry_min=0.5,
        retry_max=4.0,
    )
    engine = Engine(cfg)
    await engine.start()
    try:
        await until(lambda: events("mint_short"), what="a short token to be reported")
        st = engine.credentials["calm"]
        assert st.last_error is not None and st.last_error["kind"] == "transient"
        assert "less than min_remaining=4s" in st.last_error["message"]
        assert mint_counts(engine, "calm").get("transient", 0) >= 1
        await until(
            lambda: len(fake_idp.tokens) > 1 and fake_idp.tokens[-1] != fake_idp.tokens[0],
            timeout=20,
            what="the cache to hand out a new token",
        )
    finally:
        await engine.stop(drain_timeout=0.5)
    times = [r.time for r in fake_idp.requests]
    shorts = {round(e["expires_in"], 3) for e in events("mint_short")}
    assert shorts, "no short token was seen"
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # a short token is retried no sooner than retry_min; min_interval (0.05 s) alone would allow a hot loop
    assert min(gaps) >= 0.5 * 0.95, f"mints {min(gaps):.3f}s apart"
    stored = await FileStore.from_config("x", cfg.stores["local"]).read("calm.json")
    assert stored is not None and stored.access_token.get_secret_value() in fake_idp.tokens


@pytest.mark.usefixtures("aws_env")
@pytest.mark.parametrize("slots", [None, 2])
async def test_secrets_manager_writes_the_same_token_with_a_later_expiry(moto_server: Any, slots: int | None) -> None:
    """Secrets Manager (moto) does not skip the same token when its expiry moved, and a repeat is still idempotent."""
    _aws.reset_limiters()
    key = f"hostile/{uuid.uuid4().hex[:8]}/calm"
    sm = boto3.client("secretsmanager", endpoint_url=moto_server.endpoint_url, region_name="eu-west-1")
    names = [key] if slots is None else [f"{key}-{i}" for i in range(slots)]
    for name in names:
        sm.create_secret(Name=name, SecretString="placeholder")
    if slots is not None:
        sm.create_secret(Name=key, SecretString="placeholder")
    cfg = AwsSecretsManagerStoreConfig(
        type="aws-secretsmanager", endpoint_url=moto_server.endpoint_url, region="eu-west-1"
    )
    store = SecretsManagerStore("aws", cfg)
    tgt = TargetConfig(store="aws", key=key, slots=slots)
    now = time.time()

    def tok(life: float) -> TokenPayload:
        return TokenPayload(
            credential="calm",
            access_token=SecretStr("cached-token-0123456789abcdef"),
            issued_at=now,
            expires_at=now + life,
            refresh_after=now + life / 2,
        )

    try:
        first = await store.write(key, tok(4.0), target=tgt)
        later = await store.write(key, tok(120.0), target=tgt)
        again = await store.write(key, tok(120.0), target=tgt)
        stored = await store.read(key, target=tgt)
        fresh = SecretsManagerStore("aws2", cfg)  # a restarted daemon: learns from the secret itself
        try:
            after_restart = await fresh.write(key, tok(120.0), target=tgt)
        finally:
            await fresh.aclose()
    finally:
        await store.aclose()
        _aws.reset_limiters()
    assert first.written and later.written, "the later expiry of the same token was skipped"
    assert not again.written and not after_restart.written
    assert stored is not None and stored.expires_at == pytest.approx(now + 120.0, abs=0.01)


@pytest.mark.usefixtures("aws_env")
async def test_ssm_writes_the_same_token_with_a_later_expiry(moto_server: Any) -> None:
    """SSM (moto) does not skip the same token when its expiry moved; a bare ("raw") token is not rewritten."""
    _aws.reset_limiters()
    key = f"/hostile/{uuid.uuid4().hex[:8]}/calm"
    store = SsmStore(
        "ssm", AwsSsmStoreConfig(type="aws-ssm", endpoint_url=moto_server.endpoint_url, region="eu-west-1")
    )
    now = time.time()

    def tok(life: float) -> TokenPayload:
        return TokenPayload(
            credential="calm",
            access_token=SecretStr("cached-token-0123456789abcdef"),
            issued_at=now,
            expires_at=now + life,
            refresh_after=now + life / 2,
        )

    try:
        json_target, raw_target = (
            TargetConfig(store="ssm", key=key),
            TargetConfig(store="ssm", key=key + "-raw", format="raw"),
        )
        assert (await store.write(key, tok(4.0), target=json_target)).written
        assert (await store.write(key, tok(120.0), target=json_target)).written, "later expiry skipped"
        assert not (await store.write(key, tok(120.0), target=json_target)).written
        stored = await store.read(key, target=json_target)
        assert (await store.write(key + "-raw", tok(4.0), target=raw_target)).written
        assert not (await store.write(key + "-raw", tok(120.0), target=raw_target)).written
    finally:
        await store.aclose()
        _aws.reset_limiters()
    assert stored is not None and stored.expires_at == pytest.approx(now + 120.0, abs=0.01)


async def test_short_token_is_still_written_when_it_is_the_freshest(
    fake_idp: FakeIdP, tmp_path: Path, events: Callable[[str], list[dict[str, Any]]]
) -> None:
    """A token with less than min_remaining left (FakeIdP: a 2 s token where 60 s are expected) is reported
    and backed off from, but written: it is better than the nothing the target holds."""
    fake_idp.script([ok(ttl=2)])
    fake_idp.default = ok(ttl=60)
    cfg = engine_config(
        tmp_path,
        [cred("calm", fake_idp.token_url, "calm.json")],
        min_remaining=4.0,
        token_lifetime=60.0,
        min_interval=30.0,  # the backoff floor: no second mint while the test looks
    )
    engine = Engine(cfg)
    await engine.start()
    try:
        await until(lambda: events("mint_short"), what="the short token to be reported")
        short = events("mint_short")[0]
        await until(lambda: (tmp_path / "calm.json").exists(), what="the short token to be written")
        stored = await FileStore.from_config("x", cfg.stores["local"]).read("calm.json")
        status = engine.status()["credentials"][0]
    finally:
        await engine.stop(drain_timeout=0.5)
    assert short["verdict"] == "short" and short["used"] is True
    assert stored is not None and stored.access_token.get_secret_value() == fake_idp.tokens[0]
    assert status["last_error"]["class"] == "ShortLivedToken" and status["last_error"]["kind"] == "transient"
