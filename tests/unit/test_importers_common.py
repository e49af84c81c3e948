"""What the four added importers share: registration, auto-detection, idempotent store import.

The per-format files test each mapping; this one checks the contract end to end: ``--format
auto`` picks every format from its fixture, and importing a file twice into a real store adds
nothing the second time (the trace ids are stable).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kaizen.tools.logs import FORMATS, UNKNOWN_FORMAT, Importer, SkipRecord, parse_traces
from kaizen.tools.schema import TaskSpec
from kaizen.tools.store import Store
from kaizen.tools.workspace import init_workspace

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
CASES = [
    ("openai-batch", "openai_batch_output.jsonl", 3),
    ("otel-genai", "otel_genai_spans.jsonl", 3),
    ("langfuse", "langfuse_observations.jsonl", 4),
    ("vllm-log", "vllm_requests.log", 5),
]


def test_registered_in_detection_order_and_named_in_the_unknown_format_message() -> None:
    assert list(FORMATS) == ["kaizen", "openai-chat", "openai-batch", "otel-genai", "langfuse", "vllm-log"]
    assert all(isinstance(imp, Importer) for imp in FORMATS.values())
    for words in ("OpenAI Batch", "OTel GenAI", "Langfuse", "vLLM", "pass --format"):
        assert words in UNKNOWN_FORMAT
    assert not issubclass(SkipRecord, ValueError)


@pytest.mark.parametrize(("fmt", "name", "n"), CASES)
def test_auto_detection_picks_the_format(fmt: str, name: str, n: int) -> None:
    res = parse_traces(FIX / name)
    assert (res.format, len(res.traces)) == (fmt, n)
    assert parse_traces(FIX / name, fmt=fmt).traces == res.traces


@pytest.fixture
def store(tmp_path: Path) -> Store:
    ws, _ = init_workspace(tmp_path / "ws")
    s = Store(ws.db_url)
    s.add_task(
        TaskSpec(name="intents", kind="classification", labels=["balance", "transfer", "card_declined"])
    )
    yield s
    s.close()


@pytest.mark.parametrize(("fmt", "name", "n"), CASES)
def test_importing_twice_adds_nothing(store: Store, fmt: str, name: str, n: int) -> None:
    def ingest() -> tuple[int, int]:
        res = parse_traces(FIX / name)
        stats = store.import_traces(res.traces, path=str(FIX / name), default_task="intents")
        return stats.imported, stats.duplicates

    assert ingest() == (n, 0)
    assert ingest() == (0, n)
