"""``syncd status``: table, --json, exit codes (the daemon's /status answered by a stub)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from syncd.cli import app

NOW = "2026-11-22T21:30:00.000Z"


def cred(name: str, state: str = "ok", healthy: bool = True, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": name,
        "state": state,
        "healthy": healthy,
        "fingerprint": "sha256:0123456789abcdef",
        "expires_in": 250.0,
        "next_refresh": "2026-11-22T21:32:00.000Z",
        "consecutive_failures": 0,
        "last_error": None,
        "targets": [{"target": f"local:{name}.json", "fresh": healthy}],
    }
    doc.update(extra)
    return doc


@pytest.fixture
def answer(monkeypatch):
    """Make ``httpx.get`` (what the command uses) return the given /status document."""
    seen: list[str] = []

    def install(doc: Any, status: int = 200) -> list[str]:
        def fake_get(url: str, timeout: float = 5.0) -> httpx.Response:
            seen.append(url)
            body = json.dumps(doc) if not isinstance(doc, str) else doc
            return httpx.Response(status, text=body, request=httpx.Request("GET", url))

        monkeypatch.setattr(httpx, "get", fake_get)
        return seen

    return install


def run(*args: str):
    return CliRunner().invoke(app, ["status", *args], env={"COLUMNS": "200"})


def test_all_ok_table_and_exit_0(answer):
    seen = answer({"version": "1.2.3", "now": NOW, "credentials": [cred("calm"), cred("card")]})
    result = run("--url", "http://syncd.test:9440/")
    assert result.exit_code == 0, result.output
    assert seen == ["http://syncd.test:9440/status"]
    out = result.output
    for word in ("calm", "card", "ok", "1/1 fresh", "2 of 2 credentials ok", "4.2m", "2.0m"):
        assert word in out, f"{word!r} not in\n{out}"


@pytest.mark.parametrize(
    "bad",
    [
        cred("card", state="retrying", healthy=True, consecutive_failures=2),  # still serving a valid token
        cred("card", state="ok", healthy=False),  # a target without an unexpired token
        cred("card", state="starting", healthy=False),
    ],
)
def test_any_unhealthy_credential_exits_1(answer, bad):
    answer({"now": NOW, "credentials": [cred("calm"), bad]})
    result = run()
    assert result.exit_code == 1, result.output
    assert "1 of 2 credentials ok" in result.output


def test_last_error_shows_code_class_and_message(answer):
    err = {"class": "FatalMintError", "message": "calm: the IdP refused the client secret", "error": "invalid_client"}
    answer(
        {
            "now": NOW,
            "credentials": [cred("calm", state="fatal", healthy=False, consecutive_failures=4, last_error=err)],
        }
    )
    result = run()
    assert result.exit_code == 1
    assert "[invalid_client] FatalMintError: calm: the IdP refused the client secret" in result.output
    assert "fatal" in result.output


def test_json_is_the_status_document_and_keeps_the_exit_code(answer):
    doc = {"now": NOW, "credentials": [cred("calm"), cred("card", state="expired", healthy=False)]}
    answer(doc)
    result = run("--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == doc
    answer({"now": NOW, "credentials": [cred("calm")]})
    result = run("--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["credentials"][0]["name"] == "calm"


def test_unreachable_daemon_exits_1_with_a_clear_message(monkeypatch):
    def refuse(url: str, timeout: float = 5.0) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    monkeypatch.setattr(httpx, "get", refuse)
    result = run("--url", "http://127.0.0.1:9")
    assert result.exit_code == 1
    assert "cannot reach syncd at http://127.0.0.1:9" in result.output
    assert "Connection refused" in result.output


@pytest.mark.parametrize(
    ("doc", "status", "message"),
    [
        ({"error": "nope"}, 404, "answered HTTP 404"),
        ("<html>hello</html>", 200, "not a syncd status document"),
        ({"something": "else"}, 200, "not a syncd status document"),
    ],
)
def test_something_else_answering_exits_1(answer, doc, status, message):
    answer(doc, status)
    result = run()
    assert result.exit_code == 1 and message in result.output


def test_no_credentials_is_ok(answer):
    answer({"now": NOW, "credentials": []})
    assert run().exit_code == 0
