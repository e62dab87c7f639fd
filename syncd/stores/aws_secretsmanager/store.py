"""AWS Secrets Manager store: quota-safe writes, with optional slots for short-lived tokens.

Secrets Manager keeps every version younger than 24 h and removes unlabeled
versions only beyond 100, so a secret rewritten more than ~100 times a day hits
``LimitExceededException`` within hours (a 5-minute token refreshed at half-life
makes 576 versions a day). This store is built around that fact:

* ``plan()`` computes versions/24 h per secret from the credential's real
  cadence and refuses more than 90 (``syncd check`` and start-up exit 2) with
  the three fixes (plan.py).
* ``slots = N | "auto"`` writes round-robin to ``<key>-0 .. <key>-(N-1)``, always
  into the slot holding the oldest token, so the previous token stays readable
  in another slot while the new one is written. ``<key>`` holds the index
  ``{"slots": N, "keys": [...]}``, written only when it changes; consumers read
  it once and then fetch the slots with BatchGetSecretValue, keeping the
  freshest unexpired one (layout.py owns these names and that rule; read.py is
  the consumer's side).
* ``ClientRequestToken`` is derived from the key and the token fingerprint, so a
  retried PutSecretValue never makes a second version.
* A per-secret memory of what is stored (filled by ``read()`` at start-up and by
  every write) skips unchanged writes without a GetSecretValue before each Put:
  one API call per rotation, not two. The index is read again once per round of
  the slots (so one deleted by hand comes back), and ``verify()`` (the read-back
  between rotations) refreshes the memory of every secret it reads.

What a Secrets Manager secret holds (the wire format consumers rely on): the
SecretString is ``payload.render(format)``, the JSON payload or, for
``format = "raw"``, the bare token. A raw value carries no expiry, so ``read()``
cannot judge it and returns None (the engine then writes a fresh token), and
raw cannot be combined with slots (a reader could not tell which slot is freshest).
"""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any

from syncd import logs, policy
from syncd.payload import Format, TokenPayload, holds_token
from syncd.stores._aws.store import client_request_token
from syncd.stores.aws_secretsmanager import plan as planning
from syncd.stores.aws_secretsmanager.calls import SecretsManagerCalls, Seen
from syncd.stores.aws_secretsmanager.layout import (
    MAX_SLOTS,
    NAME_RE,
    freshest,
    index_id,
    index_keys,
    is_slot_index,
    slot_index_doc,
    slot_names,
    stored_doc,
)
from syncd.stores.base import FatalStoreError, Finding, StoreError, WriteResult

if TYPE_CHECKING:
    from syncd.config import AwsSecretsManagerStoreConfig, StoreConfig, TargetConfig

log = logs.get_logger("syncd.stores.aws")

MAX_SECRET_STRING = 65_536


def _options(target: TargetConfig | None) -> tuple[Format, int | str | None]:
    if target is None:
        return "json", None
    return target.format, target.slots


