"""The daemon's side of both AWS stores: the session (with an assumed role), the client, idempotent writes.

Both stores talk to AWS through one boto3 client each (thread-safe, shared by
every credential using the store) inside the store's bounded thread pool.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any, ClassVar

from syncd import __version__
from syncd.payload import PayloadError, TokenPayload
from syncd.stores._aws import common
from syncd.stores._aws.errors import classify
from syncd.stores.base import FatalStoreError, StoreError, ThreadedStore

if TYPE_CHECKING:
    import boto3

    from syncd.config import AwsSecretsManagerStoreConfig, AwsSsmStoreConfig
    from syncd.stores._aws.limiter import TokenBucket

    AwsConfig = AwsSecretsManagerStoreConfig | AwsSsmStoreConfig

ROLE_SESSION_NAME = "syncd"


def build_session(config: AwsConfig) -> boto3.Session:
    """A boto3 session for the store: profile, region and, with ``role_arn``, an assumed role.

    Without ``role_arn`` the session uses botocore's default chain (environment,
    shared files, web identity, i.e. IRSA in Kubernetes, container and instance
    metadata), which refreshes its own credentials. With ``role_arn`` the role is
    assumed with session name ``syncd`` through deferred refreshable credentials:
    no STS call until the first request, and a new AssumeRole before the old
    credentials expire.
    """
    import boto3
    import botocore.session
    from botocore.credentials import CredentialProvider, DeferredRefreshableCredentials

    if not config.role_arn:
        return boto3.Session(profile_name=config.profile, region_name=config.region)

    base = boto3.Session(profile_name=config.profile, region_name=config.region)
    sts = base.client(
        "sts",
        region_name=config.region or base.region_name,
        endpoint_url=config.sts_endpoint_url,
        config=client_config(config),
    )
    role_arn = config.role_arn
    extra: dict[str, Any] = {"RoleSessionName": ROLE_SESSION_NAME}
    if config.external_id:
        extra["ExternalId"] = config.external_id

    def refresh() -> dict[str, str]:
        try:
            creds = sts.assume_role(RoleArn=role_arn, **extra)["Credentials"]
        except Exception as exc:
            raise classify(exc, action="sts:AssumeRole", resource=role_arn, what=f"assume role {role_arn}") from None
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    credentials = DeferredRefreshableCredentials(refresh_using=refresh, method="assume-role")

    class _AssumedRole(CredentialProvider):
        METHOD = "assume-role"
        CANONICAL_NAME = "syncd-assume-role"

        def load(self) -> DeferredRefreshableCredentials:
            return credentials

    core = botocore.session.Session(profile=config.profile)
    core.get_component("credential_provider").insert_before("env", _AssumedRole())
    return boto3.Session(botocore_session=core, region_name=config.region)


def client_config(config: AwsConfig) -> Any:
    """The store's botocore Config: its attempts and timeouts, a connection pool per worker.

    ``max_attempts`` of the store counts every attempt including the first (botocore's ``total_max_attempts``).
    """
    return common.client_config(
        total_attempts=config.max_attempts,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        pool=max(config.max_workers, 1),
        user_agent=f"syncd/{__version__}",
    )


def client_request_token(key: str, fingerprint: str, salt: str = "") -> str:
    """Secrets Manager ClientRequestToken for writing the token ``fingerprint`` to secret ``key``.

    Deterministic, so a retried PutSecretValue (timeout, 5xx, daemon restart)
    carries the same token and Secrets Manager ignores the repeat instead of
    creating a version. It becomes the VersionId, so it is readable:
    ``syncd-<16 hex of the token fingerprint>-<16 hex of sha256(key)>`` (39
    characters; the API accepts 32 to 64). The fingerprint is already public
    (logs, /status); the key hash keeps ids distinct across slot secrets. A
    ``salt`` (a hash of the content) is added only for the rare second version
    of one token with a different document (see the store).
    """
    match = re.fullmatch(r"sha256:([0-9a-f]{16})", fingerprint)
    fp = match.group(1) if match else hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    key_hash = hashlib.sha256(key.encode()).hexdigest()[:16]
    token = f"syncd-{fp}-{key_hash}"
    if salt:
        token += "-" + hashlib.sha256(salt.encode()).hexdigest()[:16]
    assert 32 <= len(token) <= 64
    return token


class AwsStore(ThreadedStore):
    """What the AWS stores share: a session and one client, built once; set-up errors kept;
    each API call limited, run in the pool and translated by the store's own ``_error``.

    A store whose client cannot be built (no region, a bad profile) is still created, so
    ``syncd check`` can report it as a plan error; every call then raises that error.
    """

    SERVICE: ClassVar[str]  # boto3 service name
    SERVICE_LABEL: ClassVar[str]  # for messages

    def __init__(self, name: str, config: AwsConfig) -> None:
        super().__init__(name, max_workers=config.max_workers)
        self.region = config.region or ""
        self._client: Any = None
        self._session: Any = None
        self._setup_error: str | None = None
        try:
            self._session = build_session(config)
            self.region = config.region or self._session.region_name or ""
            self._client = common.open_client(
                self._session,
                self.SERVICE,
                region=self.region,
                endpoint_url=config.endpoint_url,
                config=client_config(config),
            )
        except common.MissingRegion:
            reason = "no AWS region: set region in the store or AWS_REGION / AWS_DEFAULT_REGION"
            self._setup_error = f"store {name!r}: cannot create the {self.SERVICE_LABEL} client: {reason}"
        except Exception as exc:
            reason = str(exc) if isinstance(exc, ValueError) else str(classify(exc, action="", resource="", what="x"))
            self._setup_error = f"store {name!r}: cannot create the {self.SERVICE_LABEL} client: {reason}"

    def _ready(self) -> None:
        if self._setup_error is not None:
            raise FatalStoreError(self._setup_error, code="setup")

    def _error(self, exc: BaseException, *, action: str, name: str, what: str) -> StoreError:
        """The store's translation of a failed ``action`` on ``name`` (a secret id, a parameter name)."""
        raise NotImplementedError

    async def _call(
        self, method: str, action: str, name: str, what: str, limiter: TokenBucket | None, **kwargs: Any
    ) -> Any:
        """One API call: wait for the limiter, run it in the pool, translate failures."""
        self._ready()
        if limiter is not None:
            await limiter.acquire()
        try:
            return await self._run(getattr(self._client, method), **kwargs)
        except Exception as exc:
            raise self._error(exc, action=action, name=name, what=what) from None

    @staticmethod
    def _payload(text: str, source: str) -> TokenPayload:
        """The JSON payload ``source`` holds; anything else there is fatal (a foreign or corrupt value)."""
        try:
            return TokenPayload.from_json(text, source=source)
        except PayloadError as exc:
            raise FatalStoreError(str(exc), code="payload") from None

    async def aclose(self) -> None:
        await super().aclose()
        if self._client is not None:
            self._client.close()
