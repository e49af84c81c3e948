"""Feedback for tasks that are not classification: an extraction correction is a JSON object (logged as text or
as the object itself), a malformed one is distrusted with its reason instead of crashing a repair, and the
data roles of an extraction repair are built (found by a probe: every extraction repair died on its first
target item, `expected: must be a JSON object of fields … got str`)."""

from __future__ import annotations

import json

import pytest
from banking_traces import trace

from kaizen.agent.rule_brain import RuleBrain
from kaizen.tools.data import expected_from_feedback
from kaizen.tools.datasets.splits import build_splits, trace_item
from kaizen.tools.errors import DataError
from kaizen.tools.schema import Feedback, TaskSpec, TraceIn

EXTRACT = TaskSpec(name="trips", kind="extraction", system_prompt="Extract name and city as JSON.")
NAMES = ["ann", "bob", "cem", "dia", "eli", "fay"]
CITIES = ["paris", "rome", "oslo", "lima"]


def _logs() -> list:
    out = []
    for i in range(36):
        n, c = NAMES[i % 6], CITIES[i % 4]
        gold = json.dumps({"name": n, "city": c})
        if i % 3 == 0:
            out.append(trace(f"p{i}", f"{n} flying to {c}", gold))
        else:
            out.append(trace(f"f{i}", f"{n} off to {c} soon", json.dumps({"name": n}), "fail", gold))
    out.append(trace("bad-json", "ann to rome", '{"name": "ann"}', "fail", "{not json"))
    out.append(trace("bad-list", "bob to oslo", '{"name": "bob"}', "fail", '["bob", "oslo"]'))
    out.append(trace("bad-pass", "cem to lima", "cem, lima", "pass"))
    return out


@pytest.mark.parametrize(
    ("kind", "text", "expected", "problem"),
    [
        ("extraction", '{"a": 1}', {"a": 1}, None),
        ("extraction", "{oops", None, "not JSON"),
        ("extraction", "  ", None, "empty"),
        ("code", '{"tests": "assert f(1) == 2"}', {"tests": "assert f(1) == 2"}, None),
        ("code", "def f(x): return x + 1", None, "not JSON"),
        ("math", " 42 ", "42", None),
        ("generation", "a reference", "a reference", None),
    ],
)
def test_expected_from_feedback_per_task_kind(
    kind: str, text: str, expected: object, problem: str | None
) -> None:
    got, why = expected_from_feedback(TaskSpec(name="t", kind=kind), text)  # type: ignore[arg-type]
    assert got == expected
    assert (why is None) if problem is None else (problem in str(why))


def test_a_correction_logged_as_an_object_is_stored_as_its_json_text() -> None:
    fb = Feedback.model_validate({"verdict": "fail", "correction": {"name": "ann", "city": "oslo"}})
    assert json.loads(str(fb.correction)) == {"name": "ann", "city": "oslo"}
    t = TraceIn.model_validate(
        {"messages": [{"role": "user", "content": "x"}], "output": "{}", "feedback": fb.model_dump()}
    )
    assert t.feedback is not None and t.feedback.correction == fb.correction


def test_malformed_answers_are_distrusted_with_their_reason_and_the_rest_is_trusted() -> None:
    diag = RuleBrain().diagnose(EXTRACT, _logs())
    flags = {s.trace_id: s for s in diag.suspects}
    assert (
        flags["bad-json"].kind == "correction_malformed"
        and "not JSON" in flags["bad-json"].evidence["problem"]
    )
    assert flags["bad-list"].kind == "correction_malformed"
    assert flags["bad-pass"].kind == "passing_output_malformed"
    assert not {i for i in flags if i.startswith(("f", "p"))}  # good JSON feedback is not distrusted


def test_an_extraction_repairs_roles_hold_json_objects_and_never_a_distrusted_trace() -> None:
    traces = _logs()
    diag = RuleBrain().diagnose(EXTRACT, traces)
    clusters = {k.key: k.trace_ids for k in diag.clusters if k.fixable}
    splits = build_splits(EXTRACT, traces, excluded=diag.suspect_ids, clusters=clusters)
    roles = splits.roles()
    assert roles["target"] and roles["regression"]
    every = [it for items in roles.values() for it in items]
    assert all(isinstance(it.expected, dict) for it in every)
    assert not {it.id for it in every} & {"bad-json", "bad-list", "bad-pass"}


