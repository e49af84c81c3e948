"""CLI: prompt skills — ``kaizen skills list|show|diff|add``."""

from __future__ import annotations

import argparse
from pathlib import Path

from kaizen.tools.schema import Skill
from kaizen.tools.workspace import find_workspace
from kaizen.workflows.cli.output import console, emit, table


def register(sub: argparse._SubParsersAction) -> None:
    skills = sub.add_parser(
        "skills", help="Prompt skills (versioned system prompt / instructions / few-shot)."
    )
    sp = skills.add_subparsers(dest="skills_cmd", metavar="ACTION")
    p = sp.add_parser("list", help="A task's skill versions and which aliases use them.")
    p.add_argument("--task", required=True)
    p.set_defaults(func=cmd_list)
    p = sp.add_parser("show", help="One skill version in full.")
    p.add_argument("version", type=int)
    p.add_argument("--task", required=True)
    p.set_defaults(func=cmd_show)
    p = sp.add_parser("diff", help="What changed between two skill versions (0 = no skill).")
    p.add_argument("a", type=int)
    p.add_argument("b", type=int)
    p.add_argument("--task", required=True)
    p.set_defaults(func=cmd_diff)
    p = sp.add_parser(
        "add", help="Add a skill version from a YAML/JSON file {system_prompt?, instructions?, few_shot?}."
    )
    p.add_argument("file", type=Path)
    p.add_argument("--task", required=True)
    p.set_defaults(func=cmd_add)


def _get(ws, task: str, version: int) -> Skill | None:  # noqa: ANN001
    from kaizen.tools.skills import get_skill

    return None if version == 0 else get_skill(ws.store, task, version)


def cmd_list(args: argparse.Namespace) -> int:
    from kaizen.tools.skills import list_skills

    ws = find_workspace(args.workspace)
    data = list_skills(ws.store, args.task)
    emit(
        args.json,
        data,
        lambda d: table(
            f"skills of {args.task}",
            ["version", "parent", "aliases", "few-shot", "instructions", "created"],
            [
                (
                    r["version"],
                    r["parent"],
                    ",".join(r["aliases"]),
                    r["few_shot"],
                    r["instructions"],
                    str(r["created_at"])[:19],
                )
                for r in d
            ],
        ),
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from kaizen.tools.skills import skill_text

    ws = find_workspace(args.workspace)
    skill = _get(ws, args.task, args.version)
    emit(
        args.json,
        skill.model_dump() if skill else None,
        lambda _d: console.print("\n".join(skill_text(skill)), markup=False),
    )
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from kaizen.tools.skills import diff_skills

    ws = find_workspace(args.workspace)
    text = diff_skills(
        _get(ws, args.task, args.a), _get(ws, args.task, args.b), (f"skill {args.a}", f"skill {args.b}")
    )
    emit(args.json, {"diff": text}, lambda d: console.print(d["diff"] or "(identical)", markup=False))
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from kaizen.tools.skills import load_skill_file, production_skill, save_skill

    ws = find_workspace(args.workspace)
    skill = load_skill_file(args.file, args.task)
    parent = production_skill(ws.store, args.task)
    saved = save_skill(ws.store, args.task, skill, parent=parent.version if parent else None)
    emit(
        args.json,
        saved.model_dump(),
        lambda d: console.print(
            f"skill {d['version']} of {args.task} saved; deploy it with `kaizen models promote VERSION --task {args.task} --skill {d['version']}`"
        ),
    )
    return 0
