"""Small pure helpers that let the CLI's output fit a narrow terminal (80 columns).

Kept out of the cli package so the decisions (where ``status`` connects, how a long line wraps)
have table-driven tests of their own.
"""

from __future__ import annotations

import contextlib
import ipaddress
import textwrap

# Below this width the tables leave out columns a reader can do without (fingerprint,
# absolute expiry): seven columns in 80 characters would truncate every name to "card-m…".
WIDE = 120


def status_url(listen: str) -> str:
    """The URL ``syncd status`` uses for a daemon configured with ``[daemon] listen``."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    # A wildcard listen address is where the daemon accepts, not where a client can connect:
    # ask the loopback address of the same family instead.
    if not host:
        host = "127.0.0.1"
    else:
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(host)
            if address.is_unspecified:
                host = "::1" if address.version == 6 else "127.0.0.1"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{port}"


def wrap_width(is_terminal: bool, columns_env: str | None, width: int) -> int | None:
    """The width to wrap ``check`` lines at, or None to leave them whole.

    Only for a reader: a terminal, or a width asked for with COLUMNS. Piped into grep
    or a CI log, every finding stays on one line with its key path, as scripts expect.
    """
    if is_terminal or (columns_env or "").strip().isdigit():
        return width
    return None


def wrap(line: str, width: int | None) -> list[str]:
    """Wrap one ``  label       value`` line of ``syncd check`` under its value column.

    The continuation lines are indented as far as the value starts, so the label column
    stays readable; a long URL or key without spaces is cut rather than overflowing.
    """
    if width is None or len(line) <= width:
        return [line]
    stripped = line.lstrip(" ")
    lead = len(line) - len(stripped)
    label, sep, rest = stripped.partition(" ")
    value_at = lead + len(label) + (len(rest) - len(rest.lstrip(" "))) + len(sep) if sep else lead
    if value_at > width // 2:  # no label column worth keeping: indent by the leading spaces plus two
        value_at = lead + 2
    return textwrap.wrap(
        line,
        width=width,
        subsequent_indent=" " * value_at,
        break_on_hyphens=False,
        drop_whitespace=True,
        replace_whitespace=False,
    ) or [line]
