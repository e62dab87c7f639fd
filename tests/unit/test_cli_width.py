"""``status``, ``check`` and ``inspect`` read in an 80-column terminal, and ``status`` finds the daemon.

``status`` talks to a stub of ``httpx.get`` (as in test_cli_status.py): what is under test
is which URL it asks and how it lays out the answer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from syncd import termfit
from syncd.cli import app
from syncd.payload import TokenPayload
from tests.unit.test_cli_status import NOW, cred

LONG = "card-management-production-eu-west-1"


def invoke(*args: str, env: dict[str, str | None] | None = None, cwd: Path | None = None):
    old = Path.cwd()
    if cwd:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(app, list(args), env={"COLUMNS": "80", "SYNCD_CONFIG": None, **(env or {})})
    finally:
        os.chdir(old)


def assert_fits(output: str, width: int = 80) -> None:
    long = [line for line in output.splitlines() if len(line) > width]
    assert not long, f"{len(long)} line(s) wider than {width}:\n" + "\n".join(long)


def unwrapped(output: str) -> str:
    """The output without spaces and line breaks, to find a wrapped line's words in it."""
    return "".join(ch for ch in output if ch not in " \n")


def column(output: str, header: str, next_header: str | None) -> str:
    """The text of one table column, its folded pieces joined: a name cut with "…" is not in it."""
    lines = output.splitlines()
    at = next(i for i, line in enumerate(lines) if f" {header} " in line and f" {next_header or header} " in line)
    start = lines[at].index(f" {header} ")
    end = lines[at].index(f" {next_header} ") if next_header else None
    body = []
    for line in lines[at + 2 :]:
        if line.startswith("└"):
            break
        body.append(line[start:end].strip(" │┃"))
    return "".join(body)


@pytest.fixture
def answer(monkeypatch):
    seen: list[str] = []

    def install(doc: Any) -> list[str]:
        def fake_get(url: str, timeout: float = 5.0) -> httpx.Response:
            seen.append(url)
            return httpx.Response(200, text=json.dumps(doc), request=httpx.Request("GET", url))

        monkeypatch.setattr(httpx, "get", fake_get)
        return seen

    return install


def write_config(directory: Path, listen: str = "127.0.0.1:9440") -> Path:
    path = directory / "syncd.toml"
    path.write_text(
        f'[daemon]\nlisten = "{listen}"\n'
        f'[stores.local]\ntype = "file"\ndirectory = "{directory / "out"}"\n'
        f'[[credentials]]\nname = "{LONG}"\n'
        'token_url = "https://auth.verygoodsecurity.com/auth/realms/vgs/protocol/openid-connect/token"\n'
        'client_id = "ACabcdef1234567890-card-management"\nclient_secret = { env = "NEWCOMER_TEST_SECRET" }\n'
        'scopes = ["cards:read", "cards:write", "network-tokens:read"]\n'
        f'targets = [{{ store = "local", key = "{LONG}.json" }}, {{ store = "local", key = "card.token", format = "raw" }}]\n'
    )
    (directory / "out").mkdir(exist_ok=True)
    return path


def test_status_table_fits_80_columns_and_keeps_names_whole(answer):
    err = {"class": "FatalMintError", "message": "the IdP refused the client secret " * 3, "error": "invalid_client"}
    answer({"version": "1.2.3", "now": NOW, "credentials": [cred(LONG), cred("card", "retrying", last_error=err)]})
    result = invoke("status")
    assert result.exit_code == 1, result.output
    assert_fits(result.output)
    assert LONG in column(result.output, "credential", "state")
    assert "…" not in result.output
    assert "[invalid_client]FatalMintError:theIdP" in unwrapped(column(result.output, "last error", None))


def test_check_fits_80_columns(tmp_path: Path):
    path = write_config(tmp_path)
    result = invoke("check", "-c", str(path), env={"NEWCOMER_TEST_SECRET": "x"})
    assert result.exit_code == 0, result.output
    assert_fits(result.output)
    assert "writes/day" in result.output and "openid-connect/token" in unwrapped(result.output)


