"""``-w/--workspace``, ``--json`` and ``--debug`` work before the command and after any (sub)command, and an
option given before the command is not overwritten by the command's own default."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from kaizen.workflows.cli.main import build_parser, main


def leaf_commands(
    parser: argparse.ArgumentParser, prefix: list[str]
) -> list[tuple[list[str], argparse.ArgumentParser]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append(([*prefix, name], sub))
                out.extend(leaf_commands(sub, [*prefix, name]))
    return out


def test_every_command_takes_the_global_options_without_overwriting_them() -> None:
    commands = leaf_commands(build_parser(), [])
    assert len(commands) > 20
    for path, parser in commands:
        opts = {s for a in parser._actions for s in a.option_strings}
        assert {"-w", "--workspace", "--json", "--debug"} <= opts, path
        # A command's defaults never replace what the root parsed.
        assert all(parser.get_default(d) is argparse.SUPPRESS for d in ("workspace", "json", "debug")), path


@pytest.mark.parametrize(
    "argv",
    [
        ["-w", "{ws}", "--json", "task", "list"],
        ["task", "list", "-w", "{ws}", "--json"],
        ["-w", "{ws}", "task", "--json", "list"],
        ["--json", "task", "-w", "{ws}", "list"],
    ],
)
def test_both_orders_reach_the_same_workspace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    ws = tmp_path / "proj"
    assert main(["init", str(ws)]) == 0
    assert main(["task", "add", "intents", "--kind", "classification", "--labels", "a,b", "-w", str(ws)]) == 0
    capsys.readouterr()
    assert main([a.format(ws=ws) for a in argv]) == 0
    tasks = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in tasks] == ["intents"]


def test_a_command_after_the_workspace_still_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``kaizen repair -w X`` used to be an argparse error; now it reaches the command (which names the missing task)."""
    assert main(["init", str(tmp_path)]) == 0
    capsys.readouterr()
    rc = main(["repair", "--task", "nope", "-w", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc not in (0, 2) and "nope" in err
    with pytest.raises(Exception, match="nope"):  # --debug after the command: the traceback, not one line
        main(["repair", "--task", "nope", "-w", str(tmp_path), "--debug"])
