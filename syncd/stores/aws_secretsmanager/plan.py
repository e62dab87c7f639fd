"""What ``syncd check`` says about a Secrets Manager target: the version quota, slots, and their cost.

``plan()`` computes versions/24 h per secret from the credential's real cadence
(shortest jittered interval plus a retry allowance) and refuses more than
`MAX_VERSIONS_PER_DAY` (``syncd check`` and start-up exit 2) with the three fixes.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from syncd import policy
from syncd.stores.aws_secretsmanager.errors import MAX_VERSIONS_PER_DAY, QUOTA_EXPLANATION
from syncd.stores.aws_secretsmanager.layout import MAX_SLOTS
from syncd.stores.base import Finding

if TYPE_CHECKING:
    from syncd.config import AwsSecretsManagerStoreConfig

# Prices as published by AWS (us-east-1, checked 2026-11); `syncd check` shows them as an estimate only.
PRICE_PER_SECRET_MONTH = 0.40
PRICE_PER_10K_CALLS = 0.05
_SUFFIX_LIKE_RE = re.compile(r"-[A-Za-z0-9]{6}$")


def slots_for(writes_per_day: float, max_per_day: float = MAX_VERSIONS_PER_DAY) -> int:
    """The smallest N with ``writes_per_day / N <= max_per_day`` (``policy.slots_needed`` from a rate)."""
    return policy.slots_for_rate(writes_per_day, max_per_day)


def auto_slots(writes_per_day: float) -> int:
    """N for ``slots = "auto"`` at this write rate, within the option's range."""
    return min(slots_for(writes_per_day), MAX_SLOTS)


def findings(
    store: str, key: str, writes_per_day: float, slots: int | str | None, config: AwsSecretsManagerStoreConfig
) -> list[Finding]:
    """The findings for a valid target ``key`` of ``store`` with ``slots``, written ``writes_per_day`` times."""
    subject = f"{store}:{key}"
    found: list[Finding] = []
    if _SUFFIX_LIKE_RE.search(key):
        found.append(
            Finding(
                "warning",
                subject,
                f"{key!r} ends with a hyphen and six characters, which AWS tools can mistake for the random "
                "suffix of a secret ARN",
                "rename the key",
            )
        )
    if not (math.isfinite(writes_per_day) and writes_per_day > 0):
        return found
    interval = policy.SECONDS_PER_DAY * (1 + policy.DEFAULT_RETRY_ALLOWANCE) / writes_per_day
    cadence = (
        f"one write every {interval:.0f} s at the low end of the jitter, plus "
        f"{policy.DEFAULT_RETRY_ALLOWANCE:.0%} for retries"
    )
    needed = slots_for(writes_per_day)
    if slots is None:
        n = 1
    elif slots == "auto":
        n = auto_slots(writes_per_day)
    else:
        n = int(slots)
    per_secret = writes_per_day / n
    where = f"secret {key}" if slots is None else f"each of {n} slot secrets {key}-0..{key}-{n - 1}"
    if not config.quota_check:
        found.append(
            Finding(
                "warning",
                subject,
                f"quota_check = false: not checking ~{per_secret:.0f} versions/24 h in {where} ({cadence}); "
                "meant for emulators such as moto, where test tokens live seconds",
                "remove quota_check = false against real AWS",
            )
        )
    elif per_secret > MAX_VERSIONS_PER_DAY:
        if slots == "auto" or needed > MAX_SLOTS:
            found.append(
                Finding(
                    "error",
                    subject,
                    f"the token is too short-lived even for {MAX_SLOTS} slots: {writes_per_day:.0f} versions/24 h "
                    f"({cadence}) would need {needed} secrets. {QUOTA_EXPLANATION}",
                    'use a longer-lived token, or SSM Parameter Store (type = "aws-ssm") or Vault for it',
                )
            )
        else:
            slot_fix = (
                f'set slots = "auto" on this target ({needed} secrets {key}-0..{key}-{needed - 1}, '
                f"~{writes_per_day / needed:.0f} versions/24 h each, with the index at {key})"
                if slots is None
                else f'raise slots to {needed} or set slots = "auto"'
            )
            found.append(
                Finding(
                    "error",
                    subject,
                    f"~{per_secret:.0f} versions/24 h in {where} ({cadence}). {QUOTA_EXPLANATION}",
                    f"(1) {slot_fix}; (2) use a longer-lived token (a 20-minute token fits one secret with "
                    "refresh_at = 0.9 and jitter = 0.05: ~88 versions/24 h); (3) use SSM Parameter Store "
                    '(type = "aws-ssm", keeps the newest 100 versions itself) or Vault for this credential. '
                    "See docs/aws.md",
                )
            )
    if slots is not None:
        secrets = n + 1
        calls = writes_per_day * 30 / (1 + policy.DEFAULT_RETRY_ALLOWANCE)
        cost = secrets * PRICE_PER_SECRET_MONTH + calls / 10_000 * PRICE_PER_10K_CALLS
        found.append(
            Finding(
                "info",
                subject,
                f"slots: {n} secrets {key}-0..{key}-{n - 1} plus the index at {key}, ~{per_secret:.0f} "
                f"versions/24 h each (limit {MAX_VERSIONS_PER_DAY:.0f}); about ${cost:.2f}/month at "
                f"${PRICE_PER_SECRET_MONTH:.2f}/secret and ${PRICE_PER_10K_CALLS:.2f}/10,000 calls for storage "
                "and writes (prices as published by AWS; check current pricing)",
            )
        )
    if config.kms_key_id and not config.create_missing:
        found.append(
            Finding(
                "info",
                subject,
                "kms_key_id applies only to secrets syncd creates (create_missing = true); existing secrets "
                "keep their key",
            )
        )
    return found
