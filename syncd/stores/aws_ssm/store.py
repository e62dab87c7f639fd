"""AWS SSM Parameter Store: one SecureString parameter per target, overwritten in place.

Parameter Store keeps the newest 100 versions of a parameter and deletes the
oldest itself on the 101st write, so unlike Secrets Manager it can carry a
5-minute token without slots. Two facts shape this store:

* Versions are never labelled by syncd: a labelled oldest version cannot be
  deleted, and every later PutParameter then fails with
  ``ParameterMaxVersionLimitExceeded``. When someone else labelled one, the
  error names the parameter, the version and the labels, and says how to move them.
* PutParameter is slow by AWS standards: 3 transactions/s per account and
  region with the default throughput, 10/s with "higher throughput" enabled
  (a paid account setting). One process-wide limiter per region enforces
  ``max_writes_per_second`` (default 3) for every SSM store, and ``syncd check``
  refuses a fleet whose average write rate the limit cannot carry.

The parameter value is ``payload.render(format)`` (layout.py): the JSON payload, or
the bare token for ``format = "raw"`` (then ``read()`` returns None: no expiry to judge).
Writes use ``Overwrite=True`` except the first one when tags are configured
(AWS refuses tags together with Overwrite), and a per-parameter memory of the
stored token skips unchanged writes without reading first.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from syncd import logs
from syncd.payload import Format, TokenPayload, holds_token
from syncd.stores._aws.common import partition
from syncd.stores._aws.errors import classify, error_info
from syncd.stores._aws.limiter import TokenBucket, install_retry_rules, shared_limiter
from syncd.stores._aws.store import AwsStore
from syncd.stores.aws_ssm.layout import MAX_DEPTH, MAX_VALUE, parameter_arn, parameter_name_problem, stored_token
from syncd.stores.base import FatalStoreError, Finding, StoreError, WriteResult

if TYPE_CHECKING:
    from syncd.config import AwsSsmStoreConfig, StoreConfig, TargetConfig

log = logs.get_logger("syncd.stores.aws")

_OLDEST_RE = re.compile(r"Version (\d+), the oldest version")


@dataclass(frozen=True)
class _Seen:
    exists: bool | None  # False: no such parameter; None: could not be read
    content: str | None = None  # fingerprint of the token stored
    expires_at: float = math.inf  # of the token stored; inf when the value carries none (a bare token)


class SsmStore(AwsStore):
    """``type = "aws-ssm"``."""

    SERVICE = "ssm"
    SERVICE_LABEL = "SSM"
    SERVICE_EVENT = "ssm"

    def __init__(self, name: str, config: AwsSsmStoreConfig) -> None:
        super().__init__(name, config)
        self.config = config
        self.writes: TokenBucket = shared_limiter("ssm:PutParameter", self.region or "-", config.max_writes_per_second)
        self.reads: TokenBucket = shared_limiter("ssm:GetParameter", self.region or "-", config.max_reads_per_second)
        if self._client is not None:
            install_retry_rules(
                self._client,
                service_event=self.SERVICE_EVENT,
                limited={"PutParameter": self.writes, "GetParameter": self.reads},
            )
        self._seen: dict[str, _Seen] = {}
        self._warned_type: set[str] = set()

    @classmethod
    def from_config(cls, name: str, config: StoreConfig) -> SsmStore:
        from syncd.config import AwsSsmStoreConfig

        if not isinstance(config, AwsSsmStoreConfig):
            raise TypeError(f"store {name!r}: expected an aws-ssm store config")
        return cls(name, config)

    # ------------------------------------------------------------------ helpers

    def _validate(self, key: str) -> None:
        problem = parameter_name_problem(key)
        if problem:
            message = f"store {self.name!r}: {key!r} is not a valid parameter name: {problem}"
            raise FatalStoreError(message, code="config")

    def _arn(self, name: str) -> str:
        return parameter_arn(partition(self.region), self.region, name)

    def _error(self, exc: BaseException, *, action: str, name: str, what: str) -> StoreError:
        info = error_info(exc)
        if info is not None:
            aws = f" (AWS: {info.message})" if info.message else ""
            if info.code == "ParameterLimitExceeded":
                return FatalStoreError(
                    f"cannot {what}: the account's parameter quota in {self.region} is used up (10,000 standard "
                    'parameters); delete unused parameters or set tier = "Advanced" (100,000, charged)' + aws,
                    code=info.code,
                )
            if info.code == "InvalidKeyId":
                key = self.config.kms_key_id or "the default aws/ssm key"
                return FatalStoreError(
                    f"cannot {what}: KMS key {key} cannot be used for SecureString (check the id, alias or ARN, that "
                    "it is an enabled symmetric key in this region, and that the role may use it)" + aws,
                    code=info.code,
                )
            if info.code == "HierarchyTypeMismatchException":
                return FatalStoreError(
                    f"cannot {what}: parameter {name} exists with another type (String or StringList) and AWS cannot "
                    "change it to SecureString; delete it (aws ssm delete-parameter --name "
                    f"{name}) and syncd re-creates it as SecureString" + aws,
                    code=info.code,
                )
            if info.code == "HierarchyLevelLimitExceededException":
                return FatalStoreError(f"cannot {what}: more than {MAX_DEPTH} levels in the name" + aws, code=info.code)
            if info.code in ("AccessDeniedException", "KMSAccessDeniedException") and "kms" in info.message.lower():
                key = self.config.kms_key_id or "the aws/ssm key"
                need = "kms:Decrypt" if action == "ssm:GetParameter" else "kms:Encrypt"
                message = f"cannot {what}: grant {need} on {key} to the daemon's role{aws}"
                return FatalStoreError(message, code=info.code)
            if info.code == "ValidationException" and "tier" in info.message.lower():
                return FatalStoreError(
                    f"cannot {what}: tier {self.config.tier!r} rejected (an Advanced parameter cannot go back to "
                    'Standard: set tier = "Advanced" or "Intelligent-Tiering")' + aws,
                    code=info.code,
                )
        return classify(exc, action=action, resource=self._arn(name), what=what)

    # ------------------------------------------------------------------ reading

    async def _get(self, name: str) -> str | None:
        try:
            resp = await self._call(
                "get_parameter",
                "ssm:GetParameter",
                name,
                f"read parameter {name}",
                self.reads,
                Name=name,
                WithDecryption=True,
            )
        except StoreError as exc:
            if exc.code == "ParameterNotFound":
                self._seen[name] = _Seen(exists=False)
                return None
            raise
        param = resp.get("Parameter", {})
        if param.get("Type") != "SecureString" and name not in self._warned_type:
            self._warned_type.add(name)
            log.warning(
                "aws_parameter_type",
                store=self.name,
                parameter=name,
                type=param.get("Type"),
                problem="the token is stored unencrypted; delete the parameter so syncd re-creates it as SecureString",
            )
        text = str(param.get("Value", ""))
        self._seen[name] = _Seen(True, *stored_token(text))
        return text

    async def read(self, key: str, *, target: TargetConfig | None = None) -> TokenPayload | None:
        self._validate(key)
        self._ready()
        text = await self._get(key)
        if text is None or (target is not None and target.format == "raw"):
            return None  # a bare token has no expiry to judge; the engine writes a fresh one
        return self._payload(text, f"parameter {key}")

    async def verify(self, key: str, payload: TokenPayload, *, target: TargetConfig | None = None) -> str | None:
        """Between rotations (syncd.verify): one GetParameter; also judges ``raw`` values, which ``read`` cannot.

        The read refreshes the memory of what the parameter holds, so the rewrite that follows a
        loss is not skipped as "already written".
        """
        self._validate(key)
        self._ready()
        text = await self._get(key)
        if text is None:
            return "the parameter does not exist any more (deleted)"
        if stored_token(text)[0] != payload.fingerprint:
            return "the parameter holds another value than the token syncd wrote"
        return None

    # ------------------------------------------------------------------ writing

    async def _labels_of_oldest(self, name: str, version: str | None) -> list[str]:
        """Best effort: the labels on the oldest version, to name them in the error."""
        try:
            resp = await self._call(
                "get_parameter_history",
                "ssm:GetParameterHistory",
                name,
                f"read the history of {name}",
                self.reads,
                Name=name,
                MaxResults=50,
            )
        except StoreError:
            return []
        for entry in resp.get("Parameters", []):
            if version is None or str(entry.get("Version")) == version:
                return [str(label) for label in entry.get("Labels", [])]
        return []

    async def _put(self, name: str, value: str, *, create_with_tags: bool) -> Any:
        cfg = self.config
        kwargs: dict[str, Any] = {
            "Name": name,
            "Value": value,
            "Type": "SecureString",
            "Tier": cfg.tier,
            "Description": cfg.description,
        }
        if cfg.kms_key_id:
            kwargs["KeyId"] = cfg.kms_key_id
        what = f"write parameter {name}"
        if create_with_tags:
            tags = [{"Key": k, "Value": v} for k, v in sorted(cfg.tags.items())]
            try:
                return await self._call(
                    "put_parameter", "ssm:PutParameter", name, what, self.writes, Overwrite=False, Tags=tags, **kwargs
                )
            except StoreError as exc:
                if exc.code != "ParameterAlreadyExists":
                    raise
        return await self._call("put_parameter", "ssm:PutParameter", name, what, self.writes, Overwrite=True, **kwargs)

    async def write(self, key: str, payload: TokenPayload, *, target: TargetConfig | None = None) -> WriteResult:
        self._validate(key)
        self._ready()
        fmt: Format = target.format if target is not None else "json"
        value = payload.render(fmt)
        limit = MAX_VALUE[self.config.tier]
        if len(value.encode()) > limit:
            raise FatalStoreError(
                f"parameter {key}: the value is {len(value.encode())} bytes, over the {limit} bytes of tier "
                f'{self.config.tier!r}; set tier = "Intelligent-Tiering" or "Advanced" (up to 8 KiB)',
                code="size",
            )
        seen = self._seen.get(key)
        if seen is None:
            try:
                await self._get(key)
            except StoreError as exc:  # best effort: a write never fails because the read before it did
                log.info("aws_read_skipped", store=self.name, parameter=key, reason=exc.message)
                self._seen[key] = _Seen(exists=None)
            seen = self._seen.get(key)
        # The same token with a later expiry (a caching IdP) is written again: consumers read
        # the expiry from the value. A bare token ("raw") has none, so its value is unchanged.
        raw = target is not None and target.format == "raw"
        if seen is not None and (
            (raw and seen.content == payload.fingerprint) or holds_token(seen.content, seen.expires_at, payload)
        ):
            return WriteResult(written=False, location=key)
        create_with_tags = bool(self.config.tags) and (seen is None or seen.exists is not True)
        try:
            resp = await self._put(key, value, create_with_tags=create_with_tags)
        except StoreError as exc:
            if exc.code != "ParameterMaxVersionLimitExceeded":
                raise
            match = _OLDEST_RE.search(exc.message)
            version = match.group(1) if match else None
            labels = await self._labels_of_oldest(key, version)
            named = f"version {version}" if version else "the oldest version"
            which = f" carries label(s) {', '.join(labels)}" if labels else " carries a label"
            unlabel = (
                f"aws ssm unlabel-parameter-version --name {key} --parameter-version {version or '<version>'} "
                f"--labels {' '.join(labels) or '<label>'}"
            )
            raise FatalStoreError(
                f"cannot write parameter {key}: ParameterMaxVersionLimitExceeded. Parameter Store keeps 100 "
                f"versions and deletes the oldest on each write, but {named}{which}, and a labelled version is "
                "never deleted, so no new version can be written. syncd never labels versions; someone else did. "
                f"Move the label to a newer version or remove it ({unlabel}), or point consumers at the "
                "parameter without a label selector",
                code=exc.code,
            ) from None
        self._seen[key] = _Seen(True, payload.fingerprint, math.inf if raw else payload.expires_at)
        return WriteResult(written=True, version=str(resp.get("Version")), location=key)

    # ------------------------------------------------------------------ plan

    def plan(self, key: str, writes_per_day: float, *, target: TargetConfig | None = None) -> list[Finding]:
        subject = f"{self.name}:{key}"
        if self._setup_error is not None:
            return [Finding("error", subject, self._setup_error)]
        problem = parameter_name_problem(key)
        if problem:
            return [Finding("error", subject, f"{key!r} is not a valid parameter name: {problem}")]
        findings: list[Finding] = []
        if target is not None and target.format == "raw":
            findings.append(
                Finding(
                    "info",
                    subject,
                    'format = "raw" stores the bare token without its expiry: after a restart syncd cannot '
                    "adopt it and writes a fresh token",
                )
            )
        return findings
