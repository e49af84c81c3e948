"""The ``kaizen`` command line: one parser, one ``cmd_*.py`` module per group of sub-commands."""

from kaizen.workflows.cli.main import main

__all__ = ["main"]
