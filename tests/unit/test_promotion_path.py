"""One promotion path: every promote and rollback goes through ``kaizen.tools.serve.hotswap``, which
hot-swaps the task's live ``kaizen serve`` first and moves the registry alias after.

* Statically: no module of ``agent/``, ``workflows/`` or ``tools/`` (other than the registry itself and
  hotswap) calls ``registry.promote``/``registry.rollback`` or writes the ``production``/``previous``
  aliases with ``set_aliases`` — such a call would leave a running server answering with the old version.
* Behaviourally: a cold start's approved promotion and the naive strategy's promotion switch a live
  server (the serving proxy in front of the stub vLLM of ``test_serve_proxy``), and a swap the server
  refuses leaves the registry and the run as they were.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from test_serve_proxy import _record, chat, env, fake_adapter  # noqa: F401 - env is the live-server fixture

from kaizen.tools.serve.hotswap import ServingError
from kaizen.tools.store.tables import ModelVersionRow, RunRow
from kaizen.tools.workspace import find_workspace

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {"tools/registry.py", "tools/serve/hotswap.py"}  # the alias mover and the one path that calls it
MOVES = {"promote", "rollback"}
SERVED_ALIASES = {"production", "previous"}


def direct_alias_moves(path: Path) -> list[str]:
    """``line: call`` for every promote/rollback that bypasses the hot swap in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    modules, functions = (
        {"registry"},
        set(),
    )  # names bound to kaizen.tools.registry / to its promote, rollback
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "kaizen.tools":
            modules |= {a.asname or a.name for a in node.names if a.name == "registry"}
        elif isinstance(node, ast.ImportFrom) and node.module == "kaizen.tools.registry":
            functions |= {a.asname or a.name for a in node.names if a.name in MOVES}
        elif isinstance(node, ast.Import):
            modules |= {a.asname for a in node.names if a.name == "kaizen.tools.registry" and a.asname}
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in functions:
            bad.append(f"{node.lineno}: {f.id}(…)")
        elif isinstance(f, ast.Attribute) and f.attr in MOVES:
            target = ast.unparse(f.value)
            if target in modules or target.endswith("kaizen.tools.registry"):
                bad.append(f"{node.lineno}: {target}.{f.attr}(…)")
        elif isinstance(f, ast.Attribute) and f.attr == "set_aliases":
            keys = {
                k.value
                for a in node.args
                if isinstance(a, ast.Dict)
                for k in a.keys
                if isinstance(k, ast.Constant)
            }
            if keys & SERVED_ALIASES:
                bad.append(f"{node.lineno}: set_aliases({sorted(keys & SERVED_ALIASES)})")
    return bad


def test_no_workflow_or_agent_moves_production_around_the_hot_swap() -> None:
    bad = [
        f"{p.relative_to(ROOT)}:{b}"
        for d in ("agent", "workflows", "tools")
        for p in sorted((ROOT / d).rglob("*.py"))
        if str(p.relative_to(ROOT)) not in ALLOWED
        for b in direct_alias_moves(p)
    ]
    assert not bad, (
        "promote/rollback through kaizen.tools.serve.hotswap.promote_and_swap / rollback_and_swap, so a running "
        "`kaizen serve` switches first:\n" + "\n".join(bad)
    )


@pytest.mark.parametrize(
    "code",
    [
        "from kaizen.tools import registry\nregistry.promote(store, 't', 'v2')",
        "from kaizen.tools import registry as reg\nreg.rollback(store, 't')",
        "from kaizen.tools.registry import promote\npromote(store, 't', 'v2')",
        "import kaizen.tools.registry\nkaizen.tools.registry.promote(store, 't', 'v2')",
        "ws.store.set_aliases('t', {'production': ('v2', None)}, action='promote')",
    ],
)
def test_the_check_finds_a_direct_promotion(tmp_path: Path, code: str) -> None:
    f = tmp_path / "x.py"
    f.write_text(code + "\n")
    assert direct_alias_moves(f)
    f.write_text(
        "ws.store.set_aliases('t', {'candidate': ('v2', None)}, action='set')\nregistry.resolve(store, 'production', 't')\n"
    )
    assert not direct_alias_moves(f)


def _cold_start_waiting(ws: Any, version: str) -> str:
    ws.store.save_run(
        RunRow(
            id="cs1",
            task="intents",
            workflow="cold-start",
            status="awaiting_approval",
            thread_id="cs1",
            summary={"best": {"version": version}},
        )
    )
    return "cs1"


def test_an_approved_cold_start_hot_swaps_the_live_server(env) -> None:  # noqa: F811 - the imported fixture
    from kaizen.workflows.cold_start.job import decide_approval

    _record(env)
    ws = find_workspace(env["tmp"] / "ws")
    run = decide_approval(ws, _cold_start_waiting(ws, "v2"), True, "tester")
    assert run.status == "promoted" and ws.store.get_alias("intents", "production").model_version == "v2"
    assert env["proxy"].production.version == "v2" and env["stub"].loaded == {"v2"}
    assert chat(env["url"], "x")[1]["choices"][0]["message"]["content"].startswith("v2|")


def test_a_refused_swap_leaves_the_cold_start_waiting_and_production_alone(env) -> None:  # noqa: F811
    from kaizen.workflows.cold_start.job import decide_approval

    _record(env)
    ws = find_workspace(env["tmp"] / "ws")
    with pytest.raises(ServingError, match="No adapter found"):
        decide_approval(ws, _cold_start_waiting(ws, "broken"), True, "tester")
    assert ws.store.get_run("cs1").status == "awaiting_approval"
    assert (
        ws.store.get_alias("intents", "production").model_version == "v1"
        and env["proxy"].production.version == "v1"
    )


def test_the_naive_strategy_promotes_through_the_hot_swap(env, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Training and evaluation are stand-ins here (the naive run trains for real in the integration tests);
    what is checked is its promotion step, against a live server."""
    from kaizen.workflows.repair import naive

    _record(env)
    ws = find_workspace(env["tmp"] / "ws")

    def register(
        ws: Any, task: Any, job: Any, result: Any, *, name: str, parent: Any, items: Any
    ) -> ModelVersionRow:
        return ws.store.add_model_version(
            ModelVersionRow(
                name=name,
                kind="adapter",
                base_ref="base",
                parent=parent.name,
                task=task.name,
                adapter_path=str(fake_adapter(env["tmp"] / "adapters", name)),
            )
        )

    monkeypatch.setattr(naive, "build_job", lambda *a, **k: None)
    monkeypatch.setattr(naive, "run_job", lambda *a, **k: {"train_tokens": 0})
    monkeypatch.setattr(naive, "register_trained", register)
    monkeypatch.setattr(naive, "make_backend", lambda *a, **k: None)
    run = naive.run_naive(ws, "intents")
    cand = run.summary["candidate"]
    assert run.status == "promoted" and ws.store.get_alias("intents", "production").model_version == cand
    assert env["proxy"].production.version == cand and env["stub"].loaded == {cand}
