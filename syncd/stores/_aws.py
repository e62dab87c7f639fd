"""What the two AWS stores share: session and client set-up, the write limiter, error translation.

Both stores talk to AWS through one boto3 client each (thread-safe, shared by
every credential using the store) inside the store's bounded thread pool. The
pieces here exist because AWS's own limits are per account and region, not
per client:

* `TokenBucket` / `shared_limiter`: one limiter per (API bucket, region) for the
  whole process, so ten stores pointing at the same region still respect the
  one regional quota (Secrets Manager: 50 writes/s shared by PutSecretValue,
  UpdateSecret and UpdateSecretVersionStage; SSM PutParameter: 3/s by default).
* `install_retry_rules`: botocore's ``standard`` retry mode counts
  ``LimitExceededException`` as throttling and retries it; for Secrets Manager
  that error means the version quota is exhausted, and retrying only burns more
  of the regional write budget. The hook vetoes retries of the codes a store names.
* `classify`: one place that turns botocore exceptions into `TransientStoreError`
  (back off, same token) or `FatalStoreError` (needs a human: the message names
  the resource and the IAM action), never echoing a secret value.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from syncd import __version__, logs
from syncd.stores.base import FatalStoreError, StoreError, ThreadedStore, TransientStoreError

if TYPE_CHECKING:
    import boto3

    from syncd.config import AwsSecretsManagerStoreConfig, AwsSsmStoreConfig

    AwsConfig = AwsSecretsManagerStoreConfig | AwsSsmStoreConfig

ROLE_SESSION_NAME = "syncd"

# Error codes that mean "slow down / try again": retried by botocore first, then by the engine.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "PriorRequestNotComplete",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalServiceError",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "TooManyUpdates",  # SSM: another PutParameter on the same name is in flight
        "ExpiredToken",  # credentials are refreshed by the next attempt (IRSA, assume-role)
        "ExpiredTokenException",
        "RequestExpired",
    }
)
# The caller's identity is not accepted at all: fatal, and never a permissions problem of the resource.
CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "AuthFailure",
    }
)
ACCESS_DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"})


# --------------------------------------------------------------------------- limiter


class TokenBucket:
    """A token bucket that an event loop can wait on and worker threads can debit.

    ``acquire()`` reserves the next token and sleeps until it is due: tokens may
    go negative, which is the queue, so waiters are served in order without an
    ``asyncio.Lock`` (which would tie the bucket to one event loop; the bucket is
    process-wide). ``debit()`` charges a token without waiting, for a retry that
    botocore sends on its own inside a worker thread. State changes are guarded
    by a `threading.Lock` held for a few arithmetic operations only.

    ``burst`` defaults to one token: writes are paced evenly, so no one-second
    window holds more than ``rate + 1`` of them, which is what keeps the default
    40/s under Secrets Manager's 50/s even when a whole fleet is due at once.
    """

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be > 0, got {rate!r}")
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self._clock = clock
        self._sleep = sleep  # injectable with the clock, so the pacing is testable without waiting
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._stamp = clock()
        self.acquired = 0
        self.debited = 0
        self.waited = 0.0

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def reserve(self) -> float:
        """Take a token now and return how many seconds to wait before using it."""
        with self._lock:
            self._refill(self._clock())
            self._tokens -= 1.0
            self.acquired += 1
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
            self.waited += wait
            return wait

    def refund(self) -> None:
        """Give back a reserved token that was never used (the waiter was cancelled)."""
        with self._lock:
            self._refill(self._clock())
            self._tokens = min(self.burst, self._tokens + 1.0)

    def debit(self) -> None:
        """Charge a token without waiting: a request that is sent anyway (a retry)."""
        with self._lock:
            self._refill(self._clock())
            self._tokens -= 1.0
            self.debited += 1

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self._refill(self._clock())
            self.rate = float(rate)

    async def acquire(self) -> None:
        wait = self.reserve()
        if wait <= 0:
            return
        try:
            await self._sleep(wait)
        except asyncio.CancelledError:
            self.refund()
            raise


_LIMITERS: dict[tuple[str, str], TokenBucket] = {}
_LIMITERS_LOCK = threading.Lock()


def shared_limiter(bucket: str, region: str, rate: float) -> TokenBucket:
    """The process-wide limiter for one AWS rate bucket in one region.

    Stores that configure different rates for the same bucket get the lowest of
    them: the AWS quota is one number for the account and region, so the most
    careful setting wins.
    """
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get((bucket, region))
        if limiter is None:
            limiter = _LIMITERS[(bucket, region)] = TokenBucket(rate)
        elif rate < limiter.rate:
            limiter.set_rate(rate)
        return limiter


def reset_limiters() -> None:
    """Forget every shared limiter (tests)."""
    with _LIMITERS_LOCK:
        _LIMITERS.clear()


# --------------------------------------------------------------------------- session + client


def build_session(config: AwsConfig) -> boto3.Session:
    """A boto3 session for the store: profile, region and, with ``role_arn``, an assumed role.

    Without ``role_arn`` the session uses botocore's default chain (environment,
    shared files, web identity, i.e. IRSA in Kubernetes, container and instance
    metadata), which refreshes its own credentials. With ``role_arn`` the role is
    assumed with session name ``syncd`` through deferred refreshable credentials:
    no STS call until the first request, and a new AssumeRole before the old
    credentials expire.
    """
    import boto3
    import botocore.session
    from botocore.credentials import CredentialProvider, DeferredRefreshableCredentials

    if not config.role_arn:
        return boto3.Session(profile_name=config.profile, region_name=config.region)

    base = boto3.Session(profile_name=config.profile, region_name=config.region)
    sts = base.client(
        "sts",
        region_name=config.region or base.region_name,
        endpoint_url=config.sts_endpoint_url,
        config=client_config(config),
    )
    role_arn = config.role_arn
    extra: dict[str, Any] = {"RoleSessionName": ROLE_SESSION_NAME}
    if config.external_id:
        extra["ExternalId"] = config.external_id

    def refresh() -> dict[str, str]:
        try:
            creds = sts.assume_role(RoleArn=role_arn, **extra)["Credentials"]
        except Exception as exc:
            raise classify(exc, action="sts:AssumeRole", resource=role_arn, what=f"assume role {role_arn}") from None
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    credentials = DeferredRefreshableCredentials(refresh_using=refresh, method="assume-role")

    class _AssumedRole(CredentialProvider):
        METHOD = "assume-role"
        CANONICAL_NAME = "syncd-assume-role"

        def load(self) -> DeferredRefreshableCredentials:
            return credentials

    core = botocore.session.Session(profile=config.profile)
    core.get_component("credential_provider").insert_before("env", _AssumedRole())
    return boto3.Session(botocore_session=core, region_name=config.region)


def client_config(config: AwsConfig) -> Any:
    """botocore Config: standard retries with bounded attempts, explicit timeouts, a pool per worker.

    ``max_attempts`` of the store counts every attempt including the first, which
    is botocore's ``total_max_attempts`` (its ``max_attempts`` key counts retries only).
    """
    from botocore.config import Config

    return Config(
        retries={"mode": "standard", "total_max_attempts": config.max_attempts},
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        max_pool_connections=max(config.max_workers, 1),
        user_agent_extra=f"syncd/{__version__}",
    )


def install_retry_rules(
    client: Any,
    *,
    service_event: str,
    no_retry_codes: frozenset[str] = frozenset(),
    limited: Mapping[str, TokenBucket] | None = None,
) -> None:
    """Veto botocore retries of ``no_retry_codes``; charge retries of ``limited`` operations to their bucket.

    ``needs-retry`` handlers on the operation-specific event run before the
    retry handler botocore registers for the service, and the first answer that
    is not None wins: returning False stops the retry. Retries are sent by
    botocore from the worker thread; ``before-send`` sees every attempt, and an
    attempt after the first costs a token without waiting (the first one was
    acquired by the store before dispatching the call).
    """

    def veto(response: Any = None, **_: Any) -> bool | None:
        if response is None:
            return None
        code = response[1].get("Error", {}).get("Code") if isinstance(response[1], dict) else None
        return False if code in no_retry_codes else None

    if no_retry_codes:
        client.meta.events.register_first(f"needs-retry.{service_event}", veto, unique_id=f"syncd-veto-{service_event}")
    for operation, bucket in (limited or {}).items():

        def charge(request: Any = None, _bucket: TokenBucket = bucket, **_: Any) -> None:
            context = getattr(request, "context", None) or {}
            if context.get("retries", {}).get("attempt", 1) > 1:
                _bucket.debit()

        client.meta.events.register(
            f"before-send.{service_event}.{operation}", charge, unique_id=f"syncd-charge-{service_event}-{operation}"
        )


# --------------------------------------------------------------------------- idempotency


def client_request_token(key: str, fingerprint: str, salt: str = "") -> str:
    """Secrets Manager ClientRequestToken for writing the token ``fingerprint`` to secret ``key``.

    Deterministic, so a retried PutSecretValue (timeout, 5xx, daemon restart)
    carries the same token and Secrets Manager ignores the repeat instead of
    creating a version. It becomes the VersionId, so it is readable:
    ``syncd-<16 hex of the token fingerprint>-<16 hex of sha256(key)>`` (39
    characters; the API accepts 32 to 64). The fingerprint is already public
    (logs, /status); the key hash keeps ids distinct across slot secrets. A
    ``salt`` (a hash of the content) is added only for the rare second version
    of one token with a different document (see the store).
    """
    match = re.fullmatch(r"sha256:([0-9a-f]{16})", fingerprint)
    fp = match.group(1) if match else hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    key_hash = hashlib.sha256(key.encode()).hexdigest()[:16]
    token = f"syncd-{fp}-{key_hash}"
    if salt:
        token += "-" + hashlib.sha256(salt.encode()).hexdigest()[:16]
    assert 32 <= len(token) <= 64
    return token


def content_id(text: str) -> str:
    """Short stable hash of a stored document that is not a token payload (the slot index)."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class AwsErrorInfo:
    code: str
    message: str
    status: int | None
    operation: str | None


