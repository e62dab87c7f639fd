"""``python -m bench.startup`` (the start-up adoption breakdown) still runs, at a tiny size.

Like test_bench_smoke.py, it asserts only that every figure is there and that nothing was minted
(every seeded token adopted), never what the figures are: it cannot flake on a loaded machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("config_load", "setup", "plan", "reads", "judging", "scheduling", "start", "total")


def test_startup_breakdown_runs_on_file_and_openbao(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "bench.startup", "--n", "30", "--workdir", str(tmp_path)]
    proc = subprocess.run(  # noqa: S603 - our own module, fixed arguments
        [*cmd, "--store", "file", "--store", "openbao"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    assert [r["store"] for r in results] == ["file", "openbao"]
    for res in results:
        run = res["in_process"]
        assert run["adopted"] == 30 and res["mints"] == 0, res
        assert set(run["gc"]) == {"collections", "seconds"}, run
        for kind in ("wall_s", "cpu_s"):
            assert set(STEPS) <= set(run[kind]), run[kind]
