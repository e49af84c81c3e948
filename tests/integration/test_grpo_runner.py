"""GRPO through the real runner subprocess on the yes/no tiny Llama (tests/conftest.py).

* hints: prompts whose gold label the model never says ("maybe") make all-zero groups; each is
  re-sampled with a hint, only those are, the hint log and ``grpo.json`` say so;
* kill -9 mid-GRPO → the re-run resumes from the checkpoint, with the hint state of before the kill;
* ``hint="answer"``: the reference reply joins each all-zero group (off-policy guidance), the prompt as asked;
* entropy below the floor stops training (the callback), and the run still finishes cleanly;
* per-step entropy, reward mean/std and hint usage are in ``metrics.jsonl`` (``read_curves``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kaizen.tools.data import grpo_rows, write_items
from kaizen.tools.schema import EvalItem, TaskSpec
from kaizen.tools.train.grpo import HINTS_FILE, read_curves, read_summary
from kaizen.tools.train.launch import pid_alive, read_metrics, read_result, run_job
from kaizen.tools.train.spec import LoraSpec, TrainJob

ROOT = Path(__file__).resolve().parents[2]
TASK = TaskSpec(
    name="parity", kind="classification", labels=["yes", "no", "maybe"], system_prompt="Answer with one word."
)  # no label list in the prompt: the hint gives it
LAUNCHER = (
    "import sys; from pathlib import Path; from kaizen.tools.train.spec import TrainJob; from kaizen.tools.train.launch import run_job; "
    "run_job(TrainJob.model_validate_json(Path(sys.argv[1]).read_text()), poll_s=0.1)"
)


def items() -> list[EvalItem]:
    # 3 answerable prompts (the model says yes or no ~43 % each) and 3 it never answers right.
    gold = ["yes", "maybe", "no", "maybe", "yes", "maybe"]
    return [
        EvalItem(id=f"q{i}", messages=[{"role": "user", "content": f"Is {i} even?"}], expected=g)
        for i, g in enumerate(gold)
    ]


def grpo_job(base: Path, root: Path, **kw) -> TrainJob:
    root.mkdir(parents=True, exist_ok=True)
    write_items(root / "data.jsonl", grpo_rows(TASK, items()))
    params = (
        dict(
            max_steps=4,
            num_generations=4,
            batch_size=8,
            max_completion_length=1,
            warmup_ratio=0.0,
            rewards=["label_exact_match"],
            lora=LoraSpec(r=4, alpha=8),
            save_steps=1,
            device="cpu",
            hint_share=1.0,
            hint="labels",
            entropy_floor=None,
        )
        | kw
    )
    return TrainJob(
        kind="grpo", base_dir=base, data_path=root / "data.jsonl", output_dir=root / "job", **params
    )


def wait_for(cond: Callable[[], bool], what: str, launcher: subprocess.Popen, timeout_s: float = 240) -> None:
    deadline = time.time() + timeout_s
    while not cond():
        if launcher.poll() is not None:
            pytest.fail(
                f"launcher exited ({launcher.returncode}) before {what}:\n{launcher.stdout.read() if launcher.stdout else ''}"
            )
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def checkpoints(job_dir: Path) -> list[int]:
    return sorted(
        int(p.name.split("-")[-1])
        for p in (job_dir / "checkpoints").glob("checkpoint-*")
        if (p / "trainer_state.json").exists()
    )


def last_per_step(recs: list[dict]) -> dict[int, dict]:
    """A step's record from the last run that logged it (a resumed run redoes the step after the checkpoint)."""
    out: dict[int, dict] = {}
    for r in recs:
        if "train_runtime" not in r and "step" in r:
            out[r["step"]] = r
    return out


def test_grpo_hints_survive_kill_9_and_resume(yes_no_llama_dir: Path, tmp_path: Path) -> None:
    job = grpo_job(yes_no_llama_dir, tmp_path)
    spec = tmp_path / "spec.json"
    spec.write_text(job.model_dump_json())
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(spec)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(
            lambda: bool(checkpoints(job.output_dir)) and checkpoints(job.output_dir)[-1] >= 2,
            "checkpoint 2",
            launcher,
        )
        pid = json.loads((job.output_dir / "runner.pid").read_text())["pid"]
        os.killpg(pid, signal.SIGKILL)
    finally:
        launcher.kill()
        launcher.wait()
    deadline = time.time() + 30
    while pid_alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    assert read_result(job.output_dir) is None, "the job finished before the kill: nothing was tested"
    ckpt = checkpoints(job.output_dir)[-1]
    hints_at_ckpt = json.loads(
        (job.output_dir / "checkpoints" / f"checkpoint-{ckpt}" / "kaizen_grpo_state.json").read_text()
    )
    # Steps 1-2 saw 4 of the 6 prompts, so at least one of the 3 "maybe" prompts: hinted before the kill.
    assert hints_at_ckpt["hints"]["hinted"] >= 1, hints_at_ckpt

    result = run_job(job, poll_s=0.1)
    assert result["steps"] == 4 and Path(result["resumed_from"]).name == f"checkpoint-{ckpt}"
    assert f"resuming from {result['resumed_from']}" in (job.output_dir / "train.log").read_text()

    steps = last_per_step(read_metrics(job.output_dir))
    assert sorted(steps) == [1, 2, 3, 4]
    for s, m in steps.items():
        for key in ("entropy", "reward", "reward_std", "hints/used", "hints/all_zero_groups", "hints/share"):
            assert key in m, f"step {s}: {key} missing from {sorted(m)}"
        # hint_share 1.0: every all-zero group is hinted, and nothing else is
        assert m["hints/used"] == m["hints/all_zero_groups"], m
    # The hint log: one line per hinted group, each with all-zero rewards before the hint.
    events: dict[tuple[int, str], dict] = {}
    for line in (job.output_dir / HINTS_FILE).read_text().splitlines():
        e = json.loads(line)
        events[(e["step"], e["id"])] = e  # a step redone after the resume replaces its first try
    assert events
    for e in events.values():
        assert e["rewards_before"] == [0.0] * 4, e
        assert e["hint"] == "Hint: the answer is one of: yes, no, maybe."
        assert len(e["rewards_with_hint"]) == 4
    maybe_ids = {it.id for it in items() if it.expected == "maybe"}
    assert maybe_ids & {i for _, i in events}, "no 'maybe' prompt was ever hinted"
    assert sum(m["hints/used"] for m in steps.values()) == len(events)

    summary = read_summary(job.output_dir)
    assert summary is not None and result["grpo"] == summary
    hints = summary["hints"]
    # Counted across the kill: the state came back from the checkpoint (else only post-resume hints).
    assert hints["hinted"] == len(events) and hints["groups_seen"] == 8
    assert hints["recheck"]["n"] == len(
        {i for _, i in events}
    )  # every hinted prompt decoded once without its hint
    assert set(hints["recheck"]["passed_ids"]) <= {i for _, i in events} - maybe_ids  # "maybe" never passes
    assert summary["early_stop"] is None

    curves = read_curves(job.output_dir)
    assert curves["step"] == [1, 2, 3, 4] and all(e is not None and e > 0 for e in curves["entropy"])
    assert curves["hints_used"] == [steps[s]["hints/used"] for s in (1, 2, 3, 4)]


