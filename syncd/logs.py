"""Structured logging with a redaction step that every line passes through.

structlog events and stdlib records (httpx, httpcore, botocore, hvac, which at
debug level print request bodies) go through the same processor chain, whose
last step before rendering is ``redact``: a plain function over the event dict,
as structlog processors are. It removes

* every value registered with ``register_secret`` (client secrets, minted
  tokens, Vault tokens) and their form-urlencoded spelling,
* anything after ``Bearer`` / ``Basic`` in a header-looking string,
* anything that looks like a JWT,
* ``client_secret=...`` / ``"access_token": "..."`` fields in bodies,
* credentials inside URLs: the userinfo of ``https://user:pass@host`` and the
  values of query parameters such as ``token``, ``sig`` or ``api_key``
  (``https://***@host/path?token=***``; the rest of the URL stays readable).

Text is always scrubbed whole and only then shortened (``shorten``): cutting
first could leave the first characters of a secret that the redactor no longer
recognises once its tail is gone.

A token is logged by its fingerprint instead (``syncd.payload.fingerprint``).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import urllib.parse
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

REDACTED = "[redacted]"
#: What replaces a credential inside a URL: short, so the URL stays one readable piece.
URL_REDACTED = "***"

_BEARER_RE = re.compile(r"(?i)\b(bearer|basic)(\s+|%20|\+)[A-Za-z0-9._~+/=%:-]+")
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_FIELD_RE = re.compile(
    r"(?i)((?:client_secret|access_token|secret_id|refresh_token|id_token|password|x-vault-token|token)"
    r"(?:\\?[\"'])?\s*[=:]\s*(?:\\?[\"'])?)(?!\*\*\*(?:[\s\"'&#,;}\\]|$))([^\s\"'&,;}\\]+)"
)
# scheme://userinfo@host: greedy up to the last '@' before the path, so an unencoded '@'
# in a password is covered too.
_URL_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s?#@\"'<>]*(?:@[^/\s?#@\"'<>]*)*@")
# Query (or fragment) parameters that carry credentials in URLs: presigned URLs (sig,
# X-Amz-Signature), API keys, tokens passed as parameters.
_URL_PARAM_RE = re.compile(
    r"(?i)([?&;#](?:[a-z0-9_.-]*[_.-])?(?:token|secret|password|passwd|pwd|client_secret|access_token|api_key|"
    r"apikey|api-key|key|sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|credential|auth|"
    r"authorization|code|session)=)([^&#\s\"'<>]+)"
)
# `%` is a candidate character so percent-encoded spellings of a secret are found by the
# same set lookup, instead of a linear scan per registered value.
_CANDIDATE_RE = re.compile(r"[A-Za-z0-9._~+/=%-]{8,}")
_REGULAR_RE = re.compile(r"[A-Za-z0-9._~+/=%-]+")
# Characters no URL encoding changes: a value made only of them is its own every spelling.
_UNRESERVED_RE = re.compile(r"[A-Za-z0-9._~-]+")


#: What the redactor needs to forget a value later without keeping it: the hash and length of each
#: regular spelling, and each irregular spelling itself (see `secret_handle`).
SecretHandle = tuple["tuple[int, int] | str", ...]


class _SecretRegistry:
    """Known secret values. Most are matched in O(len(text)) by splitting text into candidates.

    Regular spellings are kept as their hashes, not as strings: a replaced token stays redacted
    until it expires (``syncd.engine.rotation``), about one per credential, and at 100,000
    credentials the strings cost ~100 MB where the hashes cost a few. A candidate is looked up by
    its hash; two strings with equal hashes (1 in 2^64) would only redact an innocent word.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._regular: set[int] = set()
        self._irregular: set[str] = set()
        # Distinct lengths of the regular values (with how many have each), for the scan
        # of candidates in which a secret is glued to other characters.
        self._length_counts: dict[int, int] = {}
        self._lengths: tuple[int, ...] = ()

    def add(self, value: str) -> None:
        if not value or len(value) < 4:
            return  # too short to redact without mangling ordinary words
        if hash(value) in self._regular and _UNRESERVED_RE.fullmatch(value):
            return  # known, and all its spellings are itself (a client secret registered again at each mint)
        with self._lock:
            for item in _handle(value):
                if isinstance(item, str):
                    self._irregular.add(item)
                elif item[0] not in self._regular:
                    self._regular.add(item[0])
                    self._count_length(item[1], +1)

    def discard(self, handle: SecretHandle) -> None:
        with self._lock:
            for item in handle:
                if isinstance(item, str):
                    self._irregular.discard(item)
                elif item[0] in self._regular:
                    self._regular.discard(item[0])
                    self._count_length(item[1], -1)

    def _count_length(self, length: int, delta: int) -> None:
        count = self._length_counts.get(length, 0) + delta
        if count > 0:
            self._length_counts[length] = count
        else:
            self._length_counts.pop(length, None)
        # Re-sorted only when a length appears or goes: a new token mostly has its predecessor's length.
        if (count > 0) != (count - delta > 0):
            self._lengths = tuple(sorted(self._length_counts))

    def __len__(self) -> int:
        return len(self._regular) + len(self._irregular)

    def scrub(self, text: str) -> str:
        regular, irregular, lengths = self._regular, self._irregular, self._lengths
        if regular:
            text = _CANDIDATE_RE.sub(
                lambda m: REDACTED if _contains_secret(m.group(0), regular, lengths) else m.group(0), text
            )
        for secret in tuple(irregular):
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def _spellings(value: str) -> set[str]:
    """``value`` as written and form- and percent-encoded (the same string when nothing needs encoding)."""
    if _UNRESERVED_RE.fullmatch(value):
        return {value}  # minted tokens (base64url, JWTs): quoting would return copies of the same text
    return {value, urllib.parse.quote_plus(value), urllib.parse.quote(value, safe="")}


