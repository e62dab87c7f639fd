"""The skip guard (tests/skip_guard.py): a skip or xfail not in the allow-list fails the run.

Each case runs a small inner pytest session with ``pytester`` and the guard
installed from an allow-list written by the test.
"""

from __future__ import annotations

import pytest

from tests import skip_guard

pytest_plugins = ["pytester"]

CONFTEST = """
from pathlib import Path

from tests import skip_guard


def pytest_configure(config):
    skip_guard.register(config, Path(__file__).with_name("allow.txt"))
"""

TESTS = """
import pytest


def test_ok():
    assert True


def test_skipped():
    pytest.skip("jq not installed")


@pytest.mark.skipif(True, reason="tool missing")
def test_skipif():
    assert False


@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert False


@pytest.mark.xfail(reason="fixed long ago")
def test_xpass():
    assert True


@pytest.mark.parametrize("n", [1, 2])
def test_param(n):
    if n == 2:
        pytest.skip("second case cannot run")
"""


def run(pytester: pytest.Pytester, allow: str, tests: str = TESTS, *args: str) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".txt", allow=allow)
    pytester.makepyfile(test_inner=tests)
    # The inner session needs none of the project's other plugins.
    quiet = ("-p", "no:cacheprovider", "-p", "no:asyncio", "-p", "no:hypothesispytest", "-p", "no:anyio")
    return pytester.runpytest(*quiet, *args)


ALL_LISTED = """
# every skip of test_inner.py, with the reason
test_inner.py::test_skipped   # the tool is absent on purpose
test_inner.py::test_skipif    # ditto
test_inner.py::test_xfail     # upstream bug 123
test_inner.py::test_xpass     # upstream bug 124
test_inner.py::test_param     # all parameter sets
"""


def test_unlisted_skips_xfails_and_xpasses_fail_an_otherwise_green_run(pytester: pytest.Pytester) -> None:
    result = run(pytester, "# nothing allowed\n")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=2, skipped=3, xfailed=1, xpassed=1)
    result.stdout.fnmatch_lines(
        [
            "*skip guard*",
            "NOT ALLOWED test_inner.py::test_param[[]2[]]: *second case cannot run*",
            "NOT ALLOWED test_inner.py::test_skipif: *tool missing*",
            "NOT ALLOWED test_inner.py::test_skipped: *jq not installed*",
            "NOT ALLOWED test_inner.py::test_xfail: xfailed: known bug",
            "NOT ALLOWED test_inner.py::test_xpass: xpassed*",
            "skip guard: 3 skipped, 2 xfailed/xpassed, 0 allowed, 5 not allowed: fix them, or list them *allow.txt",
        ]
    )


def test_listed_skips_pass_and_are_still_shown_with_their_reason(pytester: pytest.Pytester) -> None:
    result = run(pytester, ALL_LISTED)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "allowed     test_inner.py::test_param[[]2[]]: all parameter sets",
            "allowed     test_inner.py::test_skipped: the tool is absent on purpose",
            "skip guard: 3 skipped, 2 xfailed/xpassed, 5 allowed, 0 not allowed",
        ]
    )
    assert "NOT ALLOWED" not in result.stdout.str()


def test_one_unlisted_xfail_fails_the_run_when_everything_else_is_listed(pytester: pytest.Pytester) -> None:
    result = run(pytester, ALL_LISTED.replace("test_inner.py::test_xfail ", "# test_inner.py::test_xfail "))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["NOT ALLOWED test_inner.py::test_xfail: xfailed: known bug"])
    assert result.stdout.str().count("NOT ALLOWED") == 1


def test_a_listed_parameter_set_allows_only_that_set(pytester: pytest.Pytester) -> None:
    allow = "test_inner.py::test_param[1]  # not the one that skips\n"
    result = run(pytester, allow, TESTS, "-k", "test_param")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["NOT ALLOWED test_inner.py::test_param[[]2[]]: *"])
    result = run(pytester, "test_inner.py::test_param[2]  # exactly this one\n", TESTS, "-k", "test_param")
    assert result.ret == pytest.ExitCode.OK


def test_a_module_skipped_at_collection_is_caught(pytester: pytest.Pytester) -> None:
    tests = 'import pytest\n\npytest.importorskip("no_such_module_for_the_guard")\n\n\ndef test_x():\n    pass\n'
    result = run(pytester, "", tests)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["NOT ALLOWED test_inner.py: *no_such_module_for_the_guard*"])


def test_a_failing_run_keeps_its_status_and_a_clean_run_prints_nothing(pytester: pytest.Pytester) -> None:
    result = run(pytester, "", "def test_bad():\n    assert False\n")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "skip guard" not in result.stdout.str()
    result = run(pytester, "", "def test_good():\n    pass\n")
    assert result.ret == pytest.ExitCode.OK
    assert "skip guard" not in result.stdout.str()


def test_an_entry_without_a_reason_is_a_usage_error_naming_the_line(pytester: pytest.Pytester) -> None:
    result = run(pytester, "# header\ntest_inner.py::test_skipped\n", "def test_good():\n    pass\n")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*allow.txt:2: 'test_inner.py::test_skipped' has no reason; write it after*"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("# only a comment\n\n", {}),
        ("tests/a.py::t  # why\n", {"tests/a.py::t": "why"}),
        ("  tests/a.py::t[x-1]#why # more\n", {"tests/a.py::t[x-1]": "why # more"}),
    ],
)
def test_parse_allowlist(text: str, expected: dict[str, str]) -> None:
    assert skip_guard.parse_allowlist(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tests/a.py::t\n", "skip_allowlist.txt:1: 'tests/a.py::t' has no reason"),
        ("tests/a.py::t   #   \n", "has no reason"),
        ("tests/a.py  # a file\n", "is not a test node id; use the form tests/path/test_file.py::test_name"),
        ("# c\ntests/a.py::t x  # two words\n", "skip_allowlist.txt:2: 'tests/a.py::t x' is not a test node id"),
    ],
)
def test_parse_allowlist_rejects(text: str, message: str) -> None:
    with pytest.raises(skip_guard.AllowListError, match=message.replace("[", r"\[").replace(".", r"\.")):
        skip_guard.parse_allowlist(text)


def test_the_project_allowlist_parses_and_every_entry_has_a_reason() -> None:
    entries = skip_guard.load_allowlist(skip_guard.ALLOWLIST)
    assert all(reason for reason in entries.values())
