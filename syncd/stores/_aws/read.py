"""The consumer's side of both AWS stores: one lazily built client per source, and `TokenError` translation.

boto3 is imported at the first read, never at import, so a consumer that reads a
file does not pay for it. Messages name the source and the IAM action to allow.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from syncd.stores._aws import common
from syncd.stores.reading import Source, TokenError, TokenFormatError, TokenNotFoundError, TokenStoreError

#: Total attempts of one read, the first included (botocore's ``max_attempts = 3`` retries).
READ_ATTEMPTS = 4
#: Codes the reader reports as rejected credentials. The daemon's set differs on purpose: it
#: retries an expired session token (its credentials refresh), a one-shot read just reports it.
_CREDENTIAL_CODES = frozenset({"UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException"})


class AwsSource(Source):
    """Shared by Secrets Manager and SSM: one lazily created boto3 client, and error translation."""

    service: str = ""

    def __init__(
        self,
        *,
        region: str | None,
        endpoint_url: str | None,
        profile: str | None,
        session: Any,
        timeout: float,
        description: str,
    ) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self.profile = profile
        self._session = session
        self.timeout = timeout
        self.description = description
        self._client: Any = None
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                import botocore.exceptions

                src = self.description
                try:
                    session: Any = self._session or boto3.session.Session(profile_name=self.profile)
                    self._client = common.open_client(
                        session,
                        self.service,
                        region=self.region,
                        endpoint_url=self.endpoint_url,
                        config=common.client_config(
                            total_attempts=READ_ATTEMPTS,
                            connect_timeout=self.timeout,
                            read_timeout=self.timeout,
                            user_agent="syncd-client",
                        ),
                    )
                except common.MissingRegion:
                    raise TokenStoreError(
                        f"{src}: no AWS region: add ?region=... to the source URL or set AWS_REGION", src
                    ) from None
                except botocore.exceptions.BotoCoreError as exc:
                    raise TokenStoreError(f"{src}: cannot set up the AWS client: {exc}", src) from None
            return self._client

    def _error(self, exc: Exception, what: str, action: str) -> TokenError:
        import botocore.exceptions

        src = self.description
        info = common.error_info(exc)
        if info is not None:
            code = info.code or "ClientError"
            message = info.message[:300]
            if code in common.NOT_FOUND_CODES:
                return TokenNotFoundError(
                    f"{src}: {what} does not exist ({code}); syncd has not written it yet, or the name or "
                    "region is wrong",
                    src,
                )
            if code == "InvalidRequestException" and "deletion" in message:
                return TokenNotFoundError(f"{src}: {what} is scheduled for deletion ({message})", src)
            if code in common.ACCESS_DENIED_CODES:
                return TokenStoreError(f"{src}: access denied to {what}: allow {action} to this identity", src)
            if code in _CREDENTIAL_CODES:
                return TokenStoreError(f"{src}: AWS rejected the credentials ({code}): {message}", src)
            return TokenStoreError(f"{src}: reading {what} failed: {code}: {message}", src)
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return TokenStoreError(
                f"{src}: no AWS credentials found (environment, profile, web identity or instance role)", src
            )
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return TokenStoreError(f"{src}: reading {what} failed: {exc.__class__.__name__}: {exc}", src)
        return TokenStoreError(f"{src}: reading {what} failed: {exc.__class__.__name__}", src)

    def _call(self, what: str, action: str, method: str, **kwargs: Any) -> Any:
        """The client's ``method``; a failure becomes the `TokenError` that names ``what`` and ``action``."""
        import botocore.exceptions

        fn = getattr(self._get_client(), method)
        try:
            return fn(**kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, what, action) from None

    def _not_json(self, holder: str) -> TokenFormatError:
        """A value that is not a JSON document: a bare token (``format = "raw"``), which a reader cannot judge."""
        src = self.description
        return TokenFormatError(
            f"{src}: the {holder} does not hold a JSON payload (a bare token has no expiry for the reader; "
            'use format = "json" for this target)',
            src,
        )

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None and hasattr(client, "close"):
            with contextlib.suppress(Exception):  # best effort at shutdown
                client.close()
