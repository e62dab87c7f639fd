"""One adapter per store the benchmark exercises: its server, its syncd config, seeding, and how to read it.

An adapter knows four things about a store, and nothing about measuring:

* how to start (and stop) the server behind it on 127.0.0.1, if any;
* the ``[stores.bench]`` TOML syncd (and the floor loop) use, and the key of credential ``i``;
* how to *seed* it with payloads in the wire format (``TokenPayload.to_dict()``), written
  directly (not through syncd), the way a previous syncd run would have left them;
* a small JSON *spec* that the reader and the naive cron script use to reach it without syncd.

``available()`` says whether syncd has the store module yet, so the harness can
skip a store cleanly instead of failing the whole run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from syncd.payload import TokenPayload
from tests.peers.servers import MotoServer, OpenBaoServer

BENCH_STORE = "bench"
AWS_REGION = "eu-west-1"


class StoreAdapter:
    kind: ClassVar[str] = "?"
    title: ClassVar[str] = "?"
    module: ClassVar[str] = "?"
    #: seconds between the reader's polls of a target whose token is due (a slow emulator gets fewer)
    poll_interval: ClassVar[float] = 0.02
    random_read_rate: ClassVar[float] = 40.0

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec(cls.module) is not None

    def start(self) -> None:
        """Start the server (if any)."""

    def stop(self) -> None:
        """Stop the server (if any)."""

    def reset(self, prefix: str) -> None:
        """Make ``prefix`` empty before a case uses it."""

    def key(self, prefix: str, i: int) -> str:
        raise NotImplementedError

    def store_toml(self, prefix: str) -> str:
        raise NotImplementedError

    def target_toml(self, key: str) -> str:
        return f'{{ store = "{BENCH_STORE}", key = "{key}" }}'

    def seed(self, items: Iterable[tuple[str, TokenPayload]], prefix: str = "") -> None:
        raise NotImplementedError

    def spec(self, prefix: str) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self) -> str:
        return self.title


class FileAdapter(StoreAdapter):
    kind = "file"
    title = "file (local directory, fsync on)"
    module = "syncd.stores.file"
    poll_interval = 0.02
    random_read_rate = 40.0

    def directory(self, prefix: str) -> Path:
        return self.workdir / "targets" / prefix

    def reset(self, prefix: str) -> None:
        shutil.rmtree(self.directory(prefix), ignore_errors=True)
        self.directory(prefix).mkdir(parents=True, mode=0o700)

    def key(self, prefix: str, i: int) -> str:
        return f"c{i:05d}.json"

    def store_toml(self, prefix: str) -> str:
        return f'[stores.{BENCH_STORE}]\ntype = "file"\ndirectory = "{self.directory(prefix)}"\n'

    def seed(self, items: Iterable[tuple[str, TokenPayload]], prefix: str = "") -> None:
        directory = self.directory(prefix)
        for key, payload in items:
            path = directory / key
            path.write_text(payload.to_json())
            os.chmod(path, 0o600)

    def spec(self, prefix: str) -> dict[str, Any]:
        return {"type": "file", "directory": str(self.directory(prefix))}


class OpenBaoAdapter(StoreAdapter):
    kind = "openbao"
    title = "OpenBao (KV v2, `bao server -dev`)"
    module = "syncd.stores.vault"
    poll_interval = 0.02
    random_read_rate = 40.0

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.server: OpenBaoServer | None = None
        self.token_file = workdir / "bao.token"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.server = OpenBaoServer()
        self.server.start()
        self.token_file.write_text(self.server.root_token)
        self.token_file.chmod(0o600)

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()
            self.server = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def key(self, prefix: str, i: int) -> str:
        return f"{prefix}/c{i:05d}"

    def store_toml(self, prefix: str) -> str:
        return (
            f'[stores.{BENCH_STORE}]\ntype = "vault"\nurl = "{self.url}"\n'
            f'auth = {{ method = "token", token_file = "{self.token_file}" }}\nmount = "secret"\nkv_version = 2\n'
        )

    def seed(self, items: Iterable[tuple[str, TokenPayload]], prefix: str = "") -> None:
        """KV v2 writes with hvac, as a previous syncd would have left them (data = the wire payload)."""
        import hvac

        assert self.server is not None
        url, token = self.url, self.server.root_token
        local: dict[int, Any] = {}

        def client() -> Any:
            import threading

            tid = threading.get_ident()
            if tid not in local:
                local[tid] = hvac.Client(url=url, token=token)
            return local[tid]

        from syncd.stores.vault import custom_metadata_for

        def put(item: tuple[str, TokenPayload]) -> None:
            key, payload = item
            c = client()
            c.secrets.kv.v2.create_or_update_secret(path=key, secret=payload.to_dict(), mount_point="secret")
            # The path's custom_metadata, as syncd's own writes leave it (docs/vault.md).
            body = {"max_versions": 5, "custom_metadata": custom_metadata_for(payload)}
            c.adapter.post(f"/v1/secret/metadata/{key}", json=body)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, items))

    def spec(self, prefix: str) -> dict[str, Any]:
        assert self.server is not None
        return {"type": "vault", "url": self.url, "token": self.server.root_token, "mount": "secret"}


class MotoSsmAdapter(StoreAdapter):
    kind = "moto-ssm"
    title = "AWS SSM Parameter Store (moto_server)"
    module = "syncd.stores.aws_ssm"
    poll_interval = 0.05
    random_read_rate = 10.0

    def __init__(self, workdir: Path, server: MotoServer | None = None) -> None:
        super().__init__(workdir)
        self.server = server
        self._own = server is None

    def start(self) -> None:
        if self.server is None:
            self.server = MotoServer()
            self.server.start()

    def stop(self) -> None:
        if self.server is not None and self._own:
            self.server.cleanup()
        self.server = None

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return self.server.endpoint_url

    def key(self, prefix: str, i: int) -> str:
        return f"/bench/{prefix}/c{i:05d}"

    def store_toml(self, prefix: str) -> str:
        # AWS' own ceilings, not the emulator's: PutParameter 10/s with higher throughput, GetParameter 40/s.
        return (
            f'[stores.{BENCH_STORE}]\ntype = "aws-ssm"\nregion = "{AWS_REGION}"\nendpoint_url = "{self.endpoint}"\n'
            "max_writes_per_second = 10\nmax_reads_per_second = 40\n"
        )

    def seed(self, items: Iterable[tuple[str, TokenPayload]], prefix: str = "") -> None:
        import boto3

        ssm = boto3.client("ssm", region_name=AWS_REGION, endpoint_url=self.endpoint)
        for key, payload in items:
            ssm.put_parameter(Name=key, Value=payload.to_json(), Type="SecureString", Overwrite=True)

    def spec(self, prefix: str) -> dict[str, Any]:
        return {"type": "aws-ssm", "endpoint": self.endpoint, "region": AWS_REGION}


class MotoSecretsManagerAdapter(MotoSsmAdapter):
    kind = "moto-secretsmanager"
    title = "AWS Secrets Manager (moto_server)"
    module = "syncd.stores.aws_secretsmanager"

    def key(self, prefix: str, i: int) -> str:
        return f"bench/{prefix}/c{i:05d}"

    def store_toml(self, prefix: str) -> str:
        # quota_check = false: the emulator's test tokens live seconds, which no real secret could carry.
        return (
            f'[stores.{BENCH_STORE}]\ntype = "aws-secretsmanager"\nregion = "{AWS_REGION}"\n'
            f'endpoint_url = "{self.endpoint}"\ncreate_missing = true\nquota_check = false\n'
        )

    def seed(self, items: Iterable[tuple[str, TokenPayload]], prefix: str = "") -> None:
        import boto3

        sm = boto3.client("secretsmanager", region_name=AWS_REGION, endpoint_url=self.endpoint)
        for key, payload in items:
            try:
                sm.put_secret_value(SecretId=key, SecretString=payload.to_json())
            except sm.exceptions.ResourceNotFoundException:
                sm.create_secret(Name=key, SecretString=payload.to_json())

    def spec(self, prefix: str) -> dict[str, Any]:
        return {"type": "aws-secretsmanager", "endpoint": self.endpoint, "region": AWS_REGION}


ADAPTERS: dict[str, type[StoreAdapter]] = {
    a.kind: a for a in (FileAdapter, OpenBaoAdapter, MotoSsmAdapter, MotoSecretsManagerAdapter)
}


def dump_spec(spec: dict[str, Any]) -> str:
    return json.dumps(spec, separators=(",", ":"))
