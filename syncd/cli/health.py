"""Is it healthy: ``status`` asks a running daemon, ``inspect`` reads the stores, ``probe`` serves that as metrics."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from syncd import logs, termfit
from syncd.cli.app import ConfigOpt, _fmt_seconds, _load, app, err, out
from syncd.config import CONFIG_ENV, DEFAULT_CONFIG_FILE, DaemonConfig


def _print_json(data: Any) -> None:
    """Plain JSON on stdout for scripts (no colour, no wrapping, whatever the terminal)."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def _credential_ok(c: Any) -> bool:
    """What ``syncd status`` counts as healthy: state ok and an unexpired token in every target."""
    return isinstance(c, dict) and c.get("state") == "ok" and bool(c.get("healthy"))


def _status_url(config: Path | None) -> str:
    """Where the daemon listens per its config: -c, else $SYNCD_CONFIG, else ./syncd.toml when present.

    Without any of them, the default listen address; a named config that does not load is
    an error (exit 2), not a silent fall-back to a port the daemon may not use.
    """
    import os

    if config is None and not os.environ.get(CONFIG_ENV) and not Path(DEFAULT_CONFIG_FILE).is_file():
        return termfit.status_url(DaemonConfig().listen)
    cfg, _ = _load(config)
    return termfit.status_url(cfg.daemon.listen)


@app.command()
def status(
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="The daemon's base URL (default: from [daemon] listen of the config, else http://127.0.0.1:9440).",
        ),
    ] = None,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the daemon's /status JSON as is.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the daemon.")] = 5.0,
) -> None:
    """Show a running daemon's credentials; exit 1 if any is not ok (usable as a probe).

    A credential is ok when its state is ``ok`` (no failure pending) and every target
    holds an unexpired token. Exit 1 also when the daemon cannot be reached.
    """
    import httpx

    from syncd.payload import from_rfc3339

    base = (url or _status_url(config)).rstrip("/")
    try:
        resp = httpx.get(base + "/status", timeout=timeout)
    except httpx.HTTPError as exc:
        err.print(
            f"error: cannot reach syncd at {base} ({type(exc).__name__}: {logs.scrub_text(str(exc))}); "
            "is it running, listening there?",
            markup=False,
        )
        raise typer.Exit(1) from None
    if resp.status_code != 200:
        err.print(f"error: {base}/status answered HTTP {resp.status_code}; is that a syncd daemon?")
        raise typer.Exit(1)
    try:
        data = resp.json()
    except ValueError:
        data = None
    creds = data.get("credentials") if isinstance(data, dict) else None
    if not isinstance(creds, list):
        err.print(f"error: {base}/status is not a syncd status document (no credentials list)")
        raise typer.Exit(1)
    unhealthy = [c for c in creds if not _credential_ok(c)]
    if as_json:
        _print_json(data)
        raise typer.Exit(1 if unhealthy else 0)
    try:
        now = from_rfc3339(str(data["now"]))  # the daemon's clock: no skew with this machine
    except (KeyError, ValueError):
        now = time.time()
    table = Table(
        title=escape(f"syncd {data.get('version', '')} at {base}".replace("  ", " ")),
    )
    table.add_column("credential", overflow="fold", ratio=2)
    table.add_column("state", no_wrap=True)
    table.add_column("expires", no_wrap=True, justify="right")
    table.add_column("refresh", no_wrap=True, justify="right")
    table.add_column("fails", no_wrap=True, justify="right")
    table.add_column("targets", no_wrap=True)
    table.add_column("last error", overflow="fold", ratio=3)
    for c in creds:
        nxt = from_rfc3339(c["next_refresh"]) - now if c.get("next_refresh") else None
        targets = c.get("targets") or []
        fresh = sum(1 for t in targets if t.get("fresh"))
        state = str(c.get("state", "?"))
        style = "green" if _credential_ok(c) else ("yellow" if state in ("degraded", "retrying") else "red")
        last = c.get("last_error") or {}
        last_text = f"{last.get('class', 'Error')}: {last.get('message', '')}" if last else ""
        code = last.get("error") or last.get("code")
        if code:
            last_text = f"[{code}] {last_text}"
        table.add_row(
            escape(str(c.get("name", "?"))),
            f"[{style}]{escape(state)}[/]",
            _fmt_seconds(c.get("expires_in")),
            _fmt_seconds(nxt),
            str(c.get("consecutive_failures", 0)),
            f"{fresh}/{len(targets)} fresh",
            escape(logs.shorten(last_text, 100)),
        )
    out.print(table)
    out.print(f"{len(creds) - len(unhealthy)} of {len(creds)} credentials ok")
    raise typer.Exit(1 if unhealthy else 0)


