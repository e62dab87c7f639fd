"""Plan findings that do not depend on one store: aggregate write rate, impossible min_remaining."""

from __future__ import annotations

from syncd.config import load_config
from syncd.engine import plan_findings


def _config(n: int, lifetime: str, store: dict, min_remaining: str = "30s"):
    return load_config(
        data={
            "defaults": {"token_lifetime": lifetime, "min_remaining": min_remaining},
            "stores": {"ssm": store},
            "credentials": [
                {
                    "name": f"c{i}",
                    "client_id": "x",
                    "client_secret": {"env": "X"},
                    "targets": [{"store": "ssm", "key": f"/vgs/c{i}"}],
                }
                for i in range(n)
            ],
        }
    )


def test_fleet_exceeding_store_write_rate_is_an_error():
    ssm = {"type": "aws-ssm", "region": "eu-west-1"}  # PutParameter: 3/s by default
    # 5-minute tokens refreshed at ~150 s: 1000 credentials need ~6.7 writes/s
    findings = plan_findings(_config(1000, "5m", ssm), {})
    errors = [f for f in findings if f.level == "error" and f.subject == "stores.ssm.max_writes_per_second"]
    assert len(errors) == 1 and "writes/s" in errors[0].message and errors[0].fix
    # 100 credentials need ~0.67/s: fine
    assert not [
        f for f in plan_findings(_config(100, "5m", ssm), {}) if f.subject == "stores.ssm.max_writes_per_second"
    ]
    # near the limit: a warning, not an error
    near = plan_findings(_config(400, "5m", ssm), {})
    assert [f.level for f in near if f.subject == "stores.ssm.max_writes_per_second"] == ["warning"]
    # raising the limit (higher throughput) clears it
    fast = {**ssm, "max_writes_per_second": 10}
    assert not [
        f for f in plan_findings(_config(1000, "5m", fast), {}) if f.subject == "stores.ssm.max_writes_per_second"
    ]


def test_min_remaining_longer_than_lifetime_is_flagged():
    cfg = _config(1, "10s", {"type": "file", "directory": "/tmp/x"}, min_remaining="30s")
    findings = plan_findings(cfg, {})
    assert any(f.level == "warning" and "min_remaining" in f.message for f in findings)
    cfg = _config(1, "5m", {"type": "file", "directory": "/tmp/x"}, min_remaining="30s")
    assert not [f for f in plan_findings(cfg, {}) if "min_remaining" in f.message]


def test_aws_stores_in_one_region_share_the_write_quota():
    data = {
        "defaults": {"token_lifetime": "5m"},
        "stores": {
            "a": {"type": "aws-ssm", "region": "eu-west-1"},
            "b": {"type": "aws-ssm", "region": "eu-west-1"},
            "c": {"type": "aws-ssm", "region": "us-east-1"},
        },
        "credentials": [
            {
                "name": f"c{i}",
                "client_id": "x",
                "client_secret": {"env": "X"},
                "targets": [
                    {"store": "a", "key": f"/a/c{i}"},
                    {"store": "b", "key": f"/b/c{i}"},
                    {"store": "c", "key": f"/c/c{i}"},
                ],
            }
            for i in range(250)
        ],
    }
    findings = plan_findings(load_config(data=data), {})
    # 250 credentials x 2 stores in eu-west-1 ~ 3.3 writes/s > 3/s; us-east-1 alone ~ 1.7/s is fine
    # The finding names the key to fix (the strictest store of the region) and the region it is about.
    assert [(f.level, f.subject) for f in findings if "writes/s" in f.message] == [
        ("error", "stores.a.max_writes_per_second")
    ]
    assert [f.message.split(":")[0] for f in findings if "writes/s" in f.message] == ["aws-ssm region eu-west-1"]