def error_info(exc: BaseException) -> AwsErrorInfo | None:
    """Code, message, HTTP status and operation of a botocore ClientError; None for anything else."""
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return None
    err = exc.response.get("Error", {}) or {}
    meta = exc.response.get("ResponseMetadata", {}) or {}
    status = meta.get("HTTPStatusCode")
    return AwsErrorInfo(
        code=str(err.get("Code") or "Unknown"),
        message=_clean(str(err.get("Message") or "")),
        status=int(status) if isinstance(status, int) else None,
        operation=getattr(exc, "operation_name", None),
    )


def _clean(text: str, limit: int = 400) -> str:
    """A vendor message fit for our errors: one line, bounded, scrubbed of anything secret-looking."""
    return logs.shorten(" ".join(text.split()), limit)


def classify(exc: BaseException, *, action: str, resource: str, what: str) -> StoreError:
    """The generic translation of a botocore failure; stores handle their own codes first.

    ``action`` is the IAM action of the call (``secretsmanager:PutSecretValue``),
    ``resource`` what it was called on (an ARN pattern or a name), ``what`` a
    short human phrase for the message (``write secret vgs/calm``).
    """
    from botocore.exceptions import (
        BotoCoreError,
        ConnectionClosedError,
        ConnectTimeoutError,
        CredentialRetrievalError,
        EndpointConnectionError,
        HTTPClientError,
        NoCredentialsError,
        NoRegionError,
        ParamValidationError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
    )

    if isinstance(exc, StoreError):
        return exc
    info = error_info(exc)
    if info is not None:
        return _classify_client_error(info, action=action, resource=resource, what=what)
    name = type(exc).__name__
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        return TransientStoreError(f"cannot {what}: timed out talking to AWS ({name})", code=name)
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | HTTPClientError):
        return TransientStoreError(f"cannot {what}: connection to AWS failed ({name}: {_clean(str(exc))})", code=name)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return FatalStoreError(
            f"cannot {what}: no AWS credentials found (searched the environment, shared config files, web identity "
            "/ IRSA, container and instance metadata); give the pod an IAM role (IRSA) or set a profile",
            code=name,
        )
    if isinstance(exc, CredentialRetrievalError):
        return FatalStoreError(f"cannot {what}: AWS credentials could not be retrieved ({_clean(str(exc))})", code=name)
    if isinstance(exc, NoRegionError):
        return FatalStoreError(f"cannot {what}: no AWS region; set region in the store or AWS_REGION", code=name)
    if isinstance(exc, ProfileNotFound):
        return FatalStoreError(f"cannot {what}: {_clean(str(exc))}", code=name)
    if isinstance(exc, ParamValidationError):
        # The report names parameters and lengths; SecretString is always a str, so never its value.
        return FatalStoreError(f"cannot {what}: request rejected by the SDK ({_clean(str(exc))})", code=name)
    if isinstance(exc, BotoCoreError):
        return TransientStoreError(f"cannot {what}: {name}: {_clean(str(exc))}", code=name)
    if isinstance(exc, OSError):
        return TransientStoreError(f"cannot {what}: {name}: {_clean(str(exc))}", code=name)
    return TransientStoreError(f"cannot {what}: unexpected {name}: {_clean(str(exc))}", code=name)