class SecretsManagerStore(SecretsManagerCalls):
    """``type = "aws-secretsmanager"``."""

    def __init__(self, name: str, config: AwsSecretsManagerStoreConfig) -> None:
        super().__init__(name, config)
        self._auto_slots: dict[str, int] = {}
        self._index_writes: dict[str, int] = {}

    @classmethod
    def from_config(cls, name: str, config: StoreConfig) -> SecretsManagerStore:
        from syncd.config import AwsSecretsManagerStoreConfig

        if not isinstance(config, AwsSecretsManagerStoreConfig):
            raise TypeError(f"store {name!r}: expected an aws-secretsmanager store config")
        return cls(name, config)

    # ------------------------------------------------------------------ helpers

    def _validate(self, key: str, slots: int | str | None, fmt: str) -> None:
        if not NAME_RE.fullmatch(key):
            raise FatalStoreError(
                f"store {self.name!r}: {key!r} is not a secret name: use 1-512 letters, digits and /_+=.@- "
                "(the name, not the ARN)",
                code="config",
            )
        if slots is not None and fmt == "raw":
            raise FatalStoreError(
                f'store {self.name!r}: target {key!r} combines format = "raw" with slots: a bare token carries '
                'no expiry, so a reader could not pick the freshest slot; use format = "json" with slots, or '
                "raw without slots (on SSM Parameter Store for a short-lived token)",
                code="config",
            )
        if isinstance(slots, int) and len(f"{key}-{slots - 1}") > 512:
            raise FatalStoreError(f"store {self.name!r}: slot names for {key!r} exceed 512 characters", code="config")

    # ------------------------------------------------------------------ reading

    async def _read_slots(self, key: str, names: list[str]) -> TokenPayload | None:
        """The freshest unexpired token among ``names`` (else the latest expired one, for ``inspect``)."""
        values, errors = await self._fetch([key, *names])
        payloads: list[TokenPayload] = []
        for sid in names:
            text = values.get(sid)
            if text is None:
                continue
            _, payload = self._observe(sid, text, exists=True)
            if payload is not None:
                payloads.append(payload)
        if not payloads:
            if values.get(key) is not None:
                _, own = self._observe(key, values[key], exists=True)
                if own is not None:
                    return own  # written before slots were configured: what a consumer reads today
            if errors:
                raise next(iter(errors.values()))
        return freshest(payloads, time.time(), lambda p: p)

    async def read(self, key: str, *, target: TargetConfig | None = None) -> TokenPayload | None:
        fmt, slots = _options(target)
        self._validate(key, slots, fmt)
        self._ready()
        if slots is not None:
            n = slots if isinstance(slots, int) else self._auto_slots.get(key)
            if n is not None:
                return await self._read_slots(key, slot_names(key, n))
        text = await self._get(key)
        if text is None:
            return None
        doc = stored_doc(text)
        if is_slot_index(doc):
            names = index_keys(doc)
            if names is None:
                return None  # an index listing no usable slot: nothing to adopt, the next write replaces it
            return await self._read_slots(key, names[:MAX_SLOTS])
        if fmt == "raw":
            return None  # a bare token has no expiry to judge; the engine writes a fresh one
        return self._payload(text, f"secret {key}")

    async def verify(self, key: str, payload: TokenPayload, *, target: TargetConfig | None = None) -> str | None:
        """Between rotations (syncd.verify): does ``key`` still serve ``payload`` to consumers?

        Cost: one GetSecretValue per check for a plain secret; with slots one
        BatchGetSecretValue (up to 20 ids: the index and the slots) per check. The read
        refreshes the store's memory of each secret, so the rewrite that follows a loss is
        not skipped as "already written" and a deleted index document is written again.
        """
        fmt, slots = _options(target)
        self._validate(key, slots, fmt)
        self._ready()
        if slots is None:
            text = await self._get(key)
            if text is None:
                return "the secret does not exist any more (or has no current value)"
            seen = self._seen.get(key)
            if seen is None or seen.content != payload.fingerprint:
                return "the secret holds another value than the token syncd wrote"
            return None
        n = slots if isinstance(slots, int) else self._auto_slots.get(key)
        if n is None:
            await self._learn([key])
            n = self._seen[key].slots if key in self._seen else None
            if n is None:
                return f"the slot index document {key} is missing or not an index"
        names = slot_names(key, n)
        _, errors = await self._fetch([key, *names])
        if errors:
            raise next(iter(errors.values()))
        index = self._seen.get(key)
        if index is None or index.content != index_id(slot_index_doc(names)):
            return f"the slot index document {key} is missing or does not list the {n} slots"
        if not any(self._seen.get(s) is not None and self._seen[s].content == payload.fingerprint for s in names):
            return f"no slot of {key} holds the token syncd wrote (a slot secret was deleted?)"
        return None

    # ------------------------------------------------------------------ writing

    async def _create(self, secret_id: str, text: str, token: str) -> str | None:
        cfg = self.config
        kwargs: dict[str, Any] = {
            "Name": secret_id,
            "SecretString": text,
            "ClientRequestToken": token,
            "Description": cfg.description,
        }
        if cfg.kms_key_id:
            kwargs["KmsKeyId"] = cfg.kms_key_id
        if cfg.tags:
            kwargs["Tags"] = [{"Key": k, "Value": v} for k, v in sorted(cfg.tags.items())]
        what = f"create secret {secret_id}"
        resp = await self._call("create_secret", "secretsmanager:CreateSecret", secret_id, what, self.writes, **kwargs)
        if resp.get("ARN"):
            self._arns[secret_id] = resp["ARN"]
        log.info("aws_secret_created", store=self.name, secret=secret_id, kms_key=cfg.kms_key_id, tags=sorted(cfg.tags))
        version: str | None = resp.get("VersionId")
        return version

    async def _put(self, secret_id: str, text: str, token: str) -> str | None:
        resp = await self._call(
            "put_secret_value",
            "secretsmanager:PutSecretValue",
            secret_id,
            f"write secret {secret_id}",
            self.writes,
            SecretId=secret_id,
            SecretString=text,
            ClientRequestToken=token,
        )
        if resp.get("ARN"):
            self._arns[secret_id] = resp["ARN"]
        version: str | None = resp.get("VersionId")
        return version

    async def _store(self, secret_id: str, text: str, ident: str, salt: str = "") -> str | None:
        """Put ``text`` as a new version keyed by (secret, ident[, salt]); create the secret if allowed and missing."""
        token = client_request_token(secret_id, ident, salt)
        seen = self._seen.get(secret_id)
        if seen is not None and seen.exists is False and self.config.create_missing:
            try:
                return await self._create(secret_id, text, token)
            except StoreError as exc:
                if exc.code != "ResourceExistsException":
                    raise  # created meanwhile (or a value-less secret): fall through to a put
        try:
            return await self._put(secret_id, text, token)
        except StoreError as exc:
            if exc.code == "ResourceNotFoundException" and self.config.create_missing:
                return await self._create(secret_id, text, token)
            if exc.code == "ResourceExistsException":
                # This token was written here before with another document (its refresh_after was re-planned
                # after adoption): versions are immutable, so store this one under a content-derived id.
                return await self._put(secret_id, text, client_request_token(secret_id, ident, salt=text))
            raise

    async def _write_secret(
        self, secret_id: str, text: str, payload: TokenPayload, *, has_expiry: bool = True
    ) -> WriteResult:
        if len(text.encode()) > MAX_SECRET_STRING:
            raise FatalStoreError(f"secret {secret_id}: the value exceeds Secrets Manager's 64 KiB", code="size")
        await self._learn([secret_id])
        seen = self._seen.get(secret_id)
        salt = ""
        if seen is not None and seen.content == payload.fingerprint:
            # The same token with a later expiry (a caching IdP) must land, or consumers see it
            # expire early; a bare token ("raw") carries no expiry, so its value is unchanged.
            if not has_expiry or holds_token(seen.content, seen.expires_at, payload):
                return WriteResult(written=False, location=secret_id)
            # The fingerprint's ClientRequestToken names the earlier version: a new one per expiry.
            salt = f"expires_at={payload.expires_at!r}"
        version = await self._store(secret_id, text, payload.fingerprint, salt)
        self._seen[secret_id] = Seen(True, payload.fingerprint, payload.expires_at)
        return WriteResult(written=True, version=version, location=secret_id)

    async def _slot_count(self, key: str, slots: int | str, payload: TokenPayload) -> int:
        """N for this target: configured, planned by ``plan()``, the stored index's, or from this token."""
        if isinstance(slots, int):
            return slots
        n = self._auto_slots.get(key)
        if n is not None:
            return n
        # No plan (``syncd once``, a reload): keep what the daemon decided before, as the index says.
        await self._learn([key])
        seen = self._seen.get(key)
        if seen is not None and seen.slots:
            n, source = min(seen.slots, MAX_SLOTS), "index"
        else:
            wpd = policy.writes_per_day(payload.lifetime, policy.RefreshPolicy()) if payload.lifetime > 0 else 0.0
            n, source = planning.auto_slots(wpd), "token lifetime"
        self._auto_slots[key] = n
        log.info("aws_slots", store=self.name, key=key, slots=n, source=source)
        return n

    async def _ensure_index(self, key: str, names: list[str]) -> bool:
        doc = slot_index_doc(names)
        ident = index_id(doc)
        # Once per round of the slots, look again instead of trusting the memory: an index
        # deleted by hand would otherwise never come back (it is written only when it changes),
        # even with the read-back between rotations turned off. One read per N writes.
        self._index_writes[key] = self._index_writes.get(key, 0) + 1
        if self._index_writes[key] % len(names) == 0:
            self._seen.pop(key, None)
            await self._learn([key])
        seen = self._seen.get(key)
        if seen is not None and seen.content == ident:
            return False
        await self._store(key, json.dumps(doc), ident)
        self._seen[key] = Seen(True, ident, slots=len(names))
        log.info("aws_slot_index", store=self.name, key=key, slots=len(names), keys=names)
        return True

    async def write(self, key: str, payload: TokenPayload, *, target: TargetConfig | None = None) -> WriteResult:
        fmt, slots = _options(target)
        self._validate(key, slots, fmt)
        self._ready()
        if slots is None:
            return await self._write_secret(key, payload.render(fmt), payload, has_expiry=fmt != "raw")
        n = await self._slot_count(key, slots, payload)
        names = slot_names(key, n)
        await self._learn([*names, key])
        holding = [s for s in names if holds_token(self._seen[s].content, self._seen[s].expires_at, payload)]
        if holding:
            result = WriteResult(written=False, location=holding[0])
        else:
            # The slot with the oldest token (missing or unreadable ones first): round-robin in steady
            # state, and never the slot with the newest token, which stays readable meanwhile.
            slot = min(names, key=lambda s: (self._seen[s].expires_at, names.index(s)))
            missing = [s for s in names if self._seen[s].exists is False]
            if slot in missing and not self.config.create_missing:
                raise FatalStoreError(
                    f"slot secret(s) {', '.join(missing)} of target {key} (slots = {n}) do not exist in "
                    f"{self.region}: create them, or set create_missing = true on store {self.name!r} (needs "
                    f"secretsmanager:CreateSecret on {self._arn(key)[: -len(key) - 7]}{key}-*)",
                    code="ResourceNotFoundException",
                )
            result = await self._write_secret(slot, payload.to_json(), payload)
        # After the slot, so the index never points readers at nothing but empty slots.
        await self._ensure_index(key, names)
        return result

    # ------------------------------------------------------------------ plan

    def plan(self, key: str, writes_per_day: float, *, target: TargetConfig | None = None) -> list[Finding]:
        subject = f"{self.name}:{key}"
        fmt, slots = _options(target)
        if self._setup_error is not None:
            return [Finding("error", subject, self._setup_error)]
        try:
            self._validate(key, slots, fmt)
        except StoreError as exc:
            return [Finding("error", subject, exc.message)]
        if slots == "auto" and math.isfinite(writes_per_day) and writes_per_day > 0:
            self._auto_slots[key] = planning.auto_slots(writes_per_day)  # what write() then uses
        return planning.findings(self.name, key, writes_per_day, slots, self.config)
