"""``kaizen bench rl``: SFT, GRPO and SFT→GRPO from the same deployed v1, on the same training data.

Run as: ``kaizen bench rl [--scenario demo|adaptft] [--arms sft,grpo,sft+grpo] [--grpo-steps 32] [--oracle]
[--out DIR] [--json]`` (``--scenario adaptft``: an AdaptFT stage's logs, ``bench/adaptft/rl_scenario.py``)
(or ``python -c "from kaizen.workflows.bench.rl import bench_rl; bench_rl()"``).

The question (issue 16, README, Research: "Reinforcement fine-tuning forgets less than SFT"): does RL repair the
failures while breaking less of what worked? Each arm is one real repair run — the agent's own observe,
diagnose, synthesize, train, evaluate and gate — in a fresh workspace holding the support-intents demo
(``examples/support-intents``: the committed v1 adapter on the embedded SmolLM2-135M, its 206 logged
traces, the 200-example gold held-out set), differing only in the plan's training kind
(``plan_defaults={"kind": arm}``):

* **sft** — LoRA SFT continuing v1 (the default repair);
* **grpo** — GRPO continuing v1 on the same training items as prompts (their ``expected`` is the reward
  reference, ``rewards_for_kind``), group 4, ≤ 8 completion tokens, ``grpo_steps`` steps of 4 prompts;
* **sft+grpo** — the SFT candidate, then GRPO continuing it.

One iteration, no recovery, no refit, nothing promoted: the candidate of the one training step is what is
compared. The training sets are built by the same deterministic code from the same traces; the JSON records
their content hash per arm (``same_training_set``). Per arm: target failures fixed (the held-out target suite),
right→wrong flips on the regression suite (the gate's count) and on the gold set (v1 vs the candidate,
example by example, constrained decoding as in the demo), training tokens, training and run wall time, the
gate's verdict, and for GRPO the reward/entropy curve and hint counts. ``--oracle`` gives every arm the
scenario's answer key instead of the logged feedback (perfect triage: isolates the training kind).

The result is returned and written to ``<out>/rl-<timestamp>.json`` (default ``<cache>/bench``); each arm's
workspace stays under ``<out>/rl-<timestamp>/<arm>`` for inspection (run reports, job dirs).

One cohesive thing (about 420 lines): one benchmark — its scenario, one arm's run and what is measured of
it (flips, GRPO curves), and the comparison table the CLI prints.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kaizen.tools.schema import EvalItem, TaskSpec

Progress = Callable[[str], None]
ARMS = ("sft", "grpo", "sft+grpo")
DEMO = Path(__file__).resolve().parents[2] / "examples" / "support-intents" / "data"


@dataclass
class RLScenario:
    """What the arms repair: a task, the deployed v1, its logs, and a gold set never trained on."""

    task: TaskSpec
    base: Path  # model directory
    v1: Path | None  # v1's LoRA adapter on ``base`` (None: ``base`` itself is deployed)
    logs: Path  # kaizen-importable logs with feedback
    gold: Path  # JSONL eval items
    answer_key: Path | None = None
    name: str = "scenario"
    settings: dict[str, Any] = field(default_factory=dict)  # kaizen.yaml overrides for every arm


def demo_scenario(base: Path | str | None = None) -> RLScenario:
    """The support-intents demo as ``examples/support-intents/demo.py`` sets it up."""
    from kaizen.tools.errors import ConfigError
    from kaizen.tools.models import resolve_base
    from kaizen.workflows.bench.clinc import load_slice

    if not (DEMO / "v1").is_dir() or not (DEMO / "logs.jsonl").is_file():
        raise ConfigError(
            f"the support-intents demo data is missing under {DEMO}: run examples/support-intents/build_data.py"
        )
    task = TaskSpec(
        name="support-intents",
        kind="classification",
        labels=load_slice()["labels"],
        system_prompt="Classify the banking request. Reply with the intent label only.",
    )
    return RLScenario(
        task=task,
        base=Path(base) if base else resolve_base("smollm2-135m"),
        v1=DEMO / "v1",
        logs=DEMO / "logs.jsonl",
        gold=DEMO / "gold_heldout.jsonl",
        answer_key=DEMO / "answer_key.jsonl",
        name="support-intents",
    )


@contextlib.contextmanager
def _own_workspaces() -> Iterator[None]:
    """Each arm makes its own workspace: a KAIZEN_HOME/KAIZEN_DB_URL from the shell would share one store."""
    saved = {k: os.environ.pop(k) for k in ("KAIZEN_HOME", "KAIZEN_DB_URL") if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _deep_update(d: dict[str, Any], upd: dict[str, Any]) -> dict[str, Any]:
    for k, v in upd.items():
        d[k] = _deep_update(dict(d.get(k) or {}), v) if isinstance(v, dict) else v
    return d


def make_workspace(root: Path, sc: RLScenario) -> Any:
    """A fresh workspace: the task, v1 in production, the logs ingested, one-step repairs."""
    from kaizen.tools import registry
    from kaizen.tools.logs import parse_traces
    from kaizen.tools.serve.hotswap import promote_and_swap
    from kaizen.tools.workspace import find_workspace, init_workspace

    init_workspace(root)
    cfg_path = root / "kaizen.yaml"
    cfg = yaml.safe_load(cfg_path.read_text()) or {}
    # One training step per arm and nothing after it: no recovery (its GRPO would blur the arms), no refit.
    cfg = _deep_update(cfg, {"repair": {"recover": False, "refit": False}} | sc.settings)
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    ws = find_workspace(root)
    ws.store.add_task(sc.task)
    if sc.v1 is None:
        registry.add_external(ws.store, "v1", sc.base, task=sc.task.name, note="rl bench deployed v1")
    else:
        registry.add_external(ws.store, "bench-base", sc.base, note="rl bench base")
        # The task runs on the base first, so that v1 (an adapter on it) is accepted for the task.
        promote_and_swap(ws.store, sc.task.name, "bench-base", actor="rl bench")
        registry.add_external(
            ws.store, "v1", sc.v1, base="bench-base", task=sc.task.name, note="rl bench deployed v1"
        )
    promote_and_swap(ws.store, sc.task.name, "v1", actor="rl bench")
    res = parse_traces(sc.logs)
    ws.store.import_traces(res.traces, path=str(sc.logs), default_task=sc.task.name)
    return ws


def _sha(path: str | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _lines(path: str | None) -> int:
    if not path or not Path(path).is_file():
        return 0
    return sum(1 for x in Path(path).read_text().splitlines() if x.strip())


def gold_correct(ws: Any, sc: RLScenario, version: str, items: list[EvalItem], out: Path) -> dict[str, bool]:
    """``version`` on the gold set, example by example (constrained decoding, as the demo measures)."""
    from kaizen.tools.evaluate.run import evaluate
    from kaizen.tools.versions import make_backend

    backend = make_backend(ws, ws.store.get_model_version(version))
    try:
        rep = evaluate(
            sc.task,
            items,
            backend,
            model_version=version,
            outputs_path=out,
            suite="gold",
            mode="prefix" if sc.task.kind == "classification" else "auto",
        )
    finally:
        if hasattr(backend, "close"):
            backend.close()
    return dict(rep.correct_by_id)


def flips(before: dict[str, bool], after: dict[str, bool]) -> dict[str, Any]:
    """Right→wrong and wrong→right, example by example.

    >>> flips({"a": True, "b": True, "c": False}, {"a": False, "b": True, "c": True})
    {'n': 3, 'right_before': 2, 'right_after': 2, 'newly_wrong': 1, 'newly_right': 1, 'newly_wrong_rate': 0.5}
    """
    right = [i for i, ok in before.items() if ok]
    broke = sum(1 for i in right if not after.get(i))
    return {
        "n": len(before),
        "right_before": len(right),
        "right_after": sum(1 for i in before if after.get(i)),
        "newly_wrong": broke,
        "newly_right": sum(1 for i, ok in before.items() if not ok and after.get(i)),
        "newly_wrong_rate": round(broke / len(right), 4) if right else None,
    }


def _grpo_info(job_dir: Path) -> dict[str, Any] | None:
    from kaizen.tools.train.grpo import read_curves, read_summary

    if not (job_dir / "metrics.jsonl").is_file():
        return None
    curves = read_curves(job_dir)
    if not curves.get("step"):
        return None
    summary = read_summary(job_dir) or {}
    return {
        "curves": curves,
        "reward_first": curves["reward"][0] if curves.get("reward") else None,
        "reward_last": curves["reward"][-1] if curves.get("reward") else None,
        "entropy_first": curves["entropy"][0] if curves.get("entropy") else None,
        "entropy_last": curves["entropy"][-1] if curves.get("entropy") else None,
        "hints": summary.get("hints"),
        "early_stop": summary.get("early_stop"),
    }


def run_arm(
    root: Path,
    sc: RLScenario,
    kind: str,
    *,
    plan: dict[str, Any],
    train_overrides: dict[str, Any] | None,
    oracle: bool,
    say: Progress,
) -> dict[str, Any]:
    """One arm: a fresh workspace, a one-iteration repair with the plan's kind, what it trained and gated."""
    from kaizen.workflows.repair import job as repair

    ws = make_workspace(root, sc)
    t0 = time.time()
    run = repair.start(
        ws,
        sc.task.name,
        approve=False,
        max_iterations=1,
        plan_defaults={"kind": kind} | plan,
        train_overrides=train_overrides or None,
        answer_key=sc.answer_key if oracle else None,
        progress=lambda m: say(f"  [{kind}] {m}"),
    )
    run_s = time.time() - t0
    report = json.loads(Path(run.report_path).read_text()) if run.report_path else {}
    verdict = report.get("verdict") or {}
    splits = report.get("splits") or {}
    events = report.get("events") or run.events or []
    trains = [e for e in events if e.get("phase") == "train"]
    train_s = sum(float(e.get("seconds") or 0) for e in trains)
    summary = run.summary or {}
    broken = verdict.get("broken") or {}
    cand = verdict.get("candidate_version") or summary.get("candidate")
    run_dir = Path(run.report_path).parent if run.report_path else root
    job = run_dir / "iter-1" / "job"
    return {
        "workspace": str(root),
        "run_id": run.id,
        "status": run.status,
        "candidate": cand,
        "gate_passed": bool(verdict.get("passed")),
        "gate_reasons": verdict.get("reasons", []),
        "target": {
            "n": _lines(splits.get("target")),
            "fixed": len(verdict.get("fixed") or []),
            "before": verdict.get("target_before"),
            "after": verdict.get("target_after"),
        },
        "regression": {
            "n": _lines(splits.get("regression")),
            "newly_wrong": len(broken.get("regression") or []),
            "newly_wrong_all_suites": sum(len(v) for v in broken.values()),
        },
        "train_set": {"n": _lines(splits.get("train")), "sha": _sha(splits.get("train"))},
        "train_tokens": int(summary.get("train_tokens") or 0),
        "train_s": round(train_s, 1),
        "run_s": round(run_s, 1),
        "grpo": _grpo_info(job) if kind != "sft" else None,
        "ws": ws,
    }


