"""The store source classes the consumer reader reads through, as they were in ``syncd/client.py``.

Kept unchanged while each store package grows its own reader
(``syncd/stores/<store>/read.py``); :mod:`syncd.client.sources` builds them
from source URLs. boto3 and hvac are imported only inside the methods that
need them, so a consumer reading a file never pays for them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from syncd.payload import is_slot_index
from syncd.stores.reading import TORN_READ_ATTEMPTS as _TORN_READ_ATTEMPTS
from syncd.stores.reading import Fetched as _Fetched
from syncd.stores.reading import Source as _Source
from syncd.stores.reading import (
    TokenError,
    TokenFormatError,
    TokenNotFoundError,
    TokenStoreError,
)
from syncd.stores.reading import from_doc as _from_doc
from syncd.stores.reading import from_raw as _from_raw
from syncd.stores.reading import loads as _loads
from syncd.stores.reading import torn as _torn

log = logging.getLogger("syncd.client")

#: Secrets Manager returns at most 20 secrets per BatchGetSecretValue call.
_BATCH_LIMIT: Final = 20


class _FileSource(_Source):
    """A file written by the syncd file store: the JSON payload, or a bare token plus sidecar."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sidecar = path.with_name(f".{path.name}.syncd.json")
        self.description = f"file://{path}"

    def _read(self, path: Path) -> str | None:
        src = self.description
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise TokenStoreError(f"{src}: {path} is a directory, not a token file", src) from None
        except PermissionError:
            raise TokenStoreError(
                f"{src}: permission denied reading {path} as uid {os.getuid()}; syncd writes token files "
                "0600 by default: run the consumer as the same user, or set the target's mode (e.g. 0640) and group",
                src,
            ) from None
        except OSError as exc:
            raise TokenStoreError(
                f"{src}: cannot read {path} ({exc.strerror or exc.__class__.__name__})", src
            ) from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise TokenFormatError(f"{src}: {path} is not UTF-8 text (not a syncd payload)", src) from None

    def fetch(self, now: float) -> _Fetched:
        src = self.description
        for attempt in range(_TORN_READ_ATTEMPTS):
            text = self._read(self.path)
            if text is None:
                raise TokenNotFoundError(
                    f"{src}: no such file; syncd has not written this target yet, or the path is wrong "
                    "(`syncd status` lists each target)",
                    src,
                )
            body = text.strip()
            if not body:
                raise TokenFormatError(f"{src}: the file is empty (syncd writes atomically, so this is not ours)", src)
            if body.startswith(("{", "[")):  # JSON; a bare token never starts with a bracket
                return _from_doc(_loads(body, src), src)
            # format = "raw": the bare token; the public fields are in the hidden sidecar.
            meta_text = self._read(self.sidecar)
            if meta_text is None:
                raise TokenFormatError(
                    f'{src}: holds a bare token (format = "raw") but its metadata file {self.sidecar} is missing, '
                    'so its expiry is unknown; use format = "json" for readers, or keep the sidecar beside it',
                    src,
                )
            meta = _loads(meta_text, f"{src} (sidecar {self.sidecar.name})")
            if _torn(body, meta) and attempt + 1 < _TORN_READ_ATTEMPTS:
                continue  # caught syncd between writing the sidecar and the token: read both again
            return _from_raw(body, meta, src, f"metadata file {self.sidecar.name}")
        raise AssertionError("unreachable")  # pragma: no cover


