"""GRPO inside the repair loop, on the yes/no tiny Llama (tests/conftest.py; seconds a job): plumbing only.

* ``kaizen repair --kind grpo``: the plan says grpo, the candidate is a GRPO job from the incumbent
  (the task kind's verifier, group 4, ≤ 8 completion tokens, the plan's steps) on the iteration's
  training set, registered with its lineage and gated like an SFT candidate;
* the third recovery, ``grpo``: the recover node trains GRPO from the incumbent (not from the failed
  candidate) on the training prompts, and the real evaluate and gate nodes judge it;
* ``kaizen bench rl``'s arms on a small scenario: sft and sft+grpo from the same v1, the same training set,
  sft+grpo registering its SFT step and a GRPO step continuing it.

The random model learns nothing useful here; the checks are on what ran, on what, and what was recorded.
The yes/no variant answers "yes" or "no" about equally often, so GRPO groups have reward variance.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from kaizen.tools.data import load_items, write_items
from kaizen.tools.schema import EvalItem, TaskSpec
from kaizen.tools.workspace import find_workspace
from kaizen.workflows.bench.clinc import rows

LABELS = ["yes", "no"]
TASK = TaskSpec(
    name="yn", kind="classification", labels=LABELS, system_prompt="Answer with one label: yes, no."
)
# CLINC texts of two intents stand in for the two labels: semantically coherent, so triage trusts them.
MAP = {"balance": "yes", "transfer": "no"}


def _kaizen(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(Path(sys.executable).parent / "kaizen"), "-w", str(ws), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def _workspace(root: Path, model: Path, *, logs: bool = True) -> Path:
    for args in (
        ["init", str(root)],
        [
            "task",
            "add",
            TASK.name,
            "--kind",
            "classification",
            "--labels",
            ",".join(LABELS),
            "--system-prompt",
            TASK.system_prompt or "",
        ],
        ["models", "add", "tiny", "--path", str(model), "--task", TASK.name, "--promote"],
    ):
        r = _kaizen(root, *args)
        assert r.returncode == 0, r.stderr
    cfg_path = root / "kaizen.yaml"
    cfg = yaml.safe_load(cfg_path.read_text()) or {}
    cfg["repair"] = {"recover": False, "refit": False}  # one gated step, nothing after it
    cfg_path.write_text(yaml.safe_dump(cfg))
    if logs:
        path = root / "logs.jsonl"
        path.write_text(_logs())
        r = _kaizen(root, "ingest", str(path), "--task", TASK.name)
        assert r.returncode == 0, r.stderr
    return root


def _logs() -> str:
    lines = []
    for i, (text, intent) in enumerate(rows("train", list(MAP), per_label=12, seed=4)):
        gold = MAP[intent]
        wrong = "no" if gold == "yes" else "yes"
        ok = i % 2 == 1
        lines.append(
            {
                "id": f"t{i:03d}",
                "messages": [{"role": "user", "content": text}],
                "output": gold if ok else wrong,
                "feedback": {"verdict": "pass"} if ok else {"verdict": "fail", "correction": gold},
            }
        )
    return "".join(json.dumps(x) + "\n" for x in lines)


def test_kaizen_repair_kind_grpo_trains_a_gated_grpo_candidate(
    tmp_path: Path, yes_no_llama_dir: Path
) -> None:
    ws_root = _workspace(tmp_path, yes_no_llama_dir)
    r = _kaizen(
        ws_root,
        "repair",
        "--task",
        "yn",
        "--kind",
        "grpo",
        "--grpo-steps",
        "2",
        "--max-iterations",
        "1",
        "--json",
    )
    assert r.returncode in (0, 3), r.stderr  # 3: the candidate passed and waits for approval
    out = json.loads(r.stdout)
    report = json.loads(Path(out["report_path"]).read_text())
    (plan,) = [e for e in report["events"] if e["phase"] == "plan"]
    assert plan["kind"] == "grpo" and any("training kind grpo" in x for x in plan["rationale"])
    (train,) = [e for e in report["events"] if e["phase"] == "train"]
    assert train["kind"] == "grpo" and train["steps"] == 2 and train["train_tokens"] > 0
    ws = find_workspace(ws_root)
    cand = ws.store.get_model_version(train["version"])
    recipe = cand.recipe
    assert recipe["kind"] == "grpo" and recipe["rewards"] == ["label_strict_match"]
    assert (recipe["num_generations"], recipe["max_completion_length"], recipe["batch_size"]) == (4, 8, 16)
    # A label's reference is a whole reply: every all-zero group is guided with it (off-policy guidance).
    assert (recipe["hint"], recipe["hint_share"]) == ("answer", 1.0)
    assert cand.parent == "tiny" and recipe["holds_full_data"] is False
    # Its prompts are the iteration's training set: corrected failures and replayed passes, the gold as reference.
    job = Path(recipe["job_dir"])
    data = [json.loads(x) for x in (job / "data.jsonl").read_text().splitlines()]
    train_items = load_items(Path(report["splits"]["train"]), TASK)
    assert [d["id"] for d in data] == [it.id for it in train_items]
    assert {d["expected"] for d in data} <= set(LABELS)
    curves = [json.loads(x) for x in (job / "metrics.jsonl").read_text().splitlines()]
    assert any("reward" in m and "entropy" in m for m in curves)
    assert train["grpo"] is not None  # hints/early stop summary carried into the event
    # The report plots reward and entropy per GRPO step.
    (row,) = report["training"]
    assert row["kind"] == "grpo" and row["rl"]["step"] == [1, 2] and len(row["rl"]["entropy"]) == 2
    html = Path(out["report_path"]).with_name("report.html").read_text()
    assert 'alt="GRPO reward and entropy per step"' in html
    # Gated like any candidate: a verdict for step 1 on the same suites.
    assert report["verdict"]["candidate_version"] == cand.name and report["verdict"]["step"] == "1"
    assert report["summary"]["path"][0]["step"] == "1"


def _state(tmp_path: Path, ws, train: list[EvalItem], suites: dict[str, list[EvalItem]]) -> dict:  # noqa: ANN001
    from kaizen.agent.state import Plan

    run = tmp_path / "run"
    splits = {}
    for name, its in {"train": train, **suites}.items():
        splits[name] = str(run / "data" / f"{name}.jsonl")
        write_items(Path(splits[name]), its)
    # A candidate of iteration 1 ("bad") failed only on regressions; refresh and rollback were tried.
    return {
        "run_id": "grporecover01",
        "task": TASK.name,
        "incumbent": "tiny",
        "incumbent_skill": None,
        "candidate": None,
        "candidate_skill": None,
        "iteration": 1,
        "max_iterations": 1,
        "splits": splits,
        "artifacts": str(run),
        "evals": {},
        "preset": "repair",
        "plan": Plan(iteration=1, grpo_steps=2).model_dump(),
        "recoveries": ["refresh", "rollback", "grpo"],
        "recovery": ["refresh", "rollback"],
        "verdict": {
            "passed": False,
            "candidate_version": "bad",
            "target_gain": 0.5,
            "target_failed": False,
            "regression_failed": True,
            "broken": {"regression": []},
        },
        "train_tokens_used": 100,
    }


def test_the_third_recovery_is_grpo_from_the_incumbent_and_is_gated(
    tmp_path: Path, yes_no_llama_dir: Path
) -> None:
    from langgraph.runtime import Runtime

    from kaizen.agent.context import RunContext
    from kaizen.agent.nodes.evaluate import evaluate
    from kaizen.agent.nodes.gate import gate
    from kaizen.agent.nodes.recover import recover
    from kaizen.agent.routing import after_gate
    from kaizen.agent.rule_brain import RuleBrain
    from kaizen.tools import registry

    ws = find_workspace(_workspace(tmp_path / "ws", yes_no_llama_dir, logs=False))
    # The failed candidate "bad" is another model: GRPO must not start from it.
    registry.add_external(ws.store, "bad", yes_no_llama_dir, task=TASK.name)

    def item(i: int, text: str, label: str) -> EvalItem:
        return EvalItem(id=f"x{i}", messages=[{"role": "user", "content": text}], expected=label)

    texts = [(t, MAP[lab]) for t, lab in rows("train", list(MAP), per_label=8, seed=9)]
    its = [item(i, t, lab) for i, (t, lab) in enumerate(texts)]
    state = _state(tmp_path, ws, its[:8], {"target": its[8:12], "regression": its[12:]})
    rt = Runtime(context=RunContext(workspace=ws, brain=RuleBrain()))
    up = recover(state, rt)
    assert up["recovery"] == ["refresh", "rollback", "grpo"] and up["step"] == "1r3"
    cand = ws.store.get_model_version(up["candidate"])
    assert cand.parent == "tiny" and cand.recipe["kind"] == "grpo"  # from the incumbent, not from "bad"
    assert cand.recipe["max_steps"] == 2 and cand.recipe["rewards"] == ["label_strict_match"]
    (ev,) = up["events"]
    assert ev["how"] == "grpo" and ev["start"] == "tiny" and ev["prompts"] == 8
    assert up["train_tokens_used"] > 100  # the recovery's tokens count against the run's budget
    job_data = Path(cand.recipe["job_dir"]) / "data.jsonl"
    assert [json.loads(x)["id"] for x in job_data.read_text().splitlines()] == [it.id for it in its[:8]]
    # Gated exactly like any candidate: the real evaluate and gate nodes, the step's own verdict.
    state |= up
    state |= evaluate(state, rt)
    g = gate(state, rt)
    assert g["verdict"]["step"] == "1r3" and g["verdict"]["candidate_version"] == cand.name
    assert g["path"][0]["recipe"] == "grpo"
    # All three tried: a failing GRPO recovery moves on (never a fourth recovery).
    assert after_gate(state | g) != "recover"
    # A candidate that already was GRPO is not repeated as its own recovery.
    from kaizen.agent.state import Plan

    again = recover(
        state | {"plan": Plan(iteration=1, kind="grpo").model_dump(), "recovery": ["refresh", "rollback"]}, rt
    )
    assert again["candidate"] is None and again["events"][0]["skipped"]
    # A GRPO recovery that failed its gate is not tried again later in the run (≈ 5 min on a CPU each);
    # one that passed may be.
    later = state | {"iteration": 2, "recovery": ["refresh", "rollback"]}
    tried = {"step": "1r3", "recipe": "grpo", "candidate": cand.name, "passed": False}
    skipped = recover(later | {"path": [tried]}, rt)
    assert skipped["candidate"] is None and "1r3" in skipped["events"][0]["skipped"]
    rerun = recover(later | {"path": [tried | {"passed": True}]}, rt)
    assert rerun["candidate"] and "skipped" not in rerun["events"][0]


def test_rl_bench_arms_share_the_training_set(tmp_path: Path, yes_no_llama_dir: Path) -> None:
    from kaizen.workflows.bench.rl import RLScenario, bench_rl

    logs = tmp_path / "logs.jsonl"
    logs.write_text(_logs())
    gold = tmp_path / "gold.jsonl"
    write_items(
        gold,
        [
            EvalItem(id=f"g{i}", messages=[{"role": "user", "content": t}], expected=MAP[lab])
            for i, (t, lab) in enumerate(rows("test", list(MAP), per_label=4, seed=0))
        ],
    )
    sc = RLScenario(task=TASK, base=yes_no_llama_dir, v1=None, logs=logs, gold=gold, name="yn")
    data = bench_rl(
        sc,
        arms=("sft", "sft+grpo"),
        grpo_steps=1,
        train_overrides={"max_steps": 1},
        out_dir=tmp_path / "bench",
        progress=print,
    )
    assert data["same_training_set"] is True
    assert set(data["arms"]) == {"sft", "sft+grpo"}
    for kind, arm in data["arms"].items():
        assert "error" not in arm, arm
        assert arm["train_tokens"] > 0 and arm["target"]["n"] > 0 and arm["regression"]["n"] > 0
        assert arm["gold"]["n"] == 8 and arm["gold"]["right_before"] == data["v1_gold"]["right"], kind
    both = data["arms"]["sft+grpo"]
    ws = find_workspace(Path(both["workspace"]))
    cand = ws.store.get_model_version(both["candidate"])
    sft_step = ws.store.get_model_version(cand.parent)
    assert cand.recipe["kind"] == "grpo" and sft_step.recipe["kind"] == "sft" and sft_step.parent == "v1"
    assert both["grpo"] and both["grpo"]["curves"]["step"]
    assert data["arms"]["sft"]["grpo"] is None
    # SFT + GRPO costs at least the SFT step's tokens (the same SFT step, then GRPO on top).
    assert both["train_tokens"] > data["arms"]["sft"]["train_tokens"]
    saved = json.loads(Path(data["saved_to"]).read_text())
    assert saved["table"]["rows"][0][0] == "sft"
