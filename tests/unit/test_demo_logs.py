"""The demo's log builder is deterministic and injects the noise it claims to."""

from __future__ import annotations

from collections import Counter

from kaizen.workflows.bench.clinc import load_slice, make_logs, rows, typo


def _model(texts: list[str]) -> list[str]:
    # A stand-in for the deployed model with a fixed, input-determined answer (the real builder runs v1).
    labels = load_slice()["labels"]
    return [labels[sum(map(ord, t)) % len(labels)] for t in texts]


def test_make_logs_is_deterministic_and_noisy() -> None:
    labels = load_slice()["labels"]
    pairs = rows("train", labels, per_label=20, seed=23)
    oos = [t for t, _ in load_slice()["oos"][:6]]
    a, key = make_logs(_model, labels, pairs, seed=29, off_domain=oos)
    b, key_b = make_logs(_model, labels, pairs, seed=29, off_domain=oos)
    assert (a, key) == (b, key_b)
    assert a != make_logs(_model, labels, pairs, seed=30, off_domain=oos)[0]
    assert [r["id"] for r in a] == [k["id"] for k in key] and len({r["id"] for r in a}) == len(a)
    assert all("metadata" not in r for r in a), "the truth goes to the answer key, never into the logs"
    noise = Counter(n for k in key for n in k["noise"])
    assert noise["off_domain"] == 6
    assert 0.05 * len(pairs) < noise["unlabeled"] < 0.2 * len(pairs)
    assert 0.03 * len(pairs) < noise["poisoned"] < 0.15 * len(pairs)
    assert 0.08 * len(pairs) < noise["typo"] < 0.25 * len(pairs)
    for rec, k, (text, gold) in zip(a, key, pairs, strict=False):
        fb = rec.get("feedback")
        assert k["label"] == gold
        if "poisoned" in k["noise"]:
            assert fb["verdict"] == "fail" and fb["correction"] != gold
        elif fb and fb["verdict"] == "fail":
            assert fb["correction"] == gold and rec["output"] != gold
        elif fb:
            assert rec["output"] == gold
        if "typo" in k["noise"]:
            assert rec["messages"][0]["content"] != text


def test_typo_changes_one_letter() -> None:
    import random

    rnd = random.Random(0)
    for text in ["what is my balance", "freeze my account please"]:
        t = typo(text, rnd)
        assert t != text and abs(len(t) - len(text)) <= 1
