"""SSM Parameter Store store without a server: names, the plan, call sequences (Stubber), faults."""

from __future__ import annotations

import time

import pytest
from botocore.stub import ANY, Stubber
from pydantic import SecretStr

from syncd import policy
from syncd.config import AwsSsmStoreConfig, TargetConfig
from syncd.payload import TokenPayload
from syncd.stores import _aws
from syncd.stores.aws_ssm import SsmStore, parameter_name_problem
from syncd.stores.base import FatalStoreError, TransientStoreError
from tests.unit.test_aws_common import Faults, error, ok

pytestmark = pytest.mark.usefixtures("aws_env")

NOWHERE = "http://127.0.0.1:9"
NAME = "/vgs/calm"


@pytest.fixture(autouse=True)
def _fresh_limiters():
    _aws.reset_limiters()
    yield
    _aws.reset_limiters()


def make(**options) -> SsmStore:
    options.setdefault("region", "eu-west-1")
    options.setdefault("endpoint_url", NOWHERE)
    return SsmStore("ssm", AwsSsmStoreConfig(type="aws-ssm", **options))


def target(key: str = NAME, **options) -> TargetConfig:
    return TargetConfig(store="ssm", key=key, **options)


def payload(token: str, life: float = 300.0) -> TokenPayload:
    now = time.time()
    return TokenPayload(
        credential="calm", access_token=SecretStr(token), issued_at=now, expires_at=now + life, refresh_after=now + 150
    )


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("/vgs/calm", None),
        ("calm", None),
        ("calm.token_1-a", None),
        ("vgs/calm", 'must start with "/"'),
        ("/vgs//calm", "empty path segment"),
        ("/vgs/calm/", 'does not end with "/"'),
        ("/vgs/c a lm", "only letters"),
        ("/aws/x", "reserved"),
        ("ssm-thing", "reserved"),
        ("/" + "/".join(["a"] * 16), "at most 15 levels"),
        ("", "empty"),
    ],
)
def test_parameter_names(name, problem):
    found = parameter_name_problem(name)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_plan_rejects_bad_names_and_explains_raw():
    store = make()
    wpd = policy.writes_per_day(300, policy.RefreshPolicy())
    bad = store.plan("vgs/calm", wpd, target=target("vgs/calm"))
    assert bad[0].level == "error" and '"/vgs/calm"' in bad[0].message
    raw = store.plan(NAME, wpd, target=target(format="raw"))
    assert [f.level for f in raw] == ["info"] and "cannot adopt" in raw[0].message
    # a 5-minute token is fine for one parameter: no quota error
    assert store.plan("/vgs/card", wpd, target=target("/vgs/card")) == []


async def test_securestring_overwrite_one_call_per_rotation():
    store = make(kms_key_id="alias/syncd", tier="Intelligent-Tiering")
    p1, p2 = payload("tok-one-0123456789abcdef"), payload("tok-two-0123456789abcdef")
    stub = Stubber(store._client)
    stub.add_client_error("get_parameter", "ParameterNotFound", expected_params={"Name": NAME, "WithDecryption": True})
    for p in (p1, p2):
        stub.add_response(
            "put_parameter",
            {"Version": 1, "Tier": "Standard"},
            expected_params={
                "Name": NAME,
                "Value": p.to_json(),
                "Type": "SecureString",
                "Overwrite": True,
                "Tier": "Intelligent-Tiering",
                "KeyId": "alias/syncd",
                "Description": ANY,
            },
        )
    with stub:
        assert (await store.write(NAME, p1, target=target())).written
        assert (await store.write(NAME, p2, target=target())).written
        assert not (await store.write(NAME, p2, target=target())).written
        stub.assert_no_pending_responses()
    await store.aclose()