def _classify_client_error(info: AwsErrorInfo, *, action: str, resource: str, what: str) -> StoreError:
    code, detail = info.code, info.message
    suffix = f" (AWS: {detail})" if detail else ""
    if info.operation == "AssumeRole":
        if code in ACCESS_DENIED_CODES:
            return FatalStoreError(
                f"cannot assume role {resource}: sts:AssumeRole denied; allow sts:AssumeRole on {resource} for the "
                f"daemon's identity and make the role's trust policy trust it{suffix}",
                code=code,
            )
        transient = code in THROTTLING_CODES or (info.status or 0) >= 500
        cls: type[StoreError] = TransientStoreError if transient else FatalStoreError
        return cls(f"cannot assume role {resource}: {code}{suffix}", code=code)
    if code in THROTTLING_CODES or (info.status or 0) >= 500:
        return TransientStoreError(f"cannot {what}: {code}, retrying with backoff{suffix}", code=code)
    if code in CREDENTIAL_CODES:
        return FatalStoreError(
            f"cannot {what}: AWS rejected the daemon's credentials ({code}); check the role / keys in use{suffix}",
            code=code,
        )
    if code in ACCESS_DENIED_CODES:
        kms = "kms" in detail.lower()
        need = "kms:GenerateDataKey and kms:Decrypt on the secret's KMS key" if kms else f"{action} on {resource}"
        return FatalStoreError(f"cannot {what}: access denied; grant {need}{suffix}", code=code)
    return FatalStoreError(f"cannot {what}: {code}{suffix}", code=code)


