"""The ``syncd`` command: run, once, check, status, inspect, probe, init, version.

Exit codes: 0 ok, 1 a mint or write failed (or, for status/inspect, something
is unhealthy), 2 a configuration error whose message names the key and why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from syncd import __version__, logs, policy, replicas, termfit
from syncd.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_FILE,
    Config,
    ConfigError,
    DaemonConfig,
    config_path,
    load_config,
)

app = typer.Typer(
    name="syncd",
    help="Mint OAuth 2.0 client-credentials tokens before they expire and write them into secret stores.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _version_flag(value: bool) -> None:
    if value:
        version()
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_version_flag, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Mint OAuth 2.0 client-credentials tokens before they expire and write them into secret stores."""


ConfigOpt = Annotated[
    Path | None,
    typer.Option("-c", "--config", help="Config file (default: $SYNCD_CONFIG, else ./syncd.toml)."),
]


def _load(config: Path | None) -> tuple[Config, Path]:
    path = config_path(config)
    try:
        return load_config(path), path
    except ConfigError as exc:
        # Config values are quoted in the message: never let them be read as markup.
        err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
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
        err.print(
            f"[bold red]error:[/] the plan for {escape(str(path))} has errors; refusing to start:\n"
            f"{escape(logs.scrub_text(str(exc)))}",
            markup=True,
        )
        raise typer.Exit(2) from None
    except OSError as exc:
        err.print(f"[bold red]error:[/] {escape(logs.scrub_text(str(exc.strerror or exc)))}", markup=True)
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
            err.print(
                f"error: unknown credential(s) {', '.join(unknown)} (configured: {', '.join(names)})", markup=False
            )
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
            out.print(f"ok      {r.credential}", markup=False)
        else:
            out.print(f"FAILED  {r.credential}", markup=False)
            for e in r.errors:
                out.print(f"        {logs.scrub_text(e)}", markup=False)
    out.print(f"{len(reports) - len(failed)} of {len(reports)} credentials rotated")
    raise typer.Exit(1 if failed else 0)


@app.command()
def check(
    config: ConfigOpt = None,
    connect: Annotated[
        bool, typer.Option("--connect", help="Also mint once per credential and read every target.")
    ] = False,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="Skip reading secrets, token files and store directories (to lint a config away from where it runs).",
        ),
    ] = False,
) -> None:
    """Validate the config and print the plan: cadence, writes/day, quota findings."""
    from syncd.auth_rules import describe_proof
    from syncd.engine import Engine, plan_findings
    from syncd.preflight import preflight_findings

    cfg, path = _load(config)
    logs.configure("error", cfg.daemon.log_format)
    engine = Engine(cfg)
    try:
        engine.setup()
    except Exception as exc:
        err.print(f"error: {path}: cannot create stores: {logs.scrub_text(str(exc))}", markup=False)
        raise typer.Exit(2) from None
    _print_wrapped(f"{path}: {len(cfg.credentials)} credential(s), {len(cfg.stores)} store(s)")
    for name, scfg in cfg.stores.items():
        url = getattr(scfg, "url", None)
        where = f" at {logs.scrub_url(url)}" if isinstance(url, str) else ""
        _print_wrapped(f"  store {name}: type {scfg.type}{where}")
    for cred in cfg.credentials:
        pol = cred.policy(cfg.defaults)
        life = cred.token_lifetime_for(cfg.defaults)
        plan_t = policy.refresh_time(0.0, life, 0.0, pol, 0.5)
        wpd = policy.writes_per_day(life, pol)
        ident = (
            f"service account {cred.service_account_file}"
            if cred.service_account_file
            else f"client_id {cred.client_id}, {describe_proof(cred)}"
        )
        out.print(f"\n[bold]credential {escape(cred.name)}[/]")
        lines = [
            f"  token_url   {logs.scrub_url(cred.token_url)} ({cred.auth_method})",
            f"  identity    {ident}",
            f"  scopes      {' '.join(cred.scopes) if cred.scopes else '(none requested)'}",
            f"  cadence     token lifetime {_fmt_seconds(life)} (expected) -> refresh every ~{_fmt_seconds(plan_t)} "
            f"(+-{pol.jitter:.0%}), shortest {_fmt_seconds(policy.min_refresh_interval(life, pol))}; "
            f"up to {wpd:.0f} writes/day per target",
        ]
        for tgt in cred.targets:
            extra = f", slots={tgt.slots}" if tgt.slots is not None else ""
            lines.append(f"  target      {tgt.label} (format {tgt.format}{extra})")
        for line in lines:
            _print_wrapped(logs.scrub_text(line))
    if cfg.daemon.replicas > 1:
        _print_replica_plan(cfg)
    findings = plan_findings(cfg, engine.stores) + replicas.replica_findings(cfg)
    local = [] if offline else preflight_findings(cfg)
    # One event loop for the connection check and for closing what it opened: httpx and
    # store clients cannot be closed from a second loop ("Event loop is closed").
    findings_connect = asyncio.run(_connect_then_close(engine, connect))
    all_findings = findings + local + findings_connect
    if all_findings:
        out.print("\n[bold]findings[/]")
        for f in all_findings:
            # Scrub what a finding says, not its subject: a key path such as
            # `credentials[0].client_secret: ...` reads like a secret field to the redactor.
            safe = dataclasses.replace(
                f, message=logs.scrub_text(f.message), fix=logs.scrub_text(f.fix) if f.fix else None
            )
            for line in safe.render().splitlines():
                _print_wrapped("  " + line)
    errors = [f for f in findings if f.level == "error"]
    local_errors = [f for f in local if f.level == "error"]
    connect_errors = [f for f in findings_connect if f.level == "error"]
    if errors:
        err.print(f"\n{len(errors)} error(s) in the plan: syncd would refuse to start")
    if local_errors:
        err.print(f"\n{len(local_errors)} secret, file or directory problem(s): the first mint or write would fail")
    if errors or local_errors:
        raise typer.Exit(2)
    if connect_errors:
        err.print(f"\n{len(connect_errors)} connection check(s) failed")
        raise typer.Exit(1)
    out.print("\nok: configuration is valid")


