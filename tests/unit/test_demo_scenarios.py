"""The demo's three-arm driver runs any scenario folder (``demo.py --data DIR``): the shipped demo's folder
describes itself as ``build_data.py`` would, and the weak-v1 scenario's data exists where it is read from."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from kaizen.workflows.bench.adaptft.scenarios import CLINC_FULL_PATH
from kaizen.workflows.bench.clinc import SYSTEM_PROMPT, load_slice

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem + "_under_test", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve their module's annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def test_the_demo_folder_describes_its_own_scenario() -> None:
    demo = _module(EXAMPLES / "support-intents" / "demo.py")
    sc = demo.Scenario.load(EXAMPLES / "support-intents" / "data")
    assert (sc.task, sc.labels, sc.system_prompt, sc.preset) == (
        "support-intents",
        load_slice()["labels"],
        SYSTEM_PROMPT,
        "demo",
    )


def test_a_folder_that_is_not_a_scenario_is_refused_by_name(tmp_path: Path) -> None:
    demo = _module(EXAMPLES / "support-intents" / "demo.py")
    with pytest.raises(SystemExit, match="scenario.json not found"):
        demo.Scenario.load(tmp_path)


@pytest.mark.skipif(not CLINC_FULL_PATH.exists(), reason="CLINC150 not in the shared data folder")
@pytest.mark.parametrize("domain", ["kitchen", "auto"])
def test_weak_v1_has_enough_clinc_data_for_every_role(domain: str) -> None:
    weak = _module(EXAMPLES / "weak-v1" / "build_data.py")
    labels = weak.DOMAINS[domain][2]
    data = weak.domain_slice(labels)
    assert len(labels) == 15 and set(data["labels"]) == set(labels)
    for lab in labels:
        assert sum(1 for _, x in data["train"] if x == lab) >= weak.PER_SEEN + weak.LOGS_PER_LABEL, lab
        assert sum(1 for _, x in data["test"] if x == lab) >= weak.GOLD_PER_LABEL, lab
    assert len(data["oos"]) >= 6


def test_the_summary_prints_every_arms_timing_shape(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Measured: an auto & commute run crashed after 25 minutes in the last print — the naive arm's phases
    were a bare number. Both shapes print; the agent's phases are listed."""
    demo = _module(EXAMPLES / "support-intents" / "demo.py")
    flips = {"newly_wrong": 1, "of_right": 10, "newly_right": 3}

    def arm(phases: object) -> dict:
        return {
            "gold": 0.9,
            "gain": 0.1,
            "promoted": True,
            "version": "v2",
            "gold_flips": flips,
            "path": [{"step": "1", "passed": True, "target": 0.5}],
            "seconds": {"repair": 12.0, "phases": phases},
        }

    phases = {"total": 9.0, "by_phase": {"train": 6.0, "evaluate": 3.0}, "by_step": {"1": 9.0}}
    summary = {
        "v1": 0.8,
        "n": 20,
        "seconds": 30.0,
        "captured": 1.0,
        "arms": {"agent": arm(phases), "naive": arm(215.1), "oracle": arm(None)},
    }
    demo.show(summary, tmp_path, "t")
    out = capsys.readouterr().out
    assert "agent time by step: 1 9s; by phase: train 6s, evaluate 3s" in out
    assert "naive time" not in out and "captured = (agent − v1) / (oracle − v1) = 1.0" in out
