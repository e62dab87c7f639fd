"""The redaction step: secrets, bearer headers, JWTs and token fields never reach output."""

from __future__ import annotations

import io
import json
import logging

import pytest

from syncd import logs
from syncd.logs import REDACTED, register_secret, scrub_text


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    logs.configure("info", "json")


def test_registered_secret_and_its_urlencoded_form():
    register_secret("s3cr3t value+with/odd=chars")
    register_secret("plainsecretvalue123")
    out = scrub_text("client_id=a&x=s3cr3t+value%2Bwith%2Fodd%3Dchars and plainsecretvalue123.")
    assert "s3cr3t" not in out and "plainsecretvalue123" not in out
    assert "odd" not in out


def test_bearer_basic_jwt_and_fields():
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlX2hlcmU"
    text = (
        f"Authorization: Bearer abc.def-ghi Basic Y2FsbTpzZWNyZXQ= token {jwt} "
        '{"access_token": "opaque-zzz", "expires_in": 300} client_secret=xyz&grant_type=client_credentials'
    )
    out = scrub_text(text)
    for leaked in ("abc.def-ghi", "Y2FsbTpzZWNyZXQ=", jwt, "opaque-zzz", "xyz&"):
        assert leaked not in out, leaked
    assert "grant_type=client_credentials" in out and '"expires_in": 300' in out
    assert out.count(REDACTED) >= 5


def test_structlog_and_stdlib_go_through_redaction():
    buf = io.StringIO()
    logs.configure("debug", "json", stream=buf)
    register_secret("the-client-secret-42")
    logs.get_logger("t").info("event", detail="sent the-client-secret-42", nested={"k": ["Bearer tok123456"]})
    logging.getLogger("httpx").debug("POST body client_secret=the-client-secret-42")
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert len(lines) == 2
    assert "the-client-secret-42" not in buf.getvalue() and "tok123456" not in buf.getvalue()
    assert lines[1]["logger"] == "httpx"


def test_exception_text_is_redacted():
    buf = io.StringIO()
    logs.configure("info", "json", stream=buf)
    register_secret("exc-secret-value-77")
    try:
        raise RuntimeError("failed with exc-secret-value-77")
    except RuntimeError:
        logs.get_logger("t").exception("boom")
    assert "exc-secret-value-77" not in buf.getvalue()
    assert "RuntimeError" in buf.getvalue()
