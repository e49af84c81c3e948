"""Prompt skills: versioned system prompt / instructions / few-shot, deployed with a model version.

A skill is the cheapest fix there is — no training, no new weights — and for format and instruction
failures often the right one. Versions are per task, numbered 1, 2, … and never changed once
written (a new edit is a new version with ``parent``); the task's ``production`` alias points at a
(model version, skill version) pair, so promote and rollback move both together.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kaizen.tools.errors import ConfigError, NotFoundError
from kaizen.tools.schema import Skill
from kaizen.tools.store import Store


def save_skill(store: Store, task: str, skill: Skill, parent: int | None = None) -> Skill:
    """Store ``skill`` as the task's next version; returns it with its version number.

    Saving the same content with the same parent again returns the existing version (a resumed
    run that re-asks the brain gets the cached answer and must not mint a duplicate).
    """
    store.get_task(task)
    return Skill.model_validate(
        store.add_skill(task, skill.model_dump(mode="json", exclude={"name", "version"}), parent)
    )


def load_skill_file(path: Path, task: str) -> Skill:
    """Read a skill from a YAML (or JSON) file ``{system_prompt?, instructions?, few_shot?}``.

    Raises:
        ConfigError: The file cannot be read, is not UTF-8, is not valid YAML, repeats a key, is not a
            mapping (a list or a bare value), or does not fit a skill — naming the field and the fix.
    """
    from kaizen.tools.config import read_yaml

    raw = read_yaml(path, "skill file")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        kind = "a list" if isinstance(raw, list) else f"a single value ({type(raw).__name__})"
        raise ConfigError(
            f"{path}: a skill file holds a mapping {{system_prompt?, instructions?, few_shot?}}, not {kind}"
        )
    try:
        return Skill.model_validate({"name": task} | raw)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"{path}: {'.'.join(map(str, err['loc'])) or '<root>'}: {err['msg']}") from None


def get_skill(store: Store, task: str, version: int) -> Skill:
    row = store.get_skill_row(task, version)
    if row is None:
        raise NotFoundError(
            f"task {task!r} has no skill version {version}: see `kaizen skills list --task {task}`"
        )
    return Skill.model_validate(row.body)


def list_skills(store: Store, task: str) -> list[dict[str, Any]]:
    aliases = {a.alias: a.skill_version for a in store.aliases(task).values()}
    rows = store.skill_rows(task)
    return [
        {
            "version": r.version,
            "parent": r.parent,
            "created_at": r.created_at,
            "aliases": sorted(a for a, v in aliases.items() if v == r.version),
            "instructions": (r.body.get("instructions") or "")[:80],
            "few_shot": len(r.body.get("few_shot") or []),
        }
        for r in rows
    ]


def production_skill(store: Store, task: str) -> Skill | None:
    alias = store.get_alias(task, "production")
    return get_skill(store, task, alias.skill_version) if alias and alias.skill_version else None


def skill_text(skill: Skill | None) -> list[str]:
    """A skill as the lines a person compares: system prompt, instructions, each few-shot turn."""
    if skill is None:
        return ["(no skill: the task's system prompt alone)"]
    lines = [f"system_prompt: {skill.system_prompt or '(task default)'}", "instructions:"]
    lines += [f"  {x}" for x in (skill.instructions or "").splitlines()] or ["  (none)"]
    for i, shot in enumerate(skill.few_shot, 1):
        lines += [f"few_shot {i} {m.role}: {json.dumps(m.content, ensure_ascii=False)}" for m in shot]
    return lines


def diff_skills(a: Skill | None, b: Skill | None, names: tuple[str, str] = ("a", "b")) -> str:
    return "\n".join(difflib.unified_diff(skill_text(a), skill_text(b), *names, lineterm=""))