def _print_replica_plan(cfg: Config) -> None:
    """The cost of the configured replica count next to one replica's: writes are not multiplied by N."""
    daemon = cfg.daemon
    delay = daemon.takeover_delay if daemon.takeover_delay == "auto" else _fmt_seconds(daemon.takeover_delay)
    out.print("\n[bold]replicas[/]")
    _print_wrapped(
        f"  this is replica {daemon.replica} of {daemon.replicas}; takeover_delay {delay}; "
        "rank 0 of each credential refreshes it, rank k reads the targets at refresh_after + k x takeover_delay"
    )
    counts = sorted({1, *range(2, min(daemon.replicas, 5) + 1), daemon.replicas})
    for n in counts:
        writes, reads, versions = replicas.plan_totals(cfg, n)
        sm = f", Secrets Manager versions/24 h per secret {versions:.0f}" if versions else ""
        label = f"{n:>4} replica{'s' if n > 1 else ' '}"
        _print_wrapped(f"  {label}  writes/day {writes:.0f}, follower reads/day {reads:.0f}{sm}")


def _print_wrapped(line: str) -> None:
    """One line of ``check`` output, wrapped to a terminal so it reads in 80 columns."""
    import os

    width = termfit.wrap_width(out.is_terminal, os.environ.get("COLUMNS"), out.width)
    for part in termfit.wrap(line, width):
        out.print(part, markup=False, crop=False)


async def _connect_then_close(engine: Any, connect: bool) -> list[Any]:
    try:
        return await _check_connect(engine) if connect else []
    finally:
        await engine.stop(drain_timeout=0)


async def _check_connect(engine: Any) -> list[Any]:
    from syncd.stores.base import Finding

    findings: list[Finding] = []
    reports = await engine.run_once_dry()
    for name, problems in reports.items():
        for subject, message in problems:
            findings.append(Finding("error", f"{name} -> {subject}", logs.scrub_text(message)))
    return findings


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


@app.command()
def init(
    path: Annotated[
        Path | None, typer.Argument(help="File to write (a directory means syncd.toml in it; default ./syncd.toml).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter config (every option, with its default) to PATH."""
    from syncd.starter import StarterExists, starter_path, write_starter

    target = starter_path(path)
    try:
        write_starter(target, force=force)
    except StarterExists as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    except OSError as exc:
        err.print(f"error: cannot write {target}: {exc.strerror or exc}", markup=False)
        raise typer.Exit(2) from None
    out.print(f"wrote {target}", markup=False)
    out.print(
        "next: put the client secret in demo/calm.secret next to it (or edit client_secret), "
        "set token_url and the stores, then run:",
        markup=False,
    )
    out.print(f"  syncd check -c {target}", markup=False)


@app.command()
def version() -> None:
    """Print the version."""
    out.print(f"syncd {__version__} (python {sys.version.split()[0]})")


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
