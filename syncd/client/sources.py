"""Source URLs: ``file:///...``, ``vault://mount/path``, ``aws-sm://secret-id``, ``aws-ssm:///parameter``.

:func:`open_source` checks a URL and builds the store's reader for it. A bad
URL raises ValueError naming the URL (with the values of unexpected query
parameters hidden, as they could be a token) and the accepted forms.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from syncd.stores.aws_secretsmanager.read import SecretsManagerSource
from syncd.stores.aws_ssm.read import SsmSource
from syncd.stores.file.read import FileSource
from syncd.stores.reading import Source as _Source
from syncd.stores.vault.read import VaultSource

__all__ = [
    "FileSource",
    "Options",
    "SecretsManagerSource",
    "SsmSource",
    "VaultSource",
    "open_source",
]


_FORMS: Final = (
    "file:///absolute/path/calm.json",
    "vault://<mount>/<path>[?kv=1][&mount=<mount>][&namespace=<ns>][&vault_addr=<url>]",
    "aws-sm://<secret name or ARN>[?region=<region>][&endpoint_url=<url>][&profile=<name>]",
    "aws-ssm:///<parameter/name>[?region=<region>][&endpoint_url=<url>][&profile=<name>]",
)
_SAFE_PARAMS: Final = frozenset(
    {"kv", "mount", "namespace", "vault_addr", "region", "endpoint_url", "profile", "format", "version"}
)


def _redacted(url: str) -> str:
    """The URL for error messages: values of unexpected query parameters are hidden (could be a token)."""
    head, sep, query = url.partition("?")
    if not sep:
        return url
    parts = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        parts.append(item if name in _SAFE_PARAMS or not eq else f"{name}=***")
    return f"{head}?{'&'.join(parts)}"


def _bad_url(url: str, why: str) -> ValueError:
    return ValueError(f"bad token source {_redacted(url)!r}: {why}. Accepted forms: " + " | ".join(_FORMS))


def _query(url: str, query: str, allowed: tuple[str, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if "token" in name.lower() or "secret" in name.lower():
            raise _bad_url(url, f"never put credentials in the URL ({name}=...); use the environment or arguments")
        if name not in allowed:
            accepted = ", ".join(allowed) if allowed else "none"
            raise _bad_url(url, f"unknown parameter {name!r} (accepted here: {accepted})")
        if name in params:
            raise _bad_url(url, f"parameter {name!r} given twice")
        if not value:
            raise _bad_url(url, f"parameter {name!r} is empty")
        params[name] = value
    return params


@dataclass(frozen=True)
class Options:
    """The reader's arguments that a source needs besides its URL."""

    timeout: float
    vault_addr: str | None
    vault_token: str | None
    vault_namespace: str | None
    aws_session: Any


def open_source(source: str | os.PathLike[str], opts: Options) -> _Source:
    """The store reader for ``source`` (a URL, or an absolute path as an ``os.PathLike``)."""
    if isinstance(source, os.PathLike):
        path = Path(os.fspath(source))
        if not path.is_absolute():
            raise ValueError(f"token file path {str(path)!r} must be absolute. Accepted forms: " + " | ".join(_FORMS))
        return FileSource(path)
    if not isinstance(source, str):
        raise TypeError(f"a token source is a URL string, got {type(source).__name__}")
    url = source.strip()
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or not scheme:
        hint = " (for a file, write file:///absolute/path)" if url.startswith("/") else ""
        raise _bad_url(url, f"no scheme{hint}")
    if "#" in rest:
        raise _bad_url(url, "unexpected '#' fragment")
    if scheme == "file":
        return _file_source(url)
    if scheme == "vault":
        return _vault_source(url, opts)
    if scheme in ("aws-sm", "aws-secretsmanager"):
        return _sm_source(url, rest, opts)
    if scheme == "aws-ssm":
        return _ssm_source(url, rest, opts)
    raise _bad_url(url, f"unknown scheme {scheme!r}")


