"""Shared AWS pieces: the limiter, ClientRequestToken, error translation, and the HTTP fault injector.

``Faults`` answers chosen operations at botocore's HTTP layer (``before-send``),
below the retry handler, so botocore's real ``standard`` retry logic runs against
the injected errors. It is also imported by the integration tests, where it
injects faults moto cannot produce (throttling, the version quota, a lost response).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from syncd.stores import _aws
from syncd.stores._aws import TokenBucket, classify, client_request_token, shared_limiter
from syncd.stores.base import FatalStoreError, TransientStoreError

# --------------------------------------------------------------------------- fault injection


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any):
        yield self._body


def aws_response(url: str, status: int, body: dict[str, Any]) -> AWSResponse:
    headers = HTTPHeaders()
    headers["x-amzn-RequestId"] = "syncd-test"
    headers["Content-Type"] = "application/x-amz-json-1.1"
    return AWSResponse(url, status, headers, _Body(json.dumps(body).encode()))


def error(code: str, status: int = 400, message: str = "injected") -> Callable[[Any], AWSResponse]:
    return lambda request: aws_response(request.url, status, {"__type": code, "message": message})


def ok(body: dict[str, Any]) -> Callable[[Any], AWSResponse]:
    return lambda request: aws_response(request.url, 200, body)


def connect_timeout() -> Callable[[Any], AWSResponse]:
    def act(request: Any) -> AWSResponse:
        raise ConnectTimeoutError(endpoint_url=request.url)

    return act


def lost_response() -> Callable[[Any], AWSResponse]:
    """Deliver the request to the real server, then lose its answer (a read timeout)."""

    def act(request: Any) -> AWSResponse:
        headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        body = request.body.encode() if isinstance(request.body, str) else request.body
        req = urllib.request.Request(request.url, data=body, headers=headers, method=request.method)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=10) as resp:
            resp.read()
        raise ReadTimeoutError(endpoint_url=request.url)

    return act


class Faults:
    """Script answers per operation; an empty script sends the request for real."""

    def __init__(self, client: Any) -> None:
        self.sent: Counter[str] = Counter()
        self.script: dict[str, list[Callable[[Any], AWSResponse | None]]] = defaultdict(list)
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-send.{service}", self._before_send)

    def add(self, operation: str, *actions: Callable[[Any], AWSResponse | None]) -> Faults:
        self.script[operation].extend(actions)
        return self

    def _before_send(self, request: Any = None, event_name: str = "", **_: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        self.sent[operation] += 1
        if self.script[operation]:
            return self.script[operation].pop(0)(request)
        return None


# --------------------------------------------------------------------------- limiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_paces_at_its_rate_with_a_burst_of_one():
    clock = FakeClock()
    bucket = TokenBucket(10.0, clock=clock)
    waits = [bucket.reserve() for _ in range(5)]
    # the first token is in the bucket; then one every 100 ms, reserved in order (a queue)
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    clock.now += 10  # long idle: refills to the burst of 1, not 100 tokens
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.1)


def test_bucket_debit_delays_the_next_caller_and_refund_returns_a_token():
    clock = FakeClock()
    bucket = TokenBucket(2.0, clock=clock)
    assert bucket.reserve() == 0.0
    bucket.debit()  # a retry botocore sent on its own
    bucket.debit()
    assert bucket.reserve() == pytest.approx(1.5)
    bucket.refund()
    assert bucket.reserve() == pytest.approx(1.5)
    assert bucket.debited == 2


class FakeSleep:
    """Records each wait the bucket asks for and yields to the loop once, as a zero sleep would."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


async def test_bucket_acquire_sleeps_each_waiter_to_its_slot_and_is_loop_independent():
    clock, sleep = FakeClock(), FakeSleep()
    bucket = TokenBucket(40.0, clock=clock, sleep=sleep)
    await asyncio.gather(*(bucket.acquire() for _ in range(21)))
    # the first token is in the bucket; the other 20 queue up one slot (25 ms) apart
    assert sleep.waits == pytest.approx([k / 40 for k in range(1, 21)])
    assert bucket.acquired == 21 and bucket.waited == pytest.approx(sum(sleep.waits))
    # another event loop (another thread) queues behind them: the bucket is not tied to a loop
    await asyncio.to_thread(asyncio.run, bucket.acquire())
    assert sleep.waits[-1] == pytest.approx(21 / 40)
    clock.now += 1.0  # every reserved slot has passed and a token refilled: the next goes at once
    await bucket.acquire()
    assert len(sleep.waits) == 21


async def test_bucket_acquire_waits_on_the_real_clock_by_default():
    bucket = TokenBucket(40.0)
    started = time.monotonic()
    await asyncio.gather(*(bucket.acquire() for _ in range(5)))
    assert time.monotonic() - started >= 0.1  # 4 tokens after the first at 40/s; slower is fine