def _handle(value: str) -> SecretHandle:
    return tuple(
        (hash(v), len(v)) if _REGULAR_RE.fullmatch(v) and len(v) >= 8 else v for v in sorted(_spellings(value))
    )


_SEPARATOR_RE = re.compile(r"[=/+.%]")


def _contains_secret(candidate: str, regular: set[int], lengths: tuple[int, ...] = ()) -> bool:
    if hash(candidate) in regular:
        return True
    # A secret glued to neighbours (``x=abc%2Bdef``, ``abc.def``): try what lies after and
    # before each separator, then the pieces between separators.
    for sep in _SEPARATOR_RE.finditer(candidate):
        i = sep.start()
        if hash(candidate[i + 1 :]) in regular or hash(candidate[:i]) in regular:
            return True
    if any(hash(part) in regular for part in _SEPARATOR_RE.split(candidate) if len(part) >= 8):
        return True
    # Glued with no separator at all (an IdP echoing ``"xx" + secret``): every window of
    # each registered length. Still set lookups, one per position and distinct length.
    size = len(candidate)
    for n in lengths:
        if n >= size:
            break
        if any(hash(candidate[i : i + n]) in regular for i in range(size - n + 1)):
            return True
    return False


_SECRETS = _SecretRegistry()


def register_secret(value: str) -> None:
    """Make ``value`` unprintable from here on (call before the value can reach a log)."""
    _SECRETS.add(value)


def forget_secret(value: str | SecretHandle) -> None:
    """Stop scanning for a value that can no longer be used (an expired token), or for its handle."""
    _SECRETS.discard(_handle(value) if isinstance(value, str) else value)


def secret_handle(value: str) -> SecretHandle:
    """What `forget_secret` needs to forget ``value`` later, without the value itself (for a
    replaced token kept redacted until it expires: its hash is a few bytes, the token ~1 KB)."""
    return _handle(value)


