"""End to end: a deployed v1 with a gap, production logs with poisoned feedback, one repair run.

Real everything: the default model, the v1 LoRA adapter (shared fixture), TRL training in a
subprocess, the SQLite store, LangGraph's SQLite checkpointer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools import registry
from tools.evaluate.backends import TransformersBackend
from tools.logs import parse_traces
from tools.schema import render
from tools.workspace import find_workspace, init_workspace
from workflows import repair
from workflows.clinc import load_slice, make_logs, rows, to_items

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prod_logs(smollm_dir: Path, clinc_v1: dict, clinc_task, tmp_path_factory) -> Path:
    """Logs produced by actually running v1 on CLINC inputs it was not trained on."""
    backend = TransformersBackend(smollm_dir, clinc_v1["adapter"])
    pairs = rows("train", clinc_task.labels, per_label=24, seed=5)
    trained = clinc_v1["train_ids"]
    pairs = [p for p, it in zip(pairs, to_items(pairs), strict=True) if it.id not in trained][:48]

    def run_model(texts: list[str]) -> list[str]:
        return backend.generate([render(clinc_task, None, [{"role": "user", "content": t}]) for t in texts], max_new_tokens=12)

    logs = make_logs(run_model, clinc_task.labels, pairs, seed=3, poison_rate=0.08, unlabeled_rate=0.1,
                     off_domain=[t for t, _ in load_slice()["oos"][:3]])
    path = tmp_path_factory.mktemp("logs") / "prod.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in logs))
    return path


def _workspace(tmp_path: Path, clinc_task, clinc_v1: dict, logs: Path):
    ws, _ = init_workspace(tmp_path)
    ws.store.add_task(clinc_task)
    registry.add_external(ws.store, "v1", clinc_v1["adapter"], base="base", task=clinc_task.name)
    registry.promote(ws.store, clinc_task.name, "v1", actor="test")
    res = parse_traces(logs)
    ws.store.import_traces(res.traces, path=str(logs), default_task=clinc_task.name)
    return find_workspace(tmp_path)


def test_repair_fixes_the_gap_and_excludes_poison(tmp_path: Path, clinc_task, clinc_v1: dict, prod_logs: Path) -> None:
    ws = _workspace(tmp_path, clinc_task, clinc_v1, prod_logs)
    logs = [json.loads(line) for line in prod_logs.read_text().splitlines()]
    stats = ws.store.trace_stats(clinc_task.name)
    print(f"\nlogs: {stats}")
    assert stats["failures"] > 0 and stats["passes"] > 0
    run = repair.start(ws, clinc_task.name, approve=True, max_iterations=2, progress=print)
    s = run.summary
    print(json.dumps(s, indent=1))
    assert run.status == "promoted", s["verdict"]
    assert s["after"]["target"] > s["before"]["target"]
    assert s["new_regressions"] <= 2
    assert registry.resolve(ws.store, "production", clinc_task.name).name == s["candidate"]
    assert registry.resolve(ws.store, "previous", clinc_task.name).name == "v1"
    # Off-domain inputs with made-up corrections: most are caught ("how much is an overdraft fee"
    # is CLINC out-of-scope yet close to banking, so we don't demand all).
    by_text = {t.messages[-1]["content"]: t.id for t in ws.store.traces(clinc_task.name)}
    off = {by_text[r["messages"][-1]["content"]] for r in logs if "off_domain" in r["metadata"]["noise"]}
    caught = off & set(s["excluded_suspect"])
    assert len(caught) >= len(off) - 1
    train = [json.loads(line) for line in Path(run.report_path).with_name("iter-1").joinpath("train.jsonl").read_text().splitlines()]
    assert not caught & {it["id"] for it in train}
    # The held-out suites are never trained on.
    held = {json.loads(line)["id"] for name in ("target", "regression")
            for line in (Path(run.report_path).parent / "data" / f"{name}.jsonl").read_text().splitlines()}
    assert not held & {it["id"] for it in train}
