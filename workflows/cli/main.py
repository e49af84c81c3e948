"""The ``kaizen`` command line: ``main(argv) -> int``.

Sub-commands live in ``workflows/cli/cmd_*.py``, each registering its own parsers. Only argparse,
rich and the light parts of ``tools`` are imported here, so ``kaizen --help`` never loads torch.
Errors kaizen raises on purpose (``KaizenError``) print as one line with a non-zero exit;
``--debug`` shows the traceback. Log records of the ``kaizen.*`` loggers print on stderr as
``kaizen: message`` (INFO and up; DEBUG too with ``--debug``). SIGTERM (``kill``, a container stop, a
CI timeout) is handled as Ctrl-C: the command's cleanup runs — a training runner is stopped with its
checkpoints kept for a resume, never left training with no one to stop it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from rich.text import Text

from kaizen.tools.errors import KaizenError
from kaizen.workflows.cli import (
    cmd_bench,
    cmd_data,
    cmd_loops,
    cmd_models,
    cmd_runs,
    cmd_serve,
    cmd_skills,
    cmd_tools,
    cmd_ui,
)
from kaizen.workflows.cli.output import configure_logging, err_console

COMMAND_MODULES = (
    cmd_data,
    cmd_models,
    cmd_tools,
    cmd_bench,
    cmd_runs,
    cmd_loops,
    cmd_skills,
    cmd_serve,
    cmd_ui,
)


def global_options(*, root: bool) -> argparse.ArgumentParser:
    """``-w/--workspace``, ``--debug`` and ``--json``: accepted before the command and after any (sub)command.

    Only the root parser has real defaults. Every command's parser has the same options with
    ``argparse.SUPPRESS`` as default: a sub-parser writes its defaults over the root's values, so
    ``kaizen -w X repair`` would otherwise lose ``X``.
    """
    p = argparse.ArgumentParser(add_help=False)

    def default(value: object) -> object:
        return value if root else argparse.SUPPRESS

    p.add_argument(
        "--workspace",
        "-w",
        type=Path,
        default=default(None),
        help="Workspace directory (default: $KAIZEN_HOME or the nearest .kaizen/).",
    )
    p.add_argument("--debug", action="store_true", default=default(False), help="Show tracebacks on errors.")
    p.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="Machine-readable output (JSON), where the command has one.",
    )
    return p


class CommandParser(argparse.ArgumentParser):
    """The parser of every command and sub-command (argparse passes the class down): it takes the global options too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["parents"] = [*kwargs.get("parents", []), global_options(root=False)]
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kaizen",
        description="Keep a deployed small language model getting better: ingest logs, diagnose, train, gate, promote.",
        parents=[global_options(root=True)],
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for module in COMMAND_MODULES:
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    configure_logging(debug=args.debug)
    previous = _terminate_as_interrupt()
    try:
        return int(args.func(args) or 0)
    except KaizenError as e:
        if args.debug:
            raise
        err_console.print(Text.assemble(("error: ", "red"), str(e)))
        return e.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _terminate_as_interrupt() -> Any:
    """SIGTERM raises ``KeyboardInterrupt`` (Python's default would exit without running any cleanup);
    returns the previous handler (None off the main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)


if __name__ == "__main__":
    sys.exit(main())
