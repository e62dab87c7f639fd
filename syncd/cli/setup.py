"""Getting started: ``init`` writes a starter config, ``version`` says which syncd this is."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from syncd.cli.app import app, err, out, version_line


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
    out.print(version_line())
