"""``kaizen bench adaptft``: does the agent (triage + gate + rollback) beat naive retraining as the
feedback gets more poisoned? AdaptFT-Bench's staged protocol, run for real on kaizen's own tools.

A deployed v1 (a brief LoRA SFT with deliberate gaps, cached under the model cache keyed by data
and recipe) meets three stages of production traffic with 15 / 25 / 40 % poison. Two arms, each in
its own workspace, run *their own* production model on the same perturbed inputs and get feedback
(the naive arm's corrupted the AdaptFT way; see ``kaizen.workflows.bench.adaptft_stages``). The agent arm
ingests its logs and runs ``repair.start(approve=True, max_iterations=2)`` (the gate keeps
production unless a candidate passes); the naive arm runs ``run_naive`` once per stage (retrain on
every correction, promote anyway). After each stage both are scored on the held-out set, the union
of all stages' 30 % test splits on clean gold. Per stage: ``first`` (the agent's first candidate of
the stage), ``best`` (the best version the agent promoted so far, v1 included), ``naive``, ``gap``
(best − naive) and ``regressions`` (right→wrong flips of the agent's production against the
previous stage's production, on the held-out examples both were scored on: the current set).

Presets: ``tiny`` (a 2-layer random Llama; plumbing only, numbers meaningless), ``small`` (the
embedded SmolLM2-135M on CPU, sized for ≤ 45 min on 2 cores), ``full`` (GPU only; the ``gsm8k``
scenario exists only here). Results go to ``<out>/results.json`` and ``<out>/adaptft.png``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kaizen.tools.errors import ConfigError
from kaizen.tools.schema import EvalItem
from kaizen.workflows.bench.adaptft_stages import (
    Scenario,
    Stage,
    build_stages,
    clinc_scenario,
    count_regressions,
    feedback_counts,
    gsm8k_scenario,
    heldout_union,
    log_records,
    score,
    split_truth,
)

Progress = Callable[[str], None]
STAGE_KEYS = (
    "stage",
    "v1",
    "first",
    "best",
    "naive",
    "oracle",
    "gap",
    "gap_p",
    "captured",
    "regressions",
    "triage_precision",
    "triage_recall",
)


@dataclass(frozen=True)
class Preset:
    """Sizes of one benchmark run. ``base``: ``tiny`` (random 2-layer Llama) or a model spec."""

    name: str
    base: str
    per_stage: int  # fresh inputs per stage (70 % logs, 30 % held out)
    v1_per_label: int  # CLINC: v1's examples per intent (gaps aside)
    v1_epochs: float
    v1_lora: dict[str, Any] = field(default_factory=lambda: {"r": 8, "alpha": 16, "top_layers": 12})
    v1_max_steps: int = -1
    max_iterations: int = 2
    gsm8k_v1_size: int = 0  # GSM8K: worked solutions v1 is trained on
    plan_defaults: dict[str, Any] = field(default_factory=dict)  # the agent's first plan (repair.start)
    train_overrides: dict[str, Any] = field(default_factory=dict)  # the agent's training jobs (repair.start)
    gpu_only: bool = False
    eval_batch: int = 32


PRESETS = {
    # CI plumbing: a random 2-layer model, 10 inputs a stage, one-step v1; every stage still
    # trains (agent and naive) and every number is produced, just meaningless.
    "tiny": Preset(
        "tiny",
        base="tiny",
        per_stage=10,
        v1_per_label=1,
        v1_epochs=1,
        v1_max_steps=2,
        v1_lora={"r": 4, "alpha": 8},
        max_iterations=1,
        plan_defaults={"min_steps": 1, "epochs": 1},
        train_overrides={"save_steps": 1000},
    ),
    # SmolLM2-135M on 2 CPU cores, ≤ 45 min: v1 as in the support-intents demo (98 examples);
    # 100 inputs a stage → 70 logs per arm and 30 held out (90 after three stages). Measured:
    # 12 min with v1 cached on a quiet 2-core machine (v1 itself: ~2 min idle, 18 min under load);
    # shared with other CPU jobs (load 4-6) the same run took over an hour.
    "small": Preset("small", base="smollm2-135m", per_stage=100, v1_per_label=12, v1_epochs=3),
    # GPUs: AdaptFT has ~500 logs per stage; the CLINC banking slice's pool holds ~1,260 inputs
    # after v1's share, so 400 a stage (GSM8K's pool has 6,400).
    "full": Preset(
        "full",
        base="smollm2-135m",
        per_stage=400,
        v1_per_label=30,
        v1_epochs=3,
        gpu_only=True,
        gsm8k_v1_size=1000,
        v1_lora={"r": 16, "alpha": 32},
    ),
}
SCENARIOS = ("clinc", "gsm8k")


def _say(progress: Progress | None, t0: float) -> Progress:
    def say(msg: str) -> None:
        if progress:
            m, s = divmod(int(time.time() - t0), 60)
            progress(f"[adaptft {m:02d}:{s:02d}] {msg}")

    return say


@contextlib.contextmanager
def _own_workspaces() -> Iterator[None]:
    """The bench makes its own two workspaces: a KAIZEN_HOME/KAIZEN_DB_URL from the shell would
    point both arms at one store, so they are unset for the duration of the run."""
    saved = {k: os.environ.pop(k) for k in ("KAIZEN_HOME", "KAIZEN_DB_URL") if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def check_request(scenario: str, preset: str) -> Preset:
    """Refuse combinations that cannot run here, before anything is built."""
    if scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {scenario!r}: use {', '.join(SCENARIOS)}")
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: use {', '.join(PRESETS)}")
    p = PRESETS[preset]
    if scenario == "gsm8k" and preset != "full":
        raise ConfigError(
            "the gsm8k scenario runs only with --preset full (a GPU): 256-token worked solutions are "
            "far beyond a CPU budget; use --scenario clinc for tiny/small"
        )
    if p.gpu_only:
        from kaizen.tools.models import pick_device

        if not pick_device().startswith("cuda"):
            raise ConfigError(
                f"--preset full needs a CUDA GPU and this machine has none (device: {pick_device()}); "
                "use --preset small on CPU (~45 min on 2 cores) or --preset tiny (a smoke test)"
            )
    return p


def make_scenario(name: str, p: Preset, seed: int) -> Scenario:
    if name == "gsm8k":
        return gsm8k_scenario(v1_size=p.gsm8k_v1_size, seed=seed)
    return clinc_scenario(v1_per_label=p.v1_per_label, seed=11 + seed)


# ------------------------------------------------------------------------------- models
def base_dir(p: Preset, base: str | None) -> Path:
    """The base model directory: the cached tiny random Llama, or ``base`` / the preset's model."""
    from kaizen.tools.models import build_tiny_random_llama, cache_dir, resolve_base

    if (base or p.base) != "tiny":
        return resolve_base(base or p.base)
    target = cache_dir() / "bench" / "tiny-random-llama"
    if not (target / "config.json").exists():
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        build_tiny_random_llama(tmp, resolve_base("smollm2-135m"))
        with contextlib.suppress(OSError):  # a concurrent build won: use it
            tmp.rename(target)
    return target


