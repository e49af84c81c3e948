"""Write this example's data from the CLINC150 banking slice (CC BY 3.0; Larson et al., EMNLP 2019).

``data/dataset.jsonl``: 12 labelled requests per intent from CLINC150's *train* split — the "local
data set" a user brings; kaizen carves its own held-out set out of it.
``data/gold_test.jsonl``: 10 per intent from CLINC150's *test* split — never shown to kaizen, used
by ``run.py`` to check the result on data from outside the cold start.
"""

from __future__ import annotations

from pathlib import Path

from kaizen.tools.data import write_items
from kaizen.workflows.bench.clinc import load_slice, rows, to_items

HERE = Path(__file__).resolve().parent


def main() -> None:
    labels = load_slice()["labels"]
    write_items(HERE / "data" / "dataset.jsonl", to_items(rows("train", labels, per_label=12, seed=11)))
    write_items(HERE / "data" / "gold_test.jsonl", to_items(rows("test", labels, per_label=10, seed=11)))


if __name__ == "__main__":
    main()
