"""The refit's shrink chooses how much of the update to keep on what the update taught, never on replay."""

from __future__ import annotations

from kaizen.agent.shrink import MAX_TAUGHT, keeps, taught
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


def test_an_interpolation_must_keep_nearly_all_of_the_full_updates_score() -> None:
    assert keeps(1.0, 0.95) and not keeps(1.0, 0.94)
    assert keeps(0.5, 0.48) and not keeps(0.5, None)
