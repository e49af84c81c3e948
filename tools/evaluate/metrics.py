"""Scoring model outputs against expected answers, one family of metrics per task kind.

Everything here is a pure function of (outputs, expected) — no model, no torch, no database — so
the same code scores offline evaluations, gates a candidate against the incumbent, and backs the
GRPO rewards in ``kaizen.tools.train.rewards``. ``compute_metrics`` is the single entry point callers
use: it checks that the expected values fit the task kind (raising ``DataError`` that names the
offending example) and always returns ``score`` (the headline metric), ``metric`` (its name) and
``correct`` (one bool per example, what ``mcnemar_exact`` compares between two models).

Headline metric per kind: classification → ``accuracy``, extraction → ``field_f1``,
math → ``exact_match``, generation → ``rougeL``, code → ``pass@1``.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kaizen.tools.errors import ConfigError, DataError
from kaizen.tools.schema import DEFAULT_METRIC

INVALID = "<invalid>"
"""Column of the confusion matrix for outputs that match no label."""

# --------------------------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------------------------

_STRIP_CHARS = " \t\r\n\"'`“”‘’*"
_TRAILING_PUNCT = ".,;:!?"
_PREFIX_RE = re.compile(
    r"^(?:label|answer|final answer|category|class|intent|classification|prediction)\s*[:=\-]\s*",
    re.IGNORECASE,
)
_TOKEN_RE = re.compile(r"[^\W_]+")


def _clean(text: str) -> str:
    """Strip surrounding whitespace, quotes, markdown emphasis and trailing punctuation."""
    prev = None
    while prev != text:
        prev = text
        text = text.strip(_STRIP_CHARS).rstrip(_TRAILING_PUNCT)
    return text


def _canon(text: str) -> str:
    """Case-folded, with underscores/hyphens as spaces and runs of whitespace collapsed."""
    return " ".join(re.sub(r"[_\-]+", " ", text.casefold()).split())


def _tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.casefold())


def normalize_label(output: str, labels: list[str]) -> str | None:
    """Map a free-text classifier output onto one label of ``labels``.

    The first non-empty line is used; surrounding whitespace, quotes, ``**`` and trailing
    punctuation are stripped, and a leading ``Label:`` (or ``Answer:``, ``Category:``,
    ``Intent:`` …) is dropped. Matching is case-insensitive and treats ``_``/``-`` like spaces, so
    ``"Card declined."`` matches ``card_declined``. An exact match wins; otherwise the longest label
    whose tokens open the output (``"billing - the customer asks …"`` → ``billing``) is taken.

    Args:
        output: The model's raw output.
        labels: The task's label set.

    Returns:
        The matching label, spelled as in ``labels``, or ``None`` when the output is off-label.
    """
    if not labels or not output:
        return None
    line = next((ln for ln in output.splitlines() if _clean(ln)), "")
    candidates = [_clean(line)]
    stripped = _clean(_PREFIX_RE.sub("", candidates[0], count=1))
    if stripped != candidates[0]:
        candidates.append(stripped)

    by_fold = {lab.casefold(): lab for lab in labels}
    by_canon = {_canon(lab): lab for lab in labels}
    for cand in candidates:
        if cand.casefold() in by_fold:
            return by_fold[cand.casefold()]
        if _canon(cand) in by_canon:
            return by_canon[_canon(cand)]

    label_tokens = sorted(((_tokens(lab), lab) for lab in labels), key=lambda t: -len(t[0]))
    for cand in candidates:
        toks = _tokens(cand)
        for ltoks, lab in label_tokens:
            if ltoks and toks[: len(ltoks)] == ltoks:
                return lab
    return None


def classification_metrics(outputs: list[str], expected: list[str], labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-label scores and a confusion matrix for a classifier.

    Outputs go through ``normalize_label``; those that match no label count as wrong and land in
    the ``<invalid>`` column of the confusion matrix. Gold labels are matched to ``labels`` the
    same way (so ``Billing`` matches ``billing``). ``macro_f1`` averages scikit-learn's F1 over
    the labels that occur as gold or as prediction; a label absent from both has no defined F1
    and is left out (it is still listed in ``per_label`` with zeros).

    Args:
        outputs: Raw model outputs.
        expected: Gold labels, one per output.
        labels: The label set; when empty, the distinct gold labels in order of appearance.

    Returns:
        ``accuracy``, ``macro_f1``, ``per_label`` ({label: {precision, recall, f1, support}}),
        ``confusion`` ({"labels": [...labels, "<invalid>"], "matrix": rows = gold, cols = predicted}),
        ``invalid_rate``, ``correct`` (list[bool]) and ``predictions`` (normalised labels or None).

    Raises:
        DataError: When lengths differ, or a gold label is not a string or not in the label set.
    """
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    _check_lengths(outputs, expected)
    _validate_expected("classification", expected)
    labels = list(labels) if labels else list(dict.fromkeys(str(e) for e in expected))
    gold: list[str] = []
    for i, e in enumerate(expected):
        g = normalize_label(str(e), labels)
        if g is None:
            raise DataError(
                f"example {i}: expected label {e!r} is not in the label set {labels}; "
                "fix the example or add the label to the task"
            )
        gold.append(g)
    preds = [normalize_label(o or "", labels) for o in outputs]
    pred_str = [p if p is not None else INVALID for p in preds]
    correct = [p == g for p, g in zip(preds, gold, strict=True)]
    n = len(outputs)

    cols = [*labels, INVALID]
    if n == 0:
        return {
            "accuracy": 0.0,
            "macro_f1": 0.0,
            "per_label": {lab: {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0} for lab in labels},
            "confusion": {"labels": cols, "matrix": [[0] * len(cols) for _ in cols]},
            "invalid_rate": 0.0,
            "correct": [],
            "predictions": [],
        }

    present = [lab for lab in labels if lab in set(gold) or lab in set(pred_str)]
    macro = float(f1_score(gold, pred_str, labels=present, average="macro", zero_division=0))
    p, r, f, s = precision_recall_fscore_support(gold, pred_str, labels=labels, zero_division=0)
    per_label = {
        lab: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]), "support": int(s[k])}
        for k, lab in enumerate(labels)
    }
    matrix = confusion_matrix(gold, pred_str, labels=cols).tolist()
    return {
        "accuracy": sum(correct) / n,
        "macro_f1": macro,
        "per_label": per_label,
        "confusion": {"labels": cols, "matrix": [[int(x) for x in row] for row in matrix]},
        "invalid_rate": sum(p is None for p in preds) / n,
        "correct": correct,
        "predictions": preds,
    }


