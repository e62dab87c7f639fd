"""The consumer's side of Secrets Manager: the payload in a secret, or the freshest slot its index lists."""

from __future__ import annotations

import logging
from typing import Any

from syncd.stores._aws import common
from syncd.stores._aws.read import AwsSource
from syncd.stores.aws_secretsmanager.layout import BATCH_IDS, freshest, index_keys, is_slot_index
from syncd.stores.reading import Fetched, TokenError, TokenFormatError, TokenNotFoundError, from_doc, loads

log = logging.getLogger("syncd.client")


class SecretsManagerSource(AwsSource):
    """A Secrets Manager secret: the JSON payload, or a slot index to follow."""

    service = "secretsmanager"

    def __init__(self, secret_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.secret_id = secret_id
        self._batch = True  # BatchGetSecretValue allowed; cleared on AccessDenied

    def fetch(self, now: float) -> Fetched:
        src = self.description
        resp = self._call(
            f"secret {self.secret_id!r}", "secretsmanager:GetSecretValue", "get_secret_value", SecretId=self.secret_id
        )
        text = resp.get("SecretString")
        if text is None:
            raise TokenFormatError(f"{src}: the secret holds SecretBinary, not a syncd payload", src)
        if not text.lstrip().startswith(("{", "[")):
            raise self._not_json("secret")
        doc = loads(text, src)
        if is_slot_index(doc):
            return self._fetch_slots(doc, now)
        return from_doc(doc, src)

    def _fetch_slots(self, index: dict[str, Any], now: float) -> Fetched:
        src = self.description
        keys = index_keys(index)
        if keys is None:
            raise TokenFormatError(f"{src}: the slot index has no usable 'keys' list", src)
        found: list[Fetched] = []
        problems: list[str] = []
        missing: list[str] = []
        for start in range(0, len(keys), BATCH_IDS):
            chunk = keys[start : start + BATCH_IDS]
            for name, text, error in self._read_slots(chunk):
                label = f"{src} slot {name}"
                if error is not None:
                    if isinstance(error, TokenNotFoundError):
                        missing.append(name)
                    else:
                        problems.append(f"{name}: {error}")
                    continue
                if text is None:
                    problems.append(f"{name}: holds SecretBinary, not a payload")
                    continue
                try:
                    found.append(from_doc(loads(text, label), label))
                except TokenFormatError as exc:
                    problems.append(str(exc))
        if problems and found:
            log.warning("%s: ignoring %d unusable slot(s): %s", src, len(problems), "; ".join(problems))
        best = freshest(found, now, lambda f: f.payload)
        if best is None:
            if problems:
                raise TokenFormatError(f"{src}: no slot holds a usable payload: {'; '.join(problems)}", src)
            raise TokenNotFoundError(
                f"{src}: the slot index lists {len(keys)} slot(s) but none exists yet ({', '.join(missing)})", src
            )
        return best

    def _read_slots(self, names: list[str]) -> list[tuple[str, str | None, TokenError | None]]:
        """(name, SecretString, error) per slot: one BatchGetSecretValue, or one call each when it is denied."""
        import botocore.exceptions

        client = self._get_client()
        if self._batch and hasattr(client, "batch_get_secret_value"):
            out: list[tuple[str, str | None, TokenError | None]] = []
            kwargs: dict[str, Any] = {"SecretIdList": names}
            try:
                while True:
                    resp = client.batch_get_secret_value(**kwargs)
                    for value in resp.get("SecretValues", []):
                        out.append((str(value.get("Name", "?")), value.get("SecretString"), None))
                    for err in resp.get("Errors", []):
                        name = str(err.get("SecretId", "?"))
                        fake = common.batch_entry_error(err, "BatchGetSecretValue")
                        out.append((name, None, self._error(fake, f"slot {name!r}", "secretsmanager:GetSecretValue")))
                    if not resp.get("NextToken"):
                        return out
                    kwargs["NextToken"] = resp["NextToken"]
            except botocore.exceptions.ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in ("AccessDeniedException", "AccessDenied"):
                    raise self._error(exc, f"slots {names}", "secretsmanager:BatchGetSecretValue") from None
                log.warning(
                    "%s: BatchGetSecretValue is denied; reading the %d slots one by one (allow "
                    "secretsmanager:BatchGetSecretValue to save calls)",
                    self.description,
                    len(names),
                )
                self._batch = False
            except botocore.exceptions.BotoCoreError as exc:
                raise self._error(exc, f"slots {names}", "secretsmanager:BatchGetSecretValue") from None
        result: list[tuple[str, str | None, TokenError | None]] = []
        for name in names:
            try:
                resp = self._call(f"slot {name!r}", "secretsmanager:GetSecretValue", "get_secret_value", SecretId=name)
            except TokenError as exc:
                result.append((name, None, exc))
                continue
            result.append((name, resp.get("SecretString"), None))
        return result
