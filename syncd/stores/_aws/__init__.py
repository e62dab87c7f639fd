"""What the two AWS stores share, for both the daemon's writes and the consumer's reads.

* `common`: client building (region, timeouts, attempts), botocore error codes and
  messages, ARN partitions: the parts whose meaning is the same on both sides.
* `limiter`: the process-wide write limiters and the botocore retry rules that charge them.
* `errors`: the daemon's translation of a failure into `TransientStoreError` / `FatalStoreError`.
* `store`: the daemon's session (with an assumed role), client and `AwsStore` base.
* `read`: the consumer's `AwsSource` base, raising `TokenError`.

The names below are re-exported for ``from syncd.stores._aws import ...``; they are
loaded on first use, so a consumer importing a reader does not load the daemon's side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncd.stores._lazy import lazy_exports

if TYPE_CHECKING:
    from syncd.stores._aws.common import ACCESS_DENIED_CODES, AwsErrorInfo
    from syncd.stores._aws.errors import CREDENTIAL_CODES, THROTTLING_CODES, classify, error_info, is_code
    from syncd.stores._aws.limiter import TokenBucket, install_retry_rules, reset_limiters, shared_limiter
    from syncd.stores._aws.store import (
        ROLE_SESSION_NAME,
        AwsStore,
        build_session,
        client_config,
        client_request_token,
    )

#: Each submodule and the names it exports here.
__getattr__ = lazy_exports(
    __name__,
    {
        "common": ("ACCESS_DENIED_CODES", "AwsErrorInfo"),
        "errors": ("CREDENTIAL_CODES", "THROTTLING_CODES", "classify", "error_info", "is_code"),
        "limiter": ("TokenBucket", "install_retry_rules", "reset_limiters", "shared_limiter"),
        "store": ("AwsStore", "ROLE_SESSION_NAME", "build_session", "client_config", "client_request_token"),
    },
)

__all__ = [
    "ACCESS_DENIED_CODES",
    "CREDENTIAL_CODES",
    "ROLE_SESSION_NAME",
    "THROTTLING_CODES",
    "AwsErrorInfo",
    "AwsStore",
    "TokenBucket",
    "build_session",
    "classify",
    "client_config",
    "client_request_token",
    "error_info",
    "install_retry_rules",
    "is_code",
    "reset_limiters",
    "shared_limiter",
]