async def test_cancelled_waiter_gives_its_token_back():
    bucket = TokenBucket(1.0)
    await bucket.acquire()
    task = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bucket.reserve() == pytest.approx(1.0, abs=0.05)  # not 2 s: the cancelled reservation was refunded


def test_shared_limiter_is_per_bucket_and_region_and_keeps_the_lowest_rate():
    _aws.reset_limiters()
    a = shared_limiter("secretsmanager:PutSecretValue", "eu-west-1", 40)
    b = shared_limiter("secretsmanager:PutSecretValue", "eu-west-1", 30)
    c = shared_limiter("secretsmanager:PutSecretValue", "us-east-1", 40)
    assert a is b and a.rate == 30
    assert c is not a and c.rate == 40
    _aws.reset_limiters()


# --------------------------------------------------------------------------- ClientRequestToken


def test_client_request_token_is_deterministic_readable_and_in_range():
    t = client_request_token("vgs/calm-0", "sha256:0123456789abcdef")
    assert t == client_request_token("vgs/calm-0", "sha256:0123456789abcdef")
    assert t.startswith("syncd-0123456789abcdef-") and 32 <= len(t) <= 64
    assert t != client_request_token("vgs/calm-1", "sha256:0123456789abcdef")
    assert t != client_request_token("vgs/calm-0", "sha256:fedcba9876543210")
    salted = client_request_token("vgs/calm-0", "sha256:0123456789abcdef", salt="{...}")
    assert salted.startswith(t) and len(salted) <= 64
    odd = client_request_token("k" * 600, "not-a-fingerprint")
    assert 32 <= len(odd) <= 64 and odd.startswith("syncd-")


# --------------------------------------------------------------------------- errors


def _client_error(code: str, message: str = "", status: int = 400, op: str = "PutSecretValue") -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, op)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (_client_error("ThrottlingException", "Rate exceeded"), "transient"),
        (_client_error("InternalServiceError", status=500), "transient"),
        (_client_error("SomethingNew", status=503), "transient"),
        (_client_error("ExpiredTokenException"), "transient"),
        (ConnectTimeoutError(endpoint_url="https://x"), "transient"),
        (ReadTimeoutError(endpoint_url="https://x"), "transient"),
        (EndpointConnectionError(endpoint_url="https://x"), "transient"),
        (_client_error("AccessDeniedException"), "fatal"),
        (_client_error("UnrecognizedClientException"), "fatal"),
        (_client_error("ValidationException"), "fatal"),
        (NoCredentialsError(), "fatal"),
    ],
)
def test_classification(exc, kind):
    err = classify(exc, action="secretsmanager:PutSecretValue", resource="arn:x", what="write secret k")
    assert err.kind == kind
    assert isinstance(err, TransientStoreError if kind == "transient" else FatalStoreError)


def test_access_denied_names_the_action_and_resource_or_the_kms_key():
    err = classify(
        _client_error("AccessDeniedException", "User arn:aws:sts::1:assumed-role/r/syncd is not authorized"),
        action="secretsmanager:PutSecretValue",
        resource="arn:aws:secretsmanager:eu-west-1:<account-id>:secret:vgs/calm-??????",
        what="write secret vgs/calm",
    )
    assert (
        "grant secretsmanager:PutSecretValue on arn:aws:secretsmanager:eu-west-1:<account-id>:secret:vgs/calm-??????"
        in (err.message)
    )
    assert err.code == "AccessDeniedException"
    kms = classify(
        _client_error("AccessDeniedException", "Access to KMS is not allowed"),
        action="secretsmanager:PutSecretValue",
        resource="arn:x",
        what="write secret k",
    )
    assert "kms:GenerateDataKey and kms:Decrypt" in kms.message


def test_assume_role_denied_says_what_to_fix():
    err = classify(
        _client_error("AccessDenied", "not authorized to perform sts:AssumeRole", op="AssumeRole"),
        action="sts:AssumeRole",
        resource="arn:aws:iam::123456789012:role/syncd-writer",
        what="assume role",
    )
    assert err.kind == "fatal"
    assert "sts:AssumeRole" in err.message and "trust policy" in err.message


def test_vendor_messages_are_scrubbed_and_bounded():
    from syncd import logs

    logs.register_secret("tok-abcdefghijklmnopqrstuvwxyz")
    err = classify(
        _client_error("ValidationException", "bad value tok-abcdefghijklmnopqrstuvwxyz " + "x" * 2000),
        action="a",
        resource="r",
        what="write secret k",
    )
    assert "tok-abcdefghijklmnopqrstuvwxyz" not in err.message
    assert len(err.message) < 600
