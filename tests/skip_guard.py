"""A run with a skipped or xfailed test fails, unless that test is in the allow-list.

A skip is a test that verified nothing while the run still reads green: a tool
that is not installed, a store type not implemented yet, a guard that let the
assertions be passed by. Each one must either be fixed or be written down in
``tests/skip_allowlist.txt`` with the reason, where a reviewer sees it.

Allow-list format, one test per line::

    # comment lines and blank lines are ignored
    tests/unit/test_x.py::test_name                  # the reason, required
    tests/unit/test_x.py::test_param                 # covers every parameter set of test_param
    tests/unit/test_x.py::test_param[case-1]         # only this parameter set

Counted: skips (``pytest.skip``, ``skipif``, ``importorskip``, a skipped module
at collection), xfails, and xpasses (an ``xfail`` marker on a test that passes
is a marker nobody looked at). Only a run that would otherwise succeed has its
exit status changed (to 1); the terminal summary lists what was not allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

ALLOWLIST = Path(__file__).with_name("skip_allowlist.txt")


class AllowListError(ValueError):
    """A malformed allow-list line: the message names the file, the line and the fix."""


def parse_allowlist(text: str, source: str = "skip_allowlist.txt") -> dict[str, str]:
    """Map each listed node id to its reason; every entry must say why it is there."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        nodeid, _, reason = stripped.partition("#")
        nodeid, reason = nodeid.strip(), reason.strip()
        if not reason:
            raise AllowListError(
                f"{source}:{number}: {nodeid!r} has no reason; write it after the node id: `{nodeid}  # why it cannot run`"
            )
        if "::" not in nodeid or " " in nodeid:
            raise AllowListError(
                f"{source}:{number}: {nodeid!r} is not a test node id; use the form tests/path/test_file.py::test_name"
            )
        entries[nodeid] = reason
    return entries


def load_allowlist(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return parse_allowlist(path.read_text(encoding="utf-8"), source=str(path))


def is_allowed(nodeid: str, allowed: dict[str, str]) -> bool:
    """An exact node id, or the test's id without its parameter set (all parameter sets)."""
    return nodeid in allowed or nodeid.partition("[")[0] in allowed


@dataclass(eq=False)  # a plugin object: pluggy keeps plugins in sets
class SkipGuard:
    """The pytest plugin: collects skipped/xfailed node ids and fails the session on unlisted ones."""

    allowed: dict[str, str]
    list_path: str = "tests/skip_allowlist.txt"
    skipped: dict[str, str] = field(default_factory=dict)
    xfailed: dict[str, str] = field(default_factory=dict)

    def _record(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        wasxfail = getattr(report, "wasxfail", None)
        if report.skipped and wasxfail is not None:
            self.xfailed.setdefault(report.nodeid, f"xfailed: {wasxfail}" if wasxfail else "xfailed")
        elif report.passed and wasxfail is not None and getattr(report, "when", "call") == "call":
            self.xfailed.setdefault(report.nodeid, "xpassed: the test has an xfail marker but passes")
        elif report.skipped:
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
            self.skipped.setdefault(report.nodeid, str(reason))

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._record(report)

    @pytest.hookimpl
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._record(report)

    def violations(self) -> dict[str, str]:
        found = {**self.skipped, **self.xfailed}
        return {nodeid: why for nodeid, why in sorted(found.items()) if not is_allowed(nodeid, self.allowed)}

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # Only a run that would otherwise pass (or found nothing else to run) is turned red.
        ok = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        if self.violations() and session.exitstatus in ok:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        bad = self.violations()
        total = len(self.skipped) + len(self.xfailed)
        if not total:
            return
        tr = terminalreporter
        tr.section("skip guard", sep="=", red=bool(bad), green=not bad)
        for nodeid, why in bad.items():
            tr.write_line(f"NOT ALLOWED {nodeid}: {why}")
        for nodeid in sorted({**self.skipped, **self.xfailed}):
            if nodeid not in bad:
                tr.write_line(
                    f"allowed     {nodeid}: {self.allowed.get(nodeid) or self.allowed[nodeid.partition('[')[0]]}"
                )
        tr.write_line(
            f"skip guard: {len(self.skipped)} skipped, {len(self.xfailed)} xfailed/xpassed, "
            f"{total - len(bad)} allowed, {len(bad)} not allowed"
            + (f": fix them, or list them with the reason in {self.list_path}" if bad else "")
        )


def register(config: pytest.Config, path: Path = ALLOWLIST) -> None:
    """Install the guard for this session (called from tests/conftest.py)."""
    try:
        allowed = load_allowlist(path)
    except AllowListError as exc:
        raise pytest.UsageError(str(exc)) from None
    try:
        shown = str(path.relative_to(config.rootpath))
    except ValueError:
        shown = str(path)
    config.pluginmanager.register(SkipGuard(allowed, shown), "syncd-skip-guard")