def train_v1(sc: Scenario, p: Preset, base: Path, say: Progress) -> Path:
    """v1's adapter, trained once and cached under ``<cache>/bench`` keyed by data, recipe and base."""
    from kaizen.tools.data import sft_rows, write_items
    from kaizen.tools.models import cache_dir
    from kaizen.tools.schema import content_hash
    from kaizen.tools.train.launch import run_job
    from kaizen.tools.train.spec import LoraSpec, TrainJob
    from kaizen.tools.versions import progress_printer

    rows = sft_rows(sc.task, sc.v1_items)
    recipe = {
        "epochs": p.v1_epochs,
        "max_steps": p.v1_max_steps,
        "learning_rate": 1e-3,
        "batch_size": 8,
        "seed": 0,
        "save_steps": 1000,
        "lora": p.v1_lora,
    }
    key = content_hash({"data": rows, "recipe": recipe, "base": str(base), "v": 1})
    job_dir = cache_dir() / "bench" / f"adaptft-v1-{sc.name}-{key}"
    write_items(job_dir / "data.jsonl", rows)
    say(f"v1: {len(rows)} examples, {p.v1_epochs:g} epochs ({job_dir.name}; reused when cached)")
    job = TrainJob(
        kind="sft",
        base_dir=base,
        data_path=job_dir / "data.jsonl",
        output_dir=job_dir,
        lora=LoraSpec(**p.v1_lora),
        **{k: v for k, v in recipe.items() if k != "lora"},
    )
    return Path(run_job(job, progress_printer())["output_path"])


