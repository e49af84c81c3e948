"""The vLLM server plumbing: start-up, structured (JSON-schema) outputs, LoRA hot-swap, clear errors.

The ``vllm``-marked tests share one real server (see conftest.py); the others need no vLLM.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kaizen.tools.errors import ToolUnavailableError
from kaizen.tools.serve.vllm_server import VLLMServer, VLLMServerError, find_vllm_python

ROOT = Path(__file__).resolve().parents[2]
V1_ADAPTER = ROOT / "examples" / "support-intents" / "data" / "v1"
SYSTEM = "Classify the banking request. Reply with the intent label only."
LABELS = ["balance", "transfer", "card_declined"]
SCHEMA = {
    "type": "object",
    # No free-form number or string: a 135M model can emit digits until max_tokens.
    "properties": {"intent": {"type": "string", "enum": LABELS}, "urgent": {"type": "boolean"}},
    "required": ["intent", "urgent"],
    "additionalProperties": False,
}


def chat(server: VLLMServer, text: str, *, model: str | None = None, **extra) -> dict:
    body = {
        "model": model or server.served_model_name,
        "temperature": 0,
        "max_tokens": 16,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
        **extra,
    }
    return server.request("POST", "/v1/chat/completions", body)["choices"][0]


def json_schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "intent", "schema": schema}}


# ------------------------------------------------------------------ no vLLM needed


def test_find_vllm_python_prefers_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KAIZEN_VLLM_PYTHON", "/usr/bin/env")
    assert find_vllm_python() == "/usr/bin/env"
    monkeypatch.setenv("KAIZEN_VLLM_PYTHON", str(tmp_path / "missing-python"))
    with pytest.raises(ToolUnavailableError, match="KAIZEN_VLLM_PYTHON"):
        find_vllm_python()


def test_start_rejects_a_directory_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(VLLMServerError, match="no config.json"):
        VLLMServer(python="/nonexistent/python").start(tmp_path)


# ------------------------------------------------------------------ a real server


@pytest.mark.vllm
def test_health_and_models(vllm_server: VLLMServer) -> None:
    assert vllm_server.running
    assert vllm_server.request("GET", "/health") == ""
    assert vllm_server.models() == [vllm_server.served_model_name]
    assert vllm_server.base_url == vllm_server.url + "/v1"


@pytest.mark.vllm
def test_json_schema_output_is_valid_json(vllm_server: VLLMServer) -> None:
    choice = chat(vllm_server, "my card was refused at the shop", max_tokens=100,
                  response_format=json_schema_format(SCHEMA))  # fmt: skip
    assert choice["finish_reason"] == "stop"
    obj = json.loads(choice["message"]["content"])
    assert set(obj) == {"intent", "urgent"}
    assert obj["intent"] in LABELS
    assert isinstance(obj["urgent"], bool)
    assert " " not in choice["message"]["content"]  # compact_json: no optional whitespace


@pytest.mark.vllm
def test_json_schema_output_truncated_by_max_tokens(vllm_server: VLLMServer) -> None:
    """A too small max_tokens cuts the JSON: the caller sees finish_reason "length" and must not parse."""
    choice = chat(vllm_server, "my card was refused at the shop", max_tokens=5,
                  response_format=json_schema_format(SCHEMA))  # fmt: skip
    assert choice["finish_reason"] == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(choice["message"]["content"])


@pytest.mark.vllm
def test_lora_load_changes_the_answer_and_unload_removes_it(vllm_server: VLLMServer) -> None:
    question = "how much does my bank account have"
    base = chat(vllm_server, question)["message"]["content"].strip()
    vllm_server.load_lora("v1", V1_ADAPTER)
    try:
        assert "v1" in vllm_server.models()
        tuned = chat(vllm_server, question, model="v1")["message"]["content"].strip()
        # v1 was trained to answer with the label only; the base model chats (same as HF+PEFT, greedy).
        assert tuned == "balance"
        assert tuned != base
        # The base model is unaffected while the adapter is loaded.
        assert chat(vllm_server, question)["message"]["content"].strip() == base
    finally:
        vllm_server.unload_lora("v1")
    assert "v1" not in vllm_server.models()
    with pytest.raises(VLLMServerError, match="404"):
        chat(vllm_server, question, model="v1")


@pytest.mark.vllm
def test_bad_adapters_give_clear_errors_and_the_server_keeps_serving(
    vllm_server: VLLMServer, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-adapter"
    with pytest.raises(VLLMServerError, match=r"'bad'.*no-such-adapter.*No adapter found"):
        vllm_server.load_lora("bad", missing)

    too_big = tmp_path / "rank32"  # the server was started with max_lora_rank=16
    shutil.copytree(V1_ADAPTER, too_big)
    config = json.loads((too_big / "adapter_config.json").read_text())
    (too_big / "adapter_config.json").write_text(json.dumps({**config, "r": 32}))
    with pytest.raises(VLLMServerError, match="rank 32 is greater than max_lora_rank 16"):
        vllm_server.load_lora("big", too_big)

    with pytest.raises(VLLMServerError, match="'never-loaded'.*404"):
        vllm_server.unload_lora("never-loaded")

    assert vllm_server.models() == [vllm_server.served_model_name]
    assert chat(vllm_server, "what is my balance", max_tokens=4)["finish_reason"] in ("stop", "length")


@pytest.mark.vllm
def test_server_that_exits_during_start_up_reports_its_log(
    vllm_python: str, smollm_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(VLLMServerError, match=r"exited with code [1-9].*\n(.|\n)*max-num-seqs"):
        VLLMServer(python=vllm_python).start(smollm_dir, extra_args=["--max-num-seqs", "not-a-number"],
                                             log_file=tmp_path / "bad.log", timeout_s=120)  # fmt: skip
