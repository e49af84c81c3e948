"""The verifier rewards GRPO adds per task kind: extraction (schema, fields), code (sandboxed unit tests).

Values by hand, both completion formats, TRL's call convention, and the sandbox's refusals (network,
processes, ctypes) and limits (timeout). Doctests of the modules run in test_rewards.py.
"""

from __future__ import annotations

import time

import pytest

from kaizen.tools.errors import ConfigError
from kaizen.tools.train.rewards import REWARDS, VERIFIABLE_KINDS, rewards_for_kind
from kaizen.tools.train.rewards.code_tests import code_unit_tests, sandboxed_source
from kaizen.tools.train.rewards.extraction import (
    json_field_match,
    json_schema_match,
    schema_errors,
    schema_of,
)

PERSON = {"name": "Ann Lee", "age": 34, "tags": ["vip", "new"]}


def conv(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def test_rewards_for_every_kind_are_registered() -> None:
    for kind in ("classification", "math", "extraction", "code", "generation"):
        names = rewards_for_kind(kind)
        assert names and all(n in REWARDS for n in names)
    assert "generation" not in VERIFIABLE_KINDS  # token F1 is a similarity, not a verifier
    with pytest.raises(ConfigError, match="unknown task kind 'poetry'"):
        rewards_for_kind("poetry")


def test_schema_errors_subset() -> None:
    schema = {
        "type": "object",
        "required": ["a"],
        "additionalProperties": False,
        "properties": {"a": {"type": "integer"}, "b": {"type": "array", "items": {"enum": ["x", "y"]}}},
    }
    assert schema_errors({"a": 1, "b": ["x"]}, schema) == []
    assert schema_errors({"a": 1.0}, schema) == []  # a whole float is an integer in JSON
    assert schema_errors({"a": True}, schema) == ["$.a: expected integer, got bool"]  # a boolean is not
    assert schema_errors({"a": 1, "b": ["z"]}, schema) == ["$.b[0]: 'z' not in ['x', 'y']"]
    assert schema_errors({"a": 1, "c": 2}, schema) == ["$: unexpected field c"]
    assert schema_errors([], schema) == ["$: expected object, got list"]
    assert (
        schema_errors({"a": 1}, {"type": ["object", "null"], "minProperties": 5}) == []
    )  # unknown keywords ignored


def test_json_schema_match_by_expected_shape_and_by_schema_column() -> None:
    completions = [
        '{"name": "Bo", "age": 3, "tags": []}',  # right shape, wrong values: still 1
        conv('Sure:\n```json\n{"name": "Bo", "age": 3, "tags": []}\n```'),  # fenced after a preamble
        '{"name": "Bo", "age": "3", "tags": []}',  # age is a string
        '{"name": "Bo", "age": 3}',  # tags missing
        "name: Bo",
    ]
    assert json_schema_match(completions, [PERSON] * 5) == [1.0, 1.0, 0.0, 0.0, 0.0]
    schema = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
    assert json_schema_match(
        ['{"name": "x", "extra": 1}', '{"nom": "x"}'], [PERSON] * 2, schema=[schema] * 2
    ) == [1.0, 0.0]
    assert schema_of(PERSON)["required"] == ["name", "age", "tags"]


def test_json_field_match_is_evaluation_field_f1() -> None:
    # gold units: name, age, vip, new (4). "ann lee"/"34" normalise equal; tags one of two right.
    partial = '{"name": "ann lee", "age": "34", "tags": ["vip"]}'  # tp 3, fp 0, fn 1: P 1, R 3/4 → F1 6/7
    wrong = '{"name": "Ann", "age": 34, "tags": ["vip", "new"], "city": "Oslo"}'  # tp 3, fp 2, fn 1 → 2·(3/5)(3/4)/(27/20)=2/3
    got = json_field_match([partial, conv(wrong), "{}", "not json"], [PERSON] * 4)
    assert got == pytest.approx([6 / 7, 2 / 3, 0.0, 0.0])
    assert json_field_match(['{"b": 1, "a": 2}'], ['{"a": 2, "b": 1}']) == [1.0]  # a JSON-text gold works too


def test_code_unit_tests_pass_fail_and_formats() -> None:
    good = "```python\ndef fizz(n):\n    return 'Fizz' if n % 3 == 0 else str(n)\n```"
    off_by_one = "def fizz(n):\n    return 'Fizz' if n % 3 == 1 else str(n)"
    tests = {"tests": "assert fizz(3) == 'Fizz'\nassert fizz(4) == '4'"}
    early_exit = "import sys\nsys.exit(0)\ndef fizz(n): return 'Fizz'"
    got = code_unit_tests([good, conv(good), off_by_one, early_exit, "def fizz(n) return"], [tests] * 5)
    assert got == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert code_unit_tests([good], [{"tests": "  "}]) == [0.0]  # no tests: nothing verified
    assert code_unit_tests([good], ["assert True"]) == [0.0]  # expected must be {"tests": ...}
    future = "from __future__ import annotations\ndef f(x: int) -> int:\n    return x + 1"
    assert code_unit_tests([future], [{"tests": "assert f(1) == 2"}]) == [1.0]


@pytest.mark.parametrize(
    "program",
    [
        "import socket\nsocket.socket()",
        "import _socket\n_socket.socket()",
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9')",
        "import socket\nsocket.getaddrinfo('example.com', 80)",
        "import subprocess\nsubprocess.run(['curl', 'http://example.com'])",
        "import os\nos.system('true')",
        "import os\nos.fork()",
        "import ctypes\nctypes.CDLL(None)",
    ],
)
def test_code_sandbox_refuses_network_processes_and_ctypes(program: str) -> None:
    # The tests would pass if the program ran through: the refusal is what fails them.
    assert code_unit_tests([program + "\nok = 1"], [{"tests": "assert ok == 1"}]) == [0.0]
    assert code_unit_tests(["ok = 1"], [{"tests": "assert ok == 1"}]) == [1.0]


def test_code_timeout_is_enforced() -> None:
    t = time.time()
    assert code_unit_tests(["while True:\n    pass"], [{"tests": "pass", "timeout_s": 1}]) == [0.0]
    assert time.time() - t < 5


def test_sandboxed_source_guard_comes_first() -> None:
    src = sandboxed_source('"""doc"""\nfrom __future__ import annotations\nx = 1', "assert x == 1")
    lines = src.splitlines()
    assert (
        lines[0] == "from __future__ import annotations"
        and lines.count("from __future__ import annotations") == 1
    )
    assert src.index("addaudithook") < src.index("x = 1") < src.index("assert x == 1")