def test_inspect_table_fits_80_columns_and_keeps_names_whole(tmp_path: Path):
    path = write_config(tmp_path)
    now = __import__("time").time()
    payload = TokenPayload(
        credential=LONG,
        access_token=SecretStr("tok-abc"),
        issued_at=now,
        expires_at=now + 300,
        refresh_after=now + 150,
    )
    (tmp_path / "out" / f"{LONG}.json").write_text(payload.to_json())
    result = invoke("inspect", "-c", str(path))
    assert result.exit_code == 1, result.output  # card.token is missing
    assert_fits(result.output)
    assert LONG in column(result.output, "credential", "target")
    assert f"local:{LONG}.json" in column(result.output, "target", "status")
    assert "…" not in result.output
    wide = invoke("inspect", "-c", str(path), env={"COLUMNS": "200"})
    assert payload.fingerprint in wide.output  # the columns left out at 80 are there when they fit


def test_status_uses_listen_from_config(answer, tmp_path: Path):
    seen = answer({"now": NOW, "credentials": []})
    path = write_config(tmp_path, listen="0.0.0.0:19440")
    assert invoke("status", "-c", str(path)).exit_code == 0
    assert invoke("status", env={"SYNCD_CONFIG": str(path)}).exit_code == 0
    assert invoke("status", cwd=tmp_path).exit_code == 0  # ./syncd.toml
    assert invoke("status", "-c", str(path), "--url", "http://elsewhere:1").exit_code == 0  # --url wins
    assert invoke("status", cwd=tmp_path / "out").exit_code == 0  # no config anywhere: the default
    assert seen == ["http://127.0.0.1:19440/status"] * 3 + ["http://elsewhere:1/status", "http://127.0.0.1:9440/status"]


def test_status_with_a_config_that_does_not_load_exits_2(answer, tmp_path: Path):
    seen = answer({"now": NOW, "credentials": []})
    result = invoke("status", "-c", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2 and "file not found" in result.output
    assert seen == []


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("127.0.0.1:9440", "http://127.0.0.1:9440"),
        ("0.0.0.0:9440", "http://127.0.0.1:9440"),
        (":9441", "http://127.0.0.1:9441"),
        ("[::]:9440", "http://[::1]:9440"),
        ("[::1]:9440", "http://[::1]:9440"),
        ("syncd.internal:80", "http://syncd.internal:80"),
    ],
)
def test_status_url(listen: str, url: str):
    assert termfit.status_url(listen) == url


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("  scopes      a b", ["  scopes      a b"]),
        ("  cadence     " + "word " * 16, ["  cadence     " + "word " * 12 + "word", "              word word word"]),
        ("x" * 90, ["x" * 60, "x" * 30]),
    ],
)
def test_wrap(line: str, expected: list[str]):
    got = termfit.wrap(line, 60 if len(line) == 90 else 80)
    assert got == expected, got


@pytest.mark.parametrize(
    ("is_terminal", "columns", "expected"),
    [(True, None, 80), (False, "80", 80), (False, None, None), (False, "", None), (False, "wide", None)],
)
def test_wrap_width(is_terminal: bool, columns: str | None, expected: int | None):
    assert termfit.wrap_width(is_terminal, columns, 80) == expected


def test_check_piped_keeps_each_line_whole(tmp_path: Path):
    """Without a terminal or COLUMNS, a script can grep a whole line (as CI does with findings)."""
    path = write_config(tmp_path)
    result = invoke("check", "-c", str(path), env={"NEWCOMER_TEST_SECRET": "x", "COLUMNS": None})
    assert result.exit_code == 0, result.output
    assert any(line.startswith("  cadence ") and "writes/day per target" in line for line in result.output.splitlines())