def make_workspace(root: Path, sc: Scenario, base: Path, v1: Path) -> Any:
    """A fresh workspace whose task's production is v1 (an adapter on the registered base)."""
    from kaizen.tools import registry
    from kaizen.tools.workspace import find_workspace, init_workspace

    init_workspace(root)
    ws = find_workspace(root)
    ws.store.add_task(sc.task)
    from kaizen.tools.serve.hotswap import (
        promote_and_swap,
    )  # the one promotion path (no server runs here yet)

    registry.add_external(ws.store, "bench-base", base, note="adaptft bench base")
    # The task runs on the bench's base first, so that v1 (an adapter on it) is accepted for the task.
    promote_and_swap(ws.store, sc.task.name, "bench-base", actor="adaptft bench")
    registry.add_external(
        ws.store, "v1", v1, base="bench-base", task=sc.task.name, note="adaptft deployed v1"
    )
    promote_and_swap(ws.store, sc.task.name, "v1", actor="adaptft bench")
    return ws


class Scorer:
    """Runs versions: held-out outcomes per version (each example scored once: versions are
    immutable) and the deployed model's outputs, through a small cache of loaded backends (a stage
    runs the same few versions several times; loading one costs seconds)."""

    def __init__(self, sc: Scenario, out: Path, batch: int, keep: int = 3) -> None:
        self.sc, self.out, self.batch, self.keep = sc, out, batch, keep
        self.correct: dict[str, dict[str, bool]] = {}
        self._backends: dict[str, Any] = {}

    @staticmethod
    def _key(row: Any) -> str:
        return row.adapter_path or row.base_ref  # v1 is the same adapter in both workspaces

    def backend(self, ws: Any, row: Any) -> Any:
        from kaizen.tools.versions import make_backend

        key = self._key(row)
        b = self._backends.pop(key, None) or make_backend(ws, row, batch_size=self.batch)
        self._backends[key] = b  # most recently used last
        while len(self._backends) > self.keep:
            self._backends.pop(next(iter(self._backends)))
        return b

    def generate(self, ws: Any, version: str, texts: list[str]) -> list[str]:
        from kaizen.tools.schema import render

        chats = [render(self.sc.task, None, [{"role": "user", "content": t}]) for t in texts]
        return self.backend(ws, ws.store.get_model_version(version)).generate(
            chats, max_new_tokens=self.sc.max_new_tokens
        )

    def __call__(self, ws: Any, version: str, items: list[EvalItem]) -> dict[str, bool]:
        from kaizen.tools.evaluate.run import evaluate

        row = ws.store.get_model_version(version)
        done = self.correct.setdefault(self._key(row), {})
        todo = [it for it in items if it.id not in done]
        if todo:
            n = sum(1 for _ in self.out.glob("evals/*.jsonl"))
            rep = evaluate(
                self.sc.task,
                todo,
                self.backend(ws, row),
                model_version=version,
                suite="adaptft-heldout",
                outputs_path=self.out / "evals" / f"{n:03d}-{version}.jsonl",
            )
            done.update(rep.correct_by_id)
        return {it.id: done[it.id] for it in items}


def _ingest(ws: Any, path: Path, task: str) -> dict[str, Any]:
    from kaizen.tools.logs import parse_traces

    res = parse_traces(path)
    return asdict(ws.store.import_traces(res.traces, path=str(path), default_task=task))


def _has_corrections(ws: Any, task: str) -> bool:
    return any(t.verdict == "fail" and t.correction for t in ws.store.traces(task))


# --------------------------------------------------------------------------------- the run
ARMS = ("agent", "naive", "oracle")


def _deploy_logs(st: Stage, ctx: dict[str, Any], arm: str, version: str) -> tuple[list[dict[str, Any]], Path]:
    """Run ``arm``'s production model on the stage's inputs; write what kaizen ingests and, apart, the truth.

    The oracle arm gets the agent arm's kind of feedback on its own model's answers; its answer key
    (every stage so far) is the only place the truth goes.
    """
    sc, out, seed = ctx["sc"], ctx["out"], ctx["seed"]
    outputs = ctx["scorer"].generate(ctx[arm], version, [it.text for it in st.logs])
    recs = log_records(
        sc,
        st.logs,
        outputs,
        arm="naive" if arm == "naive" else "agent",
        stage=st.index,
        seed=seed,
        model_version=version,
    )
    logs, key = split_truth(sc, recs, st.logs)
    path = out / "logs" / f"stage{st.index}-{arm}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in logs))
    key_path = out / "logs" / f"answer-key-{arm}.jsonl"  # cumulative: a repair sees every stage's traces
    with key_path.open("a") as f:
        f.writelines(json.dumps(k, ensure_ascii=False) + "\n" for k in key)
    return recs, path


