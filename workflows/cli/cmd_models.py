"""CLI: the model registry (``kaizen models list|show|add|promote|rollback``)."""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path
from typing import Any

from kaizen.tools import registry
from kaizen.tools.errors import ConfigError
from kaizen.tools.store.tables import ModelVersionRow
from kaizen.tools.workspace import find_workspace
from kaizen.workflows.cli.output import console, emit, table


def register(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="Model versions and per-task aliases.").add_subparsers(
        dest="models_cmd", metavar="ACTION"
    )
    p = models.add_parser("list", help="List versions (with the task's aliases when --task is given).")
    p.add_argument("--task", default=None)
    p.set_defaults(func=cmd_list)
    p = models.add_parser("show", help="Show one version (a name, or an alias with --task).")
    p.add_argument("version")
    p.add_argument("--task", default=None)
    p.set_defaults(func=cmd_show)
    p = models.add_parser(
        "add", help="Register a model you already deploy: a LoRA adapter dir or a full model dir."
    )
    p.add_argument("name")
    p.add_argument("--path", type=Path, required=True)
    p.add_argument("--base", default="base", help="Base version of an adapter (default: base).")
    p.add_argument("--task", default=None)
    p.add_argument("--promote", action="store_true", help="Also make it the task's production version.")
    p.set_defaults(func=cmd_add)
    p = models.add_parser("promote", help="Make VERSION the task's production version (old one → previous).")
    p.add_argument("version")
    p.add_argument("--task", required=True)
    p.add_argument(
        "--skill", type=int, default=None, help="Deploy this skill version with it (default: none)."
    )
    p.add_argument(
        "--no-swap",
        action="store_true",
        help="Move the alias only; a running `kaizen serve` is not hot-swapped.",
    )
    p.set_defaults(func=cmd_promote)
    p = models.add_parser("export", help="Write a standalone model directory (adapter merged into its base).")
    p.add_argument("version")
    p.add_argument("--task", default=None)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_export)
    p = models.add_parser("rollback", help="Swap the task's production and previous versions.")
    p.add_argument("--task", required=True)
    p.add_argument(
        "--no-swap",
        action="store_true",
        help="Move the aliases only; a running `kaizen serve` is not hot-swapped.",
    )
    p.set_defaults(func=cmd_rollback)


def _actor() -> str:
    """Who moved an alias, for the history; never fails (containers may have no passwd entry)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def version_dict(v: ModelVersionRow) -> dict[str, Any]:
    return v.model_dump(mode="json")


def cmd_list(args: argparse.Namespace) -> int:
    ws = find_workspace(args.workspace)
    store = ws.store
    aliases: dict[str, list[str]] = {}
    if args.task:
        for a, row in store.aliases(args.task).items():
            aliases.setdefault(row.model_version, []).append(a)
    rows = store.list_model_versions(args.task)
    data = [version_dict(v) | {"aliases": sorted(aliases.get(v.name, []))} for v in rows]
    emit(
        args.json,
        data,
        lambda d: table(
            f"model versions{' of ' + args.task if args.task else ''}",
            ["name", "kind", "base", "parent", "aliases", "created"],
            [
                (
                    v["name"],
                    v["kind"],
                    v["base_ref"],
                    v["parent"],
                    ",".join(v["aliases"]),
                    v["created_at"][:19],
                )
                for v in d
            ],
        ),
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    ws = find_workspace(args.workspace)
    v = registry.resolve(ws.store, args.version, args.task)
    emit(args.json, version_dict(v))
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    if args.promote and not args.task:  # checked first: nothing is registered on a bad call
        raise ConfigError("--promote needs --task NAME")
    ws = find_workspace(args.workspace)
    v = registry.add_external(ws.store, args.name, args.path, base=args.base, task=args.task)
    out = version_dict(v)
    if args.promote:
        from kaizen.tools.serve.hotswap import promote_and_swap

        res = promote_and_swap(ws.store, args.task, v.name, actor=_actor(), note="models add --promote")
        out["promoted"] = True
        out["servers"] = res.servers
    emit(
        args.json,
        out,
        lambda d: console.print(
            f"Registered {d['name']} ({d['kind']})" + (" and promoted" if args.promote else "")
        ),
    )
    return 0


def _swapped(d: dict[str, Any]) -> None:
    for s in d.get("servers") or []:
        console.print(
            f"  hot-swapped {s['url']} in {s.get('swap_ms')} ms (loaded {s.get('loaded')}, unloaded {s.get('unloaded')})"
        )


def cmd_promote(args: argparse.Namespace) -> int:
    from kaizen.tools.serve.hotswap import promote_and_swap

    ws = find_workspace(args.workspace)
    # A live `kaizen serve` of the task loads the new version first; if that fails nothing moves.
    res = promote_and_swap(
        ws.store,
        args.task,
        args.version,
        actor=_actor(),
        note="kaizen models promote",
        skill=args.skill,
        swap=not args.no_swap,
    )
    old, new = res.old, res.new
    emit(
        args.json,
        res.as_dict(),
        lambda d: (
            console.print(
                f"{args.task}: production {old} → {new}" + (f" with skill {args.skill}" if args.skill else "")
            ),
            _swapped(d),
        ),
    )
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from kaizen.tools.serve.hotswap import rollback_and_swap

    ws = find_workspace(args.workspace)
    res = rollback_and_swap(
        ws.store, args.task, actor=_actor(), note="kaizen models rollback", swap=not args.no_swap
    )
    emit(
        args.json,
        res.as_dict(with_skill=False),
        lambda d: (console.print(f"{args.task}: rolled back {res.old} → {res.new}"), _swapped(d)),
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from kaizen.tools.models.load import export_merged
    from kaizen.tools.versions import version_paths

    ws = find_workspace(args.workspace)
    v = registry.resolve(ws.store, args.version, args.task)
    base_dir, adapter = version_paths(ws, v)
    if adapter is None:
        from kaizen.tools.errors import ConfigError

        raise ConfigError(f"{v.name} is a base model ({base_dir}): it is already standalone")
    out = export_merged(base_dir, adapter, args.out)
    emit(
        args.json,
        {"version": v.name, "path": str(out)},
        lambda d: console.print(f"Exported {d['version']} → {d['path']}"),
    )
    return 0
