"""``syncd check``: validate the config and print the plan, the replicas' cost and, with --connect, a dry run."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Annotated, Any

import typer
from rich.markup import escape

from syncd import logs, policy, replicas, termfit
from syncd.cli.app import ConfigOpt, _fmt_seconds, _load, app, err, out
from syncd.config import Config, CredentialConfig


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
            else f"client_id {cred.client_id}, {_describe_proof(cred)}"
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


def _describe_proof(cfg: CredentialConfig) -> str:
    """What proves the client, for ``syncd check``'s plan: sources and choices, never values."""
    method = cfg.auth_method
    if method == "private_key_jwt" and cfg.private_key is not None:
        kid = f"kid {cfg.key_id}" if cfg.key_id else "kid = key thumbprint"
        return f"private key from {cfg.private_key.describe()}, {cfg.signing_alg or 'alg by key type'}, {kid}"
    if method == "client_assertion" and cfg.client_assertion is not None:
        return f"assertion from {cfg.client_assertion.describe()} (re-read every mint)"
    if method == "tls_client_auth":
        return f"client certificate {cfg.client_cert}"
    source = cfg.client_secret.describe() if cfg.client_secret else "-"
    return f"secret from {source}" + (" (signs HS256 assertions)" if method == "client_secret_jwt" else "")
