"""Printing for the CLI: ``--json`` for machines, rich tables for people, errors as one line.

Everything that comes from data — trace text, labels, file names, error messages — is printed as
plain text, never as rich markup: a model output such as ``[/INST]`` must print as itself, not
crash the command with a ``MarkupError``. Use ``esc()`` for data inside a markup string.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def esc(value: Any) -> str:
    """``value`` as text that rich prints literally inside a markup string (``[`` escaped)."""
    return escape(str(value))


def emit(as_json: bool, data: Any, pretty: Callable[[Any], None] | None = None) -> None:
    """Print ``data`` as JSON (``--json``) or through ``pretty`` (default: key/value lines)."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    if pretty is not None:
        pretty(data)
    elif isinstance(data, dict):
        for k, v in data.items():
            console.print(f"[bold]{esc(k)}[/bold]: {esc(v)}")
    else:
        console.print(data, markup=False)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(title=Text(title), title_justify="left")
    for c in columns:
        t.add_column(Text(str(c)))
    for r in rows:
        t.add_row(*(Text("" if v is None else str(v)) for v in r))
    console.print(t)


def info(msg: str) -> None:
    """Progress/status line on stderr, so stdout stays clean for --json."""
    err_console.print(msg, markup=False)
