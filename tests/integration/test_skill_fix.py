"""The skill path of the repair graph and the probes, on the tiny model (seconds).

The brain's *judgement* needs a strong teacher, which cannot run here (the vLLM tests cover the
calls themselves). So the brain below is the rule brain plus a fixed skill edit — everything
around it is real: the skill version in the store, the candidate (incumbent weights + new skill)
evaluated on the same suites, the gate, no training job, and the probes run on the incumbent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kaizen.agent.probes import run_probes
from kaizen.agent.rule_brain import RuleBrain
from kaizen.agent.state import Diagnosis, FailureCluster
from kaizen.tools.evaluate.backends import TransformersBackend
from kaizen.tools.schema import Skill, TaskSpec
from kaizen.tools.skills import list_skills
from kaizen.tools.workspace import find_workspace
from kaizen.workflows.bench.clinc import rows
from kaizen.workflows.repair import job as repair

LABELS = ["balance", "transfer"]


class SkillBrain(RuleBrain):
    """The rule brain, answering skill requests with one fixed, minimal edit."""

    def propose_skill(self, task: TaskSpec, skill: Skill | None, failures: list) -> Skill | None:
        return Skill(name=task.name, instructions="Reply with exactly one label.")


def _workspace(tmp_path: Path, tiny: Path):
    kaizen = [str(Path(sys.executable).parent / "kaizen"), "-w", str(tmp_path)]
    for args in (
        ["init", str(tmp_path)],
        ["task", "add", "intents", "--kind", "classification", "--labels", ",".join(LABELS)],
        ["models", "add", "tiny", "--path", str(tiny), "--task", "intents", "--promote"],
    ):
        assert subprocess.run(kaizen + args, capture_output=True).returncode == 0
    logs = tmp_path / "logs.jsonl"
    lines = []
    for i, (text, gold) in enumerate(rows("train", LABELS, per_label=10, seed=4)):
        fb = {"verdict": "pass"} if i % 2 else {"verdict": "fail", "correction": gold}
        lines.append(
            {
                "messages": [{"role": "user", "content": text}],
                "output": gold if i % 2 else "?",
                "feedback": fb,
            }
        )
    logs.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert (
        subprocess.run(kaizen + ["ingest", str(logs), "--task", "intents"], capture_output=True).returncode
        == 0
    )
    return find_workspace(tmp_path)


def test_a_skill_fix_is_evaluated_and_gated_without_training(tmp_path: Path, tiny_llama_dir: Path) -> None:
    ws = _workspace(tmp_path, tiny_llama_dir)
    run = repair.start(
        ws, "intents", approve=True, max_iterations=1, plan_defaults={"fix": "skill"}, brain=SkillBrain()
    )
    assert [s["version"] for s in list_skills(ws.store, "intents")] == [1]
    run_dir = Path(run.report_path).parent
    assert (run_dir / "evals" / "tiny+skill1--target.json").exists()  # the candidate = tiny weights + skill 1
    assert not (run_dir / "iter-1" / "job").exists()  # nothing was trained
    prod = ws.store.get_alias("intents", "production")
    if run.status == "promoted":
        assert (prod.model_version, prod.skill_version) == ("tiny", 1)
    else:
        assert (prod.model_version, prod.skill_version) == ("tiny", None)
        assert run.summary["verdict"]["reasons"]


def test_probes_run_on_the_incumbent(tiny_llama_dir: Path) -> None:
    task = TaskSpec(name="intents", kind="classification", labels=LABELS)
    c = FailureCluster(
        key="transfer ← balance",
        kind="confusion",
        fixable=True,
        count=2,
        trace_ids=["a", "b"],
        probes=["move 40 dollars to my savings", "send money to my brother"],
    )
    diag = Diagnosis(
        task="intents",
        n_traces=2,
        n_labeled=2,
        n_unlabeled=0,
        n_failures=2,
        n_passes=0,
        clusters=[c],
        suspects=[],
    )
    assert run_probes(task, diag, TransformersBackend(tiny_llama_dir)) == 2
    (cluster,) = diag.clusters
    assert [r["input"] for r in cluster.probe_results] == c.probes
    assert all(r["expected"] == "transfer" for r in cluster.probe_results)
    assert cluster.confirmed is (sum(r["failed"] for r in cluster.probe_results) == 2)
