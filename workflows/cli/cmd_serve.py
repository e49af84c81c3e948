"""CLI: ``kaizen serve`` (vLLM behind kaizen's proxy, Starlette on uvicorn) and ``kaizen servers list|canary``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kaizen.tools.errors import ConfigError
from kaizen.tools.workspace import find_workspace
from kaizen.workflows.cli.output import console, emit, info, table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="Serve the task's production version with vLLM behind kaizen's proxy (logs, feedback, hot swap).",
    )
    p.add_argument("--task", default=None, help="Task to serve (default: the only task of the workspace).")
    p.add_argument(
        "--host", default="127.0.0.1", help="Proxy address (vLLM itself always listens on 127.0.0.1)."
    )
    p.add_argument("--port", type=int, default=8000, help="Proxy port (0: a free one).")
    p.add_argument("--vllm-port", type=int, default=0, help="vLLM's own port on 127.0.0.1 (0: a free one).")
    p.add_argument(
        "--vllm-url",
        default=None,
        help="Attach to this running vLLM server (--enable-lora, runtime LoRA updating on) instead of starting one; "
        "it is left running at exit.",
    )
    p.add_argument(
        "--canary-version", default=None, help="Send --canary-fraction of the requests to this version."
    )
    p.add_argument("--canary-fraction", type=float, default=0.0)
    p.add_argument("--canary-skill", type=int, default=None, help="Skill version served with the canary.")
    p.add_argument(
        "--log", type=Path, default=None, help="Trace log (default: .kaizen/serving/<task>.jsonl)."
    )
    p.add_argument(
        "--prompt",
        default="render",
        choices=["render", "passthrough"],
        help="render: the skill's/task's prompt replaces the caller's system prompt (default); passthrough: messages as sent.",
    )
    p.add_argument(
        "--dtype", default=None, help="vLLM --dtype (default: from kaizen.yaml model.dtype; float32 on CPU)."
    )
    p.add_argument(
        "--max-loras",
        type=int,
        default=3,
        help="Adapters vLLM runs at once (production, canary, one being swapped in).",
    )
    p.add_argument(
        "--max-lora-rank",
        type=int,
        default=None,
        help="Largest adapter rank vLLM accepts (default 64, what kaizen trains at most; 16 is ~3x faster per LoRA token on CPU).",
    )
    p.add_argument(
        "--cpu-threads",
        type=int,
        default=None,
        help="OpenMP threads of vLLM's CPU backend (1 on a CPU shared with other jobs).",
    )
    p.add_argument("--max-model-len", type=int, default=2048)
    p.add_argument(
        "--startup-timeout", type=float, default=600.0, help="Seconds to wait for vLLM to become healthy."
    )
    p.set_defaults(func=cmd_serve)

    servers = sub.add_parser(
        "servers", help="Running `kaizen serve` processes: list, canary."
    ).add_subparsers(dest="servers_cmd", metavar="ACTION")
    p = servers.add_parser("list", help="Recorded servers (running ones by default).")
    p.add_argument("--task", default=None)
    p.add_argument("--all", action="store_true", help="Also stopped, failed and gone servers.")
    p.set_defaults(func=cmd_servers_list)
    p = servers.add_parser(
        "canary", help="Send a fraction of the task's requests to another version (--off: stop)."
    )
    p.add_argument("--task", required=True)
    p.add_argument("--version", default=None)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--skill", type=int, default=None)
    p.add_argument("--off", action="store_true")
    p.set_defaults(func=cmd_servers_canary)


def _only_task(ws: Any) -> str:
    tasks = [t.name for t, _ in ws.store.list_tasks()]
    if len(tasks) != 1:
        raise ConfigError(f"pass --task NAME (tasks: {', '.join(tasks) or 'none yet'})")
    return tasks[0]


def cmd_serve(args: argparse.Namespace) -> int:
    from kaizen.workflows.serve.process import serve

    ws = find_workspace(args.workspace)
    task = args.task or _only_task(ws)

    def ready(d: dict[str, Any]) -> None:
        if args.json:
            sys.stdout.write(json.dumps(d) + "\n")
            sys.stdout.flush()
        info(
            f"serving task {d['task']} as model {d['model']!r} at {d['base_url']} → {d['version']}"
            + (f" + skill {d['skill']}" if d["skill"] else "")
            + (f"; canary {d['canary']['version']} at {d['canary']['fraction']:.0%}" if d["canary"] else "")
            + f" (vLLM {d['vllm_url']}{' attached' if d['attached'] else ''}, up in {d['startup_s']} s)"
        )
        info(f"  traces → {d['log']}; feedback: POST {d['url']}/feedback; Ctrl-C stops")

    serve(
        ws,
        task,
        host=args.host,
        port=args.port,
        vllm_port=args.vllm_port,
        vllm_url=args.vllm_url,
        canary_version=args.canary_version,
        canary_fraction=args.canary_fraction,
        canary_skill=args.canary_skill,
        log_path=args.log,
        prompt_mode=args.prompt,
        dtype=args.dtype,
        max_loras=args.max_loras,
        max_lora_rank=args.max_lora_rank,
        cpu_threads=args.cpu_threads,
        max_model_len=args.max_model_len,
        startup_timeout_s=args.startup_timeout,
        ready=ready,
        info=info,
    )
    info("stopped")
    return 0


def cmd_servers_list(args: argparse.Namespace) -> int:
    ws = find_workspace(args.workspace)
    rows = ws.store.list_servers(args.task, status=None if args.all else "running")
    data = [r.model_dump(mode="json", exclude={"admin_token"}) for r in rows]
    emit(
        args.json,
        data,
        lambda d: table(
            "servers",
            ["id", "task", "status", "url", "version", "skill", "canary", "pid", "started"],
            [
                (
                    r["id"],
                    r["task"],
                    r["status"],
                    r["proxy_url"],
                    r["model_version"],
                    r["skill_version"],
                    f"{r['canary'].get('version')} {r['canary'].get('fraction')}" if r["canary"] else "",
                    r["pid"],
                    r["started_at"][:19],
                )
                for r in d
            ],
        ),
    )
    return 0


def cmd_servers_canary(args: argparse.Namespace) -> int:
    from kaizen.tools.serve.hotswap import set_canary

    ws = find_workspace(args.workspace)
    if not args.off and not args.version:
        raise ConfigError("pass --version V (and --fraction F), or --off")
    if args.version:
        ws.store.get_model_version(args.version)
    out = set_canary(
        ws.store,
        args.task,
        None if args.off else args.version,
        fraction=0.0 if args.off else args.fraction,
        skill=args.skill,
    )
    emit(args.json, out, lambda d: [console.print(f"{s['url']}: canary {s['canary'] or 'off'}") for s in d])
    return 0
