"""The chart's PrometheusRule, rendered with Helm's Go SDK into a plain Prometheus rule file.

Shared by the promtool unit tests (tests/unit/test_alert_rules.py) and the live Prometheus
test (tests/integration/test_prometheus_alerts.py), so both exercise exactly what the chart
ships, with only the values they pass changed.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART_DIR = ROOT / "helm" / "syncd"
ALERTS_DIR = ROOT / "tests" / "alerts"
RELEASE = "syncd"
NAMESPACE = "payments"
ALERT_NAMES = ("SyncdTokenExpiringSoon", "SyncdRotationFailing", "SyncdTargetStale", "SyncdAbsent")


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm-style deep merge of values (maps merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render_rule_groups(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """`{"groups": [...]}` of the PrometheusRule the chart renders (minimal values + `values`)."""
    base = yaml.safe_load((CHART_DIR / "ci" / "minimal-values.yaml").read_text(encoding="utf-8"))
    merged = merge(base, {"prometheusRule": {"enabled": True}})
    merged = merge(merged, values or {})
    with helm.Chart.load(CHART_DIR) as chart:
        rendered = chart.render(merged, name=RELEASE, namespace=NAMESPACE)
    text = next(t for path, t in rendered.items() if path.endswith("templates/prometheusrule.yaml"))
    doc = yaml.safe_load(text)
    return {"groups": doc["spec"]["groups"]}


def write_rule_file(path: Path, values: dict[str, Any] | None = None) -> Path:
    path.write_text(yaml.safe_dump(render_rule_groups(values), sort_keys=False), encoding="utf-8")
    return path


def tool(name: str) -> str:
    """Path of a Prometheus binary; a clear failure (never a skip) when it is not installed."""
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} not found on PATH: run tests/peers/install.sh (Debian package `prometheus`)")
    return found
