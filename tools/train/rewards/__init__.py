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
classification  ``label_strict_match``             the label, exactly as the gate's constrained
                                                   decoding reads it (``label_exact_match``: leniently)
math            ``math_final_answer``              the final answer (``extract_final_answer``)
extraction      ``json_schema_match``,             JSON shape (schema column, or the expected
                ``json_field_match``               object's keys and types); field-level F1
code            ``code_unit_tests``                the row's asserts, run in a sandboxed
                                                   subprocess: timeout, rlimits, no network
generation      ``token_f1``                       none (a similarity, not a verifier)
=============== ================================== ==============================================

The rewards themselves live by kind: ``text`` (label, JSON format, final answer, token F1, and
``completion_text``), ``extraction`` (schema, fields) and ``code_tests`` (the sandbox). This module is
their registry.
"""

from __future__ import annotations

from collections.abc import Callable

from kaizen.tools.errors import ConfigError
from kaizen.tools.train.rewards.code_tests import code_unit_tests
from kaizen.tools.train.rewards.extraction import json_field_match, json_schema_match
from kaizen.tools.train.rewards.text import (
    json_format,
    label_exact_match,
    label_format,
    label_strict_match,
    math_final_answer,
    token_f1,
)

REWARDS: dict[str, Callable[..., list[float]]] = {
    "label_exact_match": label_exact_match,
    "label_strict_match": label_strict_match,
    "label_format": label_format,
    "json_format": json_format,
    "math_final_answer": math_final_answer,
    "token_f1": token_f1,
    "json_schema_match": json_schema_match,
    "json_field_match": json_field_match,
    "code_unit_tests": code_unit_tests,
}
"""Reward functions by name (the names recipes and the CLI use)."""

KIND_REWARDS: dict[str, list[str]] = {
    "classification": ["label_strict_match"],
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
