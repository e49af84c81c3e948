"""Where a repair's training starts: the incumbent's adapter, or the base with accumulated data."""

from __future__ import annotations

from pathlib import Path

from kaizen.agent.policy import continues_incumbent, holds_full_data
from kaizen.agent.state import Plan
from kaizen.tools.store.tables import ModelVersionRow


def _v(
    tmp_path: Path, *, adapter: bool = True, full: bool = False, data_exists: bool = True
) -> ModelVersionRow:
    data = tmp_path / "train.jsonl"
    if data_exists:
        data.write_text("{}\n")
    recipe = {"train_items_path": str(data), "holds_full_data": full} if full or data_exists else {}
    return ModelVersionRow(
        name="v",
        kind="adapter" if adapter else "base",
        base_ref="base",
        adapter_path=str(tmp_path / "a") if adapter else None,
        recipe=recipe,
    )


def test_external_adapter_is_continued(tmp_path: Path) -> None:
    v = ModelVersionRow(
        name="v1", kind="adapter", base_ref="base", adapter_path="/x", recipe={"source": "external"}
    )
    assert not holds_full_data(v)
    assert continues_incumbent(Plan(iteration=1), v)


def test_kaizen_trained_from_base_is_retrained_on_accumulated_data(tmp_path: Path) -> None:
    v = _v(tmp_path, full=True)
    assert holds_full_data(v)
    assert not continues_incumbent(Plan(iteration=1), v)
    assert continues_incumbent(Plan(iteration=1, start="incumbent"), v)  # configurable


def test_lost_data_falls_back_to_continuing(tmp_path: Path) -> None:
    v = _v(tmp_path, full=True, data_exists=False)
    (tmp_path / "train.jsonl").unlink(missing_ok=True)
    assert not holds_full_data(v)
    assert continues_incumbent(Plan(iteration=1), v)


def test_base_incumbent_gets_a_fresh_adapter(tmp_path: Path) -> None:
    v = _v(tmp_path, adapter=False)
    assert not continues_incumbent(Plan(iteration=1, start="incumbent"), v)
