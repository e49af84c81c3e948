"""GRPO reward functions, in the signature TRL's ``GRPOTrainer`` calls them with.

TRL calls each reward as ``f(prompts=..., completions=..., completion_ids=..., **columns)``, where
``columns`` are the dataset's other columns (here ``expected`` and, for classification,
``labels``), each a list with one entry per completion. A completion is a string (standard
format) or a list of messages (conversational format: ``[{"role": "assistant", "content": ...}]``).
Every function returns one float per completion, in [0, 1].

The rewards reuse the evaluation helpers of ``kaizen.tools.evaluate.metrics``, so what is rewarded in
training is what is scored in evaluation. Look a reward up by name with ``get_reward``; the verifier of
each task kind is ``rewards_for_kind(kind)``:

=============== ================================== ==============================================
kind            reward(s)                          verifier
=============== ================================== ==============================================
classification  ``label_exact_match``              the label (``normalize_label``)
math            ``math_final_answer``              the final answer (``extract_final_answer``)
extraction      ``json_schema_match``,             JSON shape (schema column, or the expected
                ``json_field_match``               object's keys and types); field-level F1
code            ``code_unit_tests``                the row's asserts, run in a sandboxed
                                                   subprocess: timeout, rlimits, no network
generation      ``token_f1``                       none (a similarity, not a verifier)
=============== ================================== ==============================================
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from kaizen.tools.errors import ConfigError
from kaizen.tools.evaluate.metrics import (
    extract_code,
    extract_final_answer,
    extraction_metrics,
    normalize_label,
    parse_json_object,
    run_python_sandboxed,
)

_WORD_RE = re.compile(r"[^\W_]+")
_WHOLE_FENCE_RE = re.compile(r"\A```[ \t]*(?:json)?[ \t]*\n(.*)\n?```\Z", re.DOTALL | re.IGNORECASE)


def completion_text(completion: Any) -> str:
    """The text of one completion, in either of TRL's formats.

    Args:
        completion: A string, a message dict, or a list of messages (the last assistant
            message counts; failing that, the last message).

    Returns:
        The completion's text (``""`` when there is none).

    Examples:
        >>> completion_text("billing")
        'billing'
        >>> completion_text([{"role": "assistant", "content": "refund"}])
        'refund'
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    msgs = [m for m in completion if isinstance(m, dict)]
    for m in reversed(msgs):
        if m.get("role") == "assistant":
            return str(m.get("content") or "")
    return str(msgs[-1].get("content") or "") if msgs else ""


def _labels_for(labels: Any, i: int) -> list[str] | None:
    """The label set of example ``i``: ``labels`` is one set for all or a per-row column of sets."""
    if not labels:
        return None
    if isinstance(labels[0], (list, tuple)):
        row = labels[i] if i < len(labels) else None
        return list(row) if row else None
    return list(labels)