def _file_source(url: str) -> _Source:
    parts = urlsplit(url)
    if parts.query:
        raise _bad_url(url, "file sources take no parameters (json or raw+sidecar is detected from the content)")
    if parts.netloc not in ("", "localhost"):
        raise _bad_url(url, f"{parts.netloc!r} looks like a relative path or a host; write file:/// + absolute path")
    path = unquote(parts.path)
    if not path.startswith("/") or path.endswith("/"):
        raise _bad_url(url, "the file path must be absolute and name a file")
    return FileSource(Path(path))


def _vault_source(url: str, opts: Options) -> _Source:
    parts = urlsplit(url)
    params = _query(url, parts.query, ("kv", "mount", "namespace", "vault_addr"))
    kv = params.get("kv", "2")
    if kv not in ("1", "2"):
        raise _bad_url(url, f"kv must be 1 or 2, got {kv!r}")
    whole = unquote(parts.netloc + parts.path).strip("/")
    if "mount" in params:
        mount, path = params["mount"].strip("/"), whole
    else:
        mount, _, path = whole.partition("/")
    if not mount or not path:
        raise _bad_url(url, "name the KV mount and the secret path, e.g. vault://secret/vgs/calm")
    addr = (
        opts.vault_addr or params.get("vault_addr") or os.environ.get("VAULT_ADDR") or os.environ.get("BAO_ADDR") or ""
    ).strip()
    if not addr:
        raise _bad_url(url, "no Vault address: set VAULT_ADDR, or pass vault_addr= (argument or URL parameter)")
    if not addr.startswith(("http://", "https://")):
        raise _bad_url(url, f"the Vault address {addr!r} must start with http:// or https://")
    namespace = (
        opts.vault_namespace
        or params.get("namespace")
        or os.environ.get("VAULT_NAMESPACE")
        or os.environ.get("BAO_NAMESPACE")
        or None
    )
    description = f"vault://{mount}/{path}" + ("?kv=1" if kv == "1" else "")
    return VaultSource(
        mount=mount,
        path=path,
        kv_version=int(kv),
        addr=addr,
        token=opts.vault_token,
        namespace=namespace,
        timeout=opts.timeout,
        description=description,
    )


def _aws_params(url: str, rest: str) -> tuple[str, dict[str, str]]:
    name, _, query = rest.partition("?")
    params = _query(url, query, ("region", "endpoint_url", "profile"))
    endpoint = params.get("endpoint_url")
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise _bad_url(url, f"endpoint_url {endpoint!r} must start with http:// or https://")
    return unquote(name), params


def _arn_region(name: str) -> str | None:
    """The region in an ARN (``arn:aws:secretsmanager:eu-west-1:...``), or None."""
    fields = name.split(":") if name.startswith("arn:") else []
    return fields[3] if len(fields) > 3 and fields[3] else None


def _sm_source(url: str, rest: str, opts: Options) -> _Source:
    secret_id, params = _aws_params(url, rest)
    if not secret_id.strip("/"):
        raise _bad_url(url, "name the secret, e.g. aws-sm://vgs/calm?region=eu-west-1")
    return SecretsManagerSource(secret_id, **_aws_options(secret_id, params, opts, f"aws-sm://{secret_id}"))


def _ssm_source(url: str, rest: str, opts: Options) -> _Source:
    name, params = _aws_params(url, rest)
    if not name.strip("/"):
        raise _bad_url(url, "name the parameter, e.g. aws-ssm:///vgs/calm")
    if "/" in name and not name.startswith(("/", "arn:")):
        raise _bad_url(url, f"a hierarchical parameter name starts with '/': write aws-ssm:///{name}")
    return SsmSource(name, **_aws_options(name, params, opts, f"aws-ssm://{name}"))


def _aws_options(name: str, params: dict[str, str], opts: Options, description: str) -> dict[str, Any]:
    """The keyword arguments of an AWS reader (`AwsSource`): the URL's, else the ARN's region, and the reader's."""
    return {
        "region": params.get("region") or _arn_region(name),
        "endpoint_url": params.get("endpoint_url"),
        "profile": params.get("profile"),
        "session": opts.aws_session,
        "timeout": opts.timeout,
        "description": description,
    }
