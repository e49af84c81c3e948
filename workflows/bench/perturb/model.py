"""What a perturbation is and what it produces: the items, the registry entry, the benchmark's fixed rates."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Family = Literal["fixable", "poison"]
Target = Literal["input", "correction", "both"]
NaiveTreatment = Literal["no_correction", "wrong", "correct"]
Out = tuple[str, str | None]  # (text, correction): what a perturbation returns
PerturbFn = Callable[[str, str, Sequence[str], random.Random], Out]

STAGE_POISON_RATES = (0.15, 0.25, 0.40)  # AdaptFT's three deployment stages
NAIVE_NO_CORRECTION = 0.30  # of noisy-but-fixable failures: the correction is never given
NAIVE_POISON_WRONG = 0.50  # of poisoned items: a wrong correction
NAIVE_POISON_CORRECT = 0.20  # of poisoned items: the right one (the other 30 %: none, like above)
OUT_OF_SCOPE = "out_of_scope"  # the right answer for an input that is no instance of any label


class Item(BaseModel):
    """One clean labelled input (e.g. a CLINC150 utterance and its intent)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    text: str
    label: str


class PerturbedItem(BaseModel):
    """An item as it shows up in the logs, with the truth about what was done to it.

    ``gold`` is the source item's label; ``correct_label_known`` says whether it still applies to
    ``text`` (False once a poison replaced the input). ``correction`` is what the feedback says
    (None: no correction given). ``perturbations`` lists, in order, the ones that changed it.
    """

    model_config = ConfigDict(extra="forbid")
    id: str
    source_text: str
    text: str
    gold: str
    correction: str | None
    perturbations: list[str] = Field(default_factory=list)
    poisoned: bool = False
    poison: str | None = None
    correct_label_known: bool = True
    naive: NaiveTreatment | None = None  # set by ``naive_feedback``

    @property
    def expected(self) -> str | None:
        """The label that is right for ``text``, or None when no label is."""
        return self.gold if self.correct_label_known else None


@dataclass(frozen=True)
class Perturbation:
    """A registered perturbation: ``fn(text, label, labels, rng) -> (text, correction)``.

    ``target`` says what it corrupts (the input, the correction, or both); ``replaces_input`` that
    the original text is gone; ``keeps_label`` that the gold label is still right for the output.
    """

    name: str
    family: Family
    default_rate: float
    fn: PerturbFn
    target: Target = "input"
    replaces_input: bool = False
    keeps_label: bool = True

    @property
    def effect(self) -> str:
        """One line: the first line of the function's docstring."""
        return (self.fn.__doc__ or "").strip().splitlines()[0]


def registrar(into: dict[str, Perturbation]) -> Callable[..., Callable[[PerturbFn], PerturbFn]]:
    """A ``@register(name, family, rate, ...)`` decorator that records each perturbation in ``into``, in definition order."""

    def register(
        name: str,
        family: Family,
        rate: float,
        *,
        target: Target = "input",
        replaces_input: bool = False,
        keeps_label: bool = True,
    ) -> Callable[[PerturbFn], PerturbFn]:
        def deco(fn: PerturbFn) -> PerturbFn:
            into[name] = Perturbation(name, family, rate, fn, target, replaces_input, keeps_label)
            return fn

        return deco

    return register