def test_an_unusable_answer_that_reaches_the_data_roles_is_a_clear_error() -> None:
    with pytest.raises(DataError, match=r"trace bad-json: .*extraction task \(not JSON"):
        trace_item(EXTRACT, _logs()[-3], "trace", "x")


def test_a_pass_on_an_empty_reply_is_distrusted_for_classification_too() -> None:
    from banking_traces import TASK, passing

    traces = [*passing(4), trace("empty", "what is my balance", " ", "pass")]
    flags = {s.trace_id: s.kind for s in RuleBrain().diagnose(TASK, traces).suspects}
    assert flags["empty"] == "passing_output_malformed"


def test_an_unlabelled_trace_with_an_inferred_label_becomes_an_item() -> None:
    from kaizen.tools.datasets.splits import inferred_item

    it = inferred_item(EXTRACT, trace("u", "ann to rome", "{}", None), "balance", "pseudo_label")
    assert it.expected == "balance" and it.metadata["provenance"] == "inferred"


def test_an_extraction_correction_naming_what_the_input_never_mentions_is_distrusted() -> None:
    """A poisoned correction moves ``city`` to a city the request does not contain; ``trip`` is a category
    (never a span), so its values are not checked, and a correction that keeps to the input stays trusted."""
    logs = []
    for i in range(30):
        n, c = NAMES[i % 6], CITIES[i % 4]
        gold = {"name": n, "city": c, "trip": "leisure"}
        if i in (4, 11, 17):
            gold["city"] = CITIES[(i + 1) % 4]  # poisoned: another city
        logs.append(trace(f"f{i}", f"{n} off to {c} soon", json.dumps({"name": n}), "fail", json.dumps(gold)))
    logs.append(
        trace("pass-made-up", "eli off to rome", '{"name": "eli", "city": "lima", "trip": "x"}', "pass")
    )
    flags = {s.trace_id: s for s in RuleBrain().diagnose(EXTRACT, logs).suspects}
    assert set(flags) == {"f4", "f11", "f17", "pass-made-up"}
    ev = flags["f4"].evidence
    assert flags["f4"].kind == "field_not_in_input" and ev["fields"]["city"]["value"] == CITIES[1]
    assert ev["verdict"] == "fail" and 0.8 <= ev["fields"]["city"]["share"] < 1
    assert ev["fields"]["city"]["rivals"] == [CITIES[0]]  # the city the input does name
    assert flags["pass-made-up"].evidence["verdict"] == "pass"


def test_a_field_that_is_rarely_a_span_is_never_checked() -> None:
    """A normalised field (a date written differently from how the request says it) is not extractive:
    none of its corrections is distrusted for being absent from the input."""
    logs = [
        trace(
            f"f{i}",
            f"{NAMES[i % 6]} on the {i + 1}th",
            "{}",
            "fail",
            json.dumps({"day": f"2026-12-{i + 1:02d}"}),
        )
        for i in range(12)
    ]
    assert not RuleBrain().diagnose(EXTRACT, logs).suspects


def test_under_heavy_poison_a_rival_value_in_the_input_still_gives_a_correction_away() -> None:
    """Half the cities poisoned: no field reads as extractive any more, but each poisoned input still names
    the city other feedback gives (a rival), so every poisoned correction is flagged and no clean one."""
    logs = []
    for i in range(24):
        n, c = NAMES[i % 6], CITIES[(i // 2) % 4]  # every city clean once, poisoned once
        city = CITIES[(i // 2 + 1) % 4] if i % 2 else c
        gold = json.dumps({"name": n, "city": city})
        logs.append(trace(f"f{i}", f"{n} off to {c} soon", json.dumps({"name": n}), "fail", gold))
    flags = {s.trace_id: s for s in RuleBrain().diagnose(EXTRACT, logs).suspects}
    assert set(flags) == {f"f{i}" for i in range(1, 24, 2)}
    assert flags["f1"].evidence["fields"]["city"]["share"] == 0.5


def test_the_report_says_which_value_the_input_never_mentions() -> None:
    from kaizen.workflows.report.process import _evidence_summary

    ev = {"verdict": "fail", "fields": {"city": {"value": "oslo", "share": 0.9, "rivals": ["paris"]}}}
    text = _evidence_summary("field_not_in_input", ev)
    assert "city='oslo'" in text and "'paris'" in text and "90%" in text and text.startswith("the correction")
