"""The IdP's answer: a token to validate, or an error to classify (transient or fatal) with its fix."""

from __future__ import annotations

from typing import Literal, NoReturn

from pydantic import SecretStr

from syncd.oauth.model import (
    _BEARER,
    _FATAL_OAUTH_ERRORS,
    _FATAL_OAUTH_FIXES,
    _FATAL_RETRY_HINT,
    _MAX_LIFETIME,
    _TRANSIENT_OAUTH_ERRORS,
    _TRANSIENT_RETRY_HINT,
    MAX_BODY,
    FatalMintError,
    MintRequest,
    Token,
    TransientMintError,
    _Reply,
)
from syncd.oauth.text import (
    _clean,
    _display_url,
    _error_code,
    _error_description,
    _is_vschar,
    _json_object,
    _jwt_times,
    _looks_like_html,
    _number,
    _Redactor,
    _retry_after,
    _status_detail,
)
from syncd.payload import fingerprint


def _interpret(req: MintRequest, url: str, reply: _Reply, issued_at: float, redact: _Redactor) -> Token:
    """Turn a complete HTTP reply into a Token or a classified error."""
    status = reply.status
    cred = req.credential
    if reply.body is None:
        raise TransientMintError(
            f"credential {cred!r}: token endpoint {url} returned a response larger than {MAX_BODY // 1024} KiB "
            f"with status {status} (not an OAuth response); {_TRANSIENT_RETRY_HINT}",
            credential=cred,
            status=status,
            retry_after=_retry_after(reply),
        )
    if 200 <= status < 300:
        return _parse_token(req, url, reply, issued_at, redact)
    _raise_for_error_status(req, url, reply, redact)


def _raise_for_error_status(req: MintRequest, url: str, reply: _Reply, redact: _Redactor) -> NoReturn:
    """Classify a non-2xx reply: credential/configuration problems are fatal, server trouble transient."""
    status = reply.status
    cred = req.credential
    body = reply.body or b""
    doc = _json_object(body)
    stray_token = doc.get("access_token") if doc is not None else None
    if isinstance(stray_token, str) and stray_token:
        redact = redact.plus(stray_token)
    error = _error_code(doc, redact)
    description = _error_description(doc, redact)
    detail = _status_detail(status, error, description)

    transient = status in (408, 429) or status >= 500 or error in _TRANSIENT_OAUTH_ERRORS
    if transient:
        if doc is None and _looks_like_html(reply):
            what = f"returned an HTML page with status {status} (not an OAuth response)"
        elif doc is None and body.strip():
            what = f"returned status {status} with a body that is not an OAuth response"
        else:
            shown = f"{status} {error}" + (f": {description}" if description else "") if error else f"status {status}"
            what = f"is rate limiting requests ({shown})" if status == 429 else f"returned {shown}"
        retry_after = _retry_after(reply)
        wait = f" after Retry-After {retry_after:g}s" if retry_after is not None else " with backoff"
        raise TransientMintError(
            f"credential {cred!r}: token endpoint {url} {what}; will retry{wait}",
            credential=cred,
            status=status,
            error=error,
            description=description,
            retry_after=retry_after,
        )

    if 300 <= status < 400:
        location = reply.headers.get("location")
        target = f" to {_display_url(location)}" if location else ""
        raise FatalMintError(
            f"credential {cred!r}: token endpoint {url} redirected ({status}){target}: set token_url to the final "
            f"URL (syncd never follows redirects with client credentials); {_FATAL_RETRY_HINT}",
            credential=cred,
            status=status,
            error=error,
            description=description,
        )
    if status in (404, 405):
        reason = f" {_clean(reply.reason, 40, redact)}" if reply.reason else ""
        raise FatalMintError(
            f"credential {cred!r}: token endpoint {url} returned {status}{reason}: token_url is wrong "
            f"(it must be the IdP's token endpoint, e.g. .../protocol/openid-connect/token); {_FATAL_RETRY_HINT}",
            credential=cred,
            status=status,
            error=error,
            description=description,
        )
    if error is not None and error in _FATAL_OAUTH_ERRORS:
        raise FatalMintError(
            f"credential {cred!r}: {_FATAL_OAUTH_ERRORS[error]} ({detail}): "
            f"{_FATAL_OAUTH_FIXES[error] or _credentials_fix(req)}; {_FATAL_RETRY_HINT}",
            credential=cred,
            status=status,
            error=error,
            description=description,
        )
    if status == 401:
        raise FatalMintError(
            f"credential {cred!r}: the IdP rejected the client credentials ({detail}): "
            f"{_credentials_fix(req)}; {_FATAL_RETRY_HINT}",
            credential=cred,
            status=status,
            error=error,
            description=description,
        )
    if status == 403:
        raise FatalMintError(
            f"credential {cred!r}: the IdP refused access ({detail}): check that the client is enabled and allowed "
            f"the client credentials grant and its scopes; {_FATAL_RETRY_HINT}",
            credential=cred,
            status=status,
            error=error,
            description=description,
        )
    kind = "HTML page" if doc is None and _looks_like_html(reply) else "response"
    raise FatalMintError(
        f"credential {cred!r}: token endpoint {url} refused the request ({detail}, {kind}): "
        f"check token_url, auth_method and extra_params; {_FATAL_RETRY_HINT}",
        credential=cred,
        status=status,
        error=error,
        description=description,
    )