def run_stage(st: Stage, ctx: dict[str, Any], say: Progress) -> dict[str, Any]:
    """One deployment stage for the three arms; returns the stage's detail record."""
    from kaizen.tools import registry
    from kaizen.tools.answer_key import load_answer_key, triage_quality
    from kaizen.workflows.repair import job as repair
    from kaizen.workflows.repair.naive import run_naive

    p, out = ctx["preset"], ctx["out"]
    task = ctx["sc"].task.name
    t_stage = time.time()
    detail: dict[str, Any] = {
        "stage": st.index,
        "poison_rate": st.poison_rate,
        "n": len(st.batch),
        "poisoned": st.poisoned,
        "logs": len(st.logs),
        "test": len(st.test),
        "arms": {},
    }
    prev_prod = {arm: registry.resolve(ctx[arm].store, "production", task).name for arm in ARMS}
    for arm in ARMS:
        recs, path = _deploy_logs(st, ctx, arm, prev_prod[arm])
        imported = _ingest(ctx[arm], path, task)
        detail["arms"][arm] = {
            "deployed": prev_prod[arm],
            "feedback": feedback_counts(recs),
            "imported": imported["imported"],
        }
        say(
            f"stage {st.index}: {arm} ran {prev_prod[arm]} on {len(recs)} inputs → {detail['arms'][arm]['feedback']}"
        )

    for arm in ("agent", "oracle"):
        t = time.time()
        key = out / "logs" / "answer-key-oracle.jsonl" if arm == "oracle" else None
        say(f"stage {st.index}: {arm} repair (max {p.max_iterations} iterations)")
        run = repair.start(
            ctx[arm],
            task,
            approve=True,
            max_iterations=p.max_iterations,
            plan_defaults=p.plan_defaults or None,
            train_overrides=p.train_overrides or None,
            answer_key=key,
            progress=lambda m, a=arm: say(f"  {a}: {m}"),
        )
        trained = [
            e["version"] for e in run.events if e.get("phase") in ("train", "refit") and e.get("version")
        ]
        excluded = set(run.summary.get("excluded_suspect") or [])
        detail["arms"][arm] |= {
            "run_id": run.id,
            "status": run.status,
            "iterations": run.summary.get("iterations"),
            "candidates": trained,
            "path": run.summary.get("path"),
            "seconds": round(time.time() - t, 1),
        }
        if arm == "agent":
            truth = load_answer_key(out / "logs" / "answer-key-agent.jsonl")
            detail["arms"]["agent"] |= {
                "excluded_suspect": len(excluded),
                "excluded_truly_poisoned": len(excluded & ctx["poisoned_ids"]),
                "triage": triage_quality(excluded, truth, ctx["agent"].store.traces(task)),
            }
    t = time.time()
    if _has_corrections(ctx["naive"], task):
        say(f"stage {st.index}: naive retraining (every correction, no gate)")
        nrun = run_naive(ctx["naive"], task, progress=lambda m: say(f"  naive: {m}"))
        detail["arms"]["naive"] |= {"run_id": nrun.id, "trained": nrun.summary.get("candidate")}
    else:
        say(f"stage {st.index}: naive has no corrected failure to train on; production unchanged")
    detail["arms"]["naive"]["seconds"] = round(time.time() - t, 1)
    return _score_stage(st, ctx, detail, prev_prod, t_stage, say)


