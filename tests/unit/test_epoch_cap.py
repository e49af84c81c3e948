"""The SFT step budget: large training sets get fewer passes (never under one), small ones the plan's epochs."""

from __future__ import annotations

import pytest

from kaizen.agent.candidates import CPU_EPOCH_EXAMPLES, capped_epochs, epoch_cap
from kaizen.agent.state import Plan


@pytest.mark.parametrize(
    ("n", "epochs", "cap", "expected"),
    [
        (165, 3.0, 320, 3.0),  # the demo's refit: untouched
        (320, 3.0, 320, 3.0),  # at the cap: untouched
        (501, 3.0, 320, 1.92),  # the high-traffic refit: 3 × 320 / 501
        (640, 4.0, 320, 2.0),  # a plan's extra epoch still counts, in proportion
        (10_000, 3.0, 320, 1.0),  # never under one full pass: every failure is seen
        (10_000, 0.5, 320, 0.5),  # …nor more than the plan asked
        (10_000, 3.0, 0, 3.0),  # 0: never capped
        (10_000, 3.0, None, 3.0),
    ],
)
def test_capped_epochs(n: int, epochs: float, cap: int | None, expected: float) -> None:
    assert capped_epochs(n, epochs, cap) == pytest.approx(expected)


def test_steps_are_bounded_by_the_cap() -> None:
    """Above one pass, the examples trained on stay at epochs × cap however large the set."""
    for n in (400, 700, 900):
        assert capped_epochs(n, 3.0, 320) * n == pytest.approx(3 * 320, rel=0.01)


def test_default_cap_follows_the_device() -> None:
    plan = Plan(iteration=1)
    assert epoch_cap(plan, "cpu") == CPU_EPOCH_EXAMPLES
    assert epoch_cap(plan, "cuda") is None
    assert epoch_cap(Plan(iteration=1, epoch_examples=0), "cpu") == 0
    assert epoch_cap(Plan(iteration=1, epoch_examples=1000), "cuda") == 1000
    with pytest.raises(ValueError):
        Plan(iteration=1, epoch_examples=-1)


def test_a_repair_training_job_gets_the_capped_epochs(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """The rule is wired: the job ``train_candidate`` builds carries the capped epochs (and the plan's when the
    set is small), and the progress line says the budget bound."""
    from types import SimpleNamespace

    from kaizen.agent import candidates
    from kaizen.agent.context import RunContext
    from kaizen.tools.schema import EvalItem

    built: list[dict] = []
    monkeypatch.setattr(candidates, "build_job", lambda ws, task, items, **kw: built.append(kw) or kw)
    monkeypatch.setattr(candidates, "run_job", lambda job, progress: {"steps": 1})
    monkeypatch.setattr(candidates, "register_trained", lambda *a, **kw: SimpleNamespace(name=kw["name"]))
    task = SimpleNamespace(name="t", kind="classification")
    ws = SimpleNamespace(
        store=SimpleNamespace(get_task=lambda name: task),
        settings=SimpleNamespace(model=SimpleNamespace(device="cpu")),
    )
    said: list[str] = []
    ctx = RunContext(workspace=ws, brain=None, progress=said.append)  # type: ignore[arg-type]
    state = {"task": "t", "run_id": "abcdef123456", "artifacts": str(tmp_path)}
    item = EvalItem(id="x", messages=[{"role": "user", "content": "hi"}], expected="a")

    def train(n: int, step: str) -> float:
        """Epochs of the job ``train_candidate`` builds for ``n`` examples."""
        candidates.train_candidate(
            state,  # type: ignore[arg-type]
            ctx,
            [item] * n,
            step=step,
            start=SimpleNamespace(name="v1"),
            from_adapter=True,
            p=Plan(iteration=1),
            skill_version=None,
        )
        return built[-1]["epochs"]

    for n, epochs in ((100, 3.0), (640, 1.5)):
        assert train(n, "1") == pytest.approx(epochs)
    assert "1.5 epochs (3 over at most 320 examples a pass)" in said[-1]
    assert "(3 over" not in said[0]
    # model.device auto: the device the runner would pick, $KAIZEN_DEVICE included
    ws.settings.model.device = "auto"
    monkeypatch.setenv("KAIZEN_DEVICE", "cpu")
    assert train(640, "2") == pytest.approx(1.5)


def test_a_bad_plan_setting_is_refused_before_the_run_starts() -> None:
    """``kaizen repair --epoch-examples -1`` (or any first-plan setting out of the Plan's bounds) is a clear
    ConfigError from ``repair.start``, not a validation error inside the graph."""
    from kaizen.tools.errors import ConfigError
    from kaizen.workflows.repair.job import _check_plan_defaults

    _check_plan_defaults({"epoch_examples": 0, "kind": "grpo", "grpo_steps": 3})
    with pytest.raises(ConfigError, match="epoch_examples"):
        _check_plan_defaults({"epoch_examples": -1})
    with pytest.raises(ConfigError, match="grpo_steps"):
        _check_plan_defaults({"grpo_steps": 0})


def test_a_misspelt_plan_setting_is_refused_with_a_suggestion() -> None:
    """The Plan ignores keys it does not know (the LLM brain's proposals may carry extras), so a caller's
    ``plan_defaults={"epoch_example": 0}`` would otherwise vanish silently and the run train with the default."""
    from kaizen.tools.errors import ConfigError
    from kaizen.workflows.repair.job import _check_plan_defaults

    with pytest.raises(ConfigError, match=r"'epoch_example' \(did you mean 'epoch_examples'\?\)"):
        _check_plan_defaults({"epoch_example": 0})
    with pytest.raises(ConfigError, match="unknown plan setting 'zzz'"):
        _check_plan_defaults({"zzz": 1, "epochs": 2})
    with pytest.raises(ConfigError, match="unknown plan setting 'iteration'"):
        _check_plan_defaults({"iteration": 3})  # set by the loop, not by a caller
