"""The ``syncd`` command: run, once, check, status, inspect, version.

Exit codes: 0 ok, 1 a mint or write failed (or, for status/inspect, something
is unhealthy), 2 a configuration error whose message names the key and why.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from syncd import __version__, logs, policy
from syncd.config import Config, ConfigError, config_path, load_config

app = typer.Typer(
    name="syncd",
    help="Mint OAuth 2.0 client-credentials tokens before they expire and write them into secret stores.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("-c", "--config", help="Config file (default: $SYNCD_CONFIG, else ./syncd.toml)."),
]


def _load(config: Path | None) -> tuple[Config, Path]:
    path = config_path(config)
    try:
        return load_config(path), path
    except ConfigError as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True)
        raise typer.Exit(2) from None


def _fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    sign = "-" if value < 0 else ""
    v = abs(value)
    if v >= 3600:
        return f"{sign}{v / 3600:.1f}h"
    if v >= 120:
        return f"{sign}{v / 60:.1f}m"
    return f"{sign}{v:.0f}s" if v >= 10 else f"{sign}{v:.1f}s"


@app.command()
def run(config: ConfigOpt = None) -> None:
    """Run the daemon: rotate every credential until SIGTERM."""
    from syncd.daemon import StartupRefused, run_daemon

    cfg, path = _load(config)
    logs.configure(cfg.daemon.log_level, cfg.daemon.log_format)
    try:
        code = asyncio.run(run_daemon(cfg, path))
    except StartupRefused as exc:
        err.print(f"[bold red]error:[/] the plan for {path} has errors; refusing to start:\n{exc}", markup=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        err.print(f"[bold red]error:[/] {exc.strerror or exc}", markup=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command()
def once(
    config: ConfigOpt = None,
    credential: Annotated[
        list[str] | None, typer.Option("--credential", help="Only this credential (repeatable).")
    ] = None,
) -> None:
    """Mint and write every credential once; exit 0 only if all succeeded."""
    from rich.progress import Progress

    from syncd.engine import Engine, RunReport

    cfg, _ = _load(config)
    logs.configure(cfg.daemon.log_level if cfg.daemon.log_level != "info" else "warning", cfg.daemon.log_format)
    names = [c.name for c in cfg.credentials]
    if credential:
        unknown = [n for n in credential if n not in names]
        if unknown:
            err.print(f"error: unknown credential(s) {', '.join(unknown)} (configured: {', '.join(names)})")
            raise typer.Exit(2)
        names = list(credential)

    async def go() -> list[RunReport]:
        engine = Engine(cfg)
        engine.setup()
        try:
            if len(names) > 5 and err.is_terminal:
                with Progress(console=err, transient=True) as bar:
                    task = bar.add_task("rotating", total=len(names))
                    return await engine.run_once(names, progress=lambda _: bar.advance(task))
            return await engine.run_once(names)
        finally:
            await engine.stop(drain_timeout=0)

    reports = asyncio.run(go())
    failed = [r for r in reports if not r.ok]
    for r in reports:
        if r.ok:
            out.print(f"ok      {r.credential}")
        else:
            out.print(f"FAILED  {r.credential}")
            for e in r.errors:
                out.print(f"        {e}")
    out.print(f"{len(reports) - len(failed)} of {len(reports)} credentials rotated")
    raise typer.Exit(1 if failed else 0)


@app.command()
def check(
    config: ConfigOpt = None,
    connect: Annotated[
        bool, typer.Option("--connect", help="Also mint once per credential and read every target.")
    ] = False,
) -> None:
    """Validate the config and print the plan: cadence, writes/day, quota findings."""
    from syncd.engine import Engine, plan_findings

    cfg, path = _load(config)
    logs.configure("error", cfg.daemon.log_format)
    engine = Engine(cfg)
    try:
        engine.setup()
    except Exception as exc:
        err.print(f"error: {path}: cannot create stores: {exc}")
        raise typer.Exit(2) from None
    out.print(f"[bold]{path}[/]: {len(cfg.credentials)} credential(s), {len(cfg.stores)} store(s)", markup=True)
    for name, scfg in cfg.stores.items():
        out.print(f"  store {name}: type {scfg.type}")
    for cred in cfg.credentials:
        pol = cred.policy(cfg.defaults)
        life = cred.token_lifetime_for(cfg.defaults)
        plan_t = policy.refresh_time(0.0, life, 0.0, pol, 0.5)
        wpd = policy.writes_per_day(life, pol)
        source = cred.client_secret.describe() if cred.client_secret else "-"
        ident = (
            f"service account {cred.service_account_file}"
            if cred.service_account_file
            else f"client_id {cred.client_id}, secret from {source}"
        )
        out.print(f"\n[bold]credential {cred.name}[/]", markup=True)
        out.print(f"  token_url   {cred.token_url} ({cred.auth_method})")
        out.print(f"  identity    {ident}")
        out.print(f"  scopes      {' '.join(cred.scopes) if cred.scopes else '(none requested)'}")
        out.print(
            f"  cadence     token lifetime {_fmt_seconds(life)} (expected) -> refresh every ~{_fmt_seconds(plan_t)} "
            f"(+-{pol.jitter:.0%}), shortest {_fmt_seconds(policy.min_refresh_interval(life, pol))}; "
            f"up to {wpd:.0f} writes/day per target"
        )
        for tgt in cred.targets:
            extra = f", slots={tgt.slots}" if tgt.slots is not None else ""
            out.print(f"  target      {tgt.label} (format {tgt.format}{extra})")
    findings = plan_findings(cfg, engine.stores)
    findings_connect = asyncio.run(_check_connect(engine)) if connect else []
    asyncio.run(engine.stop(drain_timeout=0))
    all_findings = findings + findings_connect
    if all_findings:
        out.print("\n[bold]findings[/]", markup=True)
        for f in all_findings:
            out.print("  " + f.render().replace("\n", "\n  "))
    errors = [f for f in findings if f.level == "error"]
    connect_errors = [f for f in findings_connect if f.level == "error"]
    if errors:
        err.print(f"\n{len(errors)} error(s) in the plan: syncd would refuse to start")
        raise typer.Exit(2)
    if connect_errors:
        err.print(f"\n{len(connect_errors)} connection check(s) failed")
        raise typer.Exit(1)
    out.print("\nok: configuration is valid")


async def _check_connect(engine: Any) -> list[Any]:
    from syncd.stores.base import Finding

    findings: list[Finding] = []
    reports = await engine.run_once_dry()
    for name, problems in reports.items():
        for subject, message in problems:
            findings.append(Finding("error", f"{name} -> {subject}", message))
    return findings


@app.command()
def status(
    url: Annotated[str, typer.Option("--url", help="The daemon's base URL.")] = "http://127.0.0.1:9440",
    as_json: Annotated[bool, typer.Option("--json", help="Print /status JSON.")] = False,
) -> None:
    """Show a running daemon's credentials; exit 1 if any is unhealthy."""
    import httpx

    try:
        resp = httpx.get(url.rstrip("/") + "/status", timeout=5.0)
        resp.raise_for_status()
        data = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        err.print(f"error: cannot read {url}/status ({type(exc).__name__}: {exc}); is syncd running there?")
        raise typer.Exit(1) from None
    creds = data.get("credentials", [])
    unhealthy = [c for c in creds if not c.get("healthy") or c.get("state") not in ("ok",)]
    if as_json:
        out.print_json(data=data)
    else:
        table = Table(title=f"syncd at {url}")
        for col in ("credential", "state", "expires in", "next refresh", "failures", "targets", "last error"):
            table.add_column(col)
        now = time.time()
        from syncd.payload import from_rfc3339

        for c in creds:
            nxt = from_rfc3339(c["next_refresh"]) - now if c.get("next_refresh") else None
            fresh = sum(1 for t in c.get("targets", []) if t.get("fresh"))
            state = c.get("state", "?")
            style = (
                "green"
                if state == "ok" and c.get("healthy")
                else ("yellow" if state in ("degraded", "retrying") else "red")
            )
            last = (c.get("last_error") or {}).get("message") or ""
            table.add_row(
                c["name"],
                f"[{style}]{state}[/]",
                _fmt_seconds(c.get("expires_in")),
                _fmt_seconds(nxt),
                str(c.get("consecutive_failures", 0)),
                f"{fresh}/{len(c.get('targets', []))} fresh",
                last[:80],
            )
        out.print(table)
    raise typer.Exit(1 if unhealthy else 0)