class _AwsSource(_Source):
    """Shared by Secrets Manager and SSM: one lazily created boto3 client, and error translation."""

    service: str = ""

    def __init__(
        self,
        *,
        region: str | None,
        endpoint_url: str | None,
        profile: str | None,
        session: Any,
        timeout: float,
        description: str,
    ) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self.profile = profile
        self._session = session
        self.timeout = timeout
        self.description = description
        self._client: Any = None
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                import botocore.config
                import botocore.exceptions

                src = self.description
                try:
                    session: Any = self._session or boto3.session.Session(profile_name=self.profile)
                    region = self.region or session.region_name
                    if not region:
                        raise TokenStoreError(
                            f"{src}: no AWS region: add ?region=... to the source URL or set AWS_REGION", src
                        )
                    self._client = session.client(
                        self.service,
                        region_name=region,
                        endpoint_url=self.endpoint_url,
                        config=botocore.config.Config(
                            retries={"mode": "standard", "max_attempts": 3},
                            connect_timeout=self.timeout,
                            read_timeout=self.timeout,
                            user_agent_extra="syncd-client",
                        ),
                    )
                except botocore.exceptions.BotoCoreError as exc:
                    raise TokenStoreError(f"{src}: cannot set up the AWS client: {exc}", src) from None
            return self._client

    def _error(self, exc: Exception, what: str, action: str) -> TokenError:
        import botocore.exceptions

        src = self.description
        if isinstance(exc, botocore.exceptions.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", "")) or "ClientError"
            message = str(err.get("Message", ""))[:300]
            if code in ("ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound"):
                return TokenNotFoundError(
                    f"{src}: {what} does not exist ({code}); syncd has not written it yet, or the name or "
                    "region is wrong",
                    src,
                )
            if code == "InvalidRequestException" and "deletion" in message:
                return TokenNotFoundError(f"{src}: {what} is scheduled for deletion ({message})", src)
            if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation"):
                return TokenStoreError(f"{src}: access denied to {what}: allow {action} to this identity", src)
            if code in ("UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException"):
                return TokenStoreError(f"{src}: AWS rejected the credentials ({code}): {message}", src)
            return TokenStoreError(f"{src}: reading {what} failed: {code}: {message}", src)
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return TokenStoreError(
                f"{src}: no AWS credentials found (environment, profile, web identity or instance role)", src
            )
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return TokenStoreError(f"{src}: reading {what} failed: {exc.__class__.__name__}: {exc}", src)
        return TokenStoreError(f"{src}: reading {what} failed: {exc.__class__.__name__}", src)

    def _call(self, what: str, action: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        import botocore.exceptions

        try:
            return fn(**kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, what, action) from None

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None and hasattr(client, "close"):
            with contextlib.suppress(Exception):  # best effort at shutdown
                client.close()


class _SecretsManagerSource(_AwsSource):
    """A Secrets Manager secret: the JSON payload, or a slot index to follow."""

    service = "secretsmanager"

    def __init__(self, secret_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.secret_id = secret_id
        self._batch = True  # BatchGetSecretValue allowed; cleared on AccessDenied

    def fetch(self, now: float) -> _Fetched:
        client = self._get_client()
        src = self.description
        resp = self._call(
            f"secret {self.secret_id!r}",
            "secretsmanager:GetSecretValue",
            client.get_secret_value,
            SecretId=self.secret_id,
        )
        text = resp.get("SecretString")
        if text is None:
            raise TokenFormatError(f"{src}: the secret holds SecretBinary, not a syncd payload", src)
        if not text.lstrip().startswith(("{", "[")):
            raise TokenFormatError(
                f"{src}: the secret does not hold a JSON payload (a bare token has no expiry for the reader; "
                'use format = "json" for this target)',
                src,
            )
        doc = _loads(text, src)
        if is_slot_index(doc):
            return self._fetch_slots(doc, now)
        return _from_doc(doc, src)

    def _fetch_slots(self, index: dict[str, Any], now: float) -> _Fetched:
        src = self.description
        keys = index.get("keys")
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
            raise TokenFormatError(f"{src}: the slot index has no usable 'keys' list", src)
        found: list[_Fetched] = []
        problems: list[str] = []
        missing: list[str] = []
        for start in range(0, len(keys), _BATCH_LIMIT):
            chunk = keys[start : start + _BATCH_LIMIT]
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
                    found.append(_from_doc(_loads(text, label), label))
                except TokenFormatError as exc:
                    problems.append(str(exc))
        if problems and found:
            log.warning("%s: ignoring %d unusable slot(s): %s", src, len(problems), "; ".join(problems))
        if not found:
            if problems:
                raise TokenFormatError(f"{src}: no slot holds a usable payload: {'; '.join(problems)}", src)
            raise TokenNotFoundError(
                f"{src}: the slot index lists {len(keys)} slot(s) but none exists yet ({', '.join(missing)})", src
            )
        # The freshest unexpired slot: the one that stays valid longest (the newest write).
        live = [f for f in found if not f.payload.expired(now)]
        return max(live or found, key=lambda f: (f.payload.expires_at, f.payload.issued_at))

    def _read_slots(self, names: list[str]) -> list[tuple[str, str | None, TokenError | None]]:
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
                        fake = botocore.exceptions.ClientError(
                            {"Error": {"Code": err.get("ErrorCode", ""), "Message": err.get("Message", "")}},
                            "BatchGetSecretValue",
                        )
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
                resp = self._call(
                    f"slot {name!r}", "secretsmanager:GetSecretValue", client.get_secret_value, SecretId=name
                )
            except TokenError as exc:
                result.append((name, None, exc))
                continue
            result.append((name, resp.get("SecretString"), None))
        return result


class _SsmSource(_AwsSource):
    """An SSM Parameter Store SecureString whose value is the JSON payload."""

    service = "ssm"

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = name

    def fetch(self, now: float) -> _Fetched:
        client = self._get_client()
        src = self.description
        resp = self._call(
            f"parameter {self.name!r}",
            "ssm:GetParameter (and kms:Decrypt on its key)",
            client.get_parameter,
            Name=self.name,
            WithDecryption=True,
        )
        value = str(resp.get("Parameter", {}).get("Value", ""))
        if not value.lstrip().startswith("{"):
            raise TokenFormatError(
                f"{src}: the parameter does not hold a JSON payload (a bare token has no expiry for the reader; "
                'use format = "json" for this target)',
                src,
            )
        return _from_doc(_loads(value, src), src)
