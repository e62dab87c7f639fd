"""Start-up reads of many Secrets Manager targets: BatchGetSecretValue, 20 secrets per call.

What ``SecretsManagerStore.read`` returns for each target, found with one call per 20 plain
secrets instead of one GetSecretValue each (the same IAM policy: docs/aws.md). A target
with slots, a raw one, or a secret that turns out to hold a slot index is read with
``read`` (its slots are one more batch call anyway). A call that fails as a whole (throttled,
or BatchGetSecretValue not allowed) falls back to ``read`` for each of its targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from syncd.stores.aws_secretsmanager.layout import is_slot_index, stored_doc
from syncd.stores.base import StoreError
from syncd.stores.batch import ReadItem, ReadResult

if TYPE_CHECKING:
    from syncd.stores.aws_secretsmanager.store import SecretsManagerStore


async def read_many(store: SecretsManagerStore, items: Sequence[ReadItem]) -> list[ReadResult]:
    results: list[ReadResult] = [None] * len(items)
    plain: dict[str, list[int]] = {}  # secret id -> the items reading it
    alone: list[int] = []
    for i, (key, target) in enumerate(items):
        if target is not None and (target.slots is not None or target.format == "raw"):
            alone.append(i)
            continue
        try:
            store._validate(key, None, "json")
            store._ready()
        except StoreError as exc:
            results[i] = exc
            continue
        plain.setdefault(key, []).append(i)
    if plain:
        try:
            values, errors = await store._fetch(list(plain))
        except StoreError:
            alone.extend(i for idx in plain.values() for i in idx)
        else:
            for sid, idx in plain.items():
                for i in idx:
                    if sid in errors:
                        results[i] = errors[sid]
                    else:
                        text = values.get(sid)
                        if text is not None and is_slot_index(stored_doc(text)):
                            alone.append(i)  # read follows the index to the slots
                        else:
                            results[i] = _payload(store, sid, text)
    for i in sorted(alone):
        key, target = items[i]
        try:
            results[i] = await store.read(key, target=target)
        except Exception as exc:  # one item's failure is that item's result
            results[i] = exc
    return results


def _payload(store: SecretsManagerStore, secret_id: str, text: str | None) -> ReadResult:
    """What ``read`` makes of a plain JSON target's SecretString."""
    if text is None:
        return None
    try:
        return store._payload(text, f"secret {secret_id}")
    except StoreError as exc:
        return exc