def _pct(a: int, b: int) -> str:
    return f"{a}/{b} ({a / b:.0%})" if b else f"{a}/0"


def table_rows(data: dict[str, Any]) -> list[list[Any]]:
    """The benchmark table: one row per arm (also the README's)."""
    rows = []
    for kind, a in data["arms"].items():
        if "error" in a:
            rows.append([kind, "error: " + a["error"][:60], "", "", "", "", "", ""])
            continue
        g = a.get("gold") or {}
        rows.append(
            [
                kind,
                _pct(a["target"]["fixed"], a["target"]["n"]),
                _pct(a["regression"]["newly_wrong"], a["regression"]["n"]),
                f"{g.get('newly_wrong', '—')} ({(g.get('newly_wrong_rate') or 0):.1%})" if g else "—",
                f"{g.get('newly_right', '—')}" if g else "—",
                f"{a['train_tokens']:,}",
                f"{a['train_s']:.0f} s / {a['run_s']:.0f} s",
                "pass" if a["gate_passed"] else "fail",
            ]
        )
    return rows


TABLE_COLUMNS = [
    "arm",
    "target fixed",
    "regression right→wrong",
    "gold right→wrong",
    "gold wrong→right",
    "train tokens",
    "train / run wall",
    "gate",
]


def bench_rl(
    scenario: RLScenario | None = None,
    *,
    arms: tuple[str, ...] = ARMS,
    grpo_steps: int | None = None,
    train_overrides: dict[str, Any] | None = None,
    oracle: bool = False,
    out_dir: Path | None = None,
    progress: Progress | None = print,
) -> dict[str, Any]:
    """Run the arms; returns ``{"scenario", "setup", "v1_gold", "arms": {kind: ...}, "table", "saved_to"}``.

    Args:
        scenario: What to repair (default: the support-intents demo, ``demo_scenario()``).
        arms: Training kinds to compare (``sft``, ``grpo``, ``sft+grpo``).
        grpo_steps: GRPO steps of the grpo arms (default: the plan's, 32).
        train_overrides: Passed to every arm's training jobs (e.g. ``{"max_steps": 2}`` for a smoke test).
        oracle: Give every arm the scenario's answer key instead of the logged feedback.
        out_dir: Where the arms' workspaces and the JSON go (default ``<cache>/bench``).
        progress: Where progress lines go (None: silent).
    """
    from kaizen.agent.state import Plan
    from kaizen.tools.data import load_items
    from kaizen.tools.errors import ConfigError, KaizenError
    from kaizen.tools.models import cache_dir

    bad = [a for a in arms if a not in ARMS]
    if bad or not arms:
        raise ConfigError(f"unknown arm(s) {bad}: use some of {', '.join(ARMS)}")
    sc = scenario or demo_scenario()
    if oracle and sc.answer_key is None:
        raise ConfigError("--oracle needs a scenario with an answer key")
    started = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    folder = Path(out_dir) if out_dir is not None else cache_dir() / "bench"
    root = folder / f"rl-{stamp}"
    root.mkdir(parents=True, exist_ok=True)

    def say(msg: str) -> None:
        if progress:
            m, s = divmod(int(time.time() - started), 60)
            progress(f"[rl {m:02d}:{s:02d}] {msg}")

    plan = {"grpo_steps": grpo_steps} if grpo_steps else {}
    gold_items = load_items(sc.gold, sc.task)
    results: dict[str, Any] = {}
    v1_gold: dict[str, bool] | None = None
    with _own_workspaces():
        for kind in arms:
            say(f"arm {kind}: a one-iteration repair from v1 in {root / kind.replace('+', '-')}")
            try:
                arm = run_arm(
                    root / kind.replace("+", "-"),
                    sc,
                    kind,
                    plan=plan,
                    train_overrides=train_overrides,
                    oracle=oracle,
                    say=say,
                )
            except KaizenError as e:  # one failed arm is a result too; the others still run
                say(f"arm {kind} failed: {e}")
                results[kind] = {"error": str(e)}
                continue
            ws = arm.pop("ws")
            evals = root / "gold-evals"
            if v1_gold is None:
                say(f"v1 on the gold set ({len(gold_items)} examples)")
                v1_gold = gold_correct(ws, sc, "v1", gold_items, evals / "v1.jsonl")
            if arm["candidate"]:
                say(f"arm {kind}: {arm['candidate']} on the gold set")
                cand_gold = gold_correct(
                    ws, sc, arm["candidate"], gold_items, evals / f"{arm['candidate']}.jsonl"
                )
                arm["gold"] = flips(v1_gold, cand_gold)
            results[kind] = arm
            say(
                f"arm {kind}: target fixed {arm['target']['fixed']}/{arm['target']['n']}, regression right→wrong "
                f"{arm['regression']['newly_wrong']}, gold right→wrong {(arm.get('gold') or {}).get('newly_wrong')}, "
                f"{arm['train_tokens']} tokens, {arm['train_s']} s training"
            )
    shas = {a["train_set"]["sha"] for a in results.values() if "train_set" in a}
    data: dict[str, Any] = {
        "scenario": sc.name,
        "model": str(sc.base),
        "v1": str(sc.v1) if sc.v1 else None,
        "setup": {
            "arms": list(arms),
            "grpo_steps": grpo_steps or Plan.model_fields["grpo_steps"].default,
            "train_overrides": train_overrides or {},
            "oracle": oracle,
            "iterations": 1,
            "recover": False,
            "refit": False,
        },
        "same_training_set": len(shas) == 1,
        "v1_gold": {"n": len(v1_gold or {}), "right": sum((v1_gold or {}).values())},
        "arms": results,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "total_s": round(time.time() - started, 1),
    }
    data["table"] = {"columns": TABLE_COLUMNS, "rows": table_rows(data)}
    path = folder / f"rl-{stamp}.json"
    data["saved_to"] = str(path)
    path.write_text(json.dumps(data, indent=2, default=str))
    say(f"saved {path}")
    return data
