"""Extraction rewards: the JSON shape of a completion (a JSON Schema subset) and its field-level F1.

``json_schema_match`` checks the shape (the row's ``schema`` column, or the expected object's keys
and types); ``json_field_match`` whether the values are right, exactly as evaluation scores them.
"""

from __future__ import annotations

from typing import Any

from kaizen.tools.evaluate.metrics import extraction_metrics, parse_json_object
from kaizen.tools.train.rewards.text import completion_text

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
