"""Settings: ``kaizen.yaml`` validated by pydantic, with environment overrides.

``Field(description=...)`` is the only place an option is explained; the commented template that
``kaizen init`` writes is generated from the same descriptions. Unknown keys are errors, and every
error names the field and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kaizen.tools.errors import ConfigError
from kaizen.tools.schema import TaskSpec
from kaizen.tools.train.spec import LauncherSpec


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSettings(Section):
    base: str = Field(
        "smollm2-135m",
        description="Base model: smollm2-135m (embedded), a local directory, or a hub id (online only).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto picks CUDA when present, else CPU."
    )
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on CUDA, fp32 on CPU."
    )


class GateSettings(Section):
    """Overrides of the workflow's gate preset (kaizen.tools.gate.PRESETS); unset keys keep the preset's value."""

    min_score: float | None = Field(
        None, ge=0.0, le=1.0, description="Candidate's target score must reach this (null: preset)."
    )
    min_gain: float | None = Field(
        None, ge=-1.0, le=1.0, description="Candidate minus incumbent on the target set (null: preset)."
    )
    max_new_regressions: int | None = Field(
        None,
        ge=0,
        description="Right→wrong flips always allowed on a regression suite (null: preset, 2 for repair).",
    )
    max_regression_rate: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Right→wrong flips allowed as a share of the suite, when larger than max_new_regressions (null: preset, 0.05).",
    )
    alpha: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="One-sided paired test: refuse a candidate significantly worse on a regression suite at this level (null: preset, 0.05).",
    )
    require_approval: bool = Field(
        True,
        description="Wait for `kaizen runs approve` before promoting (kaizen repair --approve skips it).",
    )


class BudgetSettings(Section):
    max_iterations: int = Field(3, ge=1, le=20, description="Train→evaluate iterations per repair run.")
    max_wall_clock_s: int = Field(
        3600, ge=60, description="Stop a run after this many seconds (checked between phases)."
    )
    max_train_tokens: int = Field(
        200_000, ge=1000, description="Training tokens per run, all iterations together."
    )


class RepairSettings(Section):
    """How far a repair goes and how it keeps its proof (see the README's "What a repair does")."""

    target_score: float = Field(
        0.95,
        ge=0.0,
        le=1.0,
        description="τ: stop iterating once a passing candidate reaches this on the target suite.",
    )
    plateau: float = Field(
        0.02,
        ge=0.0,
        le=1.0,
        description="δ: stop iterating when a passing iteration gains less than this on the target suite.",
    )
    final_fraction: float = Field(
        0.15,
        ge=0.0,
        le=0.5,
        description="Share of trusted traces kept as the final slice that verifies the refit (never trained on or used to choose); at least 12, none below 60 trusted traces.",
    )
    refit: bool = Field(
        True,
        description="After the loop, retrain from production on all the evidence (held-out suites and inferred labels included) and verify it on the final slice.",
    )
    shrink: bool = Field(
        True,
        description="Move the refit back toward production (weight-space interpolation, α 0.75 or 0.5) when that fits the examples it was taught at least as well as the full update.",
    )
    recover: bool = Field(
        True,
        description="When a candidate fails only on regressions, try a short refresh and a sparse rollback (then GRPO: grpo_recovery) before discarding it.",
    )
    grpo_recovery: bool = Field(
        True,
        description="With recover: as a third recovery, GRPO from the incumbent on the iteration's training prompts "
        "(task kinds with a verifier; a handful of CPU-sized steps), gated like any candidate.",
    )


class BrainSettings(Section):
    kind: Literal["rule", "llm"] = Field(
        "rule", description="rule: deterministic, offline. llm: an OpenAI-compatible teacher."
    )
    base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (llm only)."
    )
    model: str | None = Field(None, description="Model name at that endpoint (llm only).")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key.")
    redact_pii: bool = Field(
        True,
        description="Replace emails, phone, card, IBAN and IP numbers with placeholders before any request.",
    )
    max_tokens_per_run: int = Field(
        200_000,
        ge=0,
        description="Brain tokens (prompt + completion) per run; past it, the rule brain decides.",
    )
    max_retries: int = Field(
        2,
        ge=0,
        le=5,
        description="Retries of a call whose output is invalid or whose endpoint fails, before falling back.",
    )
    timeout_s: float = Field(120.0, gt=0, description="Seconds per brain request.")
    max_output_tokens: int = Field(
        2048, ge=16, description="Cap on the tokens of any one answer (a cut-off answer falls back)."
    )
    usd_per_1m_tokens: float | None = Field(
        None,
        ge=0,
        description="Price per million tokens, for the cost shown in reports (null: unknown; 0 for a local server).",
    )

    @model_validator(mode="after")
    def _llm_needs_model(self) -> BrainSettings:
        if self.kind == "llm" and not self.model:
            raise ValueError(
                "brain.kind is llm but brain.model is not set: set brain.model (and brain.base_url)"
            )
        return self


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_s(text: str) -> float:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"2d"`` → seconds."""
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a duration: use a number and a unit, e.g. 30m, 1h, 1d")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


class ScheduleSettings(Section):
    """The scheduled loop (`kaizen watch` / `kaizen tick`); command-line flags override these."""

    source: str | None = Field(
        None, description="Log file or directory to ingest from incrementally (a cursor per file)."
    )
    format: str = Field("auto", description="Log format of the source (as for kaizen ingest --format).")
    batch_input: str | None = Field(
        None,
        description="OpenAI Batch output in the source: its batch input file (null: each output file's sibling with output → input in its name).",
    )
    every: str = Field("1h", description="kaizen watch: time between ticks (30m, 1h, 1d …).")
    min_new_failures: int = Field(
        20, ge=1, description="Trigger: failures with feedback since the last repair."
    )
    min_failure_rate_rise: float = Field(
        0.10, gt=0, le=1, description="Trigger: rise of the failure rate since the last promotion (absolute)."
    )
    rate_window: int = Field(30, ge=5, description="Labelled traces per window when comparing failure rates.")
    drift_threshold: float = Field(
        0.30, gt=0, le=1, description="Trigger: share of new inputs unlike any earlier input."
    )
    min_new_for_drift: int = Field(30, ge=5, description="New traces needed before drift is measured.")
    cooldown: str = Field("6h", description="No new repair within this time of the last one.")
    max_runs_per_day: int = Field(4, ge=0, description="Repairs started per 24 h, at most (the budget).")

    @field_validator("every", "cooldown")
    @classmethod
    def _duration(cls, v: str) -> str:
        duration_s(v)
        return v

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        from kaizen.tools.logs import FORMATS  # here, not at import: config is imported by everything

        name = v.strip().lower().replace("_", "-")
        if name != "auto" and name not in FORMATS:
            raise ValueError(f"unknown log format {v!r}: use one of auto, {', '.join(FORMATS)}")
        return name


class TrainSettings(Section):
    """How training jobs run (``kaizen train``, and the train step of repair and cold start)."""

    launcher: LauncherSpec = Field(
        default_factory=LauncherSpec, description="python (one process) or accelerate (data parallel)."
    )


class Settings(Section):
    """The whole of kaizen.yaml."""

    model: ModelSettings = Field(default_factory=ModelSettings)
    tasks: list[TaskSpec] = Field(
        default_factory=list, description="Tasks declared here (also: kaizen task add)."
    )
    gate: GateSettings = Field(default_factory=GateSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    repair: RepairSettings = Field(default_factory=RepairSettings)
    brain: BrainSettings = Field(default_factory=BrainSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)

    @model_validator(mode="after")
    def _unique_tasks(self) -> Settings:
        names = [t.name for t in self.tasks]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"task names must be unique; repeated: {', '.join(sorted(dup))}")
        return self


def validation_message(err: ValidationError) -> str:
    """``field.path: problem`` for the first error of ``err`` (one line, pydantic's boilerplate removed)."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "<root>"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown setting: remove it or check its spelling (see the comments in kaizen.yaml)"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{loc}: {msg}{more}"


def _format_error(path: Path, err: ValidationError) -> str:
    return f"{path}: {validation_message(err)}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        try:
            first = seen.setdefault(key, key_node.start_mark.line + 1)
        except TypeError:  # an unhashable key: let the normal constructor report it
            continue
        if first != key_node.start_mark.line + 1:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} is given twice (lines {first} and {key_node.start_mark.line + 1}): keep one",
                key_node.start_mark,
            )
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: Path, what: str = "file") -> Any:
    """Parse a YAML file a person wrote: strict UTF-8, no duplicated keys, every problem a ``ConfigError``.

    Args:
        path: The file.
        what: What the file is, for messages (``kaizen.yaml``, ``skill file`` …).

    Raises:
        ConfigError: The path is a directory or unreadable, the bytes are not UTF-8, the YAML is
            invalid, or a mapping repeats a key — with the line and the fix.
    """
    if path.is_dir():
        raise ConfigError(f"{path} is a directory, not a {what}: remove or rename it")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not valid UTF-8 (byte {e.start}): save the {what} as UTF-8"
        ) from None
    try:
        return yaml.load(text.removeprefix("\ufeff"), Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None


def load_settings(path: Path) -> Settings:
    """Read and validate kaizen.yaml; a missing file gives the defaults."""
    if not path.exists() and not path.is_symlink():
        return Settings()
    raw = read_yaml(path, "kaizen.yaml") or {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping of sections (model, tasks, gate, budget, brain, schedule)"
        )
    try:
        return Settings.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_error(path, e)) from None


def _comment_block(model: type[BaseModel], indent: str = "") -> list[str]:
    lines: list[str] = []
    for name, f in model.model_fields.items():
        default: Any = f.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            lines.append(f"{indent}{name}:")
            lines.extend(_comment_block(type(default), indent + "  "))
            continue
        if name == "tasks":
            continue
        lines.append(f"{indent}# {f.description}")
        lines.append(
            f"{indent}{name}: {yaml.safe_dump(default, default_flow_style=True).strip().removesuffix('...').strip()}"
        )
    return lines


def settings_template() -> str:
    """The commented kaizen.yaml that ``kaizen init`` writes, generated from the field descriptions."""
    out = ["# kaizen settings. Every key is optional; shown values are the defaults.", ""]
    block = _comment_block(Settings)
    out.extend(block)
    out += [
        "",
        "# Tasks can be declared here or with `kaizen task add`.",
        "tasks: []",
        "#  - name: support-intents",
        "#    kind: classification        # classification | extraction | generation | math | code",
        "#    labels: [balance, transfer, card_declined]",
        "#    description: Route banking support messages.",
        "#    system_prompt: null          # null: derived from the labels",
        "",
    ]
    return "\n".join(out)
