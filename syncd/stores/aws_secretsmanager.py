"""AWS Secrets Manager store: quota-safe writes, with optional slots for short-lived tokens.

Secrets Manager keeps every version younger than 24 h and removes unlabeled
versions only beyond 100, so a secret rewritten more than ~100 times a day hits
``LimitExceededException`` within hours (a 5-minute token refreshed at half-life
makes 576 versions a day). This store is built around that fact:

* ``plan()`` computes versions/24 h per secret from the credential's real
  cadence (shortest jittered interval plus a retry allowance) and refuses more
  than 90 (``syncd check`` and start-up exit 2) with the three fixes.
* ``slots = N | "auto"`` writes round-robin to ``<key>-0 .. <key>-(N-1)``, always
  into the slot holding the oldest token, so the previous token stays readable
  in another slot while the new one is written. ``<key>`` holds the index
  ``{"slots": N, "keys": [...]}``, written only when it changes; consumers read
  it once and then fetch the slots with BatchGetSecretValue, keeping the
  freshest unexpired one.
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
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from syncd import logs, policy
from syncd.payload import Format, PayloadError, TokenPayload, fingerprint, holds_token, is_slot_index, slot_index_doc
from syncd.stores._aws import (
    AwsStore,
    TokenBucket,
    classify,
    client_request_token,
    content_id,
    error_info,
    install_retry_rules,
    shared_limiter,
)
from syncd.stores.base import FatalStoreError, Finding, StoreError, WriteResult

if TYPE_CHECKING:
    from syncd.config import AwsSecretsManagerStoreConfig, StoreConfig, TargetConfig

log = logs.get_logger("syncd.stores.aws")

#: syncd's own ceiling of versions per secret per 24 h (AWS: ~100 kept, all younger than 24 h).
MAX_VERSIONS_PER_DAY = 90.0
#: The target option's range (config.TargetConfig) and BatchGetSecretValue's ids per call.
MAX_SLOTS = 50
BATCH_IDS = 20
#: BatchGetSecretValue: 100 requests/s per region; syncd takes half and reads only at start-up.
BATCH_READS_PER_SECOND = 50.0
MAX_SECRET_STRING = 65_536
_NAME_RE = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
_SUFFIX_LIKE_RE = re.compile(r"-[A-Za-z0-9]{6}$")

# Prices as published by AWS (us-east-1, checked 2026-11); `syncd check` shows them as an estimate only.
PRICE_PER_SECRET_MONTH = 0.40
PRICE_PER_10K_CALLS = 0.05

QUOTA_EXPLANATION = (
    "Secrets Manager keeps every version younger than 24 h and removes unlabeled versions only beyond 100, "
    "so more than ~100 writes a day to one secret end in LimitExceededException within hours; AWS advises at "
    "most one PutSecretValue per 10 minutes per secret. syncd refuses plans above "
    f"{MAX_VERSIONS_PER_DAY:.0f} versions/24 h per secret"
)


def slot_names(key: str, n: int) -> list[str]:
    """``<key>-0 .. <key>-(n-1)``: the slot secrets of a target."""
    return [f"{key}-{i}" for i in range(n)]


def slots_for(writes_per_day: float, max_per_day: float = MAX_VERSIONS_PER_DAY) -> int:
    """The smallest N with ``writes_per_day / N <= max_per_day`` (``policy.slots_needed`` from a rate)."""
    if not math.isfinite(writes_per_day) or writes_per_day <= 0:
        return 1
    n = max(1, math.ceil(writes_per_day / max_per_day))
    while writes_per_day / n > max_per_day:
        n += 1
    while n > 1 and writes_per_day / (n - 1) <= max_per_day:
        n -= 1
    return n


def _canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def _options(target: TargetConfig | None) -> tuple[Format, int | str | None]:
    if target is None:
        return "json", None
    return target.format, target.slots


@dataclass(frozen=True)
class _Seen:
    """What syncd last saw (or wrote) in one secret; absent from the map means unknown."""

    exists: bool | None  # False: no secret / no current value; None: could not be read
    content: str | None = None  # token fingerprint, or content_id() of any other document
    expires_at: float = -math.inf  # of the token it holds; -inf for anything else
    slots: int | None = None  # N, when it holds a slot index document


class SecretsManagerStore(AwsStore):
    """``type = "aws-secretsmanager"``."""

    SERVICE = "secretsmanager"
    SERVICE_LABEL = "Secrets Manager"
    SERVICE_EVENT = "secrets-manager"

    def __init__(self, name: str, config: AwsSecretsManagerStoreConfig) -> None:
        super().__init__(name, config)
        self.config = config
        self.writes: TokenBucket = shared_limiter(
            "secretsmanager:PutSecretValue", self.region or "-", config.max_writes_per_second
        )
        self.batch_reads: TokenBucket = shared_limiter(
            "secretsmanager:BatchGetSecretValue", self.region or "-", BATCH_READS_PER_SECOND
        )
        if self._client is not None:
            install_retry_rules(
                self._client,
                service_event=self.SERVICE_EVENT,
                no_retry_codes=frozenset({"LimitExceededException"}),
                limited={"PutSecretValue": self.writes, "CreateSecret": self.writes},
            )
        self._seen: dict[str, _Seen] = {}
        self._arns: dict[str, str] = {}
        self._auto_slots: dict[str, int] = {}
        self._index_writes: dict[str, int] = {}

    @classmethod
    def from_config(cls, name: str, config: StoreConfig) -> SecretsManagerStore:
        from syncd.config import AwsSecretsManagerStoreConfig

        if not isinstance(config, AwsSecretsManagerStoreConfig):
            raise TypeError(f"store {name!r}: expected an aws-secretsmanager store config")
        return cls(name, config)

    # ------------------------------------------------------------------ helpers

    def _arn(self, secret_id: str) -> str:
        known = self._arns.get(secret_id)
        if known:
            return known
        partition = "aws-cn" if self.region.startswith("cn-") else "aws-us-gov" if "gov" in self.region else "aws"
        return f"arn:{partition}:secretsmanager:{self.region}:<account-id>:secret:{secret_id}-??????"

    def _validate(self, key: str, slots: int | str | None, fmt: str) -> None:
        if not _NAME_RE.fullmatch(key):
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

    def _error(self, exc: BaseException, *, action: str, secret_id: str, what: str) -> StoreError:
        """Secrets Manager's own codes first, then the generic AWS translation."""
        info = error_info(exc)
        # BatchGetSecretValue has no resource-level permission: it is granted on "*".
        arn = "*" if action == "secretsmanager:BatchGetSecretValue" else self._arn(secret_id)
        if info is not None:
            aws = f" (AWS: {info.message})" if info.message else ""
            if info.code == "LimitExceededException":
                if info.operation == "CreateSecret":
                    return FatalStoreError(
                        f"cannot create secret {secret_id}: LimitExceededException, an account quota of Secrets "
                        f"Manager is exhausted{aws}",
                        code=info.code,
                    )
                return FatalStoreError(
                    f"cannot {what}: LimitExceededException, the secret has used up its version quota. "
                    f"{QUOTA_EXPLANATION}. Not retried: a retry cannot succeed before old versions are 24 h old. "
                    'Fix: set slots = "auto" on this target, use a longer-lived token, or store it in SSM '
                    f"Parameter Store or Vault (docs/aws.md){aws}",
                    code=info.code,
                )
            if info.code == "ResourceNotFoundException":
                tags = " and secretsmanager:TagResource" if self.config.tags else ""
                creates = f"secretsmanager:CreateSecret{tags}"
                return FatalStoreError(
                    f"secret {secret_id} does not exist in {self.region}: create it (aws secretsmanager "
                    f"create-secret --name {secret_id}) or set create_missing = true on store {self.name!r} "
                    f"(needs {creates} on {arn}){aws}",
                    code=info.code,
                )
            if info.code in ("EncryptionFailure", "DecryptionFailure") or (
                info.code in ("AccessDeniedException", "KMSAccessDeniedException") and "kms" in info.message.lower()
            ):
                key = self.config.kms_key_id or "the secret's KMS key"
                need = "kms:Decrypt" if info.code == "DecryptionFailure" else "kms:GenerateDataKey and kms:Decrypt"
                return FatalStoreError(
                    f"cannot {what}: {info.code}, Secrets Manager could not use {key}; grant {need} on it to the "
                    f"daemon's role and check that the key is enabled{aws}",
                    code=info.code,
                )
            if info.code == "InvalidRequestException" and "deletion" in info.message.lower():
                return FatalStoreError(
                    f"cannot {what}: the secret is scheduled for deletion; restore it (aws secretsmanager "
                    f"restore-secret --secret-id {secret_id}) or use another key{aws}",
                    code=info.code,
                )
        return classify(exc, action=action, resource=arn, what=what)

    async def _call(
        self, method: str, action: str, secret_id: str, what: str, limiter: TokenBucket | None, **kwargs: Any
    ) -> Any:
        """One API call: wait for the limiter, run it in the pool, translate failures."""
        self._ready()
        if limiter is not None:
            await limiter.acquire()
        try:
            return await self._run(getattr(self._client, method), **kwargs)
        except Exception as exc:
            raise self._error(exc, action=action, secret_id=secret_id, what=what) from None

    def _observe(self, secret_id: str, text: str | None, exists: bool | None) -> tuple[_Seen, TokenPayload | None]:
        """Remember what ``secret_id`` holds; return the payload in it, if it is one."""
        if text is None:
            seen = _Seen(exists=exists)
            self._seen[secret_id] = seen
            return seen, None
        payload: TokenPayload | None = None
        try:
            doc: Any = json.loads(text)
        except ValueError:
            doc = None
        if is_slot_index(doc):
            n = doc.get("slots")
            seen = _Seen(True, content_id(_canonical(doc)), slots=n if isinstance(n, int) and n > 0 else None)
        elif isinstance(doc, dict):
            try:
                payload = TokenPayload.from_dict(doc, source=f"secret {secret_id}")
                seen = _Seen(True, payload.fingerprint, payload.expires_at)
            except PayloadError:
                seen = _Seen(True, content_id(text))
        else:
            # A bare token (format = "raw"): its fingerprint still tells whether a write can be skipped.
            seen = _Seen(True, fingerprint(text.strip()))
        self._seen[secret_id] = seen
        return seen, payload

    # ------------------------------------------------------------------ reading

    async def _get(self, secret_id: str) -> str | None:
        """GetSecretValue; None when the secret or its current value does not exist."""
        try:
            resp = await self._call(
                "get_secret_value",
                "secretsmanager:GetSecretValue",
                secret_id,
                f"read secret {secret_id}",
                None,
                SecretId=secret_id,
            )
        except StoreError as exc:
            if exc.code == "ResourceNotFoundException":
                self._observe(secret_id, None, exists=False)
                return None
            raise
        if resp.get("ARN"):
            self._arns[secret_id] = resp["ARN"]
        if "SecretString" not in resp:
            raise FatalStoreError(f"secret {secret_id} holds binary data, not a syncd payload", code="payload")
        text: str = resp["SecretString"]
        self._observe(secret_id, text, exists=True)
        return text

    async def _batch_get(self, ids: list[str]) -> tuple[dict[str, str | None], dict[str, StoreError]]:
        """BatchGetSecretValue in chunks of 20: values by id (None: missing) and per-secret errors."""
        values: dict[str, str | None] = {}
        errors: dict[str, StoreError] = {}
        for start in range(0, len(ids), BATCH_IDS):
            chunk = ids[start : start + BATCH_IDS]
            next_token: str | None = None
            while True:
                kwargs: dict[str, Any] = {"SecretIdList": chunk}
                if next_token:
                    kwargs["NextToken"] = next_token
                resp = await self._call(
                    "batch_get_secret_value",
                    "secretsmanager:BatchGetSecretValue",
                    chunk[0],
                    f"read secrets {', '.join(chunk)}",
                    self.batch_reads,
                    **kwargs,
                )
                for entry in resp.get("SecretValues", []):
                    sid = entry.get("Name", "")
                    if sid not in chunk:
                        sid = next((c for c in chunk if entry.get("ARN") == c), sid)
                    if entry.get("ARN"):
                        self._arns[sid] = entry["ARN"]
                    values[sid] = entry.get("SecretString")
                for err in resp.get("Errors", []):
                    sid, code = err.get("SecretId", ""), err.get("ErrorCode", "")
                    if code == "ResourceNotFoundException":
                        values[sid] = None
                    else:
                        fake = {"Error": {"Code": code, "Message": err.get("Message", "")}}
                        errors[sid] = self._error(
                            _client_error(fake, "GetSecretValue"),
                            action="secretsmanager:GetSecretValue",
                            secret_id=sid,
                            what=f"read secret {sid}",
                        )
                next_token = resp.get("NextToken")
                if not next_token:
                    break
        for sid in ids:
            if sid in errors:
                self._observe(sid, None, exists=None)
            elif sid in values:
                self._observe(sid, values[sid], exists=values[sid] is not None)
            else:
                values[sid] = None
                self._observe(sid, None, exists=False)
        return values, errors

    async def _fetch(self, ids: list[str]) -> tuple[dict[str, str | None], dict[str, StoreError]]:
        if len(ids) == 1:
            try:
                return {ids[0]: await self._get(ids[0])}, {}
            except StoreError as exc:
                if exc.transient:
                    raise
                self._observe(ids[0], None, exists=None)
                return {ids[0]: None}, {ids[0]: exc}
        return await self._batch_get(ids)

    async def _learn(self, ids: list[str]) -> None:
        """Fill the memory for ids not seen yet. Best effort: a write never fails because a read did."""
        unknown = [i for i in ids if i not in self._seen]
        if not unknown:
            return
        try:
            await self._fetch(unknown)
        except StoreError as exc:
            log.info("aws_read_skipped", store=self.name, secrets=unknown, reason=exc.message)
            for sid in unknown:
                self._seen.setdefault(sid, _Seen(exists=None))

    @staticmethod
    def _freshest(payloads: list[TokenPayload], now: float) -> TokenPayload | None:
        if not payloads:
            return None
        valid = [p for p in payloads if not p.expired(now)]
        return max(valid or payloads, key=lambda p: p.expires_at)

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
        return self._freshest(payloads, time.time())

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
        try:
            doc: Any = json.loads(text)
        except ValueError:
            doc = None
        if is_slot_index(doc):
            names = [str(k) for k in doc["keys"][:MAX_SLOTS]]
            return await self._read_slots(key, names)
        if fmt == "raw":
            return None  # a bare token has no expiry to judge; the engine writes a fresh one
        try:
            return TokenPayload.from_json(text, source=f"secret {key}")
        except PayloadError as exc:
            raise FatalStoreError(str(exc), code="payload") from None

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
        if index is None or index.content != content_id(_canonical(slot_index_doc(names))):
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
        self._seen[secret_id] = _Seen(True, payload.fingerprint, payload.expires_at)
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
            n, source = min(slots_for(wpd), MAX_SLOTS), "token lifetime"
        self._auto_slots[key] = n
        log.info("aws_slots", store=self.name, key=key, slots=n, source=source)
        return n

    async def _ensure_index(self, key: str, names: list[str]) -> bool:
        doc = slot_index_doc(names)
        ident = content_id(_canonical(doc))
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
        self._seen[key] = _Seen(True, ident, slots=len(names))
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

    async def aclose(self) -> None:
        await super().aclose()
        if self._client is not None:
            self._client.close()

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
        findings: list[Finding] = []
        if _SUFFIX_LIKE_RE.search(key):
            findings.append(
                Finding(
                    "warning",
                    subject,
                    f"{key!r} ends with a hyphen and six characters, which AWS tools can mistake for the random "
                    "suffix of a secret ARN",
                    "rename the key",
                )
            )
        if not (math.isfinite(writes_per_day) and writes_per_day > 0):
            return findings
        interval = policy.SECONDS_PER_DAY * (1 + policy.DEFAULT_RETRY_ALLOWANCE) / writes_per_day
        cadence = (
            f"one write every {interval:.0f} s at the low end of the jitter, plus "
            f"{policy.DEFAULT_RETRY_ALLOWANCE:.0%} for retries"
        )
        needed = slots_for(writes_per_day)
        if slots is None:
            n = 1
        elif slots == "auto":
            n = min(needed, MAX_SLOTS)
            self._auto_slots[key] = n
        else:
            n = int(slots)
        per_secret = writes_per_day / n
        where = f"secret {key}" if slots is None else f"each of {n} slot secrets {key}-0..{key}-{n - 1}"
        if not self.config.quota_check:
            findings.append(
                Finding(
                    "warning",
                    subject,
                    f"quota_check = false: not checking ~{per_secret:.0f} versions/24 h in {where} ({cadence}); "
                    "meant for emulators such as moto, where test tokens live seconds",
                    "remove quota_check = false against real AWS",
                )
            )
        elif per_secret > MAX_VERSIONS_PER_DAY:
            if slots == "auto" or needed > MAX_SLOTS:
                findings.append(
                    Finding(
                        "error",
                        subject,
                        f"the token is too short-lived even for {MAX_SLOTS} slots: {writes_per_day:.0f} versions/24 h "
                        f"({cadence}) would need {needed} secrets. {QUOTA_EXPLANATION}",
                        'use a longer-lived token, or SSM Parameter Store (type = "aws-ssm") or Vault for it',
                    )
                )
            else:
                slot_fix = (
                    f'set slots = "auto" on this target ({needed} secrets {key}-0..{key}-{needed - 1}, '
                    f"~{writes_per_day / needed:.0f} versions/24 h each, with the index at {key})"
                    if slots is None
                    else f'raise slots to {needed} or set slots = "auto"'
                )
                findings.append(
                    Finding(
                        "error",
                        subject,
                        f"~{per_secret:.0f} versions/24 h in {where} ({cadence}). {QUOTA_EXPLANATION}",
                        f"(1) {slot_fix}; (2) use a longer-lived token (a 20-minute token fits one secret with "
                        "refresh_at = 0.9 and jitter = 0.05: ~88 versions/24 h); (3) use SSM Parameter Store "
                        '(type = "aws-ssm", keeps the newest 100 versions itself) or Vault for this credential. '
                        "See docs/aws.md",
                    )
                )
        if slots is not None:
            secrets = n + 1
            calls = writes_per_day * 30 / (1 + policy.DEFAULT_RETRY_ALLOWANCE)
            cost = secrets * PRICE_PER_SECRET_MONTH + calls / 10_000 * PRICE_PER_10K_CALLS
            findings.append(
                Finding(
                    "info",
                    subject,
                    f"slots: {n} secrets {key}-0..{key}-{n - 1} plus the index at {key}, ~{per_secret:.0f} "
                    f"versions/24 h each (limit {MAX_VERSIONS_PER_DAY:.0f}); about ${cost:.2f}/month at "
                    f"${PRICE_PER_SECRET_MONTH:.2f}/secret and ${PRICE_PER_10K_CALLS:.2f}/10,000 calls for storage "
                    "and writes (prices as published by AWS; check current pricing)",
                )
            )
        if self.config.kms_key_id and not self.config.create_missing:
            findings.append(
                Finding(
                    "info",
                    subject,
                    "kms_key_id applies only to secrets syncd creates (create_missing = true); existing secrets "
                    "keep their key",
                )
            )
        return findings


def _client_error(response: dict[str, Any], operation: str) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError(response, operation)  # type: ignore[arg-type]