# --------------------------------------------------------------------------------------------
# extraction
# --------------------------------------------------------------------------------------------

_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+\-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text``, tolerating a ```json fence and text around it.

    Args:
        text: A model output.

    Returns:
        The parsed object, or ``None`` when there is no JSON object in the text.
    """
    if not text:
        return None
    try:
        obj = json.loads(text.strip())
        if isinstance(obj, dict):
            return obj
    except (ValueError, RecursionError):
        pass
    sources = [m.group(2) for m in _FENCE_RE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for src in sources:
        for m in re.finditer(r"\{", src):
            try:
                obj, _ = decoder.raw_decode(src, m.start())
            except (ValueError, RecursionError):
                continue
            if isinstance(obj, dict):
                return obj
    return None


def _norm_value(v: Any) -> Any:
    """Normalise a scalar (or nested value) for comparison: strings strip+casefold, 5 == 5.0 == "5"."""
    if isinstance(v, str):
        s = v.strip().casefold()
        num = _normalize_number(s) if _NUMBER_FULL_RE.fullmatch(s) else None
        return num if num is not None else s
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return _normalize_number(repr(v)) or repr(v)
    if isinstance(v, dict):
        return json.dumps({str(k): _norm_value(x) for k, x in v.items()}, sort_keys=True)
    if isinstance(v, (list, tuple)):
        return json.dumps(sorted({json.dumps(_norm_value(x)) for x in v}))
    return json.dumps(v, default=str)


def _is_empty(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, (list, tuple)) and not v)


def _field_units(obj: dict[str, Any]) -> set[tuple[str, Any]]:
    """The (field, value) units an object asserts; a list field contributes one unit per item."""
    units: set[tuple[str, Any]] = set()
    for key, v in obj.items():
        if _is_empty(v):
            continue
        k = str(key).strip().casefold()
        if isinstance(v, (list, tuple)):
            units.update((k, _norm_value(x)) for x in v if not _is_empty(x))
        else:
            units.add((k, _norm_value(v)))
    return units


def extraction_metrics(outputs: list[str], expected: list[dict[str, Any]]) -> dict[str, Any]:
    """JSON validity and field-level micro precision/recall/F1 for structured extraction.

    Each output is parsed with ``parse_json_object``. A field is a unit; a list-valued field
    contributes one unit per (distinct) item. A unit is a true positive when the predicted
    object has the key and an equal value after normalisation (strings stripped and case-folded,
    numbers compared by value, lists as sets). Null, empty-string and empty-list values count as
    absent on both sides. Invalid JSON predicts nothing (all gold units become false negatives).

    Args:
        outputs: Raw model outputs.
        expected: Gold objects, one per output.

    Returns:
        ``json_valid_rate``, ``field_precision``, ``field_recall``, ``field_f1`` and ``correct``
        (valid JSON with every field exactly right and no extra fields).

    Raises:
        DataError: When lengths differ or an expected value has the wrong type.
    """
    _check_lengths(outputs, expected)
    _validate_expected("extraction", expected)
    tp = fp = fn = 0
    valid: list[bool] = []
    correct: list[bool] = []
    for out, gold in zip(outputs, expected, strict=True):
        pred = parse_json_object(out or "")
        valid.append(pred is not None)
        g_units = _field_units(gold)
        p_units = _field_units(pred) if pred is not None else set()
        hit = len(g_units & p_units)
        tp += hit
        fp += len(p_units) - hit
        fn += len(g_units) - hit
        correct.append(pred is not None and g_units == p_units)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    if tp + fp + fn == 0 and outputs and all(valid):
        precision = recall = f1 = 1.0  # nothing to extract and nothing extracted: perfect
    n = len(outputs)
    return {
        "json_valid_rate": sum(valid) / n if n else 0.0,
        "field_precision": precision,
        "field_recall": recall,
        "field_f1": f1,
        "correct": correct,
    }


# --------------------------------------------------------------------------------------------
# math
# --------------------------------------------------------------------------------------------

_NUMBER_RE = re.compile(r"-?\$?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")
_NUMBER_FULL_RE = re.compile(r"[-+]?\$?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)")


def _normalize_number(s: str) -> str | None:
    """``"$1,200.50."`` → ``"1200.5"``; ``"72.0"`` → ``"72"``; None when ``s`` is not a number."""
    s = s.strip().rstrip(".").replace(",", "").replace("$", "").lstrip("+")
    if s.startswith("-"):
        sign, s = "-", s[1:]
    else:
        sign = ""
    if not re.fullmatch(r"\d*\.?\d+|\d+\.?", s):
        return None
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    s = s.lstrip("0") or "0"
    if s.startswith("."):
        s = "0" + s
    return "0" if s == "0" else sign + s


def extract_final_answer(text: str) -> str | None:
    """The final answer of a worked solution, normalised.

    The answer is what follows the last ``####`` (its first number, when it has one), else the
    last number in the text. Numbers lose thousands separators, ``$``, a trailing period and
    trailing decimal zeros (``"$1,200.00."`` → ``"1200"``).

    Args:
        text: A model output or a GSM8K-style reference answer.

    Returns:
        The normalised answer, or ``None`` when there is none.

    Examples:
        >>> extract_final_answer("She pays 3 * 24 = 72.\\n#### 72")
        '72'
        >>> extract_final_answer("The total is $1,200.00.")
        '1200'
    """
    if text is None:
        return None
    text = str(text)
    if "####" in text:
        tail = text.rsplit("####", 1)[1]
        line = next((ln.strip() for ln in tail.splitlines() if ln.strip()), "")
        if line:
            m = _NUMBER_RE.search(line)
            if m:
                return _normalize_number(m.group(0))
            return line.rstrip(".").strip().casefold() or None
        text = text.rsplit("####", 1)[0]
    nums = _NUMBER_RE.findall(text)
    return _normalize_number(nums[-1]) if nums else None


def _same_answer(pred: str | None, gold: str | None) -> bool:
    if pred is None or gold is None:
        return False
    if pred == gold:
        return True
    try:
        return math.isclose(float(pred), float(gold), rel_tol=1e-9, abs_tol=1e-9)
    except ValueError:
        return False


def math_metrics(outputs: list[str], expected: list[str | int | float]) -> dict[str, Any]:
    """Exact match of the final answer (``extract_final_answer`` on both sides).

    Args:
        outputs: Raw model outputs (worked solutions).
        expected: GSM8K-style answers ending in ``#### 72``, or bare numbers.

    Returns:
        ``exact_match`` and ``correct``.

    Raises:
        DataError: When lengths differ or an expected value has the wrong type.
    """
    _check_lengths(outputs, expected)
    _validate_expected("math", expected)
    correct = [
        _same_answer(extract_final_answer(o or ""), extract_final_answer(str(e)))
        for o, e in zip(outputs, expected, strict=True)
    ]
    return {"exact_match": sum(correct) / len(correct) if correct else 0.0, "correct": correct}


# --------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------


class _UnicodeTokenizer:
    """ROUGE's default tokenisation (lower-case, alphanumeric runs, Porter stem words > 3 chars),
    except that non-ASCII letters are kept, so non-English text does not score as empty."""

    def __init__(self) -> None:
        from nltk.stem import porter

        self._stemmer = porter.PorterStemmer()

    def tokenize(self, text: str) -> list[str]:
        toks = _TOKEN_RE.findall((text or "").lower())
        return [self._stemmer.stem(t) if len(t) > 3 else t for t in toks]


def generation_metrics(outputs: list[str], expected: list[str]) -> dict[str, Any]:
    """Mean ROUGE-1/2/L F-measure (``rouge_score``, with stemming) against reference texts.

    Args:
        outputs: Raw model outputs.
        expected: Reference texts.

    Returns:
        ``rouge1``, ``rouge2``, ``rougeL`` (means), ``rougeL_per_example`` and ``correct``
        (ROUGE-L F ≥ 0.5).

    Raises:
        DataError: When lengths differ or an expected value has the wrong type.
    """
    from rouge_score import rouge_scorer

    _check_lengths(outputs, expected)
    _validate_expected("generation", expected)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_UnicodeTokenizer())
    sums = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    per_l: list[float] = []
    for out, ref in zip(outputs, expected, strict=True):
        scores = scorer.score(str(ref), out or "")
        for k in sums:
            sums[k] += scores[k].fmeasure
        per_l.append(float(scores["rougeL"].fmeasure))
    n = len(outputs)
    result: dict[str, Any] = {k: (v / n if n else 0.0) for k, v in sums.items()}
    result["rougeL_per_example"] = per_l
    result["correct"] = [x >= 0.5 for x in per_l]
    return result


# --------------------------------------------------------------------------------------------
# code
# --------------------------------------------------------------------------------------------

_MEMORY_LIMIT = 1 << 30  # 1 GiB address space
_FILE_LIMIT = 16 << 20  # 16 MiB per written file (stdout/stderr included)


def extract_code(text: str) -> str:
    """The program in a model output: the first ```python fence, else the first fence, else all.

    Args:
        text: A model output.

    Returns:
        Python source.
    """
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE_RE.finditer(text or "")]
    for lang, body in blocks:
        if lang in ("python", "py", "python3"):
            return body
    if blocks:
        return blocks[0][1]
    return text or ""


def _limits(timeout_s: float):  # pragma: no cover - runs in the child
    # CPU limit a little above the wall-clock limit: a busy loop hits the (clearer) timeout first,
    # while the rlimit still stops a child that escaped the process-group kill.
    cpu = max(1, math.ceil(timeout_s)) + 1

    def apply() -> None:
        for res, soft, hard in (
            (resource.RLIMIT_AS, _MEMORY_LIMIT, _MEMORY_LIMIT),
            (resource.RLIMIT_CPU, cpu, cpu + 1),
            (resource.RLIMIT_FSIZE, _FILE_LIMIT, _FILE_LIMIT),
            (resource.RLIMIT_CORE, 0, 0),
        ):
            try:
                resource.setrlimit(res, (soft, hard))
            except (ValueError, OSError):
                pass

    return apply


def run_python_sandboxed(source: str, timeout_s: float = 10.0) -> tuple[bool, str | None]:
    """Run ``source`` in a throwaway, resource-limited Python subprocess.

    The child runs ``sys.executable -I`` in a fresh temporary directory with an environment of
    only ``PATH``, stdin closed, and limits on address space (1 GiB), CPU time, file size and
    core dumps; its whole process group is killed at the timeout. Success needs exit code 0
    *and* a random end-of-script marker on stdout, so a program that calls ``sys.exit(0)`` or
    ``os._exit(0)`` before the tests run does not pass.

    Args:
        source: Python source (program followed by its tests).
        timeout_s: Wall-clock limit in seconds.

    Returns:
        ``(passed, reason)`` where ``reason`` says why it failed (``None`` when it passed).
    """
    marker = "kaizen-done-" + secrets.token_hex(8)
    script = f"{source}\n\n__import__('os').write(1, b'\\n{marker}\\n')\n"
    with tempfile.TemporaryDirectory(prefix="kaizen-code-") as tmp:
        path = Path(tmp) / "solution.py"
        path.write_text(script, encoding="utf-8")
        out_path, err_path = Path(tmp) / ".stdout", Path(tmp) / ".stderr"
        with open(out_path, "wb") as out_f, open(err_path, "wb") as err_f:
            proc = subprocess.Popen(
                [sys.executable, "-I", str(path)],
                cwd=tmp,
                env={
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    # one BLAS/OpenMP thread, so `import numpy` fits in the address-space limit
                    "OMP_NUM_THREADS": "1",
                    "OPENBLAS_NUM_THREADS": "1",
                },
                stdin=subprocess.DEVNULL,
                stdout=out_f,
                stderr=err_f,
                preexec_fn=_limits(timeout_s),
                start_new_session=True,
            )
            try:
                rc = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                rc = None
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
        if rc is None:
            return False, f"timeout after {timeout_s:g}s"
        stdout = out_path.read_bytes()
        if rc == 0 and marker.encode() in stdout:
            return True, None
        err = err_path.read_bytes().decode("utf-8", "replace").strip().splitlines()
        if rc == 0:
            return False, "exited before the tests finished"
        if rc < 0:
            try:
                sig = signal.Signals(-rc).name
            except ValueError:
                sig = str(-rc)
            return False, f"killed by {sig}" + (f": {err[-1]}" if err else "")
        return False, err[-1] if err else f"exit code {rc}"


def code_metrics(
    outputs: list[str], expected: list[dict[str, Any]], timeout_s: float = 10.0
) -> dict[str, Any]:
    """pass@1 of generated programs against assert-based tests, each run in a sandbox.

    The program is taken from a ```python fence when there is one (``extract_code``) and run
    followed by ``expected[i]["tests"]`` via ``run_python_sandboxed``. Examples run one after
    another.

    Args:
        outputs: Raw model outputs.
        expected: ``{"tests": "<python code with asserts>"}`` per output.
        timeout_s: Wall-clock limit per example.

    Returns:
        ``pass@1``, ``correct`` and ``errors`` (why each example failed; ``None`` when it passed).

    Raises:
        DataError: When lengths differ or an expected value has the wrong type.
    """
    _check_lengths(outputs, expected)
    _validate_expected("code", expected)
    correct: list[bool] = []
    errors: list[str | None] = []
    for out, exp in zip(outputs, expected, strict=True):
        ok, why = run_python_sandboxed(extract_code(out or "") + "\n" + str(exp["tests"]), timeout_s)
        correct.append(ok)
        errors.append(why)
    return {"pass@1": sum(correct) / len(correct) if correct else 0.0, "correct": correct, "errors": errors}


# --------------------------------------------------------------------------------------------
# dispatch and comparison
# --------------------------------------------------------------------------------------------


def _check_lengths(outputs: Sequence[Any], expected: Sequence[Any]) -> None:
    if len(outputs) != len(expected):
        raise DataError(
            f"{len(outputs)} outputs but {len(expected)} expected values; they must pair one to one"
        )


def _validate_expected(kind: str, expected: Sequence[Any]) -> None:
    for i, e in enumerate(expected):
        if kind in ("classification", "generation"):
            ok = isinstance(e, str)
            want = "a string (the " + ("gold label)" if kind == "classification" else "reference text)")
        elif kind == "extraction":
            ok, want = isinstance(e, dict), "a JSON object (dict) of the fields to extract"
        elif kind == "math":
            ok = isinstance(e, (str, int, float)) and not isinstance(e, bool)
            ok = ok and extract_final_answer(str(e)) is not None
            want = "a number or an answer ending in '#### <number>'"
        else:  # code
            ok = isinstance(e, dict) and isinstance(e.get("tests"), str) and bool(e["tests"].strip())
            want = 'a dict {"tests": "<python code with asserts>"}'
        if not ok:
            got = type(e).__name__ if not isinstance(e, (str, int, float)) else repr(e)[:80]
            raise DataError(f"{kind} example {i}: expected must be {want}, got {got}")


def compute_metrics(
    kind: str,
    outputs: list[str],
    expected: list[Any],
    labels: list[str] | None = None,
    *,
    metric: str | None = None,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Score ``outputs`` for a task of the given kind.

    Args:
        kind: classification | extraction | generation | math | code.
        outputs: Raw model outputs (``None`` counts as an empty output).
        expected: Expected values, one per output, of the type the kind needs: a label string
            (classification), a dict of fields (extraction), a reference text (generation), a
            number or ``#### <n>`` answer (math), ``{"tests": "..."}`` (code).
        labels: The label set (classification only).
        metric: Headline metric to report as ``score`` (a numeric key of the kind's result, e.g.
            ``macro_f1``); defaults to the kind's own (accuracy, field_f1, exact_match, rougeL,
            pass@1).
        timeout_s: Per-example limit (code only).

    Returns:
        The kind's metrics plus ``score`` (the headline value), ``metric`` (its name) and
        ``correct`` (list[bool]).

    Raises:
        ConfigError: When ``kind`` is unknown or ``metric`` is not one the kind reports.
        DataError: When lengths differ, an output is not a string, or an expected value has the
            wrong type for the kind (the message names the example index).
    """
    if kind not in DEFAULT_METRIC:
        raise ConfigError(f"unknown task kind {kind!r}; use one of {', '.join(DEFAULT_METRIC)}")
    outputs, expected = list(outputs), list(expected)
    _check_lengths(outputs, expected)
    bad = next((i for i, o in enumerate(outputs) if o is not None and not isinstance(o, str)), None)
    if bad is not None:
        raise DataError(f"output {bad} is a {type(outputs[bad]).__name__}; outputs must be strings")
    outputs = [o or "" for o in outputs]
    if kind == "classification":
        result = classification_metrics(outputs, expected, labels or [])
    elif kind == "extraction":
        result = extraction_metrics(outputs, expected)
    elif kind == "math":
        result = math_metrics(outputs, expected)
    elif kind == "generation":
        result = generation_metrics(outputs, expected)
    else:
        result = code_metrics(outputs, expected, timeout_s=timeout_s)
    name = metric or DEFAULT_METRIC[kind]
    value = result.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        numeric = (k for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        known = ", ".join(numeric)
        raise ConfigError(f"metric {name!r} is not reported for {kind} tasks; use one of {known}")
    return {**result, "score": float(value), "metric": name}


def mcnemar_exact(incumbent_correct: list[bool], candidate_correct: list[bool]) -> dict[str, Any]:
    """Exact McNemar test of two models scored on the same examples.

    Only discordant pairs matter: ``newly_right`` (incumbent wrong, candidate right) and
    ``newly_wrong`` (the reverse). The two-sided p-value is a binomial test of ``newly_right``
    out of all discordant pairs against 0.5.

    Args:
        incumbent_correct: Per-example correctness of the current model.
        candidate_correct: Per-example correctness of the candidate, same order.

    Returns:
        ``newly_right``, ``newly_wrong`` and ``p_value`` (1.0 when there are no discordant pairs).

    Raises:
        DataError: When the lists differ in length.
    """
    if len(incumbent_correct) != len(candidate_correct):
        raise DataError(
            f"McNemar needs the same examples for both models: got {len(incumbent_correct)} "
            f"and {len(candidate_correct)} results"
        )
    newly_right = sum(1 for a, b in zip(incumbent_correct, candidate_correct, strict=True) if not a and b)
    newly_wrong = sum(1 for a, b in zip(incumbent_correct, candidate_correct, strict=True) if a and not b)
    n = newly_right + newly_wrong
    if n == 0:
        p = 1.0
    else:
        from scipy.stats import binomtest

        p = float(binomtest(newly_right, n, 0.5, alternative="two-sided").pvalue)
    return {"newly_right": newly_right, "newly_wrong": newly_wrong, "p_value": min(1.0, p)}
