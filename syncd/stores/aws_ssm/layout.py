"""How syncd lays out a target in SSM Parameter Store, for the writer and the reader alike.

One SecureString parameter per target, named by the target's key (``/team/app/token``
or a flat name), overwritten in place; its value is ``payload.render(format)``: the
JSON payload, or the bare token for ``format = "raw"``. syncd never labels versions.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from syncd.payload import PayloadError, TokenPayload, fingerprint, is_slot_index

#: Value size limits by tier (Intelligent-Tiering moves a parameter to Advanced when it needs to).
MAX_VALUE = {"Standard": 4096, "Advanced": 8192, "Intelligent-Tiering": 8192}
MAX_DEPTH = 15
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-/]+")


def parameter_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a parameter name, or None. Checked before any call, and by ``syncd check``."""
    if not name:
        return "the parameter name is empty"
    if not _NAME_RE.fullmatch(name):
        return "use only letters, digits and _.-/ in a parameter name"
    if "/" in name and not name.startswith("/"):
        return f'a hierarchical parameter name must start with "/" (write "/{name}")'
    if "//" in name or (len(name) > 1 and name.endswith("/")):
        return 'a parameter name has no empty path segment and does not end with "/"'
    if name.count("/") > MAX_DEPTH:
        return f"a parameter name has at most {MAX_DEPTH} levels"
    first = name.lstrip("/").split("/", 1)[0].lower()
    if first.startswith(("aws", "ssm")):
        return 'parameter names cannot begin with "aws" or "ssm" (reserved by AWS)'
    if len(name) > 1011:
        return "the parameter name is too long (AWS allows 1011 characters including the ARN)"
    return None


def parameter_arn(partition: str, region: str, name: str) -> str:
    """The parameter's ARN with the account left as a placeholder (for the IAM hint in a message)."""
    return f"arn:{partition}:ssm:{region}:<account-id>:parameter/{name.lstrip('/')}"


def stored_token(text: str) -> tuple[str | None, float]:
    """(fingerprint, expires_at) of the token a stored value carries (JSON payload or bare token).

    A value without a usable expiry reports inf: nothing to gain by rewriting the same token.
    """
    try:
        doc: Any = json.loads(text)
    except ValueError:
        return (fingerprint(text.strip()) if text.strip() else None), math.inf
    if isinstance(doc, dict) and not is_slot_index(doc):
        token = doc.get("access_token")
        if not isinstance(token, str) or not token:
            return None, math.inf
        try:
            expires_at = TokenPayload.from_json(text, source="parameter").expires_at
        except PayloadError:
            expires_at = math.inf
        return fingerprint(token), expires_at
    return None, math.inf
