"""The training runner as a real subprocess (``tools.train.launch.run_job``) on tiny random Llamas.

GRPO changes the LoRA weights and logs reward and entropy; a killed SFT job resumes from its
checkpoint instead of step 0; a runner orphaned by a killed launcher is adopted, not duplicated;
a failure carries the cause from the runner's log; a finished job returns at once; and the
``kaizen train`` / ``kaizen eval`` / ``kaizen models`` CLI works end to end. Nothing of ours is
mocked: where a test must prove that *no* process starts, ``subprocess.Popen`` (stdlib) is made to
fail.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kaizen.tools.data import grpo_rows, sft_rows, write_items
from kaizen.tools.errors import TrainingFailedError
from kaizen.tools.schema import EvalItem, TaskSpec
from kaizen.tools.train import launch
from kaizen.tools.train.launch import pid_alive, read_metrics, read_result, run_job
from kaizen.tools.train.spec import LoraSpec, TrainJob

ROOT = Path(__file__).resolve().parents[2]
YES_NO = TaskSpec(name="parity", kind="classification", labels=["yes", "no"])
INTENTS = TaskSpec(name="intents", kind="classification", labels=["balance", "transfer", "card_declined"])
TINY_LORA = LoraSpec(r=4, alpha=8)

# Runs run_job in a separate interpreter, so the test can SIGKILL the launcher.
LAUNCHER = (
    "import sys; from pathlib import Path; from kaizen.tools.train.spec import TrainJob; from kaizen.tools.train.launch import run_job; "
    "run_job(TrainJob.model_validate_json(Path(sys.argv[1]).read_text()), poll_s=0.1)"
)


def intent_items(n: int = 8) -> list[EvalItem]:
    texts = {
        "balance": ["how much money do I have", "what is my balance", "show my account balance"],
        "transfer": ["send 20 dollars to Ann", "move money to savings", "wire funds to my landlord"],
        "card_declined": ["my card was declined", "why did my card not work", "payment refused at the shop"],
    }
    pairs = [(t, lab) for lab, ts in texts.items() for t in ts][:n]
    return [
        EvalItem(id=f"i{i}", messages=[{"role": "user", "content": t}], expected=lab)
        for i, (t, lab) in enumerate(pairs)
    ]


def sft_job(base: Path, job_dir: Path, **kw) -> TrainJob:
    data = job_dir.parent / f"{job_dir.name}-data.jsonl"
    write_items(data, sft_rows(INTENTS, intent_items()))
    params = dict(batch_size=2, max_length=64, warmup_ratio=0.0, lora=TINY_LORA, device="cpu") | kw
    return TrainJob(kind="sft", base_dir=base, data_path=data, output_dir=job_dir, **params)


def wait_for(
    cond: Callable[[], bool], what: str, launcher: subprocess.Popen | None = None, timeout_s: float = 240
) -> None:
    deadline = time.time() + timeout_s
    while not cond():
        if launcher is not None and launcher.poll() is not None:
            out = launcher.stdout.read() if launcher.stdout else ""
            pytest.fail(f"launcher exited ({launcher.returncode}) before {what}:\n{out}")
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_launcher(job: TrainJob, tmp: Path) -> subprocess.Popen:
    spec = tmp / f"{job.output_dir.name}-spec.json"
    spec.write_text(job.model_dump_json())
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(spec)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def runner_pid(job_dir: Path) -> int | None:
    try:
        return int(json.loads((job_dir / "runner.pid").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def complete_checkpoints(job_dir: Path) -> list[int]:
    return sorted(
        int(p.name.split("-")[-1])
        for p in (job_dir / "checkpoints").glob("checkpoint-*")
        if (p / "trainer_state.json").exists()
    )


def refuse_new_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on in this test, starting a subprocess is an error (the proof that none is started)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"run_job started a process: {args[0] if args else kwargs}")

    monkeypatch.setattr(launch.subprocess, "Popen", refuse)


# --- GRPO ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpo_done(yes_no_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainJob, dict]:
    root = tmp_path_factory.mktemp("grpo")
    items = [
        EvalItem(
            id=f"p{i}", messages=[{"role": "user", "content": f"Is {i} even?"}], expected=["yes", "no"][i % 2]
        )
        for i in range(4)
    ]
    write_items(root / "data.jsonl", grpo_rows(YES_NO, items))
    # 4 generations per prompt, 2 prompts per step; one sampled token is the whole answer (the
    # yes/no model's later tokens are noise that would turn every answer off-label).
    job = TrainJob(
        kind="grpo",
        base_dir=yes_no_llama_dir,
        data_path=root / "data.jsonl",
        output_dir=root / "job",
        max_steps=2,
        num_generations=4,
        batch_size=8,
        max_completion_length=1,
        warmup_ratio=0.0,
        rewards=["label_exact_match"],
        lora=TINY_LORA,
        save_steps=100,
        device="cpu",
    )
    return job, run_job(job, poll_s=0.1)


def test_grpo_two_steps_change_lora_and_log_reward_and_entropy(grpo_done) -> None:
    from safetensors.torch import load_file

    job, result = grpo_done
    assert result["kind"] == "grpo" and result["steps"] == 2 and result["resumed_from"] is None
    steps = [m for m in read_metrics(job.output_dir) if "train_runtime" not in m]
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:
        for key in (
            "reward",
            "reward_std",
            "rewards/label_exact_match/mean",
            "entropy",
            "loss",
            "learning_rate",
        ):
            assert key in m, f"{key} missing from metrics: {sorted(m)}"
        assert 0.0 <= m["reward"] <= 1.0 and m["entropy"] > 0
    # The run had a learning signal: some group saw both rewards (else every advantage is 0).
    assert min(m["frac_reward_zero_std"] for m in steps) < 1.0, steps

    adapter = Path(result["output_path"])
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert not {"embed_tokens", "lm_head"} & set(cfg["target_modules"])  # servable by vLLM
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert lora_b, sorted(weights)
    # PEFT initialises lora_B to zeros: non-zero means the optimiser moved every adapted module.
    unchanged = [k for k, v in lora_b.items() if not v.abs().max().item() > 0]
    assert not unchanged, f"lora_B still zero after GRPO: {unchanged}"


def test_finished_job_returns_at_once_without_a_process(grpo_done, monkeypatch: pytest.MonkeyPatch) -> None:
    job, result = grpo_done
    refuse_new_processes(monkeypatch)
    pid_file = (job.output_dir / "runner.pid").read_text()
    log = (job.output_dir / "train.log").read_text()
    t = time.time()
    again = run_job(job)
    assert time.time() - t < 1.0
    assert again == result
    assert (job.output_dir / "runner.pid").read_text() == pid_file
    assert (job.output_dir / "train.log").read_text() == log


# --- kill, resume, adopt ---------------------------------------------------------------------


def test_killed_sft_resumes_from_checkpoint(tiny_llama_dir: Path, tmp_path: Path) -> None:
    job = sft_job(tiny_llama_dir, tmp_path / "job", max_steps=12, save_steps=3)
    launcher = start_launcher(job, tmp_path)
    try:
        wait_for(lambda: bool(complete_checkpoints(job.output_dir)), "the first checkpoint", launcher)
        pid = runner_pid(job.output_dir)
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)  # the runner's own process group: the trainer, mid-run
    finally:
        launcher.kill()
        launcher.wait()
    wait_for(lambda: not pid_alive(pid), "the killed runner to exit", timeout_s=30)
    assert read_result(job.output_dir) is None, "the job finished before it was killed: nothing was tested"
    ckpt = complete_checkpoints(job.output_dir)[-1]
    before = read_metrics(job.output_dir)
    logged_before = len(before)
    tokens_at_ckpt = next(m["num_tokens"] for m in before if m["step"] == ckpt and "num_tokens" in m)
    assert 0 < ckpt < 12

    result = run_job(job, poll_s=0.1)
    assert result["steps"] == 12
    assert result["resumed_from"] is not None and Path(result["resumed_from"]).name == f"checkpoint-{ckpt}"
    resumed = [m for m in read_metrics(job.output_dir)[logged_before:] if "loss" in m]
    assert resumed, "the resumed run logged nothing"
    assert resumed[0]["step"] == ckpt + 1 > 1  # continued from the checkpoint, not from step 0
    assert resumed[-1]["step"] == 12
    # The token count continues too (TRL's SFT counter is not in the checkpoint; the runner restores it).
    assert resumed[0]["num_tokens"] > tokens_at_ckpt
    assert result["train_tokens"] == resumed[-1]["num_tokens"] and result["tokens_per_s"] > 0
    assert f"resuming from {result['resumed_from']}" in (job.output_dir / "train.log").read_text()
    assert (Path(result["output_path"]) / "adapter_model.safetensors").exists()


def test_orphaned_runner_is_adopted_not_duplicated(
    tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    job = sft_job(tiny_llama_dir, tmp_path / "job", max_steps=6, save_steps=100)
    launcher = start_launcher(job, tmp_path)
    try:
        wait_for(
            lambda: runner_pid(job.output_dir) is not None and launch._runner_pid(job.output_dir) is not None,
            "the runner to start",
            launcher,
        )
    finally:
        launcher.kill()  # SIGKILL: the launcher dies without stopping its runner
        launcher.wait()
    pid = runner_pid(job.output_dir)
    assert pid is not None and pid_alive(pid), "the runner should outlive its launcher (own session)"
    assert read_result(job.output_dir) is None

    refuse_new_processes(monkeypatch)
    with caplog.at_level(logging.INFO, logger="kaizen.tools.train.launch"):
        result = run_job(job, poll_s=0.1)  # Popen refused: adopting is the only way this can succeed
    assert f"adopting training runner pid {pid}" in caplog.text
    assert runner_pid(job.output_dir) == pid  # no second runner rewrote the pid file
    assert not pid_alive(pid)
    assert result["steps"] == 6 and result["resumed_from"] is None
    log = (job.output_dir / "train.log").read_text()
    assert log.count("kaizen runner: done") == 1 and "resuming from" not in log


# --- failure ---------------------------------------------------------------------------------


def test_bad_data_fails_with_the_cause_from_the_log(tiny_llama_dir: Path, tmp_path: Path) -> None:
    job = sft_job(tiny_llama_dir, tmp_path / "job", max_steps=2)
    lines = job.data_path.read_text().splitlines()
    bad = json.loads(lines[1])
    del bad["completion"]
    lines[1] = json.dumps(bad)
    job.data_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TrainingFailedError) as err:
        run_job(job, poll_s=0.1)
    e = err.value
    assert e.returncode not in (0, None)
    cause = f"{job.data_path}:2: missing 'completion'"
    assert cause in e.log_tail and cause in str(e), str(e)
    assert str(job.output_dir / "train.log") in str(e)
    assert read_result(job.output_dir) is None


# --- CLI -------------------------------------------------------------------------------------


def kaizen(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "kaizen"
    env = {k: v for k, v in os.environ.items() if k not in ("KAIZEN_HOME", "KAIZEN_DB_URL")} | {
        "COLUMNS": "200"
    }
    proc = subprocess.run(
        [str(exe) if exe.exists() else shutil.which("kaizen") or "kaizen", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if ok:
        assert proc.returncode == 0, (
            f"kaizen {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def test_cli_train_eval_and_models(tiny_llama_dir: Path, tmp_path: Path) -> None:
    kaizen("init", cwd=tmp_path)
    kaizen(
        "task",
        "add",
        "intents",
        "--kind",
        "classification",
        "--labels",
        ",".join(INTENTS.labels),
        cwd=tmp_path,
    )
    added = json.loads(
        kaizen("models", "add", "tiny", "--path", str(tiny_llama_dir), "--json", cwd=tmp_path).stdout
    )
    assert added["kind"] == "base"
    data = tmp_path / "f.jsonl"
    write_items(
        data,
        [
            {"messages": [m.model_dump() for m in it.messages], "expected": it.expected}
            for it in intent_items(6)
        ],
    )

    train = kaizen(
        "train",
        "sft",
        "--task",
        "intents",
        "--data",
        str(data),
        "--base",
        "tiny",
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--json",
        cwd=tmp_path,
    )
    out = json.loads(train.stdout)
    for key in ("version", "adapter_path", "steps", "train_tokens", "tokens_per_s", "metrics_path"):
        assert key in out, out
    assert out["steps"] == 2 and out["train_tokens"] > 0 and out["tokens_per_s"] > 0
    assert (Path(out["adapter_path"]) / "adapter_config.json").exists()
    assert any("loss" in json.loads(line) for line in Path(out["metrics_path"]).read_text().splitlines())
    assert "train: step" in train.stderr  # progress is shown
    version = out["version"]

    ev = json.loads(
        kaizen(
            "eval",
            "--model",
            version,
            "--data",
            str(data),
            "--task",
            "intents",
            "--max-new-tokens",
            "4",
            "--json",
            cwd=tmp_path,
        ).stdout
    )
    for key in ("model", "n", "metric", "score", "per_label", "outputs_path"):
        assert key in ev, ev
    assert (
        ev["model"] == version and ev["n"] == 6 and ev["metric"] == "accuracy" and 0.0 <= ev["score"] <= 1.0
    )
    outputs = Path(ev["outputs_path"]).read_text().splitlines()
    assert len(outputs) == 6 and all(json.loads(line) for line in outputs)

    scored = json.loads(
        kaizen(
            "eval",
            "--model",
            version,
            "--data",
            str(data),
            "--task",
            "intents",
            "--mode",
            "score",
            "--json",
            cwd=tmp_path,
        ).stdout
    )
    assert scored["n"] == 6 and scored["invalid_rate"] == 0.0  # likelihood scoring always answers a label

    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        data.read_text().splitlines()[0]
        + "\n"
        + json.dumps({"messages": [{"role": "user", "content": "hi"}]})
        + "\n"
    )
    proc = kaizen("eval", "--model", version, "--data", str(bad), "--task", "intents", cwd=tmp_path, ok=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and f"{bad}:2" in errors[0] and "expected" in errors[0], proc.stderr

    versions = {
        v["name"]: v
        for v in json.loads(kaizen("models", "list", "--task", "intents", "--json", cwd=tmp_path).stdout)
    }
    assert (
        version in versions
        and versions[version]["parent"] == "tiny"
        and versions[version]["kind"] == "adapter"
    )