@app.command()
def inspect(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Read every target directly from the stores and report freshness; exit 1 on any problem."""
    from syncd.audit import inspect_targets

    cfg, _ = _load(config)
    logs.configure("error", cfg.daemon.log_format)
    reports = asyncio.run(inspect_targets(cfg))
    bad = [r for r in reports if not r.ok]
    if as_json:
        out.print_json(data={"targets": [r.as_dict() for r in reports], "problems": len(bad)})
    else:
        table = Table(title="stored tokens")
        for col in ("credential", "target", "status", "fingerprint", "expires", "remaining", "problem"):
            table.add_column(col)
        for r in reports:
            d = r.as_dict()
            style = {"fresh": "green", "stale": "yellow"}.get(r.status, "red")
            rem = (
                f"{_fmt_seconds(r.remaining)} ({r.remaining_fraction:.0%})" if r.remaining_fraction is not None else "-"
            )
            table.add_row(
                r.credential,
                r.target,
                f"[{style}]{r.status}[/]",
                r.fingerprint or "-",
                d["expires_at"] or "-",
                rem,
                r.problem or "",
            )
        out.print(table)
        out.print(f"{len(reports) - len(bad)} of {len(reports)} targets ok")
    raise typer.Exit(1 if bad else 0)


@app.command()
def version() -> None:
    """Print the version."""
    out.print(f"syncd {__version__} (python {sys.version.split()[0]})")


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

_ = json  # kept for --json helpers
