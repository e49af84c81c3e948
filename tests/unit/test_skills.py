"""Prompt skills: versions in the store, idempotent saves, diffs, deployment with a model version,
and the prompt contract using them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kaizen.tools import registry
from kaizen.tools.errors import NotFoundError
from kaizen.tools.schema import Message, Skill, TaskSpec, render
from kaizen.tools.skills import diff_skills, get_skill, list_skills, production_skill, save_skill
from kaizen.tools.workspace import init_workspace
from kaizen.workflows.cli.main import main

TASK = TaskSpec(name="bank", kind="classification", labels=["balance", "transfer"])


@pytest.fixture
def ws(tmp_path: Path):
    w, _ = init_workspace(tmp_path / "ws")
    w.store.add_task(TASK)
    yield w
    w.store.close()


def test_versions_count_up_and_identical_saves_are_not_duplicated(ws) -> None:
    a = save_skill(ws.store, "bank", Skill(name="x", instructions="Answer with the label only."))
    b = save_skill(
        ws.store,
        "bank",
        Skill(name="x", instructions="Answer with the label only. No punctuation."),
        parent=1,
    )
    again = save_skill(
        ws.store,
        "bank",
        Skill(name="x", instructions="Answer with the label only. No punctuation."),
        parent=1,
    )
    assert (a.version, b.version, again.version) == (1, 2, 2)
    assert [s["version"] for s in list_skills(ws.store, "bank")] == [1, 2]
    assert get_skill(ws.store, "bank", 2).instructions.endswith("No punctuation.")
    with pytest.raises(NotFoundError, match="no skill version 9"):
        get_skill(ws.store, "bank", 9)


def test_production_is_a_model_and_skill_pair(ws) -> None:
    save_skill(ws.store, "bank", Skill(name="bank", instructions="Be terse."))
    registry.promote(ws.store, "bank", "base", skill=1)
    assert production_skill(ws.store, "bank").instructions == "Be terse."
    assert list_skills(ws.store, "bank")[0]["aliases"] == ["production"]


def test_render_applies_the_skill_once() -> None:
    skill = Skill(
        name="bank",
        instructions="Reply with one word.",
        few_shot=[
            [Message(role="user", content="hi, balance?"), Message(role="assistant", content="balance")]
        ],
    )
    chat = render(
        TASK,
        skill,
        [{"role": "system", "content": "old prompt"}, {"role": "user", "content": "send 5 to bob"}],
    )
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user"]
    assert chat[0]["content"].endswith("Reply with one word.") and "old prompt" not in json.dumps(chat)


def test_diff_shows_the_edit() -> None:
    a = Skill(name="bank", instructions="Be terse.")
    b = a.model_copy(update={"instructions": "Be terse.\nNever explain."})
    d = diff_skills(a, b, ("skill 1", "skill 2"))
    assert "+  Never explain." in d and "--- skill 1" in d


def test_skills_cli(ws, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "skill.yaml"
    f.write_text(
        "instructions: Reply with the label only.\nfew_shot:\n  - - {role: user, content: what's my balance}\n"
        "    - {role: assistant, content: balance}\n"
    )
    w = ["-w", str(ws.root)]
    assert main(w + ["skills", "add", str(f), "--task", "bank", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1
    assert main(w + ["models", "promote", "base", "--task", "bank", "--skill", "1", "--json"]) == 0
    capsys.readouterr()
    assert main(w + ["skills", "list", "--task", "bank", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["aliases"] == ["production"]
    assert main(w + ["skills", "diff", "0", "1", "--task", "bank", "--json"]) == 0
    assert "+  Reply with the label only." in json.loads(capsys.readouterr().out)["diff"]
    assert main(w + ["models", "promote", "base", "--task", "bank", "--skill", "7"]) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("instructionz: x\n")
    assert main(w + ["skills", "add", str(bad), "--task", "bank"]) == 2
