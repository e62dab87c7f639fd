"""The daemon's translation of botocore failures into `StoreError`.

`classify` is the one place that turns a botocore exception into
`TransientStoreError` (back off, same token) or `FatalStoreError` (needs a human:
the message names the resource and the IAM action), never echoing a secret
value. Each store handles its own codes first and hands the rest to it.
"""

from __future__ import annotations

from dataclasses import replace

from syncd import logs
from syncd.stores._aws.common import ACCESS_DENIED_CODES, AwsErrorInfo
from syncd.stores._aws.common import error_info as _raw_error_info
from syncd.stores.base import FatalStoreError, StoreError, TransientStoreError

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


def error_info(exc: BaseException) -> AwsErrorInfo | None:
    """`common.error_info` fit for the daemon's messages: a code always, the message cleaned."""
    info = _raw_error_info(exc)
    if info is None:
        return None
    return replace(info, code=info.code or "Unknown", message=_clean(info.message))


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
