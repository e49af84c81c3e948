"""CLI: ``kaizen bench tools|adaptft|serving|grpo|rl|triage|growth`` — benchmarks, reported as ratios measured in one run.

The benchmarks themselves live in ``workflows/bench/``; this module only parses flags and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kaizen.workflows.bench.adaptft.prepare import PRESETS, SCENARIOS
from kaizen.workflows.cli.output import console, emit, info, table


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="Benchmarks (ratios measured in one run).").add_subparsers(
        dest="bench_cmd", metavar="WHAT"
    )
    p = bench.add_parser("tools", help="Generation batching, SFT tokens/s and MFU, LoRA vs full step time.")
    p.add_argument("--quick", action="store_true", help="Fewer repetitions (smoke test).")
    p.set_defaults(func=cmd_bench_tools)
    add_adaptft_parser(bench)
    add_serving_parser(bench)
    add_grpo_parser(bench)
    add_rl_parser(bench)
    p = bench.add_parser(
        "triage", help="Bad-feedback recall/precision against answer keys (AdaptFT stages, the demo)."
    )
    p.add_argument(
        "--per-stage", type=int, default=300, help="AdaptFT inputs per stage (thresholds chosen on stage 1)."
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--model-evidence",
        type=Path,
        metavar="DIR",
        default=None,
        help="Instead: would the deployed v1's own label likelihoods (confident learning) catch bad feedback in "
        "the scenario folder DIR (examples/support-intents/data, or one examples/weak-v1/build_data.py wrote)?",
    )
    p.set_defaults(func=cmd_bench_triage)
    add_growth_parser(bench)


def add_growth_parser(bench: argparse._SubParsersAction) -> None:
    """Register ``kaizen bench growth``."""
    p = bench.add_parser(
        "growth",
        help="How repair time grows with the traces: ingest/diagnose/synthesize measured, "
        "training/eval extrapolated from calibrated per-token costs.",
    )
    p.add_argument("--sizes", default="1000,10000,100000", help="Comma-separated trace counts.")
    p.add_argument(
        "--no-calibrate", action="store_true", help="Skip the training/eval calibration (no extrapolation)."
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--diagnose-limit",
        type=float,
        default=None,
        metavar="S",
        help="Stop a diagnosis after S seconds (recorded as stopped; synthesize still measured).",
    )
    p.add_argument(
        "--diagnose-memory",
        type=float,
        default=8.0,
        metavar="GIB",
        help="Extra memory a diagnosis may take before it is stopped (MemoryError, not the OOM killer); 0: no cap.",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="Directory of the result JSON (default: <cache>/bench/)."
    )
    p.set_defaults(func=cmd_bench_growth)


def cmd_bench_growth(args: argparse.Namespace) -> int:
    from kaizen.workflows.bench.growth import bench_growth

    sizes = tuple(int(x) for x in args.sizes.split(",") if x.strip())
    data = bench_growth(
        sizes,
        calibrate_costs=not args.no_calibrate,
        progress=info,
        out_dir=args.out,
        seed=args.seed,
        diagnose_limit_s=args.diagnose_limit,
        diagnose_memory_gb=args.diagnose_memory or None,
    )

    def pretty(d: dict[str, Any]) -> None:
        def s(v: Any, none: str = "—") -> str:
            return none if v is None else f"{v:.1f}"

        table(
            "Cost of growth (seconds; training/eval extrapolated)",
            [
                "traces",
                "ingest",
                "observe",
                "diagnose",
                "synthesize",
                "train ex.",
                "train (extrap.)",
                "eval ex.",
                "eval (extrap.)",
            ],
            [
                [
                    r["traces"],
                    s(r["ingest"]["s"]),
                    s(r["observe"]["s"]),
                    s(r["diagnose"]["s"], "stopped"),
                    s(r["synthesize"]["s"]),
                    r["synthesize"]["train_examples"],
                    s(r["train_s_extrapolated"]),
                    r["eval_examples_per_iteration"],
                    s(r["eval_s_extrapolated"]),
                ]
                for r in d["sizes"]
            ],
        )
        console.print(f"saved: {d['saved_to']}")

    emit(args.json, data, pretty)
    return 0


def cmd_bench_triage(args: argparse.Namespace) -> int:
    from kaizen.workflows.bench.triage import bench_triage

    if args.model_evidence is not None:
        return _model_evidence(args)
    data = bench_triage(args.per_stage, args.seed)

    def pretty(d: dict[str, Any]) -> None:
        c = d["chosen"]
        table(
            f"Triage of bad feedback (kNN thresholds chosen on AdaptFT stage 1: own ≤ {c['own_max']}, top ≥ {c['top_min']})",
            [
                "set",
                "bad feedback",
                "flagged",
                "caught",
                "precision",
                "recall",
                "relabelled (right)",
                "pseudo-labelled (right)",
            ],
            [
                [r["set"], r["bad_feedback"], r["flagged"], r["caught"], r["precision"], r["recall"]]
                + [
                    f"{r['inferred'][k]['n']} ({r['inferred'][k]['right']})"
                    for k in ("relabel", "pseudo_label")
                ]
                for r in d["rows"]
            ],
        )

    emit(getattr(args, "json", False), data, pretty)
    return 0


def _model_evidence(args: argparse.Namespace) -> int:
    from kaizen.workflows.bench.model_evidence import model_evidence

    data = model_evidence(args.model_evidence)

    def pretty(d: dict[str, Any]) -> None:
        table(
            f"Confident learning from the deployed v1 ({d['labels']} labels) — {d['data']}",
            [
                "corrections",
                "n",
                "caught by triage",
                "disputed by v1",
                "disputed, not caught",
                "ranked last by v1",
            ],
            [
                [
                    k,
                    r["corrections"],
                    r["caught_by_triage"],
                    r["disputed_by_v1"],
                    r["disputed_not_caught"],
                    r["ranked_last"],
                ]
                for k, r in d["rows"].items()
            ],
        )

    emit(getattr(args, "json", False), data, pretty)
    return 0


def cmd_bench_tools(args: argparse.Namespace) -> int:
    from kaizen.workflows.bench.tools_bench import bench_tools

    data = bench_tools(quick=args.quick, progress=info)
    emit(args.json, data, lambda d: console.print_json(data=d))
    return 0


def add_adaptft_parser(bench: argparse._SubParsersAction) -> None:
    """Register ``kaizen bench adaptft`` ."""
    p = bench.add_parser(
        "adaptft", help="AdaptFT-style staged benchmark: agent (triage + gate) vs naive retraining."
    )
    p.add_argument(
        "--scenario",
        default="clinc",
        choices=SCENARIOS,
        help="clinc (CLINC150 banking), clinc-travel (CLINC150 travel: nothing was tuned on it; reads the "
        "shared data folder) or gsm8k (--preset full only).",
    )
    p.add_argument(
        "--preset",
        default="small",
        choices=list(PRESETS),
        help="tiny: smoke test (~3 min); small: SmolLM2-135M on CPU (≤ 45 min on 2 cores); full: GPU.",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out", type=Path, default=None, help="Output directory (default: <cache>/bench/adaptft-<time>/)."
    )
    p.add_argument(
        "--base", default=None, help="Base model instead of the preset's (a directory or a cached hub id)."
    )
    p.set_defaults(func=cmd_bench_adaptft)


def cmd_bench_adaptft(args: argparse.Namespace) -> int:
    from kaizen.workflows.bench.adaptft.run import bench_adaptft

    data = bench_adaptft(
        args.scenario,
        args.preset,
        seed=args.seed,
        out_dir=args.out,
        base=args.base,
        progress=info,  # printed without markup: "[adaptft 01:23]" stays as it is
    )
    emit(args.json, data, print_table)
    return 0


def print_table(data: dict[str, Any]) -> None:
    """The stage table (also for a saved ``results.json``: ``print_table(json.load(f))``)."""
    rates = data["poison_rates"]
    rows = [
        [
            r["stage"],
            f"{rates[i]:.0%}",
            *(_fmt(r.get(k)) for k in ("v1", "first", "best", "naive", "oracle")),
            _fmt(r["gap"], signed=True),
            _fmt(r.get("gap_p")),
            _fmt(r.get("captured")),
            r["regressions"],
            f"{_fmt(r.get('triage_precision'))}/{_fmt(r.get('triage_recall'))}",
        ]
        for i, r in enumerate(data["stages"])
    ]
    table(
        f"AdaptFT-style benchmark: {data['scenario']} / {data['preset']} (held-out accuracy on clean gold)",
        [
            "stage",
            "poison",
            "v1",
            "first",
            "agent",
            "naive",
            "oracle",
            "agent−naive",
            "paired p",
            "captured",
            "regressions",
            "triage P/R",
        ],
        rows,
    )
    console.print(
        f"{data['seconds']['total']:.0f} s; results {data['results_path']}; plot {data['plot_path']}"
    )


def _fmt(x: float | None, signed: bool = False) -> str:
    return "—" if x is None else f"{x:+.3f}" if signed else f"{x:.3f}"


def add_serving_parser(bench: argparse._SubParsersAction) -> None:
    """Register ``kaizen bench serving`` ."""
    p = bench.add_parser(
        "serving",
        help="vLLM server vs transformers throughput, hot-swap latency, proxy overhead (needs .venv-vllm).",
    )
    p.add_argument("--n", type=int, default=64, help="Prompts for the throughput comparison.")
    p.add_argument("--requests", type=int, default=30, help="Sequential requests for the proxy overhead.")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for both engines (default 1: steady on a shared CPU; 0: each engine's default).",
    )
    p.add_argument(
        "--max-lora-rank", type=int, default=None, help="vLLM --max-lora-rank (default 64, as kaizen serve)."
    )
    p.add_argument(
        "--concurrency", type=int, default=16, help="Concurrent clients for the proxy overhead under load."
    )
    p.add_argument(
        "--load-requests", type=int, default=20, help="Requests per client for the proxy overhead under load."
    )
    p.add_argument(
        "--skip-throughput",
        action="store_true",
        help="Only the swap latency and proxy overhead (no transformers run).",
    )
    p.add_argument("--quick", action="store_true", help="One repetition, fewer prompts (smoke test).")
    p.set_defaults(func=cmd_bench_serving)


def cmd_bench_serving(args: argparse.Namespace) -> int:
    from kaizen.tools.proc import sigterm_as_interrupt
    from kaizen.workflows.bench.serving import bench_serving

    quick = args.quick
    with sigterm_as_interrupt():  # a stopped bench still stops its vLLM server
        data = bench_serving(
            n=16 if quick else args.n,
            reps=1 if quick else 2,
            requests=6 if quick else args.requests,
            threads=args.threads or None,
            max_lora_rank=args.max_lora_rank,
            concurrency=args.concurrency,
            load_requests=4 if quick else args.load_requests,
            throughput=not args.skip_throughput,
            progress=info,
        )
    emit(args.json, data, lambda d: console.print_json(data=d))
    return 0


def add_grpo_parser(bench: argparse._SubParsersAction) -> None:
    """Register ``kaizen bench grpo`` (workflows/bench/grpo.py)."""
    p = bench.add_parser(
        "grpo", help="GRPO step time as a ratio to an SFT step on the same examples (CPU or GPU)."
    )
    p.add_argument("--quick", action="store_true", help="3 steps an arm, no hints arm (smoke test).")
    p.add_argument(
        "--base", type=Path, default=None, help="Model directory (default: the embedded smollm2-135m)."
    )
    p.add_argument("--prompts", type=int, default=2, help="Prompts (SFT: examples) per step.")
    p.add_argument("--steps", type=int, default=None, help="Steps per arm (default 6, --quick 3).")
    p.add_argument("--out", type=Path, default=None, help="Output directory (default: <cache>/bench).")
    p.set_defaults(func=cmd_bench_grpo)


def cmd_bench_grpo(args: argparse.Namespace) -> int:
    from kaizen.workflows.bench.grpo import bench_grpo

    data = bench_grpo(
        quick=args.quick,
        progress=info,
        base=args.base,
        prompts=args.prompts,
        steps=args.steps,
        out_dir=args.out,
    )
    emit(
        args.json,
        data,
        lambda d: console.print_json(
            data={"ratios": d["ratios"], "ratios_cpu_time": d["ratios_cpu_time"], "saved_to": d["saved_to"]}
        ),
    )
    return 0


def add_rl_parser(bench: argparse._SubParsersAction) -> None:
    """Register ``kaizen bench rl`` (workflows/bench/rl.py)."""
    p = bench.add_parser(
        "rl",
        help="SFT vs GRPO vs SFT→GRPO from a deployed v1 (the support-intents demo, or an AdaptFT stage) on the same training data: "
        "target fixed, right→wrong flips (regression suite, gold set), tokens, wall time.",
    )
    p.add_argument("--arms", default="sft,grpo,sft+grpo", help="Comma-separated training kinds to compare.")
    p.add_argument("--grpo-steps", type=int, default=None, help="GRPO steps of the grpo arms (default 32).")
    p.add_argument(
        "--scenario",
        choices=["demo", "adaptft"],
        default="demo",
        help="demo: the support-intents demo; adaptft: AdaptFT small CLINC, one stage's logs (--stage, --seed).",
    )
    p.add_argument(
        "--stage", type=int, default=1, help="adaptft: which stage's logs (1-3; 15/25/40 %% poison)."
    )
    p.add_argument("--seed", type=int, default=0, help="adaptft: the benchmark seed.")
    p.add_argument(
        "--oracle",
        action="store_true",
        help="Every arm gets the scenario's answer key instead of the logged feedback (isolates the training kind).",
    )
    p.add_argument(
        "--base", type=Path, default=None, help="Model directory (default: the embedded smollm2-135m)."
    )
    p.add_argument(
        "--out", type=Path, default=None, help="Workspaces and the result JSON (default: <cache>/bench)."
    )
    p.set_defaults(func=cmd_bench_rl)


def cmd_bench_rl(args: argparse.Namespace) -> int:
    from kaizen.tools.errors import ConfigError
    from kaizen.tools.models import cache_dir
    from kaizen.workflows.bench.adaptft.rl_scenario import adaptft_rl_scenario
    from kaizen.workflows.bench.rl import TABLE_COLUMNS, bench_rl, demo_scenario

    if args.scenario == "adaptft":
        if args.base is not None:
            raise ConfigError("--base is for the demo scenario; AdaptFT uses its preset's model")
        files = (args.out or cache_dir() / "bench") / f"rl-adaptft-s{args.stage}-seed{args.seed}"
        scenario = adaptft_rl_scenario(files, stage=args.stage, seed=args.seed, say=info)
    else:
        scenario = demo_scenario(args.base)
    data = bench_rl(
        scenario,
        arms=tuple(a.strip() for a in args.arms.split(",") if a.strip()),
        grpo_steps=args.grpo_steps,
        oracle=args.oracle,
        out_dir=args.out,
        progress=info,
    )

    def pretty(d: dict[str, Any]) -> None:
        table(
            f"{d['scenario']}: one repair step from v1 per arm"
            + (" (oracle feedback)" if d["setup"]["oracle"] else ""),
            TABLE_COLUMNS,
            d["table"]["rows"],
        )
        console.print(
            f"v1 on gold: {d['v1_gold']['right']}/{d['v1_gold']['n']} right; same training set in every arm: "
            f"{d['same_training_set']}; saved {d['saved_to']}",
            markup=False,
        )

    emit(args.json, data, pretty)
    return 0
