"""One OAuth 2.0 client-credentials mint: build the request, send it, validate the answer, classify failures.

This module is deliberately pure of scheduling: it performs exactly one token
request and either returns a :class:`Token` or raises a :class:`MintError`
whose ``kind`` tells the engine how to retry (``transient``: backoff with full
jitter; ``fatal``: a credential/configuration problem, retried at the slow
``fatal_retry`` pace and alerted on). It never logs; the engine logs the
exception message, which is therefore written to be safe and actionable on its
own: it names the credential, the status, the OAuth error and the fix, and it
never contains the client secret, the ``Authorization`` header or a token.

The rules implemented here are the "Minting rules" of docs/design.md. The parts:
``model`` (request, token, errors, limits), ``http`` (the client), ``exchange``
(one request under one deadline), ``answer`` (validate or classify the reply),
``text`` (untrusted server text: parsing, cleaning, redaction).
"""

from __future__ import annotations

from syncd.oauth.answer import _credentials_fix
from syncd.oauth.exchange import _basic_authorization, _build_request, mint
from syncd.oauth.http import build_http_client, endpoint_origin
from syncd.oauth.model import (
    MAX_BODY,
    AuthMethod,
    FatalMintError,
    MintError,
    MintRequest,
    Token,
    TransientMintError,
)
from syncd.oauth.text import _is_vschar

__all__ = [
    "MAX_BODY",
    "AuthMethod",
    "FatalMintError",
    "MintError",
    "MintRequest",
    "Token",
    "TransientMintError",
    "_basic_authorization",
    "_build_request",
    "_credentials_fix",
    "_is_vschar",
    "build_http_client",
    "endpoint_origin",
    "mint",
]
