"""docs/operations.md stays complete: every metric, every daemon log event, the runbook anchors."""

from __future__ import annotations

import re
from pathlib import Path

from syncd.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "operations.md").read_text()


def test_every_metric_is_documented_with_its_labels():
    m = Metrics()
    m.init_credential("calm", ["local:calm.json"])
    # every labelled family needs one child to show its labels
    m.token_expiry.labels(credential="calm").set(1)
    m.next_refresh.labels(credential="calm").set(1)
    m.token_lifetime.labels(credential="calm").set(300)
    m.target_token_expiry.labels(credential="calm", target="local:calm.json").set(1)
    m.target_last_success.labels(credential="calm", target="local:calm.json").set(1)
    m.write_duration.labels(store="local").observe(0.1)
    for metric in m.registry.collect():
        if not metric.name.startswith("syncd_"):
            continue
        name = metric.name + ("_total" if metric.type == "counter" else "")
        row = next((line for line in DOC.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"{name} has no row in the metrics table of docs/operations.md"
        labels = {label for s in metric.samples for label in s.labels if label != "le"}
        for label in labels:
            assert f"`{label}`" in row, f"{name}: label {label} is not in its row"


def test_every_daemon_log_event_is_documented():
    files = [
        *sorted((ROOT / "syncd" / "engine").glob("*.py")),
        *(ROOT / "syncd" / f for f in ("daemon.py", "server.py")),
    ]
    sources = "".join(f.read_text() for f in files)
    names = set(re.findall(r'log\.(?:info|warning|error)\(\s*"([a-z_]+)"', sources))
    assert {"mint", "write", "adopted", "started", "reloaded", "reload_rejected", "drain_timeout"} <= names
    for name in names:
        assert f"| `{name}` |" in DOC, f"log event {name!r} is not documented in docs/operations.md"


def test_runbook_anchors_the_helm_chart_links_to():
    headings = set(re.findall(r"^## (\S+)$", DOC, flags=re.MULTILINE))
    alerts = ("SyncdTokenExpiringSoon", "SyncdRotationFailing", "SyncdTargetStale", "SyncdAbsent", "SyncdTargetBroken")
    for alert in alerts:
        assert alert in headings, f"## {alert} (anchor #{alert.lower()}) is missing"
    rule = ROOT / "helm" / "syncd" / "templates" / "prometheusrule.yaml"
    anchors = re.findall(r'"%s#([a-z]+)"', rule.read_text())
    assert sorted(anchors) == sorted(a.lower() for a in alerts), "one runbook link per alert in the chart"
    for anchor in anchors:
        assert f"## {anchor}".lower() in DOC.lower(), f"the chart links to #{anchor}"
