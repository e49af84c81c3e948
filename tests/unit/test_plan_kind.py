"""The plan's training kind (sft | grpo | sft+grpo) and the recovery order refresh → rollback → grpo:
where they come from (the brain, a run's plan defaults, ``kaizen repair --kind``, kaizen.yaml) and where
they go (the plan node, the run's state, routing). No model."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from banking_traces import TASK, card_declined_failures, passing
from pydantic import ValidationError

from kaizen.agent.routing import after_gate
from kaizen.agent.rule_brain import RuleBrain
from kaizen.agent.state import Plan
from kaizen.tools.config import RepairSettings, settings_template
from kaizen.workflows.repair.job import recoveries


def test_the_default_plan_trains_with_sft_and_the_kind_is_checked() -> None:
    diag = RuleBrain().diagnose(TASK, passing() + card_declined_failures())
    first = RuleBrain().plan(1, diag, None, None)
    assert first.kind == "sft" and first.grpo_steps == 32
    assert Plan(iteration=1, kind="sft+grpo").kind == "sft+grpo"
    with pytest.raises(ValidationError):
        Plan(iteration=1, kind="dpo")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Plan(iteration=1, grpo_steps=0)


def test_later_plans_keep_the_kind_the_first_one_chose() -> None:
    diag = RuleBrain().diagnose(TASK, passing() + card_declined_failures())
    prev = Plan(iteration=1, kind="grpo", grpo_steps=3)
    failed = {"passed": False, "new_regressions": 5, "max_new_regressions": 2, "target_gain": 0.2}
    nxt = RuleBrain().plan(2, diag, failed, prev)
    assert (nxt.kind, nxt.grpo_steps, nxt.iteration) == ("grpo", 3, 2)
    passed = {"passed": True, "candidate": "c1", "target_after": 0.7}
    assert RuleBrain().plan(2, diag, passed, prev).kind == "grpo"


class _Runtime:
    def __init__(self, context: Any) -> None:
        self.context = context


def _plan_node(tmp_path: Path, plan_defaults: dict[str, Any], state: dict[str, Any] | None = None) -> dict:
    from kaizen.agent.context import RunContext
    from kaizen.agent.nodes.plan import plan

    diag = RuleBrain().diagnose(TASK, passing() + card_declined_failures())
    path = tmp_path / "diagnosis.json"
    path.write_text(diag.model_dump_json())
    ctx = RunContext(workspace=None, brain=RuleBrain(), plan_defaults=plan_defaults)  # type: ignore[arg-type]
    return plan({"diagnosis_path": str(path), **(state or {})}, _Runtime(ctx))  # type: ignore[arg-type]


def test_the_plan_node_applies_the_runs_kind_to_the_first_plan_only(tmp_path: Path) -> None:
    up = _plan_node(tmp_path, {"kind": "grpo", "grpo_steps": 2})
    p = Plan.model_validate(up["plan"])
    assert (p.kind, p.grpo_steps) == ("grpo", 2)
    assert any("training kind grpo" in r for r in p.rationale)
    assert up["events"][0]["kind"] == "grpo"
    # No run setting: the brain's SFT.
    assert Plan.model_validate(_plan_node(tmp_path, {})["plan"]).kind == "sft"
    # A second iteration starts from the previous plan (its kind), not from the defaults again.
    prev = Plan(iteration=1, kind="sft+grpo").model_dump()
    verdict = {"passed": False, "target_gain": 0.0}
    up2 = _plan_node(tmp_path, {"kind": "grpo"}, {"plan": prev, "iteration": 1, "verdict": verdict})
    assert Plan.model_validate(up2["plan"]).kind == "sft+grpo"
    # A bad value is refused like any invalid plan, not carried into training.
    with pytest.raises(ValidationError):
        _plan_node(tmp_path, {"kind": "ppo"})


def test_recoveries_are_refresh_rollback_grpo_as_the_settings_allow() -> None:
    assert recoveries(RepairSettings(), "classification") == ["refresh", "rollback", "grpo"]
    assert recoveries(RepairSettings(grpo_recovery=False), "classification") == ["refresh", "rollback"]
    assert recoveries(RepairSettings(recover=False), "classification") == []
    # No verifier, no GRPO: generation has only a similarity reward.
    assert recoveries(RepairSettings(), "generation") == ["refresh", "rollback"]
    for kind in ("math", "extraction", "code"):
        assert recoveries(RepairSettings(), kind)[-1] == "grpo"


def test_the_generated_kaizen_yaml_documents_grpo_recovery() -> None:
    text = settings_template()
    line = next(x for x in text.splitlines() if x.strip().startswith("grpo_recovery:"))
    assert "true" in line
    i = text.splitlines().index(line)
    assert "GRPO" in "\n".join(text.splitlines()[max(0, i - 4) : i])  # its description, as a comment above it


def test_routing_tries_refresh_then_rollback_then_grpo() -> None:
    only_reg = {"passed": False, "target_gain": 0.3, "target_failed": False, "regression_failed": True}
    s = {
        "iteration": 1,
        "max_iterations": 3,
        "deadline": time.time() + 3600,
        "train_tokens_budget": 200_000,
        "train_tokens_used": 0,
        "verdict": only_reg,
        "recoveries": recoveries(RepairSettings(), "classification"),
        "recovery": [],
    }
    tried: list[str] = []
    while after_gate(s | {"recovery": tried}) == "recover":
        tried.append(s["recoveries"][len(tried)])  # what the recover node takes next
    assert tried == ["refresh", "rollback", "grpo"]
    assert after_gate(s | {"recovery": tried}) == "plan"


def test_kaizen_repair_refuses_a_bad_kind_before_any_work(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from kaizen.workflows.cli.main import main

    # A typo never starts a run: argparse refuses it.
    with pytest.raises(SystemExit):
        main(["-w", str(tmp_path), "repair", "--task", "t", "--kind", "rl"])
    assert "invalid choice: 'rl'" in capsys.readouterr().err
    # --grpo-steps without a GRPO kind is refused, with the fix, before the workspace is even opened.
    assert main(["-w", str(tmp_path), "repair", "--task", "t", "--grpo-steps", "3"]) != 0
    assert "--grpo-steps needs --kind grpo" in capsys.readouterr().err


def test_rl_bench_flips_and_table() -> None:
    from kaizen.workflows.bench.rl import TABLE_COLUMNS, flips, table_rows

    before = {"a": True, "b": True, "c": False, "d": True}
    after = {"a": True, "b": False, "c": True, "d": True}
    f = flips(before, after)
    assert (f["newly_wrong"], f["newly_right"], f["right_before"], f["right_after"]) == (1, 1, 3, 3)
    arm = {
        "target": {"fixed": 3, "n": 4},
        "regression": {"newly_wrong": 1, "n": 20},
        "gold": f,
        "train_tokens": 1234,
        "train_s": 5.0,
        "run_s": 30.0,
        "gate_passed": True,
    }
    rows = table_rows({"arms": {"grpo": arm, "sft": {"error": "boom"}}})
    assert len(rows[0]) == len(TABLE_COLUMNS)
    assert rows[0][:3] == ["grpo", "3/4 (75%)", "1/20 (5%)"] and rows[0][-1] == "pass"
    assert rows[1][0] == "sft" and "boom" in rows[1][1]
    json.dumps(rows)


def test_kaizen_train_grpo_flags_are_the_train_jobs_fields() -> None:
    from kaizen.tools.train.spec import TrainJob
    from kaizen.workflows.cli.cmd_tools import GRPO_FLAGS
    from kaizen.workflows.cli.main import build_parser

    base = ["train", "grpo", "--task", "t", "--data", "d.jsonl"]
    a = build_parser().parse_args(base)
    assert {n: getattr(a, n) for n in GRPO_FLAGS} == {n: TrainJob.model_fields[n].default for n in GRPO_FLAGS}
    assert a.reward is None  # the task kind's verifier, decided once the task is known
    a = build_parser().parse_args(
        base
        + ["--adv-weight-pos", "0.5", "--adv-weight-neg", "1.5", "--entropy-floor", "off"]
        + [
            "--entropy-patience",
            "3",
            "--hint-share",
            "0.5",
            "--hint",
            "prefix",
            "--max-completion-length",
            "8",
        ]
    )
    assert (a.adv_weight_pos, a.adv_weight_neg, a.entropy_floor, a.entropy_patience) == (0.5, 1.5, None, 3)
    assert (a.hint_share, a.hint, a.max_completion_length) == (0.5, "prefix", 8)
    assert build_parser().parse_args(base + ["--entropy-floor", "0.2"]).entropy_floor == 0.2
