"""The chart's alert rules, evaluated by `promtool test rules` (series in, alerts out).

tests/alerts/*.yaml hold the cases: a clean run and a clean restart fire nothing; a revoked
credential, a store refusing writes and a dead daemon each page with at least a quarter of the
token's lifetime left, with the labels that route the page (namespace, job, credential, target).
Here the chart is rendered with its default alert values and handed to promtool.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.alert_rules import ALERT_NAMES, ALERTS_DIR, render_rule_groups, tool, write_rule_file

CASES = {
    "syncd_test.yaml": ("rules.yaml", {}),
    "syncd_probe_test.yaml": ("rules-probe.yaml", {"probe": {"enabled": True}}),
}


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603


@pytest.mark.parametrize("case", sorted(CASES))
def test_promtool_unit_tests_pass_on_the_rendered_chart(case, tmp_path):
    rules_name, values = CASES[case]
    write_rule_file(tmp_path / rules_name, values)
    shutil.copy(ALERTS_DIR / case, tmp_path / case)
    check = run(tool("promtool"), "check", "rules", rules_name, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    result = run(tool("promtool"), "test", "rules", case, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_shipped_alert_has_firing_and_silent_cases():
    """A new alert in the chart without promtool cases fails here."""
    tests = yaml.safe_load((ALERTS_DIR / "syncd_test.yaml").read_text(encoding="utf-8"))["tests"]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    shipped = {r["alert"] for g in render_rule_groups()["groups"] for r in g["rules"]}
    assert shipped == set(ALERT_NAMES)
    assert firing == shipped, f"alerts without a firing case: {shipped - firing}"
    assert silent == shipped, f"alerts without a not-firing case: {shipped - silent}"


def test_the_probe_only_alert_has_firing_and_silent_cases():
    tests = yaml.safe_load((ALERTS_DIR / "syncd_probe_test.yaml").read_text(encoding="utf-8"))["tests"]
    checks = [c for case in tests for c in case.get("alert_rule_test", []) if c["alertname"] == "SyncdTargetBroken"]
    assert any(c["exp_alerts"] for c in checks) and any(not c["exp_alerts"] for c in checks)
    shipped = {r["alert"] for g in render_rule_groups({"probe": {"enabled": True}})["groups"] for r in g["rules"]}
    assert shipped == {*ALERT_NAMES, "SyncdTargetBroken"}


def test_promtool_catches_a_rule_that_pages_too_late(tmp_path):
    """The cases can fail: with the lead-time fraction at 0.2 the pages come after t=225."""
    write_rule_file(
        tmp_path / "rules.yaml",
        {"prometheusRule": {"alerts": {"targetStale": {"enabled": True, "remainingFraction": 0.2}}}},
    )
    shutil.copy(ALERTS_DIR / "syncd_test.yaml", tmp_path / "syncd_test.yaml")
    result = run(tool("promtool"), "test", "rules", "syncd_test.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "SyncdTargetStale, time: 3m30s" in result.stdout + result.stderr


def test_promtool_check_rules_on_the_full_value_set(tmp_path):
    """The widest render (custom selector labels, fractions, `for`, extra rules) is valid PromQL too."""
    full = yaml.safe_load((ALERTS_DIR.parent.parent / "helm" / "syncd" / "ci" / "full-values.yaml").read_text())
    for name, values in {"full": full, "full-probe": {**full, "probe": {"enabled": True}}}.items():
        path = write_rule_file(tmp_path / f"{name}.yaml", values)
        check = run(tool("promtool"), "check", "rules", path.name, cwd=tmp_path)
        assert check.returncode == 0, check.stdout + check.stderr
        assert f"SUCCESS: {6 if 'probe' in name else 5} rules found" in check.stdout