def _credentials_fix(req: MintRequest) -> str:
    """What to check when the IdP rejects the client: the settings the configured method uses."""
    if req.auth_method == "private_key_jwt":
        return (
            "check client_id, that the IdP holds the public key of private_key (and key_id), "
            "signing_alg and assertion_audience"
        )
    if req.auth_method == "client_assertion":
        return "check client_id and that the IdP trusts the issuer of the client_assertion token file"
    if req.auth_method == "tls_client_auth":
        return "check client_id and that the IdP maps the client certificate (client_cert) to this client"
    if req.auth_method == "client_secret_jwt":
        return "check client_id, client_secret (the HMAC key), signing_alg and assertion_audience"
    return "check client_id, client_secret and auth_method"


def _parse_token(req: MintRequest, url: str, reply: _Reply, issued_at: float, redact: _Redactor) -> Token:
    """Validate a 2xx token response (RFC 6749 5.1); anything malformed is a transient invalid response."""
    cred = req.credential
    status = reply.status

    def invalid(why: str, error: str | None = None) -> TransientMintError:
        return TransientMintError(
            f"credential {cred!r}: token endpoint {url} returned {status} but not a valid token response "
            f"({why}); {_TRANSIENT_RETRY_HINT}",
            credential=cred,
            status=status,
            error=error,
            retry_after=_retry_after(reply),
        )

    body = reply.body or b""
    doc = _json_object(body)
    if doc is None:
        if _looks_like_html(reply):
            raise TransientMintError(
                f"credential {cred!r}: token endpoint {url} returned an HTML page with status {status} "
                f"(not an OAuth response); {_TRANSIENT_RETRY_HINT}",
                credential=cred,
                status=status,
                retry_after=_retry_after(reply),
            )
        raise invalid("body is not a JSON object" if body.strip() else "empty body")

    access_token = doc.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        error = _error_code(doc, redact)
        if "access_token" not in doc:
            why = "no access_token" + (f"; error {error}" if error else "")
        else:
            why = "access_token is not a non-empty string"
        raise invalid(why, error)
    if not _is_vschar(access_token):
        # RFC 6749 A.12: a token is VSCHARs. Anything else would corrupt the
        # Authorization headers consumers build from it.
        raise invalid("access_token contains characters not allowed in a token")
    redact = redact.plus(access_token)

    raw_type = doc.get("token_type")
    if raw_type is None:
        raise invalid("no token_type")
    if not isinstance(raw_type, str):
        raise invalid("token_type is not a string")
    if raw_type.strip().lower() != "bearer":
        shown = _clean(raw_type, 40, redact)
        raise FatalMintError(
            f"credential {cred!r}: the IdP issued a {shown!r} token but syncd only handles Bearer tokens: "
            f"configure the client at the IdP to issue Bearer tokens (no DPoP/MAC binding); {_FATAL_RETRY_HINT}",
            credential=cred,
            status=status,
        )

    scope_value = doc.get("scope")
    if scope_value is not None and not isinstance(scope_value, str):
        raise invalid("scope is not a string")
    if scope_value:
        scope: str | None = scope_value
    elif req.scopes:
        scope = " ".join(req.scopes)
    else:
        scope = None

    claims = _jwt_times(access_token)
    server_skew = claims[1] - issued_at if claims is not None and claims[1] is not None else None

    lifetime_source: Literal["expires_in", "jwt", "fallback"]
    raw_expires = doc.get("expires_in")
    if raw_expires is not None:
        expires_in = _number(raw_expires)
        if expires_in is None:
            raise invalid("expires_in is not a number")
        if expires_in <= 0:
            raise invalid(f"expires_in is {expires_in:g}, not positive")
        lifetime = expires_in
        lifetime_source = "expires_in"
    elif claims is not None and claims[0] is not None and claims[1] is not None:
        lifetime = claims[0] - claims[1]
        if lifetime <= 0:
            raise invalid("no expires_in and the JWT's exp is not after its iat")
        lifetime_source = "jwt"
    else:
        lifetime = req.lifetime_fallback
        lifetime_source = "fallback"
    if lifetime > _MAX_LIFETIME:
        raise invalid(f"a lifetime of {lifetime:g}s is not plausible")

    return Token(
        access_token=SecretStr(access_token),
        token_type=_BEARER,
        scope=scope,
        issued_at=issued_at,
        expires_at=issued_at + lifetime,
        fingerprint=fingerprint(access_token),
        lifetime_source=lifetime_source,
        server_skew=server_skew,
    )
