"""Printing for the CLI: ``--json`` for machines, rich tables for people, errors as one line.

Everything that comes from data — trace text, labels, file names, error messages — is printed as
plain text, never as rich markup: a model output such as ``[/INST]`` must print as itself, not
crash the command with a ``MarkupError``. Use ``esc()`` for data inside a markup string.

``tools/`` reports through the standard ``logging`` module (``kaizen.*`` loggers);
``configure_logging`` shows those records on stderr as ``kaizen: message``.
"""

from __future__ import annotations

import json
import logging
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


class _StderrHandler(logging.Handler):
    """Writes each record to ``sys.stderr`` as it is at that moment (a redirect, pytest's capture)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


class _KaizenFormatter(logging.Formatter):
    """``kaizen: message``; a record logged with ``extra={"bare": True}`` (training progress) prints as is."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if getattr(record, "bare", False) else f"kaizen: {text}"


def configure_logging(debug: bool = False) -> None:
    """Show the ``kaizen.*`` loggers on stderr: INFO and up, DEBUG too with ``--debug``.

    Called once per ``main()``; calling it again only changes the level (one handler, never two).
    Records still propagate to the root logger (other handlers, pytest's ``caplog``).
    """
    logger = logging.getLogger("kaizen")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_KaizenFormatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