@app.command()
def inspect(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Count a stale token (valid but late) as a problem too.")
    ] = False,
) -> None:
    """Read every target directly from the stores and report freshness; exit 1 on any problem.

    Needs no running daemon, only read access to the stores: the independent check to run
    from a CronJob. Problems: missing, expired, unparseable, written by a different
    credential, unreadable (and stale with --strict).
    """
    from syncd.audit import inspect_targets

    cfg, _ = _load(config)
    logs.configure("error", cfg.daemon.log_format)
    reports = asyncio.run(inspect_targets(cfg))
    bad = [r for r in reports if not r.ok or (strict and r.status == "stale")]
    if as_json:
        _print_json({"targets": [r.as_dict() for r in reports], "problems": len(bad), "ok": not bad})
        raise typer.Exit(1 if bad else 0)
    # Fingerprint and absolute expiry only where they fit: in 80 columns they would
    # squeeze credential and target names to a few characters (--json has them all).
    wide = out.width >= termfit.WIDE
    table = Table(title="stored tokens")
    table.add_column("credential", overflow="fold", ratio=2)
    table.add_column("target", overflow="fold", ratio=2)
    table.add_column("status", no_wrap=True)
    if wide:
        table.add_column("fingerprint", no_wrap=True)
        table.add_column("expires", no_wrap=True)
    table.add_column("remaining", no_wrap=True)
    table.add_column("problem", overflow="fold", ratio=3)
    for r in reports:
        d = r.as_dict()
        style = {"fresh": "green", "stale": "yellow"}.get(r.status, "red")
        rem = f"{_fmt_seconds(r.remaining)} ({r.remaining_fraction:.0%})" if r.remaining_fraction is not None else "-"
        extra = [r.fingerprint or "-", d["expires_at"] or "-"] if wide else []
        table.add_row(
            escape(r.credential),
            escape(r.target),
            f"[{style}]{r.status}[/]",
            *extra,
            rem,
            escape(r.problem or r.warning or ""),
        )
    out.print(table)
    out.print(f"{len(reports) - len(bad)} of {len(reports)} targets ok")
    raise typer.Exit(1 if bad else 0)


@app.command()
def probe(
    config: ConfigOpt = None,
    listen: Annotated[
        str | None, typer.Option("--listen", help="host:port of /metrics (default: [probe] listen, 127.0.0.1:9442).")
    ] = None,
    interval: Annotated[
        str | None,
        typer.Option("--interval", help="Seconds between reads of every target (default: [probe] interval, 30s)."),
    ] = None,
) -> None:
    """Run `syncd inspect` on an interval and serve the result as Prometheus metrics (syncd_probe_*).

    Reads the stores only (read-only credentials, no client secret): the independent view the
    chart's stored-token alerts use, which keeps working when the daemon is gone.
    """
    from pydantic import ValidationError

    from syncd.config import ProbeConfig
    from syncd.probe import main as probe_main

    cfg, _ = _load(config)
    logs.configure(cfg.daemon.log_level, cfg.daemon.log_format)
    overrides = {k: v for k, v in {"listen": listen, "interval": interval}.items() if v is not None}
    try:
        options = ProbeConfig.model_validate({**cfg.probe.model_dump(), **overrides})
    except ValidationError as exc:
        for e in exc.errors():
            option = "--" + str(e["loc"][0]) if e["loc"] else "--listen/--interval"
            err.print(f"[bold red]error:[/] {option}: {escape(e['msg'])}", markup=True)
        raise typer.Exit(2) from None
    try:
        probe_main(cfg, options)
    except OSError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
        raise typer.Exit(1) from None
