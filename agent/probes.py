"""Probes: confirm a diagnosed weakness on the incumbent before training against it.

A hypothesis such as "the model answers ``transfer`` where ``card_declined`` is right" predicts that
*new* inputs of the same kind fail too. The brain writes a few; the incumbent answers them; a
cluster is ``confirmed`` when most of its probes fail as predicted. A cluster whose probes pass
is still trained on (its real failures are real), but the report shows the hypothesis was wrong.
"""

from __future__ import annotations

from typing import Any

from kaizen.agent.state import Diagnosis, FailureCluster
from kaizen.tools.evaluate.metrics import normalize_label
from kaizen.tools.schema import TaskSpec, render


def expected_label(task: TaskSpec, cluster: FailureCluster) -> str | None:
    """The right answer the cluster's probes should get (the gold side of ``gold ← predicted``)."""
    if cluster.kind in ("confusion", "off_label", "format") and task.labels:
        return normalize_label(cluster.key.split(" ← ", 1)[0], task.labels)
    return None


def run_probes(task: TaskSpec, diag: Diagnosis, backend: Any) -> int:
    """Answer every cluster's probes with ``backend`` (the incumbent); fills results in place.

    Returns the number of probes run.
    """
    todo = [(c, p) for c in diag.clusters if c.probes and expected_label(task, c) for p in c.probes]
    if not todo:
        return 0
    outputs = backend.generate(
        [render(task, None, [{"role": "user", "content": p}]) for _, p in todo], max_new_tokens=12
    )
    for (c, probe), out in zip(todo, outputs, strict=True):
        gold = expected_label(task, c)
        failed = normalize_label(out, task.labels) != gold
        c.probe_results.append({"input": probe, "output": out, "expected": gold, "failed": failed})
    for c in diag.clusters:
        if c.probe_results:
            c.confirmed = sum(r["failed"] for r in c.probe_results) * 2 > len(c.probe_results)
    return len(todo)
