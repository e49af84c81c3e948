"""The fixable perturbations: noise that leaves the input an instance of its gold label.

Typos, casing, truncation, preambles, code-switching, formatting …: the feedback's correction stays
right, so training on these should help. They are applied in the order they are defined here (the
registry keeps it), each with its own seeded draw.
"""

from __future__ import annotations

import math
import random
import re
import string
from collections.abc import Sequence

from kaizen.workflows.bench.perturb.model import Out, Perturbation, registrar
from kaizen.workflows.bench.perturb.words import (
    ABBREV,
    AGREEMENT,
    ARTICLES,
    CODE_SWITCH,
    COURTESY,
    SYNONYMS,
    WORD,
    match_case,
    one_typo,
    swap_words,
)

FIXABLE: dict[str, Perturbation] = {}
_register = registrar(FIXABLE)


# ----------------------------------------------------------------------------- fixable: spelling
@_register("typo", "fixable", 0.15)
def typo(text: str, label: str, labels: Sequence[str], rng: random.Random) -> Out:
    """One or two letter swaps, drops or doubles (length changes by at most one per typo).

    The commonest noise in typed requests; a model should read through it.
    """
    out = text
    for _ in range(rng.choice((1, 1, 2))):
        out = one_typo(out, rng)
    return (out if out != text else one_typo(text, rng)), label


@_register("casing", "fixable", 0.08)
def casing(text: str, label: str, labels: Sequence[str], rng: random.Random) -> Out:
    """ALL CAPS, all lower case or rAnDoM case; only the case of letters changes.

    Caps lock, angry users and phone keyboards: case carries no intent.
    """
    modes = [m for m, f in (("upper", str.upper), ("lower", str.lower)) if f(text) != text] + ["random"]
    mode = rng.choice(modes)
    if mode == "upper":
        return text.upper(), label
    if mode == "lower":
        return text.lower(), label
    letters = [i for i, c in enumerate(text) if c.isascii() and c.isalpha()]
    flip = {i for i in letters if rng.random() < 0.4} or ({rng.choice(letters)} if letters else set())
    return "".join(c.swapcase() if i in flip else c for i, c in enumerate(text)), label


@_register("grammar", "fixable", 0.08)
def grammar(text: str, label: str, labels: Sequence[str], rng: random.Random) -> Out:
    """Dropped articles or broken subject-verb agreement ("why is my cards declined").

    Non-native and hurried writing; the meaning survives, so the label does.
    """
    words = list(WORD.finditer(text))
    arts = [m for m in words if m.group().lower() in ARTICLES]
    verbs = [m for m in words if m.group().lower() in AGREEMENT]
    if not arts and not verbs:
        return text, label
    if arts and (not verbs or rng.random() < 0.5):
        drop = [m for m in arts if rng.random() < 0.6] or [rng.choice(arts)]
        for m in reversed(drop):
            end = m.end() + len(text[m.end() :]) - len(text[m.end() :].lstrip(" "))
            text = text[: m.start()] + text[end:]
        return text, label
    return swap_words(text, AGREEMENT, rng, p=0.0), label


@_register("truncation", "fixable", 0.05)
def truncation(text: str, label: str, labels: Sequence[str], rng: random.Random) -> Out:
    """Cut the tail: keep the first 50-85 % of the words (always at least one word less).

    Messages sent too early or clipped by a UI; the head usually still carries the intent.
    """
    tokens = list(re.finditer(r"\S+", text))
    if len(tokens) >= 2:
        keep = min(len(tokens) - 1, max(1, round(len(tokens) * rng.uniform(0.5, 0.85))))
        return text[: tokens[keep - 1].end()], label
    if len(text) >= 4:
        return text[: rng.randint(math.ceil(len(text) / 2), len(text) - 1)], label
    return text, label


# ---------------------------------------------------------------------- fixable: added material
_PREAMBLES = (
    "hi, quick question: ",
    "Hello! ",
    "hey there, so ",
    "Good morning. I have a question. ",
    "Hi team, ",
    "ok so ",
    "Excuse me, ",
    "Hi, hope you're well. ",
)


@_register("preamble", "fixable", 0.08)
def preamble(text: str, label: str, labels: Sequence[str], rng: random.Random) -> Out:
    """Prefix a greeting or throat-clearing ("hi, quick question: ...").

    Real users rarely start with the request; a model must find it after the small talk.
    """
    return rng.choice(_PREAMBLES) + text, label


_RETRIES = (
    "I asked already - ",
    "asking again: ",
    "hello?? still no answer. ",
    "second time asking: ",
    "Again: ",
    "As I said before, ",
    "repeating my question: ",
)


@_register("retry", "fixable", 0.04)
def retry(text: str, label: str, labels: Sequence[str], rng: random.Random) -> Out:
    """The same user asks again, with a retry prefix ("I asked already - ...").

    Retries are how failures show up in logs; the question itself is unchanged.
    """
    return rng.choice(_RETRIES) + text, label


_SIGNATURES = (
    " thanks in advance",
    " thx!",
    "\n\nSent from my iPhone",
    " - John",
    " Regards, Sam",
    " cheers",
    " ty",
)


@_register("signature", "fixable", 0.05)
def signature(text: str, label: str, labels: Sequence[str], rng: random.Random) -> Out:
    """Append a sign-off or a mail-client signature.

    Trailing boilerplate is common in ticket and chat logs and carries no intent.
    """
    return text + rng.choice(_SIGNATURES), label


_FILLERS = ("um", "uh", "like", "basically", "so", "you know", "actually", "kind of", "literally")


