"""Printing for the CLI: ``--json`` for machines, rich tables for people, errors as one line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def emit(as_json: bool, data: Any, pretty: Callable[[Any], None] | None = None) -> None:
    """Print ``data`` as JSON (``--json``) or through ``pretty`` (default: key/value lines)."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    if pretty is not None:
        pretty(data)
    elif isinstance(data, dict):
        for k, v in data.items():
            console.print(f"[bold]{k}[/bold]: {v}")
    else:
        console.print(data)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    console.print(t)


def info(msg: str) -> None:
    """Progress/status line on stderr, so stdout stays clean for --json."""
    err_console.print(msg)