def label_exact_match(completions: list[Any], expected: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the completion is the expected label, else 0.0.

    With a ``labels`` column (or one shared label list) the completion is read with
    ``normalize_label``, so ``"Label: Card declined."`` earns the reward for ``card_declined``;
    without one, stripped case-insensitive equality is required.

    Args:
        completions: Completions, strings or conversational.
        expected: Gold labels, one per completion.
        **kwargs: Other dataset columns; ``labels`` is used when present.

    Returns:
        One reward per completion.

    Examples:
        >>> label_exact_match(["Billing", " refund ", "shipping"], ["billing", "refund", "refund"])
        [1.0, 1.0, 0.0]
        >>> label_exact_match([[{"role": "assistant", "content": "Label: card declined."}]],
        ...                   ["card_declined"], labels=[["billing", "card_declined"]])
        [1.0]
    """
    labels = kwargs.get("labels")
    rewards: list[float] = []
    for i, (comp, gold) in enumerate(zip(completions, expected, strict=True)):
        text, gold_s = completion_text(comp), str(gold)
        label_set = _labels_for(labels, i)
        if label_set:
            pred = normalize_label(text, label_set)
            ok = pred is not None and pred == (normalize_label(gold_s, label_set) or gold_s)
        else:
            ok = text.strip().casefold() == gold_s.strip().casefold()
        rewards.append(1.0 if ok else 0.0)
    return rewards


def json_format(completions: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the whole completion is one JSON object (a surrounding ```json fence is allowed).

    Text around the object earns nothing: the reward teaches the output format itself.

    Args:
        completions: Completions, strings or conversational.
        **kwargs: Dataset columns (ignored).

    Returns:
        One reward per completion.

    Examples:
        >>> json_format(['{"name": "Ann"}', '```json\\n{"a": 1}\\n```', 'Sure! {"a": 1}', '[1, 2]'])
        [1.0, 1.0, 0.0, 0.0]
    """
    rewards: list[float] = []
    for comp in completions:
        text = completion_text(comp).strip()
        fenced = _WHOLE_FENCE_RE.match(text)
        if fenced:
            text = fenced.group(1).strip()
        try:
            ok = isinstance(json.loads(text), dict)
        except (ValueError, RecursionError):
            ok = False
        rewards.append(1.0 if ok else 0.0)
    return rewards


def math_final_answer(completions: list[Any], expected: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the completion's final answer equals the expected one (``extract_final_answer``).

    Args:
        completions: Completions, strings or conversational.
        expected: GSM8K-style answers (``... #### 72``) or bare numbers.
        **kwargs: Other dataset columns (ignored).

    Returns:
        One reward per completion.

    Examples:
        >>> math_final_answer(["3 * 24 = 72\\n#### 72", "It costs $1,200.00", "#### 71"],
        ...                   ["#### 72", 1200, "72"])
        [1.0, 1.0, 0.0]
    """
    rewards: list[float] = []
    for comp, gold in zip(completions, expected, strict=True):
        pred, want = extract_final_answer(completion_text(comp)), extract_final_answer(str(gold))
        rewards.append(1.0 if pred is not None and pred == want else 0.0)
    return rewards


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text.casefold())


def token_f1(completions: list[Any], expected: list[Any], **kwargs: Any) -> list[float]:
    """Bag-of-words F1 between the completion and the expected text (case-insensitive).

    Words are runs of letters and digits; repeated words count as often as they occur in both.
    Two empty texts score 1.0.

    Args:
        completions: Completions, strings or conversational.
        expected: Reference texts.
        **kwargs: Other dataset columns (ignored).

    Returns:
        One reward per completion.

    Examples:
        >>> token_f1(["the cat sat", "", "dog"], ["The cat sat down", "", "cat"])
        [0.8571428571428571, 1.0, 0.0]
    """
    rewards: list[float] = []
    for comp, gold in zip(completions, expected, strict=True):
        pred, ref = Counter(_words(completion_text(comp))), Counter(_words(str(gold)))
        if not pred and not ref:
            rewards.append(1.0)
            continue
        overlap = sum((pred & ref).values())
        if overlap == 0:
            rewards.append(0.0)
            continue
        precision, recall = overlap / sum(pred.values()), overlap / sum(ref.values())
        rewards.append(2 * precision * recall / (precision + recall))
    return rewards


# --------------------------------------------------------------------------------------------
# extraction: JSON shape and fields
# --------------------------------------------------------------------------------------------

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _json_type_ok(value: Any, want: str | list[str]) -> bool:
    wants = [want] if isinstance(want, str) else list(want)
    for w in wants:
        types = _JSON_TYPES.get(w)
        if types is None:
            continue
        if isinstance(value, bool) and w in ("integer", "number"):
            continue  # JSON booleans are not numbers
        if w == "integer" and isinstance(value, float):
            if value.is_integer():
                return True  # JSON has one number type: 1.0 is an integer
            continue
        if isinstance(value, types):
            return True
    return False


def schema_errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Where ``value`` breaks ``schema`` — the JSON Schema subset extraction tasks use.

    Checked: ``type`` (a name or a list), ``enum``, ``const``, ``required``, ``properties``,
    ``additionalProperties: false`` and ``items``. Other keywords are ignored (never a false failure).

    Args:
        value: A parsed JSON value.
        schema: A JSON Schema (the subset above).
        path: Where ``value`` sits (for the messages).

    Returns:
        One message per violation; empty when ``value`` conforms.

    Examples:
        >>> s = {"type": "object", "required": ["name", "age"],
        ...      "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}
        >>> schema_errors({"name": "Ann", "age": 3}, s)
        []
        >>> schema_errors({"name": "Ann", "age": "3"}, s)
        ['$.age: expected integer, got str']
        >>> schema_errors({"age": 3}, s)
        ['$: missing required field name']
    """
    errors: list[str] = []
    if "type" in schema and not _json_type_ok(value, schema["type"]):
        return [
            f"{path}: expected {schema['type'] if isinstance(schema['type'], str) else ' or '.join(schema['type'])}, "
            f"got {type(value).__name__}"
        ]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']!r}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: expected {schema['const']!r}")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        errors += [
            f"{path}: missing required field {k}" for k in schema.get("required") or [] if k not in value
        ]
        for k, v in value.items():
            if k in props:
                errors += schema_errors(v, props[k], f"{path}.{k}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: unexpected field {k}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            errors += schema_errors(v, schema["items"], f"{path}[{i}]")
    return errors


def schema_of(example: Any) -> dict[str, Any]:
    """A JSON Schema that an object shaped like ``example`` satisfies: same keys (all required), same
    JSON types (an integer field also accepts a whole float; a null field accepts anything).

    Examples:
        >>> schema_of({"name": "Ann", "tags": ["a"], "age": 3})["properties"]["age"]
        {'type': 'number'}
        >>> sorted(schema_of({"name": "Ann", "age": 3})["required"])
        ['age', 'name']
    """
    if isinstance(example, bool):
        return {"type": "boolean"}
    if isinstance(example, (int, float)):
        return {"type": "number"}
    if isinstance(example, str):
        return {"type": "string"}
    if isinstance(example, list):
        return {"type": "array"}
    if isinstance(example, dict):
        return {
            "type": "object",
            "required": list(example),
            "properties": {k: schema_of(v) for k, v in example.items()},
        }
    return {}


def _row(column: Any, i: int) -> Any:
    """Entry ``i`` of a per-completion dataset column (``None`` when the column is absent)."""
    if not column or i >= len(column):
        return None
    return column[i]


def json_schema_match(completions: list[Any], expected: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the completion holds a JSON object that satisfies the row's schema, else 0.0.

    The schema is the row's ``schema`` column (a JSON Schema, see ``schema_errors``) when the data
    has one, else ``schema_of(expected)``: the expected object's keys, all required, with their JSON
    types. The object may sit in a ```json fence or after a preamble (``parse_json_object``, as in
    evaluation); whether the values are *right* is ``json_field_match``'s job.

    Args:
        completions: Completions, strings or conversational.
        expected: Gold objects, one per completion.
        **kwargs: Other dataset columns; ``schema`` is used when present.

    Returns:
        One reward per completion.

    Examples:
        >>> json_schema_match(['{"name": "Ann", "age": 3}', '{"name": "Ann"}', 'Ann, 3'],
        ...                   [{"name": "Bo", "age": 40}] * 3)
        [1.0, 0.0, 0.0]
        >>> json_schema_match(['{"city": "Oslo"}'], [{}],
        ...                   schema=[{"type": "object", "required": ["city"], "additionalProperties": False,
        ...                            "properties": {"city": {"type": "string"}}}])
        [1.0]
    """
    schemas = kwargs.get("schema")
    rewards: list[float] = []
    for i, (comp, gold) in enumerate(zip(completions, expected, strict=True)):
        schema = _row(schemas, i) or schema_of(gold)
        obj = parse_json_object(completion_text(comp))
        rewards.append(1.0 if obj is not None and not schema_errors(obj, schema) else 0.0)
    return rewards


def json_field_match(completions: list[Any], expected: list[Any], **kwargs: Any) -> list[float]:
    """Field-level F1 of the completion's JSON object against the expected one (partial credit).

    Exactly evaluation's ``field_f1`` for one example (``extraction_metrics``): a field is a unit, a
    list field one unit per item; values compare after normalisation (case, whitespace, 5 == "5").
    Invalid JSON scores 0.0.

    Args:
        completions: Completions, strings or conversational.
        expected: Gold objects, one per completion.
        **kwargs: Other dataset columns (ignored).

    Returns:
        One reward per completion, in [0, 1].

    Examples:
        >>> json_field_match(['{"name": "ann", "age": "3"}', '{"name": "Ann", "age": 4}', 'no'],
        ...                  [{"name": "Ann", "age": 3}] * 3)
        [1.0, 0.5, 0.0]
    """
    rewards: list[float] = []
    for comp, gold in zip(completions, expected, strict=True):
        gold_obj = gold if isinstance(gold, dict) else parse_json_object(str(gold)) or {}
        rewards.append(float(extraction_metrics([completion_text(comp)], [gold_obj])["field_f1"]))
    return rewards


# --------------------------------------------------------------------------------------------
# code: unit tests in a sandbox
# --------------------------------------------------------------------------------------------

CODE_TIMEOUT_S = 5.0
"""Wall-clock limit per program (a row's ``expected["timeout_s"]`` overrides it)."""

# Installed first in the child: an audit hook (PEP 578) cannot be removed by the code that follows.
# It refuses sockets (so no network, even via _socket), new processes (no curl/ssh through a shell)
# and ctypes (the way around an audit hook). The child is also run by run_python_sandboxed: a
# throwaway directory, ``python -I``, an environment of PATH only, rlimits, a killed process group.
_NO_NETWORK_GUARD = """\
def __kaizen_guard():
    import sys
    blocked = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
               "os.forkpty", "pty.", "ctypes.", "winreg.", "_winapi.")
    def hook(event, args):
        if event.startswith(blocked):
            raise PermissionError(f"kaizen sandbox: {event} is not allowed (no network, no processes)")
    sys.addaudithook(hook)
__kaizen_guard()
del __kaizen_guard
"""
_FUTURE_RE = re.compile(r"^from\s+__future__\s+import[^\n]*\n?", re.MULTILINE)


def sandboxed_source(program: str, tests: str) -> str:
    """The script ``code_unit_tests`` runs: the no-network guard, the program, then its tests.

    ``from __future__`` lines of the program move to the top (Python requires them first).

    Examples:
        >>> src = sandboxed_source("from __future__ import annotations\\ndef f(): return 1", "assert f() == 1")
        >>> src.splitlines()[0], "addaudithook" in src, src.rstrip().endswith("assert f() == 1")
        ('from __future__ import annotations', True, True)
    """
    futures = "".join(m.group(0).rstrip("\n") + "\n" for m in _FUTURE_RE.finditer(program))
    return futures + _NO_NETWORK_GUARD + "\n" + _FUTURE_RE.sub("", program) + "\n\n" + tests + "\n"


def _code_timeout(gold: Any) -> float:
    if isinstance(gold, dict) and isinstance(gold.get("timeout_s"), (int, float)) and gold["timeout_s"] > 0:
        return float(gold["timeout_s"])
    return CODE_TIMEOUT_S


def _code_tests(gold: Any) -> str:
    return str(gold.get("tests") or "") if isinstance(gold, dict) else ""


def code_unit_tests(completions: list[Any], expected: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the completion's program passes the row's tests in the sandbox, else 0.0.

    The program is the completion's first ```python fence (else all of it, ``extract_code``), run
    followed by ``expected["tests"]`` (asserts) in a fresh ``python -I`` subprocess
    (``run_python_sandboxed``: temporary directory, minimal environment, 1 GiB address space, CPU
    and file-size limits, the process group killed at the timeout) with an audit hook that refuses
    sockets, subprocesses and ctypes (``sandboxed_source``). Passing needs exit code 0 *and* every
    test run. Programs run up to 4 at a time. A row without tests scores 0.0.

    Args:
        completions: Completions, strings or conversational.
        expected: ``{"tests": "<python asserts>", "timeout_s"?: float}`` per completion.
        **kwargs: Other dataset columns (ignored).

    Returns:
        One reward per completion.

    Examples:
        >>> code_unit_tests(["```python\\ndef add(a, b):\\n    return a + b\\n```", "def add(a, b): return a - b"],
        ...                 [{"tests": "assert add(2, 3) == 5"}] * 2)
        [1.0, 0.0]
        >>> code_unit_tests(["import socket\\nsocket.create_connection(('127.0.0.1', 9))"], [{"tests": "pass"}])
        [0.0]
    """
    from concurrent.futures import ThreadPoolExecutor

    def one(pair: tuple[Any, Any]) -> float:
        comp, gold = pair
        tests = _code_tests(gold)
        if not tests.strip():
            return 0.0
        ok, _why = run_python_sandboxed(
            sandboxed_source(extract_code(completion_text(comp)), tests), _code_timeout(gold)
        )
        return 1.0 if ok else 0.0

    pairs = list(zip(completions, expected, strict=True))
    if len(pairs) <= 1:
        return [one(p) for p in pairs]
    with ThreadPoolExecutor(max_workers=min(4, len(pairs), os.cpu_count() or 1)) as pool:
        return list(pool.map(one, pairs))


REWARDS: dict[str, Callable[..., list[float]]] = {
    "label_exact_match": label_exact_match,
    "json_format": json_format,
    "math_final_answer": math_final_answer,
    "token_f1": token_f1,
    "json_schema_match": json_schema_match,
    "json_field_match": json_field_match,
    "code_unit_tests": code_unit_tests,
}
"""Reward functions by name (the names recipes and the CLI use)."""

KIND_REWARDS: dict[str, list[str]] = {
    "classification": ["label_exact_match"],
    "math": ["math_final_answer"],
    "extraction": ["json_schema_match", "json_field_match"],
    "code": ["code_unit_tests"],
    "generation": ["token_f1"],
}
"""The default GRPO rewards of each task kind (every kind but generation has a real verifier)."""

VERIFIABLE_KINDS = frozenset({"classification", "math", "extraction", "code"})
"""Task kinds whose reward is a verifier (a right/wrong check), where GRPO repair applies."""


def rewards_for_kind(kind: str) -> list[str]:
    """The reward names to train a task of this kind with.

    Args:
        kind: A task kind (classification | extraction | generation | math | code).

    Returns:
        Reward names for ``TrainJob.rewards``.

    Raises:
        ConfigError: For an unknown kind.

    Examples:
        >>> rewards_for_kind("extraction")
        ['json_schema_match', 'json_field_match']
        >>> sorted(VERIFIABLE_KINDS)
        ['classification', 'code', 'extraction', 'math']
    """
    try:
        return list(KIND_REWARDS[kind])
    except KeyError:
        raise ConfigError(f"unknown task kind {kind!r}; use one of {', '.join(KIND_REWARDS)}") from None


def get_reward(name: str) -> Callable[..., list[float]]:
    """The reward function registered under ``name``.

    Args:
        name: A key of ``REWARDS``.

    Returns:
        The reward function.

    Raises:
        ConfigError: When no reward has that name; the message lists the known ones.

    Examples:
        >>> get_reward("token_f1") is token_f1
        True
    """
    try:
        return REWARDS[name]
    except KeyError:
        raise ConfigError(f"unknown reward {name!r}; known rewards: {', '.join(sorted(REWARDS))}") from None
