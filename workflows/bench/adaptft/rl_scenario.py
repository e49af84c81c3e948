"""An AdaptFT stage as a ``kaizen bench rl`` scenario: SFT vs GRPO vs SFT→GRPO on CLINC logs with poison.

``kaizen bench rl --scenario adaptft [--stage 1] [--seed 0]`` repairs AdaptFT's deployed v1 (the ``small``
preset's CLINC v1, trained once and cached) from one stage's logs — v1's own answers on the stage's
perturbed inputs with the agent arm's kind of feedback (15 / 25 / 40 % poisoned) — exactly as the staged
benchmark writes them (``arms.deploy_logs``). The gold set is the union of the three stages' held-out
splits on the clean gold (90 inputs at ``small``), never in any log. The answer key (``--oracle``) is the
stage's truth, written apart from the logs as in the staged benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kaizen.workflows.bench.adaptft.prepare import Progress


def adaptft_rl_scenario(
    out: Path, *, stage: int = 1, seed: int = 0, preset: str = "small", say: Progress = print
) -> Any:
    """Build (or reuse) the scenario's files under ``out``; returns a ``bench.rl.RLScenario``."""
    from kaizen.tools.data import write_items
    from kaizen.tools.errors import ConfigError
    from kaizen.workflows.bench.adaptft.arms import deploy_logs
    from kaizen.workflows.bench.adaptft.prepare import (
        base_dir,
        check_request,
        make_scenario,
        make_workspace,
        train_v1,
    )
    from kaizen.workflows.bench.adaptft.scorer import Scorer
    from kaizen.workflows.bench.adaptft.stages import build_stages, heldout_union
    from kaizen.workflows.bench.rl import RLScenario

    p = check_request("clinc", preset)
    sc = make_scenario("clinc", p, seed)
    stages = build_stages(sc, p.per_stage, seed)
    if not 1 <= stage <= len(stages):
        raise ConfigError(f"--stage must be 1..{len(stages)}, got {stage}")
    st = stages[stage - 1]
    out.mkdir(parents=True, exist_ok=True)
    base = base_dir(p, None)
    v1 = train_v1(sc, p, base, say)
    logs = out / "logs" / f"stage{stage}-agent.jsonl"
    if not logs.is_file():  # v1's answers on the stage's inputs, the agent arm's feedback, the truth apart
        say(
            f"adaptft stage {stage} ({st.poison_rate:.0%} poison): v1 answers its {len(st.logs)} logged inputs"
        )
        ws = make_workspace(out / "deploy", sc, base, v1)
        ctx = {"sc": sc, "out": out, "seed": seed, "scorer": Scorer(sc, out, p.eval_batch), "agent": ws}
        _, logs = deploy_logs(st, ctx, "agent", "v1")
    gold = out / "gold.jsonl"
    write_items(gold, heldout_union([s.test for s in stages]))
    return RLScenario(
        task=sc.task,
        base=base,
        v1=v1,
        logs=logs,
        gold=gold,
        answer_key=out / "logs" / "answer-key-agent.jsonl",
        name=f"adaptft-clinc-{preset}-stage{stage}-seed{seed}",
    )
