"""``python -m bench --report A.json B.json``: partial runs merged into one doc's results."""

from __future__ import annotations

from bench import report


def _run(command: str, elapsed: float, stores: dict) -> dict:
    return {"meta": {"command": command, "elapsed_s": elapsed}, "stores": stores, "errors": []}


def test_later_groups_win_store_by_store_and_unmeasured_groups_keep_the_earlier_run():
    first = _run("one", 60, {"file": {"active": [1], "large": {"n": 1}}, "openbao": {"active": [2]}})
    second = _run("two", 30, {"file": {"active": [], "large": {"n": 2}}})
    merged = report.merge([first, second])
    assert merged["stores"]["file"] == {"active": [1], "large": {"n": 2}}
    assert merged["stores"]["openbao"] == {"active": [2]}


def test_a_merged_part_brings_its_own_runs_one_machine_row_each():
    a, b, c = _run("a", 60, {}), _run("b", 120, {}), _run("c", 30, {})
    earlier = report.merge([a, b])
    merged = report.merge([earlier, c])
    assert [run["command"] for run in merged["meta"]["parts"]] == ["a", "b", "c"]
    assert merged["meta"]["elapsed_s"] == 210
    assert merged["meta"]["command"] == "a + b + c"


def test_each_failure_keeps_the_number_of_its_run_through_nested_merges():
    failed = {**_run("a", 1, {}), "errors": [{"case": "x", "error": "boom"}]}
    earlier = report.merge([_run("z", 1, {}), failed])
    later = {**_run("c", 1, {}), "errors": [{"case": "y", "error": "bang"}]}
    merged = report.merge([earlier, later])
    assert [(e["case"], e["run"]) for e in merged["errors"]] == [("x", 2), ("y", 3)]
