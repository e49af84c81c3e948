"""The import boundary: the CLI, its help and the light parts of ``tools`` work with the heavy ML
stack unavailable. ``kaizen --help`` must be instant and must work before torch is installed (or
when its install is broken), so heavy imports happen inside the functions that need them.

Runs in a fresh interpreter with a ``sys.meta_path`` finder that makes importing torch,
transformers, trl, peft, vllm or datasets (or any submodule) fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BLOCKED = ("torch", "transformers", "trl", "peft", "vllm", "datasets")

# Every module here must import with the heavy stack blocked. If one is missing, the test fails
# naming it (it is not skipped): a renamed module should be renamed here on purpose.
LIGHT_MODULES = (
    "agent",
    "tools",
    "workflows",
    "kaizen.workflows.cli.main",
    "kaizen.tools.store",
    "kaizen.tools.logs",
    "kaizen.tools.registry",
    "kaizen.tools.config",
    "kaizen.tools.evaluate.backends",
    "kaizen.tools.evaluate.vllm_backends",
    "kaizen.tools.evaluate.run",
    "kaizen.tools.train.launch",
    "kaizen.tools.train.spec",
    "kaizen.tools.models",
    "kaizen.tools.versions",
    "kaizen.tools.serve.hotswap",
    "kaizen.tools.serve.http",
    "kaizen.workflows.serve.app",
    "kaizen.workflows.serve.server",
    "kaizen.workflows.serve.process",
)

EXPECTED_COMMANDS = {"init", "task", "ingest", "feedback", "traces", "models"}

SCRIPT = textwrap.dedent(
    """
    import argparse, contextlib, importlib, importlib.abc, io, json, sys, traceback

    BLOCKED = set(sys.argv[1].split(","))
    MODULES = sys.argv[2].split(",")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ImportError(f"blocked by the import-boundary test: {name}")
            return None

    sys.meta_path.insert(0, Block())
    report = {"missing": [], "failed": {}, "help": {}, "commands": [], "leaked": []}

    for m in MODULES:
        try:
            importlib.import_module(m)
        except ModuleNotFoundError as e:
            if e.name and (m == e.name or m.startswith(e.name + ".")):
                report["missing"].append(m)
            else:
                report["failed"][m] = traceback.format_exc()
        except BaseException:
            report["failed"][m] = traceback.format_exc()

    def run_help(argv):
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                from kaizen.workflows.cli.main import main
                rc = main(argv)
        except SystemExit as e:
            rc = e.code or 0
        except BaseException:
            return traceback.format_exc()
        text = out.getvalue()
        if rc != 0:
            return f"exit {rc}: {text}"
        if "usage:" not in text:
            return f"no usage text: {text!r}"
        return "ok"

    def subcommands(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield [*prefix, name]
                    yield from subcommands(sub, [*prefix, name])

    if "kaizen.workflows.cli.main" not in report["missing"] and "kaizen.workflows.cli.main" not in report["failed"]:
        from kaizen.workflows.cli.main import build_parser
        report["help"]["--help"] = run_help(["--help"])
        cmds = list(subcommands(build_parser(), []))
        report["commands"] = [c[0] for c in cmds if len(c) == 1]
        for c in cmds:
            report["help"][" ".join(c)] = run_help([*c, "--help"])

    report["leaked"] = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
    print("REPORT " + json.dumps(report))
    """
)


def test_cli_and_light_modules_import_without_the_ml_stack() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("KAIZEN_HOME", "KAIZEN_DB_URL")}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, ",".join(BLOCKED), ",".join(LIGHT_MODULES)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, f"boundary script failed:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(lines[-1].removeprefix("REPORT "))

    assert not report["missing"], f"modules the boundary test lists do not exist: {report['missing']}"
    assert not report["failed"], "modules need the ML stack at import time:\n" + "\n".join(
        f"--- {m}\n{tb}" for m, tb in report["failed"].items()
    )
    assert not report["leaked"], f"blocked modules ended up in sys.modules: {report['leaked']}"

    assert EXPECTED_COMMANDS <= set(report["commands"]), report["commands"]
    assert report["help"].get("--help") == "ok", report["help"].get("--help")
    for cmd in report["commands"]:
        assert cmd in report["help"], f"{cmd} --help was not run"
    bad = {cmd: res for cmd, res in report["help"].items() if res != "ok"}
    assert not bad, "help fails with the ML stack blocked:\n" + json.dumps(bad, indent=2)
