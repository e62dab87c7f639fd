"""What a mint takes and gives: the request, the token, the errors, and the limits every part applies."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import httpx
from pydantic import SecretStr

AuthMethod = Literal[
    "client_secret_post",
    "client_secret_basic",
    "client_secret_jwt",
    "private_key_jwt",
    "client_assertion",
    "tls_client_auth",
]
#: Methods that send an RFC 7523 client_assertion instead of the secret (built by syncd.client_auth).
_ASSERTION_METHODS = frozenset({"client_secret_jwt", "private_key_jwt", "client_assertion"})

#: A token response is a few KiB at most; anything larger is a misrouted
#: request (an HTML portal, a proxy error page) or hostile, and must not be
#: buffered without bound by a daemon that serves thousands of credentials.
MAX_BODY = 64 * 1024

#: Server-provided text (error_description, odd token types) is untrusted: it
#: goes into logs and /status, so it is cut short and stripped of control chars.
_MAX_SERVER_TEXT = 200
_MAX_ERROR_CODE = 64

#: A lifetime beyond this is not a real token lifetime; accepting it would
#: push expiry timestamps past what RFC 3339 / datetime can represent.
_MAX_LIFETIME = 10 * 365 * 86400.0

#: Form fields that syncd owns. Letting ``extra_params`` replace them would
#: silently change the grant or the identity being asserted.
_RESERVED_FORM_FIELDS = frozenset(
    {"grant_type", "client_id", "client_secret", "scope", "client_assertion", "client_assertion_type"}
)

#: OAuth errors that mean "this credential/configuration is wrong": retrying
#: quickly cannot help, an operator has to act.
_FATAL_OAUTH_ERRORS: Mapping[str, str] = {
    "invalid_client": "the IdP rejected the client credentials",
    # Keycloak answers a wrong client secret with 401 unauthorized_client.
    "unauthorized_client": "the IdP rejected the client credentials",
    "invalid_scope": "the IdP refused the requested scopes",
    "unsupported_grant_type": "the IdP does not allow the client_credentials grant for this client",
    "invalid_request": "the IdP rejected the token request as malformed",
    "invalid_grant": "the IdP refused the client_credentials grant",
}

_FATAL_OAUTH_FIXES: Mapping[str, str] = {
    "invalid_client": "",  # filled in by _credentials_fix: it depends on the auth method
    "unauthorized_client": "",
    "invalid_scope": "check `scopes` against what the client is allowed at the IdP",
    "unsupported_grant_type": "enable the client credentials grant (service account) for this client at the IdP",
    "invalid_request": "check auth_method and extra_params against what the IdP expects",
    "invalid_grant": "check that the client is enabled and allowed the client credentials grant",
}

#: Error codes some servers return from the token endpoint when they are the
#: problem, whatever the HTTP status says.
_TRANSIENT_OAUTH_ERRORS = frozenset({"temporarily_unavailable", "server_error"})

_BEARER = "Bearer"
_FATAL_RETRY_HINT = "retrying every fatal_retry"
_TRANSIENT_RETRY_HINT = "will retry with backoff"


@dataclass(frozen=True)
class MintRequest:
    """Everything needed to mint one token for one credential.

    The secret is a :class:`~pydantic.SecretStr` so that a request object can
    be logged, put in a traceback or shown by a debugger without revealing it.
    """

    credential: str
    token_url: str
    client_id: str
    client_secret: SecretStr
    auth_method: AuthMethod = "client_secret_post"
    scopes: tuple[str, ...] | None = None
    extra_params: Mapping[str, str] = field(default_factory=dict)
    lifetime_fallback: float = 300.0
    mint_timeout: float | None = None
    """Total seconds for the whole exchange (connect, send, every byte of the answer); None: unbounded."""
    #: The signed JWT for the assertion methods, made fresh for this one request.
    client_assertion: SecretStr | None = None


@dataclass(frozen=True)
class Token:
    """A freshly minted access token and the times the engine schedules from.

    ``issued_at`` is the local time the request was *sent*, so ``expires_at``
    errs on the early side by the round-trip time rather than trusting the
    IdP's clock; ``server_skew`` is kept only to be logged. The token is a
    :class:`~pydantic.SecretStr`, so the dataclass ``repr`` shows asterisks.
    """

    access_token: SecretStr
    token_type: str
    scope: str | None
    issued_at: float
    expires_at: float
    fingerprint: str
    lifetime_source: Literal["expires_in", "jwt", "fallback"]
    server_skew: float | None

    @property
    def lifetime(self) -> float:
        return self.expires_at - self.issued_at


class MintError(Exception):
    """A mint that produced no token. ``kind`` decides the retry pace, the message is for humans.

    ``str(exc)`` is one line that names the credential, what happened and what
    to do; it is logged and shown on /status as is. Only ``message`` is stored
    in ``args`` so generic error reporters cannot pick up anything else.
    """

    kind: ClassVar[Literal["transient", "fatal"]] = "fatal"

    def __init__(
        self,
        message: str,
        *,
        credential: str,
        status: int | None = None,
        error: str | None = None,
        description: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        message = _one_line(message)
        super().__init__(message)
        self.message = message
        self.credential = credential
        self.status = status
        self.error = error
        self.description = description
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes would be lost (and unpickling would fail)
        # with Exception's default reduce; errors may cross process/thread
        # boundaries in the engine and the CLI.
        fields = {
            "credential": self.credential,
            "status": self.status,
            "error": self.error,
            "description": self.description,
            "retry_after": self.retry_after,
        }
        return (_rebuild_error, (type(self), self.message, fields))


class TransientMintError(MintError):
    """The IdP or the network is unwell; back off with jitter and honour ``retry_after``."""

    kind = "transient"


class FatalMintError(MintError):
    """The credential or its configuration is wrong; an operator must act."""

    kind = "fatal"


def _rebuild_error(cls: type[MintError], message: str, fields: dict[str, Any]) -> MintError:
    return cls(message, **fields)


@dataclass(frozen=True)
class _Reply:
    """What is kept of an HTTP exchange: never the request, so never the secret."""

    status: int
    reason: str
    headers: httpx.Headers
    body: bytes | None  # None: larger than MAX_BODY
    received_at: float


def _one_line(text: str) -> str:
    return " ".join("".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text).split())