def is_code(exc: BaseException, *codes: str) -> bool:
    info = error_info(exc)
    return info is not None and info.code in codes


class AwsStore(ThreadedStore):
    """What the AWS stores share: a session and one client, built once; set-up errors kept.

    A store whose client cannot be built (no region, a bad profile) is still created, so
    ``syncd check`` can report it as a plan error; every call then raises that error.
    """

    SERVICE: ClassVar[str]  # boto3 service name
    SERVICE_LABEL: ClassVar[str]  # for messages

    def __init__(self, name: str, config: AwsConfig) -> None:
        super().__init__(name, max_workers=config.max_workers)
        self.region = config.region or ""
        self._client: Any = None
        self._session: Any = None
        self._setup_error: str | None = None
        try:
            self._session = build_session(config)
            self.region = config.region or self._session.region_name or ""
            if not self.region:
                raise ValueError("no AWS region: set region in the store or AWS_REGION / AWS_DEFAULT_REGION")
            self._client = self._session.client(
                self.SERVICE, region_name=self.region, endpoint_url=config.endpoint_url, config=client_config(config)
            )
        except Exception as exc:
            reason = str(exc) if isinstance(exc, ValueError) else str(classify(exc, action="", resource="", what="x"))
            self._setup_error = f"store {name!r}: cannot create the {self.SERVICE_LABEL} client: {reason}"

    def _ready(self) -> None:
        if self._setup_error is not None:
            raise FatalStoreError(self._setup_error, code="setup")