def known_secret_count() -> int:
    """How many values (with their encoded spellings) the redactor scans for."""
    return len(_SECRETS)


def scrub_url(text: str) -> str:
    """Only the credentials of every URL in ``text``: userinfo and secret-bearing query values."""
    if "://" in text:
        text = _URL_USERINFO_RE.sub(lambda m: m.group(1) + URL_REDACTED + "@", text)
    if "=" in text:
        text = _URL_PARAM_RE.sub(lambda m: m.group(1) + URL_REDACTED, text)
    return text


def scrub_text(text: str) -> str:
    """``text`` without any registered secret, bearer value, JWT, secret field or URL credential."""
    text = _SECRETS.scrub(text)
    text = scrub_url(text)
    text = _JWT_RE.sub(REDACTED, text)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _FIELD_RE.sub(lambda m: m.group(1) + REDACTED, text)


def shorten(text: str, limit: int, *, scrub: Callable[[str], str] = scrub_text) -> str:
    """``text`` scrubbed whole, then cut to ``limit`` characters (with "...").

    The order is the point: a secret cut in half is no longer recognisable, so its
    first characters would survive a scrub that ran after the cut.
    """
    text = scrub(text)
    if limit < 4 or len(text) <= limit:
        return text[:limit] if limit < 4 else text
    return text[: limit - 3].rstrip() + "..."


def _scrub_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if depth > 4:
        return value
    if isinstance(value, Mapping):
        return {k: _scrub_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub_value(v, depth + 1) for v in value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return scrub_text(str(value))


# Fields syncd fills itself from values that cannot hold a secret (names from the config,
# fingerprints, RFC 3339 times, outcomes): scrubbing them is pure cost on the hot path.
# Never `event`: for stdlib records from libraries it carries their message.
_TRUSTED_KEYS = frozenset(
    {
        "level",
        "timestamp",
        "logger",
        "credential",
        "target",
        "fingerprint",
        "expires_at",
        "refresh_after",
        "outcome",
        "store",
    }
)


def redact(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: scrub every value (and the rendered exception) of an event."""
    for key, value in list(event_dict.items()):
        if key in _TRUSTED_KEYS or isinstance(value, bool | int | float) or value is None:
            continue
        event_dict[key] = _scrub_value(value)
    return event_dict


def _stdlib_to_event(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    if record is not None:
        event_dict.setdefault("logger", record.name)
    return event_dict


class _Stderr:
    """``sys.stderr`` looked up at each write, not when logging is configured.

    A stream captured at configure time goes stale when the process swaps it
    (test runners, daemonising wrappers) and logging then fails on a closed file.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging through one redacting chain to ``stream`` (stderr)."""
    out: Any = stream or _Stderr()
    lvl = _LEVELS.get(level.lower(), logging.INFO)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[_stdlib_to_event, structlog.stdlib.ExtraAdder(), *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, redact, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_syncd", False):
            root.removeHandler(old)
    handler._syncd = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(lvl)
    # Libraries are chatty at debug; at info keep only their warnings.
    for name in ("httpx", "httpcore", "botocore", "boto3", "urllib3", "hvac", "apscheduler", "aiohttp.access"):
        logging.getLogger(name).setLevel(lvl if lvl == logging.DEBUG else logging.WARNING)


def get_logger(name: str = "syncd", **bind: Any) -> Any:
    return structlog.get_logger(name, **bind)


def error_fields(exc: BaseException) -> MutableMapping[str, Any]:
    """The fields an error event carries: class, vendor code, message (scrubbed)."""
    fields: dict[str, Any] = {"error_class": type(exc).__name__, "error": scrub_text(str(exc))}
    for attr in ("kind", "status", "code", "error"):
        value = getattr(exc, attr, None)
        if value is not None and attr != "error":
            fields[f"error_{attr}"] = value
    oauth_code = getattr(exc, "error", None)
    if isinstance(oauth_code, str):
        fields["error_code"] = oauth_code
    return fields