def test_answer_guidance_puts_the_reference_in_all_zero_groups(
    yes_no_llama_dir: Path, tmp_path: Path
) -> None:
    """The model never says "maybe": with ``hint="answer"`` each all-zero group gets the reference as its
    last completion (reward 1 against the group's 0s), the prompt unchanged, and the LoRA moves."""
    job = grpo_job(yes_no_llama_dir, tmp_path / "guide", hint="answer", max_steps=2, max_completion_length=2)
    run_job(job, poll_s=0.1)
    result = read_result(job.output_dir)
    assert result and result["steps"] == 2, result
    events = [json.loads(line) for line in (job.output_dir / HINTS_FILE).read_text().splitlines()]
    gold = {it.id: it.expected for it in items()}
    assert events, "the 'maybe' prompts make all-zero groups"
    for e in events:
        assert e["kind"] == "answer" and e["hint"] == gold[e["id"]]  # the reference itself, no "Hint:" text
        assert e["rewards_before"] == [0.0] * 4 and e["rewards_with_hint"] == [0.0, 0.0, 0.0, 1.0]
    steps = last_per_step(read_metrics(job.output_dir))
    assert sum(m["hints/used"] for m in steps.values()) == len(events)
    assert all(m["hints/used"] == m["hints/all_zero_groups"] for m in steps.values())
    assert read_summary(job.output_dir)["hints"]["hinted"] == len(events)


def test_entropy_below_floor_stops_training(yes_no_llama_dir: Path, tmp_path: Path) -> None:
    # ln(vocab) ≈ 10.8 nats is the most any policy can have: a floor of 50 is always hit.
    job = grpo_job(
        yes_no_llama_dir,
        tmp_path,
        max_steps=6,
        save_steps=100,
        entropy_floor=50.0,
        entropy_patience=2,
        hint_share=0.0,
        adv_weight_pos=0.5,
        adv_weight_neg=1.5,
    )
    result = run_job(job, poll_s=0.1)
    assert result["steps"] == 2, result  # patience 2: stopped after the second logged step, not at 6
    stop = result["grpo"]["early_stop"]
    assert stop["step"] == 2 and stop["floor"] == 50.0 and 0 < stop["entropy"] < 50
    assert "stopping at step 2" in (job.output_dir / "train.log").read_text()
    assert (Path(result["output_path"]) / "adapter_model.safetensors").exists()
    assert result["grpo"]["hints"]["hinted"] == 0 and not (job.output_dir / HINTS_FILE).exists()
    assert result["grpo"]["adv_weight_pos"] == 0.5 and result["grpo"]["adv_weight_neg"] == 1.5


def test_grpo_hints_under_two_process_ddp(yes_no_llama_dir: Path, tmp_path: Path) -> None:
    """accelerate launch, 2 CPU ranks (gloo): the hint decision is global and every rank re-generates in step.

    A wrong split of the decision between ranks deadlocks a collective (the test then times out) or
    hints a group whose completions were not all zero (caught below).
    """
    from kaizen.tools.train.spec import LauncherSpec

    job = grpo_job(
        yes_no_llama_dir,
        tmp_path,
        max_steps=2,
        batch_size=4,
        save_steps=100,
        launcher=LauncherSpec(kind="accelerate", num_processes=2),
    )  # 2 ranks × 4 = 2 groups a step
    result = run_job(job, poll_s=0.1)
    assert result["steps"] == 2 and result["num_processes"] == 2
    steps = last_per_step(read_metrics(job.output_dir))
    assert sorted(steps) == [1, 2] and all(
        m["hints/used"] == m["hints/all_zero_groups"] for m in steps.values()
    ), steps
    events = [json.loads(line) for line in (job.output_dir / HINTS_FILE).read_text().splitlines()]
    assert len(events) == sum(m["hints/used"] for m in steps.values())  # rank 0 logs each hint once
    assert all(e["rewards_before"] == [0.0] * 4 and len(e["rewards_with_hint"]) == 4 for e in events)
    assert result["grpo"]["hints"]["groups_seen"] == 4 and result["grpo"]["hints"]["hinted"] == len(events)
