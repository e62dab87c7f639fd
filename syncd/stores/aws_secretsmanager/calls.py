"""The daemon's calls to Secrets Manager, and its memory of what each secret holds.

Every call waits for its limiter, runs in the store's thread pool and has its
failure translated (errors.py). Every read and write records what the secret
now holds (`Seen`), so an unchanged token is not written again and a write
needs no GetSecretValue before it: one API call per rotation, not two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from syncd import logs
from syncd.payload import PayloadError, TokenPayload, fingerprint
from syncd.stores._aws.common import batch_entry_error, partition
from syncd.stores._aws.limiter import TokenBucket, install_retry_rules, shared_limiter
from syncd.stores._aws.store import AwsStore
from syncd.stores.aws_secretsmanager.errors import translate
from syncd.stores.aws_secretsmanager.layout import BATCH_IDS, content_id, index_id, is_slot_index, stored_doc
from syncd.stores.base import FatalStoreError, StoreError

if TYPE_CHECKING:
    from syncd.config import AwsSecretsManagerStoreConfig

log = logs.get_logger("syncd.stores.aws")

#: BatchGetSecretValue: 100 requests/s per region; syncd takes half and reads only at start-up.
BATCH_READS_PER_SECOND = 50.0


@dataclass(frozen=True)
class Seen:
    """What syncd last saw (or wrote) in one secret; absent from the map means unknown."""

    exists: bool | None  # False: no secret / no current value; None: could not be read
    content: str | None = None  # token fingerprint, or content_id() of any other document
    expires_at: float = -math.inf  # of the token it holds; -inf for anything else
    slots: int | None = None  # N, when it holds a slot index document


class SecretsManagerCalls(AwsStore):
    """The calls the store makes, each translated, and its memory of what each secret holds."""

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
        self._seen: dict[str, Seen] = {}
        self._arns: dict[str, str] = {}

    def _arn(self, secret_id: str) -> str:
        known = self._arns.get(secret_id)
        if known:
            return known
        return f"arn:{partition(self.region)}:secretsmanager:{self.region}:<account-id>:secret:{secret_id}-??????"

    def _error(self, exc: BaseException, *, action: str, name: str, what: str) -> StoreError:
        # BatchGetSecretValue has no resource-level permission: it is granted on "*".
        arn = "*" if action == "secretsmanager:BatchGetSecretValue" else self._arn(name)
        return translate(
            exc,
            action=action,
            secret_id=name,
            what=what,
            arn=arn,
            store=self.name,
            region=self.region,
            config=self.config,
        )

    def _observe(self, secret_id: str, text: str | None, exists: bool | None) -> tuple[Seen, TokenPayload | None]:
        """Remember what ``secret_id`` holds; return the payload in it, if it is one."""
        if text is None:
            seen = Seen(exists=exists)
            self._seen[secret_id] = seen
            return seen, None
        payload: TokenPayload | None = None
        doc = stored_doc(text)
        if is_slot_index(doc):
            n = doc.get("slots")
            seen = Seen(True, index_id(doc), slots=n if isinstance(n, int) and n > 0 else None)
        elif isinstance(doc, dict):
            try:
                payload = TokenPayload.from_dict(doc, source=f"secret {secret_id}")
                seen = Seen(True, payload.fingerprint, payload.expires_at)
            except PayloadError:
                seen = Seen(True, content_id(text))
        else:
            # A bare token (format = "raw"): its fingerprint still tells whether a write can be skipped.
            seen = Seen(True, fingerprint(text.strip()))
        self._seen[secret_id] = seen
        return seen, payload

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
                        errors[sid] = self._error(
                            batch_entry_error(err, "GetSecretValue"),
                            action="secretsmanager:GetSecretValue",
                            name=sid,
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
                self._seen.setdefault(sid, Seen(exists=None))
