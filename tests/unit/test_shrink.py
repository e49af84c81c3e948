"""The refit's shrink chooses how much of the update to keep on what the update taught, never on replay."""

from __future__ import annotations

from kaizen.agent.shrink import MAX_LOSS, MAX_TAUGHT, keeps, right_share, taught
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


def test_the_fix_loss_allowed_scales_with_productions_right_share() -> None:
    # all traffic right: 5 % of the taught score may go; a mostly-wrong production: almost none
    assert keeps(1.0, 0.95, MAX_LOSS * 1.0) and not keeps(1.0, 0.94, MAX_LOSS * 1.0)
    assert not keeps(1.0, 0.99, MAX_LOSS * 0.1) and keeps(1.0, 0.996, MAX_LOSS * 0.1)
    assert not keeps(0.5, None, 1.0)
    # the three scenarios measured (README): strong v1, the demo, a weak v1
    assert right_share(116, 99, 69) > 0.75 and 0.65 < right_share(107, 71, 24) < 0.75
    assert right_share(30, 199, 38) < 0.2 and right_share(5, 3, 10) == 1.0
