"""Secrets Manager's own error codes, in the daemon's words; everything else goes to `_aws.errors.classify`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncd.stores._aws.errors import classify, error_info
from syncd.stores.base import FatalStoreError, StoreError

if TYPE_CHECKING:
    from syncd.config import AwsSecretsManagerStoreConfig

#: syncd's own ceiling of versions per secret per 24 h (AWS: ~100 kept, all younger than 24 h).
MAX_VERSIONS_PER_DAY = 90.0

QUOTA_EXPLANATION = (
    "Secrets Manager keeps every version younger than 24 h and removes unlabeled versions only beyond 100, "
    "so more than ~100 writes a day to one secret end in LimitExceededException within hours; AWS advises at "
    "most one PutSecretValue per 10 minutes per secret. syncd refuses plans above "
    f"{MAX_VERSIONS_PER_DAY:.0f} versions/24 h per secret"
)


def translate(
    exc: BaseException,
    *,
    action: str,
    secret_id: str,
    what: str,
    arn: str,
    store: str,
    region: str,
    config: AwsSecretsManagerStoreConfig,
) -> StoreError:
    """Secrets Manager's own codes first, then the generic AWS translation.

    ``arn`` is the secret's ARN (or its pattern) for the IAM hint; ``store`` and
    ``region`` name where the daemon looked.
    """
    info = error_info(exc)
    if info is not None:
        aws = f" (AWS: {info.message})" if info.message else ""
        if info.code == "LimitExceededException":
            if info.operation == "CreateSecret":
                return FatalStoreError(
                    f"cannot create secret {secret_id}: LimitExceededException, an account quota of Secrets "
                    f"Manager is exhausted{aws}",
                    code=info.code,
                )
            return FatalStoreError(
                f"cannot {what}: LimitExceededException, the secret has used up its version quota. "
                f"{QUOTA_EXPLANATION}. Not retried: a retry cannot succeed before old versions are 24 h old. "
                'Fix: set slots = "auto" on this target, use a longer-lived token, or store it in SSM '
                f"Parameter Store or Vault (docs/aws.md){aws}",
                code=info.code,
            )
        if info.code == "ResourceNotFoundException":
            tags = " and secretsmanager:TagResource" if config.tags else ""
            creates = f"secretsmanager:CreateSecret{tags}"
            return FatalStoreError(
                f"secret {secret_id} does not exist in {region}: create it (aws secretsmanager "
                f"create-secret --name {secret_id}) or set create_missing = true on store {store!r} "
                f"(needs {creates} on {arn}){aws}",
                code=info.code,
            )
        if info.code in ("EncryptionFailure", "DecryptionFailure") or (
            info.code in ("AccessDeniedException", "KMSAccessDeniedException") and "kms" in info.message.lower()
        ):
            key = config.kms_key_id or "the secret's KMS key"
            need = "kms:Decrypt" if info.code == "DecryptionFailure" else "kms:GenerateDataKey and kms:Decrypt"
            return FatalStoreError(
                f"cannot {what}: {info.code}, Secrets Manager could not use {key}; grant {need} on it to the "
                f"daemon's role and check that the key is enabled{aws}",
                code=info.code,
            )
        if info.code == "InvalidRequestException" and "deletion" in info.message.lower():
            return FatalStoreError(
                f"cannot {what}: the secret is scheduled for deletion; restore it (aws secretsmanager "
                f"restore-secret --secret-id {secret_id}) or use another key{aws}",
                code=info.code,
            )
    return classify(exc, action=action, resource=arn, what=what)
