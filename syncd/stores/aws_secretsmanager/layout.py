"""How syncd lays out a target in Secrets Manager, for the writer and the reader alike.

A plain target is one secret whose SecretString is the payload (``payload.render``:
JSON, or the bare token for ``format = "raw"``). A target with slots is N slot
secrets ``<key>-0 .. <key>-(N-1)``, each holding a JSON payload, and the index
document ``{"slots": N, "keys": [...]}`` at ``<key>`` that tells readers where
they are. A reader fetches the slots (BatchGetSecretValue, 20 ids per call) and
keeps the freshest unexpired token, which is the same rule the daemon uses when
it adopts a stored token at start-up.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from syncd.payload import TokenPayload, is_slot_index, slot_index_doc

__all__ = [
    "BATCH_IDS",
    "MAX_SLOTS",
    "NAME_RE",
    "content_id",
    "freshest",
    "index_id",
    "index_keys",
    "is_slot_index",
    "slot_index_doc",
    "slot_names",
    "stored_doc",
]

#: The target option's range (config.TargetConfig).
MAX_SLOTS = 50
#: BatchGetSecretValue's ids per call.
BATCH_IDS = 20
#: A secret name (not an ARN): what CreateSecret accepts.
NAME_RE = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")

T = TypeVar("T")


def slot_names(key: str, n: int) -> list[str]:
    """``<key>-0 .. <key>-(n-1)``: the slot secrets of a target."""
    return [f"{key}-{i}" for i in range(n)]


def index_keys(doc: Any) -> list[str] | None:
    """The slot names a slot index lists, or None when it lists no usable ones."""
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
        return None
    return list(keys)


def stored_doc(text: str) -> Any:
    """The JSON document a secret holds (a payload, a slot index), or None when it is not JSON (a bare token)."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def content_id(text: str) -> str:
    """Short stable hash of a stored document that is not a token payload (the slot index)."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def index_id(doc: Any) -> str:
    """`content_id` of an index document, independent of key order and spacing."""
    return content_id(json.dumps(doc, sort_keys=True, separators=(",", ":")))


def freshest(found: Sequence[T], now: float, payload_of: Callable[[T], TokenPayload]) -> T | None:
    """The slot whose token stays valid longest (the newest write); an expired one only if all are.

    Ties go to the later ``issued_at``, then to the first slot listed.
    """
    if not found:
        return None
    live = [f for f in found if not payload_of(f).expired(now)]
    return max(live or found, key=lambda f: (payload_of(f).expires_at, payload_of(f).issued_at))
