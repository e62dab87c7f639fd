"""The ``syncd`` command: run, once, check, status, inspect, probe, init, version.

Exit codes: 0 ok, 1 a mint or write failed (or, for status/inspect, something
is unhealthy), 2 a configuration error whose message names the key and why.

The app and what every command shares are in `app`; the commands, grouped by what
they do: `rotate` (run, once), `plan` (check), `health` (status, inspect, probe),
`setup` (init, version). Typer lists commands in the order they are registered,
so the modules are imported here in the order ``syncd --help`` shows them.
"""

from __future__ import annotations

# isort: off
from syncd.cli.app import app, main
from syncd.cli.rotate import once, run
from syncd.cli.plan import check
from syncd.cli.health import inspect, probe, status
from syncd.cli.setup import init, version

# isort: on

__all__ = ["app", "check", "init", "inspect", "main", "once", "probe", "run", "status", "version"]
