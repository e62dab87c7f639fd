"""One mint for one credential: a slot at the token endpoint, the exchange, the payload.

A mint first waits for one of its token endpoint's ``max_concurrent_mints`` slots, most
urgent first (`admission.MintSlots`), for at most `decide.slot_patience`: ``mint_timeout``
with no valid token (a mint queued behind stuck ones fails, and /status shows the trouble),
longer while a valid token can wait. The exchange then has ``mint_timeout`` (see
`decide.mint_timeout`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable

import httpx

from syncd import logs, policy
from syncd.client_auth import assertion_for, tls_files_version
from syncd.config import Config, CredentialConfig
from syncd.engine import decide
from syncd.engine.admission import MintSlots
from syncd.engine.state import CredentialState
from syncd.metrics import Metrics
from syncd.oauth import MintRequest, Token, TransientMintError, build_http_client, endpoint_origin, mint
from syncd.payload import TokenPayload


class HttpClients:
    """One pooled client per token endpoint origin and TLS setting (or one shared client given).

    Per origin because httpx's connection limit is per client: one client shared by
    every IdP would let connections stuck on a hanging IdP fill the pool for all.
    """

    def __init__(self, settings: Callable[[], Config], shared: httpx.AsyncClient | None = None) -> None:
        self._settings = settings
        self._shared = shared  # the caller's: never closed here
        self._pool: dict[tuple[object, ...], httpx.AsyncClient] = {}

    def for_credential(self, cfg: CredentialConfig) -> httpx.AsyncClient:
        if self._shared is not None:
            return self._shared
        # The files' versions are part of the key: a rotated certificate (cert-manager) gets a fresh
        # pool; the old one is closed at stop (rotations are rare, in-flight mints may still use it).
        tls_version = tls_files_version(cfg.client_cert, cfg.client_key, cfg.ca_bundle)
        key = (endpoint_origin(cfg.token_url), cfg.ca_bundle, cfg.client_cert, cfg.client_key, tls_version)
        client = self._pool.get(key)
        if client is None:
            d = self._settings().daemon
            client = build_http_client(
                timeout=d.http_timeout,
                connect_timeout=d.connect_timeout,
                ca_bundle=str(cfg.ca_bundle) if cfg.ca_bundle else None,
                client_cert=str(cfg.client_cert) if cfg.client_cert else None,
                client_key=str(cfg.client_key) if cfg.client_key else None,
                max_connections=d.max_concurrent_mints,
            )
            self._pool[key] = client
        return client

    def owned(self) -> list[httpx.AsyncClient]:
        """The clients built here, for closing at stop."""
        return list(self._pool.values())


class Minter:
    """Mints tokens for every credential, bounding the mints in flight per token endpoint origin."""

    def __init__(
        self,
        *,
        settings: Callable[[], Config],
        http_client: Callable[[CredentialConfig], httpx.AsyncClient],
        metrics: Metrics,
        clock: Callable[[], float],
        rng: random.Random,
    ) -> None:
        self._settings = settings  # read at each mint: a reload may change the bounds
        self._http_client = http_client
        self.metrics = metrics
        self.clock = clock
        self.rng = rng
        self._slots: dict[str, MintSlots] = {}

    def slots(self, token_url: str) -> MintSlots:
        """The mint slots of one token endpoint origin (``max_concurrent_mints``, most urgent first).

        Created on first use; a reload that changes the bound changes it in place, so the
        mints already in flight still count against it.
        """
        origin = endpoint_origin(token_url)
        limit = self._settings().daemon.max_concurrent_mints
        slots = self._slots.get(origin)
        if slots is None:
            slots = self._slots[origin] = MintSlots(limit, self.metrics.mints_waiting.labels(endpoint=origin).set)
        elif slots.limit != limit:
            slots.set_limit(limit)
        return slots

    async def mint(self, st: CredentialState) -> TokenPayload:
        """A new token for ``st``, with our jittered refresh time; raises what the mint raised."""
        cfg = st.cfg
        daemon = self._settings().daemon
        client_id, secret, scopes, vault_id = cfg.resolve_identity()
        logs.register_secret(secret.get_secret_value())
        st.vault_id = vault_id
        req = MintRequest(
            credential=cfg.name,
            token_url=cfg.token_url,
            client_id=client_id,
            client_secret=secret,
            auth_method=cfg.auth_method,
            scopes=scopes,
            extra_params=dict(cfg.extra_params),
            lifetime_fallback=st.lifetime_fallback,
            mint_timeout=decide.mint_timeout(daemon.mint_timeout, st.token, self.clock()),
        )
        assert req.mint_timeout is not None
        loop = asyncio.get_running_loop()
        now = self.clock()
        patience = decide.slot_patience(req.mint_timeout, st.token, now, st.policy)
        sem = self.slots(cfg.token_url)
        # Shown on /status: a mint holding a valid token may wait past mint_timeout (slot_patience),
        # which must not read as a hung request.
        st.slot_wait_since = now
        try:
            async with asyncio.timeout(patience):
                await sem.acquire(decide.mint_urgency(st.token, now, st.policy))
        except TimeoutError:
            queued = True
        else:
            queued = False
        finally:
            st.slot_wait_since = None
        if queued:
            raise TransientMintError(
                f"credential {cfg.name!r}: no mint slot for {endpoint_origin(cfg.token_url)} came free in "
                f"{patience:g}s (mint_timeout={req.mint_timeout:g}s, or while a valid token is held until its refresh "
                f"deadline): all {sem.limit} (max_concurrent_mints) are held by mints the IdP has not answered "
                f"yet, {sem.waiting} more waiting (more urgent ones first); will retry with backoff",
                credential=cfg.name,
            )
        deadline = loop.time() + req.mint_timeout  # the exchange's own bound, from the slot on
        # Signed once a slot is free: a queued mint must not send an assertion that aged while waiting.
        try:
            assertion = assertion_for(cfg, client_id, secret, self.clock())
        except BaseException:
            sem.release()
            raise
        if assertion is not None:
            logs.register_secret(assertion.get_secret_value())
            req = dataclasses.replace(req, client_assertion=assertion)
        started = time.perf_counter()
        try:
            token = await mint(self._http_client(cfg), req, clock=self.clock, deadline=deadline)
        finally:
            sem.release()
            self.metrics.mint_duration.observe(time.perf_counter() - started)
            if assertion is not None:
                # Registered only while it is in flight: an assertion is a new value every mint (or every
                # kubelet rotation), so keeping each one would grow the scan set without bound; the mint's
                # own redactor covers an IdP echoing it back.
                logs.forget_secret(assertion.get_secret_value())
        logs.register_secret(token.access_token.get_secret_value())
        return self._payload(st, token)

    def _payload(self, st: CredentialState, token: Token) -> TokenPayload:
        now = self.clock()
        # What the IdP really issues bounds what a foreign payload may claim (policy.implausible).
        st.seen_lifetime = max(st.seen_lifetime or 0.0, token.expires_at - token.issued_at)
        refresh = policy.refresh_time(token.issued_at, token.expires_at, now, st.policy, self.rng.random())
        return TokenPayload(
            credential=st.name,
            access_token=token.access_token,
            issued_at=token.issued_at,
            expires_at=token.expires_at,
            refresh_after=refresh,
            token_type=token.token_type,
            scope=token.scope,
            fingerprint=token.fingerprint,
        )
