"""The read side's contract: what a store's reader returns and raises.

Each store package (``syncd/stores/<name>/``) has a reader that turns what the
store holds into a :class:`Fetched` payload, and raises only :class:`TokenError`
subclasses. The consumer reader (:mod:`syncd.client`) decides when to call it;
the probe calls it too. Nothing here does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from syncd.payload import PayloadError, TokenPayload, fingerprint, is_slot_index

#: A raw token and its metadata are two writes; a reader can land between them.
TORN_READ_ATTEMPTS: Final = 3


class TokenError(Exception):
    """The reader cannot hand out a usable token. ``source`` names where it looked.

    Messages name the source and the reason, never the token.
    """

    def __init__(self, message: str, source: str = "") -> None:
        super().__init__(message)
        self.source = source


class TokenNotFoundError(TokenError):
    """The store has nothing at that name (syncd has not written it yet, or the name is wrong)."""


class TokenFormatError(TokenError):
    """The store holds something that is not a valid syncd payload (corrupt, truncated, foreign)."""


class TokenStoreError(TokenError):
    """The store could not be read: unreachable, permission denied, throttled, misconfigured."""


class TokenExpiredError(TokenError):
    """The only token available has expired; ``expired_for`` says how long ago, in seconds."""

    def __init__(self, message: str, source: str = "", expires_at: float = 0.0, expired_for: float = 0.0) -> None:
        super().__init__(message, source)
        self.expires_at = expires_at
        self.expired_for = expired_for


@dataclass(frozen=True)
class Fetched:
    """One read of the store: the payload, and whether it carried its own ``refresh_after``."""

    payload: TokenPayload
    explicit_refresh: bool


def loads(text: str | bytes, source: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        where = getattr(exc, "pos", None)
        at = f" at position {where}" if where is not None else ""
        raise TokenFormatError(f"{source}: not valid JSON ({exc.__class__.__name__}{at})", source) from None


def from_doc(doc: Any, source: str) -> Fetched:
    if is_slot_index(doc):
        raise TokenFormatError(
            f"{source}: holds a slot index ({doc.get('slots')} slots), not a token; "
            "only aws-sm:// sources follow slot indexes",
            source,
        )
    try:
        payload = TokenPayload.from_dict(doc, source=source)
    except PayloadError as exc:
        raise TokenFormatError(str(exc), source) from None
    return Fetched(payload, bool(doc.get("refresh_after")))


def from_raw(token: str, meta: Any, source: str, meta_name: str) -> Fetched:
    if not isinstance(meta, dict):
        raise TokenFormatError(f"{source}: {meta_name} is not a JSON object", source)
    version = meta.get("version")
    if isinstance(version, str) and version.strip().isdigit():
        meta = {**meta, "version": int(version)}  # KV v2 custom_metadata holds strings only
    try:
        payload = TokenPayload.from_metadata(token, meta, source=source)
    except PayloadError as exc:
        raise TokenFormatError(str(exc), source) from None
    return Fetched(payload, bool(meta.get("refresh_after")))


def torn(token: str, meta: Any) -> bool:
    """True when a bare token and its metadata belong to different writes (read between the two)."""
    return isinstance(meta, dict) and bool(meta.get("fingerprint")) and meta["fingerprint"] != fingerprint(token)


@dataclass(frozen=True)
class RawRead:
    """One read of a bare token (``format = "raw"``) and the metadata stored beside it."""

    token: str
    meta: Any
    meta_name: str  # where the metadata lives, for messages ("custom_metadata", "metadata file ...")


def fetch_untorn(read_once: Callable[[], Fetched | RawRead], source: str) -> Fetched:
    """``read_once`` again while a bare token and its metadata come from different writes, at most
    :data:`TORN_READ_ATTEMPTS` reads in all; the last read is judged as it is."""
    for attempt in range(TORN_READ_ATTEMPTS):
        held = read_once()
        if isinstance(held, Fetched):
            return held
        if torn(held.token, held.meta) and attempt + 1 < TORN_READ_ATTEMPTS:
            continue  # caught the writer between its two writes: read both again
        return from_raw(held.token, held.meta, source, held.meta_name)
    raise AssertionError("unreachable")  # pragma: no cover


class Source:
    """Where a payload lives. ``fetch`` raises only :class:`TokenError` subclasses (the reader
    wraps anything else), must be thread-safe, and may block: async readers call it in a thread."""

    description: str = "?"

    def fetch(self, now: float) -> Fetched:
        raise NotImplementedError

    def close(self) -> None:
        return None