@_register("filler", "fixable", 0.06)
def filler(text: str, label: str, labels: Sequence[str], rng: random.Random) -> Out:
    """Insert one or two filler words ("um", "like", "you know") between words.

    Dictated and chatty messages are full of them; they dilute but do not change the request.
    """
    tokens = text.split(" ")
    for _ in range(rng.choice((1, 2))):
        tokens.insert(rng.randint(0, len(tokens)), rng.choice(_FILLERS))
    return " ".join(tokens), label


_EMOJI = ("🙏", "😡", "😅", "🤔", "💳", "😭", "👍", "🙂", "🔥", "😤")


@_register("emoji", "fixable", 0.04)
def emoji(text: str, label: str, labels: Sequence[str], rng: random.Random) -> Out:
    """Add one or two emoji at the start, the end or after a word.

    Chat users decorate requests; emoji are rare in training data and easy to trip on.
    """
    for _ in range(rng.choice((1, 2))):
        e = rng.choice(_EMOJI)
        spaces = [i for i, c in enumerate(text) if c == " "]
        where = rng.choice(("start", "end", "inside") if spaces else ("start", "end"))
        if where == "start":
            text = f"{e} {text}"
        elif where == "end":
            text = f"{text} {e}"
        else:
            i = rng.choice(spaces)
            text = f"{text[:i]} {e}{text[i:]}"
    return text, label


@_register("stutter", "fixable", 0.03)
def stutter(text: str, label: str, labels: Sequence[str], rng: random.Random) -> Out:
    """Repeat one word ("my my card").

    Editing slips and speech-to-text produce doubled words; the request is unchanged.
    """
    words = list(WORD.finditer(text))
    if not words:
        return text, label
    m = rng.choice(words)
    return text[: m.end()] + " " + m.group() + text[m.end() :], label


# ------------------------------------------------------------------------ fixable: rewordings


@_register("code_switch", "fixable", 0.04)
def code_switch(text: str, label: str, labels: Sequence[str], rng: random.Random) -> Out:
    """Swap one to three words into Spanish, French or German (or add a courtesy word).

    Bilingual users mix languages mid-sentence; the intent stays the same.
    """
    lower = {m.group().lower() for m in WORD.finditer(text)}
    langs = [lang for lang, table in CODE_SWITCH.items() if lower & table.keys()]
    if not langs:
        return text + COURTESY[rng.choice(sorted(COURTESY))], label
    table = CODE_SWITCH[rng.choice(langs)]
    hits = [m for m in WORD.finditer(text) if m.group().lower() in table]
    chosen = rng.sample(hits, rng.randint(1, min(3, len(hits))))
    for m in sorted(chosen, key=lambda m: m.start(), reverse=True):
        text = text[: m.start()] + match_case(m.group(), table[m.group().lower()]) + text[m.end() :]
    return text, label


@_register("near_duplicate", "fixable", 0.08)
def near_duplicate(text: str, label: str, labels: Sequence[str], rng: random.Random) -> Out:
    """A paraphrase-like small edit: one synonym swapped in, or two adjacent words reordered.

    Logs hold many near-copies of the same request; they must get the same label.
    """
    words = list(WORD.finditer(text))
    pairs = [(a, b) for a, b in zip(words, words[1:], strict=False) if a.group().lower() != b.group().lower()]
    has_syn = any(m.group().lower() in SYNONYMS for m in words)
    if has_syn and (not pairs or rng.random() < 0.6):
        return swap_words(text, SYNONYMS, rng, p=0.0), label
    if not pairs:
        return text, label
    a, b = rng.choice(pairs)
    return text[: a.start()] + b.group() + text[a.end() : b.start()] + a.group() + text[b.end() :], label


_CHAT_TAILS = (" pls", " thx", " asap", " plz", " tia")


@_register("abbreviation", "fixable", 0.08)
def abbreviation(text: str, label: str, labels: Sequence[str], rng: random.Random) -> Out:
    """Chat-speak: "you" -> "u", "please" -> "pls", "to" -> "2" (or a trailing "pls"/"asap").

    Short-hand is everywhere in chat logs and unseen in curated training data.
    """
    out = swap_words(text, ABBREV, rng, p=0.7)
    return (out if out != text else text + rng.choice(_CHAT_TAILS)), label


# -------------------------------------------------------------------------- fixable: formatting
@_register("punctuation_loss", "fixable", 0.10)
def punctuation_loss(text: str, label: str, labels: Sequence[str], rng: random.Random) -> Out:
    """Drop all punctuation, or a random part of it (apostrophes included).

    Mobile users skip punctuation; nothing about the request depends on it.
    """
    marks = [i for i, c in enumerate(text) if c in string.punctuation]
    if not marks:
        return text, label
    if rng.random() < 0.5:
        drop = set(marks)
    else:
        drop = {i for i in marks if rng.random() < 0.5} or {rng.choice(marks)}
    return "".join(c for i, c in enumerate(text) if i not in drop), label


@_register("whitespace", "fixable", 0.06)
def whitespace(text: str, label: str, labels: Sequence[str], rng: random.Random) -> Out:
    """Double spaces, tabs, leading blanks or a trailing newline; the words are untouched.

    Copy-paste and sloppy clients leave stray whitespace that tokenizes differently.
    """
    ops = ["lead", "trail"] + (["double", "tab"] if " " in text else [])
    for op in rng.sample(ops, rng.choice((1, 2))):
        if op == "lead":
            text = " " * rng.randint(1, 3) + text
        elif op == "trail":
            text += rng.choice((" ", "  ", "\n", " \n"))
        else:
            spaces = [i for i, c in enumerate(text) if c == " "]
            if not spaces:  # a tab took the only space: nothing left to double
                continue
            i = rng.choice(spaces)
            text = text[:i] + ("\t" if op == "tab" else " " * rng.randint(2, 3)) + text[i + 1 :]
    return text, label
