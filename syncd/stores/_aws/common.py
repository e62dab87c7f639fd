"""What both AWS stores share on both sides (the daemon's writes, the consumer's reads).

Only plumbing whose meaning is the same for a writer and a reader lives here:
building the botocore client (region resolution, timeouts, retry attempts),
reading a botocore error's code and message, the error codes both sides treat
alike, and ARN partitions. Each side keeps its own error types and messages:
the daemon raises `StoreError` (transient or fatal, naming the IAM action to
grant), the consumer reader raises `TokenError`. botocore is imported only
inside the functions, so importing this module costs a consumer nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Access denied by IAM (or an SCP): the identity needs a permission granted.
ACCESS_DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"})
#: Nothing at that name: Secrets Manager and SSM spell it differently.
NOT_FOUND_CODES = frozenset({"ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound"})


class MissingRegion(ValueError):
    """Neither the caller nor the session (environment, profile) names an AWS region."""


def client_config(
    *,
    total_attempts: int,
    connect_timeout: float,
    read_timeout: float,
    user_agent: str,
    pool: int | None = None,
) -> Any:
    """botocore Config: ``standard`` retries with ``total_attempts`` attempts (the first included), explicit timeouts.

    botocore's own ``max_attempts`` key counts retries only; ``total_max_attempts`` is
    the number a person means, so both sides say that.
    """
    from botocore.config import Config

    extra: dict[str, Any] = {} if pool is None else {"max_pool_connections": pool}
    return Config(
        retries={"mode": "standard", "total_max_attempts": total_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        user_agent_extra=user_agent,
        **extra,
    )


def open_client(session: Any, service: str, *, region: str | None, endpoint_url: str | None, config: Any) -> Any:
    """The ``service`` client of ``session`` in ``region`` (else the session's own region).

    Raises `MissingRegion` when there is none: without a region botocore would fail
    only at the first call, with a message that names neither the store nor the fix.
    """
    region = region or session.region_name
    if not region:
        raise MissingRegion("no AWS region")
    return session.client(service, region_name=region, endpoint_url=endpoint_url, config=config)


@dataclass(frozen=True)
class AwsErrorInfo:
    code: str
    message: str
    status: int | None
    operation: str | None


def error_info(exc: BaseException) -> AwsErrorInfo | None:
    """Code, message (as AWS sent it), HTTP status and operation of a botocore ClientError; None for anything else.

    The code is empty when AWS sent none; each side names that case in its own words.
    """
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return None
    err = exc.response.get("Error", {}) or {}
    meta = exc.response.get("ResponseMetadata", {}) or {}
    status = meta.get("HTTPStatusCode")
    return AwsErrorInfo(
        code=str(err.get("Code") or ""),
        message=str(err.get("Message") or ""),
        status=int(status) if isinstance(status, int) else None,
        operation=getattr(exc, "operation_name", None),
    )


def batch_entry_error(entry: dict[str, Any], operation: str) -> Exception:
    """One ``Errors`` entry of a BatchGetSecretValue answer as the ClientError a single call would raise.

    Both sides then translate it like any other failure of that secret.
    """
    from botocore.exceptions import ClientError

    response = {"Error": {"Code": entry.get("ErrorCode", ""), "Message": entry.get("Message", "")}}
    return ClientError(response, operation)  # type: ignore[arg-type]


def partition(region: str) -> str:
    """The ARN partition of ``region`` (for the resource named in an IAM hint)."""
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if "gov" in region else "aws"