def _score_stage(
    st: Stage,
    ctx: dict[str, Any],
    detail: dict[str, Any],
    prev_prod: dict[str, str],
    t_stage: float,
    say: Progress,
) -> dict[str, Any]:
    """Every arm's production on the held-out union (clean gold), the agent's first candidate, and captured."""
    from kaizen.tools import registry
    from kaizen.tools.gate import compare

    scorer, task = ctx["scorer"], ctx["sc"].task.name
    ctx["tests"].append(st.test)
    held = heldout_union(ctx["tests"])
    ids = [it.id for it in held]
    t = time.time()
    prod = {arm: registry.resolve(ctx[arm].store, "production", task).name for arm in ARMS}
    if prod["agent"] not in ctx["promoted"]:
        ctx["promoted"].append(prod["agent"])
    say(f"stage {st.index}: scoring on the held-out set ({len(held)} examples, clean gold)")
    naive_prev = scorer(ctx["naive"], prev_prod["naive"], held)
    promoted = {v: scorer(ctx["agent"], v, held) for v in ctx["promoted"]}
    trained = detail["arms"]["agent"].get("candidates") or []
    first = scorer(ctx["agent"], trained[0], held) if trained else None
    naive = scorer(ctx["naive"], prod["naive"], held)
    oracle = scorer(ctx["oracle"], prod["oracle"], held)
    v1 = score(scorer(ctx["agent"], "v1", held), ids)
    scores = {v: score(c, ids) for v, c in promoted.items()}
    agent = scores[prod["agent"]]
    reach = score(oracle, ids) - v1
    row = {
        "stage": st.index,
        "first": _r(score(first, ids)) if first is not None else None,
        "best": _r(agent),
        "naive": _r(score(naive, ids)),
        "oracle": _r(score(oracle, ids)),
        "v1": _r(v1),
        "captured": _r((agent - v1) / reach) if reach >= 0.02 else None,
        "regressions": count_regressions(promoted[prev_prod["agent"]], promoted[prod["agent"]]),
    }
    row["gap"] = _r(row["best"] - row["naive"])
    # Held-out sets are small (30–90 items): the paired exact test says whether a gap is more than noise.
    vs_naive = compare("heldout", naive, promoted[prod["agent"]])
    row["gap_p"] = _r(vs_naive.p_value)
    detail["agent_vs_naive"] = {
        "agent_only_right": len(vs_naive.newly_right),
        "naive_only_right": len(vs_naive.newly_wrong),
        "mcnemar_p": _r(vs_naive.p_value),
    }
    tri = detail["arms"]["agent"].get("triage") or {}
    row |= {"triage_precision": tri.get("precision"), "triage_recall": tri.get("recall")}
    detail |= {
        "heldout": len(held),
        "agent_production": prod["agent"],
        "agent_production_score": _r(agent),
        "promoted_scores": {v: _r(s) for v, s in scores.items()},
        "naive_production": prod["naive"],
        "oracle_production": prod["oracle"],
        "naive_regressions": count_regressions(naive_prev, naive),
        "eval_seconds": round(time.time() - t, 1),
        "seconds": round(time.time() - t_stage, 1),
    }
    say(
        f"stage {st.index} done in {detail['seconds']:.0f}s: v1 {row['v1']}, agent {row['best']} (first {row['first']}), "
        f"naive {row['naive']}, oracle {row['oracle']}, captured {row['captured']}, gap {row['gap']}"
    )
    return {"row": {k: row[k] for k in STAGE_KEYS}, "detail": detail}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def bench_adaptft(
    scenario: str = "clinc",
    preset: str = "small",
    *,
    seed: int = 0,
    out_dir: Path | None = None,
    base: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the staged benchmark; returns (and saves) ``{"stages": [...], ...}``."""
    from kaizen.tools.models import cache_dir

    t0 = time.time()
    say = _say(progress, t0)
    p = check_request(scenario, preset)
    _preload()
    out = (out_dir or cache_dir() / "bench" / f"adaptft-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty: pass a new --out directory")
    out.mkdir(parents=True, exist_ok=True)
    sc = make_scenario(scenario, p, seed)
    stages = build_stages(sc, p.per_stage, seed)
    say(
        f"{scenario}/{preset}, seed {seed}: v1 on {len(sc.v1_items)} examples; {len(stages)} stages × {p.per_stage} inputs "
        f"(poisoned {[s.poisoned for s in stages]}); out {out}"
    )
    with _own_workspaces():
        bdir = base_dir(p, base)
        v1 = train_v1(sc, p, bdir, say)
        t_setup = time.time() - t0
        ctx: dict[str, Any] = {
            "sc": sc,
            "preset": p,
            "out": out,
            "seed": seed,
            "scorer": Scorer(sc, out, p.eval_batch),
            "agent": make_workspace(out / "agent", sc, bdir, v1),
            "naive": make_workspace(out / "naive", sc, bdir, v1),
            "oracle": make_workspace(out / "oracle", sc, bdir, v1),
            "tests": [],
            "promoted": ["v1"],
            "poisoned_ids": {f"s{s.index}-{it.id}" for s in stages for it in s.logs if it.poisoned},
        }
        results: list[dict[str, Any]] = []
        for stage in stages:
            results.append(run_stage(stage, ctx, say))
            # Saved after every stage: a long run that dies late still leaves what it measured.
            data = _results(
                results, stages, sc, p, seed, bdir, out, t0, t_setup, complete=stage is stages[-1]
            )
            (out / "results.json").write_text(json.dumps(data, indent=2))
    data["plot_path"] = plot(data, out / "adaptft.png")
    (out / "results.json").write_text(json.dumps(data, indent=2))
    say(f"done in {data['seconds']['total']:.0f}s → {data['results_path']}")
    return data


def _preload() -> None:
    """Import what the stages need before the first one: a run lasts many minutes, and it should run
    one version of the code throughout (not pick up a half-saved edit at stage 3)."""
    import kaizen.tools.evaluate.run  # noqa: F401
    import kaizen.tools.logs  # noqa: F401
    import kaizen.tools.versions  # noqa: F401
    import kaizen.workflows.repair.job  # noqa: F401
    import kaizen.workflows.repair.naive  # noqa: F401


def _results(
    results: list[dict[str, Any]],
    stages: list[Stage],
    sc: Scenario,
    p: Preset,
    seed: int,
    bdir: Path,
    out: Path,
    t0: float,
    t_setup: float,
    complete: bool,
) -> dict[str, Any]:
    return {
        "stages": [r["row"] for r in results],
        "scenario": sc.name,
        "preset": p.name,
        "seed": seed,
        "complete": complete,
        "poison_rates": [s.poison_rate for s in stages],
        "base": str(bdir),
        "citation": sc.citation,
        "sizes": {
            "v1_train": len(sc.v1_items),
            "per_stage": p.per_stage,
            "logs_per_stage": len(stages[0].logs),
            "test_per_stage": len(stages[0].test),
            "max_iterations": p.max_iterations,
        },
        "details": [r["detail"] for r in results],
        "seconds": {"setup": round(t_setup, 1), "total": round(time.time() - t0, 1)},
        "out": str(out),
        "workspaces": {arm: str(out / arm) for arm in ARMS},
        "results_path": str(out / "results.json"),
        "plot_path": None,
    }


def plot(data: dict[str, Any], path: Path) -> str | None:
    """Held-out score by stage: agent, naive and oracle (the agent's first candidates as points); Agg canvas, no pyplot."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # the plot is a view of results.json, which is already complete
        return None
    rows = data["stages"]
    xs = [r["stage"] for r in rows]
    v1 = data["details"][0]["promoted_scores"].get("v1") if data["details"] else None
    fig = Figure(figsize=(5.5, 3.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(
        [0, *xs],
        [v1, *[r["best"] for r in rows]],
        "o-",
        color="#2b7bb9",
        label="kaizen agent (best promoted)",
    )
    ax.plot([0, *xs], [v1, *[r["naive"] for r in rows]], "s--", color="#e6842a", label="naive retraining")
    if all(r.get("oracle") is not None for r in rows):
        ax.plot(
            [0, *xs], [v1, *[r["oracle"] for r in rows]], "^:", color="#777777", label="oracle (true labels)"
        )
    fx = [r["stage"] for r in rows if r["first"] is not None]
    ax.plot(
        fx,
        [r["first"] for r in rows if r["first"] is not None],
        "x",
        color="#2ca25f",
        label="agent: first candidate",
    )
    rates = data.get("poison_rates") or []
    ax.set_xticks(
        [0, *xs],
        [
            "v1",
            *[
                f"stage {x}\n{rates[i]:.0%} poison" if i < len(rates) else f"stage {x}"
                for i, x in enumerate(xs)
            ],
        ],
        fontsize=8,
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("held-out accuracy (clean gold)")
    ax.set_title(f"AdaptFT-style stages: {data['scenario']} / {data['preset']}", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    ax.spines[["top", "right"]].set_visible(False)
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    return str(path)


# ------------------------------------------------------------------------------------ CLI
