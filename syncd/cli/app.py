"""The typer app and what every command shares: the consoles, loading the config (exit 2), durations."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from syncd import __version__
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


def version_line() -> str:
    """What ``syncd --version`` and ``syncd version`` print."""
    return f"syncd {__version__} (python {sys.version.split()[0]})"


def _version_flag(value: bool) -> None:
    if value:
        out.print(version_line())
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


def main() -> None:
    app()
