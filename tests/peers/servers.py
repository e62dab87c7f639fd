"""Start and stop the real servers ("peers") the integration tests talk to.

Every peer runs as a subprocess bound to 127.0.0.1:

- :class:`OidcServer`     oidc-provider (Node) with the Keycloak token paths VGS uses
- :class:`MotoServer`     ``moto_server``, an AWS API emulator (Secrets Manager, SSM)
- :class:`OpenBaoServer`  ``bao server -dev``, an in-memory OpenBao (Vault API)

Common behaviour (:class:`PeerProcess`):

- ``start()`` waits for readiness with a bounded timeout; on failure the error
  message carries the tail of the peer's log so a broken peer is never silent.
- ``stop()`` sends SIGTERM and escalates to SIGKILL on the whole process group
  after a bound. ``restart()`` stops and starts again on the same port (for
  outage tests).
- stdout and stderr go to ``log_path`` in a per-peer temporary directory.
- Peers run in their own session (``start_new_session``) under a small guard
  process (``_guard.py``) that kills the server when the test process goes
  away, even on SIGKILL; an ``atexit`` hook stops the peers on normal exit.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, NoReturn, Self

PEERS_DIR = Path(__file__).resolve().parent
REPO_ROOT = PEERS_DIR.parent.parent
OIDC_DIR = PEERS_DIR / "oidc"
OIDC_SCRIPT = OIDC_DIR / "server.mjs"
INSTALL_SCRIPT = PEERS_DIR / "install.sh"
GUARD_SCRIPT = PEERS_DIR / "_guard.py"

HOST = "127.0.0.1"
REALM_PATH = "/auth/realms/vgs"
DEFAULT_STARTUP_TIMEOUT_S = 30.0
DEFAULT_STOP_TIMEOUT_S = 10.0

# Requests to peers never go through a proxy configured in the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class PeerError(RuntimeError):
    """A peer could not be installed, started or queried."""


def free_port(consecutive: int = 1) -> int:
    """Return a TCP port on 127.0.0.1 that is free right now.

    With ``consecutive > 1`` the ports ``port .. port + consecutive - 1`` are all
    free (``bao server -dev`` also listens on ``port + 1`` for cluster traffic).
    There is an unavoidable race between this check and the server binding.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if consecutive == 1:
            return port
        if port + consecutive - 1 > 65535:
            continue
        if all(_port_is_free(port + i) for i in range(1, consecutive)):
            return port
    raise PeerError(f"no run of {consecutive} free ports found on {HOST}")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def http_request(
    method: str,
    url: str,
    *,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
    context: ssl.SSLContext | None = None,
) -> tuple[int, bytes]:
    """Send one HTTP request, bypassing proxies; return ``(status, body)`` for any status."""
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    opener = _opener
    if context is not None:
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
    try:
        with opener.open(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


_install_lock = threading.Lock()
_installed_for: set[Path] = set()


def ensure_installed(venv: Path | None = None) -> None:
    """Run ``install.sh`` once per process (``npm ci`` when needed, binary checks).

    ``venv`` defaults to the virtualenv of the running interpreter.
    """
    venv = venv if venv is not None else _venv_bin_dir().parent
    with _install_lock:
        if venv in _installed_for:
            return
        env = dict(os.environ)
        env["VENV"] = str(venv)
        proc = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0:
            raise PeerError(f"{INSTALL_SCRIPT} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        _installed_for.add(venv)


def _venv_bin_dir() -> Path:
    # Not resolved: .venv/bin/python is usually a symlink to the base interpreter.
    return Path(sys.executable).parent


def _venv_binary(name: str) -> Path:
    path = _venv_bin_dir() / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise PeerError(f"{path} not found; install the test extra: pip install -e '.[test]'")
    return path


# --------------------------------------------------------------------------- process base

_live_lock = threading.Lock()
_live: set[PeerProcess] = set()


def _stop_all_at_exit() -> None:
    with _live_lock:
        peers = list(_live)
    for peer in peers:
        with contextlib.suppress(Exception):
            peer.stop(timeout=3.0)


atexit.register(_stop_all_at_exit)


class PeerProcess:
    """A server subprocess with readiness wait, bounded stop, restart and a log file.

    Subclasses provide :meth:`_command` and :meth:`_probe`, and may override
    :meth:`_env` and :meth:`_pick_port`.
    """

    name: ClassVar[str] = "peer"

    def __init__(self, port: int = 0, *, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_S) -> None:
        self.port = port
        self.startup_timeout = startup_timeout
        self.workdir = Path(tempfile.mkdtemp(prefix=f"syncd-peer-{self.name}-"))
        self.log_path = self.workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._pipe_w: int | None = None
        self._log_offset = 0

    # -- subclass hooks ---------------------------------------------------------------

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _probe(self) -> bool:
        """Return True once the server answers; called repeatedly until ready."""
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _pick_port(self) -> int:
        return free_port()

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the guard; the server is its child, in the same process group."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> Self:
        """Start the server and wait until it is ready; raise :class:`PeerError` with the log tail if not."""
        if self._proc is not None:
            raise PeerError(f"{self.name} already started (pid {self._proc.pid})")
        if self.port == 0:
            self.port = self._pick_port()
        else:
            self._wait_port_free(self.port)
        cmd = self._command()
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            log.write(f"--- {time.strftime('%H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
            log.flush()
            read_fd, write_fd = os.pipe()
            try:
                self._proc = subprocess.Popen(
                    [sys.executable, str(GUARD_SCRIPT), str(read_fd), "--", *cmd],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self._env(),
                    cwd=self.workdir,
                    start_new_session=True,
                    pass_fds=(read_fd,),
                )
            except OSError as exc:
                os.close(write_fd)
                raise PeerError(f"{self.name}: cannot run {cmd[0]}: {exc}") from exc
            finally:
                os.close(read_fd)
        self._pipe_w = write_fd
        with _live_lock:
            _live.add(self)

        deadline = time.monotonic() + self.startup_timeout
        delay = 0.02
        while True:
            rc = self._proc.poll()
            if rc is not None:
                self._fail(f"exited with code {rc} during startup")
            try:
                if self._probe():
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self._fail(f"not ready after {self.startup_timeout:.0f}s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """SIGTERM the server, SIGKILL its process group after ``timeout`` seconds. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout)
            # Anything left in the group (the guard is the group leader) goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        finally:
            if self._pipe_w is not None:
                with contextlib.suppress(OSError):
                    os.close(self._pipe_w)
                self._pipe_w = None
            self._proc = None
            with _live_lock:
                _live.discard(self)

    def restart(self) -> Self:
        """Stop and start again on the same port (the process and its in-memory state are new)."""
        if self.port == 0:
            raise PeerError(f"{self.name}: restart() before start()")
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Stop and remove the temporary directory with the log."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- logs -----------------------------------------------------------------------------

    def log_text(self, *, since_start: bool = False) -> str:
        """The log file content, optionally only what the current process wrote."""
        try:
            with open(self.log_path, "rb") as f:
                if since_start:
                    f.seek(self._log_offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _fail(self, message: str) -> NoReturn:
        self.stop(timeout=3.0)
        raise PeerError(
            f"{self.name} on {HOST}:{self.port}: {message}\n--- last lines of {self.log_path} ---\n{self.log_tail()}"
        )

    def _wait_port_free(self, port: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not _port_is_free(port):
            if time.monotonic() > deadline:
                raise PeerError(f"{self.name}: port {port} still in use after {timeout:.0f}s")
            time.sleep(0.05)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {HOST}:{self.port} {state} log={self.log_path}>"


# --------------------------------------------------------------------------- OAuth server


@dataclass(frozen=True)
class OidcClient:
    """A client registered at the :class:`OidcServer`."""

    client_id: str
    client_secret: str | None
    scope: str = "cards:read cards:write"
    #: client_secret_post (default; basic works too), client_secret_jwt, private_key_jwt, tls_client_auth
    token_endpoint_auth_method: str = "client_secret_post"
    #: public keys (a JWK Set) for private_key_jwt
    jwks: Mapping[str, Any] | None = None
    #: the certificate subject for tls_client_auth, comma form ("CN=calm,O=VGS test")
    tls_client_auth_subject_dn: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"client_id": self.client_id}
        if self.client_secret is not None:
            out["client_secret"] = self.client_secret
        out["scope"] = self.scope
        if self.token_endpoint_auth_method != "client_secret_post":
            out["token_endpoint_auth_method"] = self.token_endpoint_auth_method
        if self.jwks is not None:
            out["jwks"] = dict(self.jwks)
        if self.tls_client_auth_subject_dn is not None:
            out["tls_client_auth_subject_dn"] = self.tls_client_auth_subject_dn
        return out


@dataclass(frozen=True)
class ServerTls:
    """PEM files for an HTTPS peer that asks clients for certificates issued by ``ca``."""

    cert: Path
    key: Path
    ca: Path


class OidcServer(PeerProcess):
    """oidc-provider behind the Keycloak paths of the VGS realm (see ``oidc/server.mjs``).

    Issues opaque client-credentials access tokens living ``ttl`` seconds; both
    client_secret_post and client_secret_basic work for every client. Counts
    issued tokens per client at ``GET /_stats`` (counters restart with the process).
    """

    name = "oidc"
    _ready_re = re.compile(r"^READY https?://127\.0\.0\.1:(\d+)\s*$", re.MULTILINE)

    def __init__(
        self,
        ttl: int = 3,
        clients: Iterable[OidcClient | Mapping[str, str]] = (),
        port: int = 0,
        *,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_S,
        tls: ServerTls | None = None,
    ) -> None:
        parsed = [c if isinstance(c, OidcClient) else OidcClient(**c) for c in clients]
        self.tls = tls
        if not parsed:
            raise ValueError("OidcServer needs at least one client")
        super().__init__(port, startup_timeout=startup_timeout)
        self.ttl = ttl
        self.clients: list[OidcClient] = parsed
        self.clients_file = self.workdir / "clients.json"
        self.clients_file.write_text(json.dumps([c.as_json() for c in self.clients], indent=2))

    def _pick_port(self) -> int:
        return 0  # the server binds port 0 itself and reports the port in its READY line

    def _command(self) -> list[str]:
        node = shutil.which("node")
        if node is None:
            raise PeerError("node not found on PATH; run tests/peers/install.sh")
        if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
            raise PeerError(f"{OIDC_DIR}/node_modules is missing; run tests/peers/install.sh")
        return [
            node,
            str(OIDC_SCRIPT),
            "--port",
            str(self.port),
            "--ttl",
            str(self.ttl),
            "--clients",
            str(self.clients_file),
            *(
                ["--tls-cert", str(self.tls.cert), "--tls-key", str(self.tls.key), "--tls-ca", str(self.tls.ca)]
                if self.tls is not None
                else []
            ),
        ]

    def _probe(self) -> bool:
        match = self._ready_re.search(self.log_text(since_start=True))
        if match is None:
            return False
        self.port = int(match.group(1))
        return True

    # -- URLs -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls is not None else 'http'}://{HOST}:{self.port}"

    @property
    def _ssl_context(self) -> ssl.SSLContext | None:
        """Trust for the test's own CA (the stats endpoints need no client certificate)."""
        return ssl.create_default_context(cafile=str(self.tls.ca)) if self.tls is not None else None

    @property
    def issuer(self) -> str:
        return f"{self.base_url}{REALM_PATH}"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"

    @property
    def introspection_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token/introspect"

    @property
    def revocation_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/revoke"

    # -- stats ------------------------------------------------------------------------------

    def client(self, client_id: str) -> OidcClient:
        for c in self.clients:
            if c.client_id == client_id:
                return c
        raise KeyError(client_id)

    def stats(self) -> dict[str, Any]:
        """``{"tokens_issued": {client_id: n}, "total": n}`` since the process started or the last reset."""
        status, body = http_request("GET", f"{self.base_url}/_stats", context=self._ssl_context)
        if status != 200:
            raise PeerError(f"GET /_stats -> {status}: {body[:200]!r}")
        result: dict[str, Any] = json.loads(body)
        return result

    def issued(self, client_id: str) -> int:
        """Number of tokens issued to ``client_id``."""
        return int(self.stats()["tokens_issued"].get(client_id, 0))

    def reset_stats(self) -> None:
        status, body = http_request("POST", f"{self.base_url}/_stats/reset", data=b"", context=self._ssl_context)
        if status != 200:
            raise PeerError(f"POST /_stats/reset -> {status}: {body[:200]!r}")


# --------------------------------------------------------------------------- AWS emulator


class MotoServer(PeerProcess):
    """``moto_server`` from the running virtualenv; all AWS services on one endpoint."""

    name = "moto"

    def _command(self) -> list[str]:
        return [str(_venv_binary("moto_server")), "-H", HOST, "-p", str(self.port)]

    def _probe(self) -> bool:
        status, _ = http_request("GET", f"{self.endpoint_url}/moto-api/", timeout=2.0)
        return status == 200

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def reset(self) -> None:
        """Drop all emulated AWS state (``POST /moto-api/reset``)."""
        status, body = http_request("POST", f"{self.endpoint_url}/moto-api/reset", data=b"")
        if status != 200:
            raise PeerError(f"moto reset -> {status}: {body[:200]!r}")


# --------------------------------------------------------------------------- OpenBao


class OpenBaoServer(PeerProcess):
    """``bao server -dev``: in-memory, unsealed, KV v2 mounted at ``secret/``, fixed root token.

    Dev mode also listens on ``port + 1`` (cluster address), so both ports are
    reserved. The root token is never written to a token helper (``-dev-no-store-token``
    and HOME pointing at the peer's temp dir), VAULT_*/BAO_* variables of the test
    process are not passed on, and dev mode does not mlock. ``restart()`` gives a
    fresh, empty server on the same port.
    """

    name = "openbao"

    def __init__(
        self,
        port: int = 0,
        root_token: str = "root-test-token",
        *,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_S,
    ) -> None:
        super().__init__(port, startup_timeout=startup_timeout)
        self.root_token = root_token

    def _pick_port(self) -> int:
        return free_port(consecutive=2)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        env["HOME"] = str(self.workdir)
        env["BAO_LOG_FORMAT"] = "standard"
        return env

    def _command(self) -> list[str]:
        return [
            str(_venv_binary("bao")),
            "server",
            "-dev",
            f"-dev-listen-address={HOST}:{self.port}",
            f"-dev-root-token-id={self.root_token}",
            "-dev-no-store-token",
        ]

    def _probe(self) -> bool:
        status, _ = http_request("GET", f"{self.url}/v1/sys/health", timeout=2.0)
        return status == 200

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def client(self, token: str | None = None) -> Any:
        """An ``hvac.Client`` for this server (root token unless ``token`` is given)."""
        import hvac

        return hvac.Client(url=self.url, token=token or self.root_token)
