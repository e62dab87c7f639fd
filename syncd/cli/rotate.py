"""The commands that rotate: ``run`` (the daemon) and ``once`` (every credential once, then exit)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.markup import escape

from syncd import logs
from syncd.cli.app import ConfigOpt, _load, app, err, out


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
