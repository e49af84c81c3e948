"""Word-level edits for the fixable perturbations: the dictionaries they swap words from, and the swapping.

Kept apart from the perturbations so that each of those reads as what it does to a request; the
tables are the vocabulary (agreement errors, code-switching, synonyms, chat-speak) a test can compare
an effect against.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping

WORD = re.compile(r"[A-Za-z][A-Za-z']*")


def match_case(src: str, new: str) -> str:
    if len(src) > 1 and src.isupper():
        return new.upper()
    return new[:1].upper() + new[1:] if src[:1].isupper() else new


def swap_words(text: str, table: Mapping[str, str], rng: random.Random, p: float, at_least: int = 1) -> str:
    """Replace dictionary words (case-insensitive) with probability p each, at least ``at_least``."""
    hits = [m for m in WORD.finditer(text) if m.group().lower() in table]
    if not hits:
        return text
    chosen = [m for m in hits if rng.random() < p] or rng.sample(hits, min(at_least, len(hits)))
    for m in sorted(chosen, key=lambda m: m.start(), reverse=True):
        new = match_case(m.group(), table[m.group().lower()])
        text = text[: m.start()] + new + text[m.end() :]
    return text


def one_typo(text: str, rng: random.Random) -> str:
    """Swap, drop or double one letter that follows another letter."""
    idx = [i for i in range(1, len(text)) if text[i].isalpha() and text[i - 1].isalpha()]
    if not idx:
        return text
    i = rng.choice(idx)
    op = rng.choice(("swap", "drop", "double"))
    if op == "swap" and text[i] != text[i - 1]:
        return text[: i - 1] + text[i] + text[i - 1] + text[i + 1 :]
    if op == "drop":
        return text[:i] + text[i + 1 :]
    return text[:i] + text[i] + text[i:]


AGREEMENT = {
    "is": "are",
    "are": "is",
    "was": "were",
    "were": "was",
    "does": "do",
    "do": "does",
    "has": "have",
    "have": "has",
    "doesn't": "don't",
    "don't": "doesn't",
    "isn't": "aren't",
    "aren't": "isn't",
    "wasn't": "weren't",
    "weren't": "wasn't",
}

ARTICLES = {"a", "an", "the"}

CODE_SWITCH = {
    "es": {
        "my": "mi",
        "card": "tarjeta",
        "money": "dinero",
        "bank": "banco",
        "account": "cuenta",
        "please": "por favor",
        "help": "ayuda",
        "why": "por qué",
        "how": "cómo",
        "what": "qué",
        "need": "necesito",
        "want": "quiero",
        "today": "hoy",
        "yesterday": "ayer",
        "thanks": "gracias",
        "and": "y",
        "with": "con",
        "where": "dónde",
        "when": "cuándo",
        "friend": "amigo",
        "payment": "pago",
        "balance": "saldo",
        "store": "tienda",
    },
    "fr": {
        "my": "mon",
        "card": "carte",
        "money": "argent",
        "bank": "banque",
        "account": "compte",
        "please": "s'il vous plaît",
        "help": "aide",
        "why": "pourquoi",
        "how": "comment",
        "today": "aujourd'hui",
        "yesterday": "hier",
        "thanks": "merci",
        "and": "et",
        "with": "avec",
        "where": "où",
        "when": "quand",
        "friend": "ami",
        "payment": "paiement",
        "balance": "solde",
        "store": "magasin",
    },
    "de": {
        "my": "mein",
        "card": "Karte",
        "money": "Geld",
        "account": "Konto",
        "please": "bitte",
        "help": "Hilfe",
        "why": "warum",
        "how": "wie",
        "what": "was",
        "today": "heute",
        "yesterday": "gestern",
        "thanks": "danke",
        "and": "und",
        "with": "mit",
        "where": "wo",
        "when": "wann",
        "friend": "Freund",
        "payment": "Zahlung",
        "store": "Laden",
    },
}

COURTESY = {"es": " por favor", "fr": " merci", "de": " bitte"}

SYNONYMS = {
    "help": "assist",
    "money": "funds",
    "buy": "purchase",
    "check": "verify",
    "find": "locate",
    "show": "display",
    "get": "receive",
    "cancel": "stop",
    "fix": "resolve",
    "quickly": "fast",
    "please": "kindly",
    "can": "could",
    "why": "how come",
    "declined": "rejected",
    "store": "shop",
    "want": "would like",
    "tell": "let me know",
    "send": "transfer",
    "big": "large",
}

ABBREV = {
    "you": "u",
    "your": "ur",
    "you're": "ur",
    "are": "r",
    "please": "pls",
    "thanks": "thx",
    "because": "bc",
    "with": "w/",
    "without": "w/o",
    "people": "ppl",
    "tomorrow": "tmrw",
    "tonight": "2nite",
    "before": "b4",
    "okay": "ok",
    "really": "rly",
    "message": "msg",
    "account": "acct",
    "information": "info",
    "number": "no.",
    "to": "2",
    "for": "4",
    "why": "y",
    "what": "wat",
    "know": "kno",
    "money": "$$",
}