async def test_tags_are_set_when_creating_then_plain_overwrite():
    store = make(tags={"team": "payments"})
    p1, p2 = payload("tok-one-0123456789abcdef"), payload("tok-two-0123456789abcdef")
    stub = Stubber(store._client)
    stub.add_client_error("get_parameter", "ParameterNotFound")
    stub.add_response(
        "put_parameter",
        {"Version": 1},
        expected_params={
            "Name": NAME,
            "Value": ANY,
            "Type": "SecureString",
            "Overwrite": False,
            "Tags": [{"Key": "team", "Value": "payments"}],
            "Tier": "Standard",
            "Description": ANY,
        },
    )
    stub.add_response(
        "put_parameter",
        {"Version": 2},
        expected_params={
            "Name": NAME,
            "Value": ANY,
            "Type": "SecureString",
            "Overwrite": True,
            "Tier": "Standard",
            "Description": ANY,
        },
    )
    with stub:
        assert (await store.write(NAME, p1, target=target())).version == "1"
        assert (await store.write(NAME, p2, target=target())).version == "2"
        stub.assert_no_pending_responses()
    await store.aclose()


async def test_value_over_the_tier_limit_is_fatal_before_any_call():
    store = make()
    with pytest.raises(FatalStoreError, match='tier = "Intelligent-Tiering"'):
        await store.write(NAME, payload("t" * 5000), target=target())
    await store.aclose()


async def test_labelled_oldest_version_is_explained_with_its_labels():
    store = make()
    stub = Stubber(store._client)
    stub.add_client_error("get_parameter", "ParameterNotFound")
    stub.add_client_error(
        "put_parameter",
        "ParameterMaxVersionLimitExceeded",
        "You attempted to create a new version of /vgs/calm by calling the PutParameter API with the overwrite "
        "flag. Version 7, the oldest version, can't be deleted because it has a label associated with it. Move the "
        "label to another version of the parameter, and try again.",
    )
    stub.add_response(
        "get_parameter_history",
        {"Parameters": [{"Name": NAME, "Version": 7, "Labels": ["golden"]}, {"Name": NAME, "Version": 8}]},
    )
    with stub, pytest.raises(FatalStoreError) as info:
        await store.write(NAME, payload("tok-one-0123456789abcdef"), target=target())
    msg = info.value.message
    assert info.value.code == "ParameterMaxVersionLimitExceeded"
    assert "version 7 carries label(s) golden" in msg and "syncd never labels versions" in msg
    assert "aws ssm unlabel-parameter-version --name /vgs/calm --parameter-version 7 --labels golden" in msg
    await store.aclose()


@pytest.mark.parametrize(
    ("code", "expect"),
    [
        ("HierarchyTypeMismatchException", "aws ssm delete-parameter --name /vgs/calm"),
        ("ParameterLimitExceeded", 'tier = "Advanced"'),
        ("InvalidKeyId", "KMS key alias/nope"),
        ("AccessDeniedException", "grant ssm:PutParameter on arn:aws:ssm:eu-west-1:<account-id>:parameter/vgs/calm"),
    ],
)
async def test_fatal_errors_say_what_to_do(code, expect):
    store = make(kms_key_id="alias/nope")
    faults = Faults(store._client)
    faults.add("GetParameter", error("ParameterNotFound"))
    faults.add("PutParameter", error(code, message="injected"))
    with pytest.raises(FatalStoreError) as info:
        await store.write(NAME, payload("tok-one-0123456789abcdef"), target=target())
    assert expect in info.value.message
    await store.aclose()


async def test_throttling_and_too_many_updates_are_retried_then_transient():
    store = make(max_attempts=3)
    faults = Faults(store._client)
    faults.add("GetParameter", error("ParameterNotFound"))
    faults.add("PutParameter", error("ThrottlingException", message="Rate exceeded"), ok({"Version": 4}))
    assert (await store.write(NAME, payload("tok-one-0123456789abcdef"), target=target())).version == "4"
    assert faults.sent["PutParameter"] == 2 and store.writes.debited == 1
    faults.add("PutParameter", *[error("TooManyUpdates")] * 3)
    with pytest.raises(TransientStoreError):
        await store.write(NAME, payload("tok-two-0123456789abcdef"), target=target())
    await store.aclose()
