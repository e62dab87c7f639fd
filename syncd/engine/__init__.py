"""The engine: per credential, mint when due, write every target, decide the next run.

* `state`: the records (`CredentialState`, `TargetState`, `RunReport`);
* `decide`: the pure decisions (when to mint, write and run next; retry delays; standing);
* `rotation`: one credential's run, top to bottom, with `minting` (one mint under its
  deadline) and `readback` (reading targets back between rotations);
* `adopt`: start-up adoption of fresh stored tokens;
* `takeover`: several replicas: each credential's rank, a follower's read-adopt-or-mint wake;
* `lifecycle`: `Engine`, the daemon around the rotations (set-up, schedule, watchdog, stop),
  with `reload`, `once` (``syncd once``, ``check --connect``), `report` (gauges, /status,
  /readyz), `plan` (write-volume findings) and `drain` (the end of a drain: runs cut at
  ``drain_timeout``, stores and clients closed within a bound).
"""

from syncd.engine.drain import CLOSE_TIMEOUT
from syncd.engine.lifecycle import Engine
from syncd.engine.plan import plan_findings
from syncd.engine.rotation import ADOPT_REFUSALS, RETAINED_TOKENS, Rotation
from syncd.engine.state import CredentialState, Outcome, RunReport, State, TargetState

__all__ = [
    "ADOPT_REFUSALS",
    "CLOSE_TIMEOUT",
    "RETAINED_TOKENS",
    "CredentialState",
    "Engine",
    "Outcome",
    "Rotation",
    "RunReport",
    "State",
    "TargetState",
    "plan_findings",
]
