"""The refit's shrink chooses how much of the update to keep on what the update taught, never on replay."""

from __future__ import annotations

from kaizen.agent.shrink import MAX_TAUGHT, choose, taught
from kaizen.tools.schema import EvalItem


def item(i: int, provenance: str) -> EvalItem:
    return EvalItem(
        id=f"x{i}",
        messages=[{"role": "user", "content": f"q{i}"}],
        expected="a",
        metadata={"provenance": provenance},
    )


def test_taught_examples_are_everything_but_the_replayed_passes_and_bounded() -> None:
    items = [item(i, p) for i, p in enumerate(["trace", "replay", "inferred", "replay", "prior"])]
    assert [it.id for it in taught(items)] == ["x0", "x2", "x4"]
    many = [item(i, "trace") for i in range(MAX_TAUGHT + 50)]
    assert len(taught(many)) == MAX_TAUGHT and taught(many) == taught(many)  # a seeded sample


def test_the_best_fit_of_what_was_taught_wins_and_the_smaller_step_on_a_tie() -> None:
    assert choose({1.0: 0.97, 0.75: 0.91, 0.5: 0.64}) == 1.0  # the demo: the fix needs the whole update
    assert choose({1.0: 0.925, 0.75: 0.943, 0.5: 0.906}) == 0.75  # an update that overshot
    assert choose({1.0: 0.9, 0.75: 0.9, 0.5: 0.9}) == 0.5  # nothing lost: the smallest step
    assert choose({1.0: None, 0.75: None}) == 1.0 and choose({}) == 1.0  # nothing measured: keep it
