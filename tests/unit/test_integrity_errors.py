"""Issue 14, items 7-12: clear one-line errors instead of tracebacks or silent acceptance.

Real workspaces (SQLite; PostgreSQL for the password masking), the real CLI — in-process through
``main`` where the exit code and stderr are enough, as a subprocess where "no traceback" is the point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from model_files import SMOLLM2_IN, SMOLLM2_OUT, lora_shapes, write_adapter, write_safetensors

from kaizen.tools import registry
from kaizen.tools.config import BrainSettings
from kaizen.tools.errors import ConfigError, ModelError
from kaizen.tools.schema import TaskSpec
from kaizen.tools.workspace import init_workspace
from kaizen.workflows.cli.main import main

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


@pytest.fixture
def ws_dir(tmp_path: Path) -> Path:
    ws, _ = init_workspace(tmp_path / "ws")
    ws.store.add_task(
        TaskSpec(
            name="intents",
            kind="classification",
            labels=["balance", "[/INST]"],
            description="route [/INST] requests [bold]",
        )
    )
    ws.store.close()
    return tmp_path / "ws"


def cli(ws: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``kaizen`` as a user runs it: a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "kaizen.workflows.cli", "--workspace", str(ws), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"KAIZEN_HOME": "", "KAIZEN_DB_URL": ""} | (env or {}),
    )


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def err(capsys: pytest.CaptureFixture[str]) -> str:
    out = capsys.readouterr().err.strip()
    assert "\n" not in out and out.startswith("error: "), out
    return out


# --- item 7: data is never rich markup -----------------------------------------------------------


def test_markup_in_data_prints_as_itself(
    ws_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "t.jsonl"
    log.write_text(
        json.dumps(
            {
                "task": "intents",
                "messages": [{"role": "user", "content": "[INST] hi [/INST]"}],
                "output": "[/INST]",
                "feedback": {"verdict": "pass"},
            }
        )
        + "\n"
    )
    w = ["--workspace", str(ws_dir)]
    assert main([*w, "ingest", str(log)]) == 0
    capsys.readouterr()
    assert main([*w, "traces", "stats", "--task", "intents"]) == 0
    assert "[/INST]" in capsys.readouterr().out  # the label table and the outputs, verbatim
    assert main([*w, "task", "show", "intents"]) == 0
    out = capsys.readouterr().out
    assert "route [/INST] requests [bold]" in out and "'[/INST]'" in out


# --- item 8: an unusable store -------------------------------------------------------------------


def test_random_bytes_in_the_database(ws_dir: Path) -> None:
    db = ws_dir / ".kaizen" / "kaizen.db"
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    db.write_bytes(os.urandom(8192))
    line = one_line_error(cli(ws_dir, "traces", "stats", "--task", "intents"))
    assert f"database {db} is damaged or not a SQLite database" in line and "kaizen init" in line


def test_a_deleted_database_is_not_recreated_by_a_read(ws_dir: Path) -> None:
    db = ws_dir / ".kaizen" / "kaizen.db"
    for extra in ("", "-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    line = one_line_error(cli(ws_dir, "task", "list"))
    assert f"database {db} does not exist" in line
    assert not db.exists()


def test_a_read_only_database(
    ws_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite opened read-only (``mode=ro``): the error a read-only workspace gives, which root's
    permissions cannot produce here (root writes through chmod)."""
    monkeypatch.setenv("KAIZEN_DB_URL", f"sqlite:///file:{ws_dir / '.kaizen' / 'kaizen.db'}?mode=ro&uri=true")
    w = ["--workspace", str(ws_dir)]
    assert main([*w, "task", "list"]) == 0  # reading works
    capsys.readouterr()
    assert main([*w, "task", "add", "other", "--kind", "generation"]) == 2
    assert "is read-only (attempt to write a readonly database): give this user write permission" in err(
        capsys
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_a_read_only_workspace(ws_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = ws_dir / ".kaizen"
    modes = {p: p.stat().st_mode for p in [state, *state.glob("kaizen.db*")]}
    try:
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        assert main(["--workspace", str(ws_dir), "task", "add", "other", "--kind", "generation"]) == 2
        assert "read-only" in err(capsys) or "cannot open" in capsys.readouterr().err
    finally:
        for p, m in modes.items():
            p.chmod(m)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("notaurl", "'notaurl' is not a database URL"),
        ("mysql://bob:s3cret@127.0.0.1:1/k", "needs a driver that is not installed"),
        (
            "postgresql+psycopg://bob:s3cret@127.0.0.1:1/k",
            "cannot use database postgresql+psycopg://bob:***@127.0.0.1:1/k",
        ),
    ],
)
def test_a_bad_db_url_is_one_line_without_its_password(ws_dir: Path, url: str, says: str) -> None:
    line = one_line_error(cli(ws_dir, "task", "list", env={"KAIZEN_DB_URL": url}))
    assert says in line and "s3cret" not in line and "KAIZEN_DB_URL" in line


# --- item 12 (store side): the password of KAIZEN_DB_URL never shows -----------------------------


def test_init_json_and_the_empty_database_error_mask_the_password(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = pg_url.replace("://postgres@", "://postgres:s3cret@")  # the test server trusts any password
    monkeypatch.setenv("KAIZEN_DB_URL", url)
    assert main(["--workspace", str(tmp_path), "task", "list"]) != 0  # no workspace yet
    capsys.readouterr()
    (tmp_path / ".kaizen").mkdir()
    assert main(["--workspace", str(tmp_path), "task", "list"]) == 2
    msg = err(capsys)
    assert "is empty: run `kaizen init` first" in msg and "s3cret" not in msg and "postgres:***@" in msg
    assert main(["init", str(tmp_path / "ws"), "--json"]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out and json.loads(out)["db"].startswith("postgresql+psycopg://postgres:***@")


# --- item 9: models add validates before registering ---------------------------------------------


def tiny_base(tmp_path: Path) -> Path:
    """A full model directory with SmolLM2's layer sizes (2 layers; weights: one small tensor)."""
    d = tmp_path / "tiny-base"
    d.mkdir()
    (d / "config.json").write_text(
        json.dumps(
            {
                "model_type": "llama",
                "architectures": ["LlamaForCausalLM"],
                "hidden_size": 576,
                "num_attention_heads": 9,
                "num_key_value_heads": 3,
                "head_dim": 64,
                "intermediate_size": 1536,
                "num_hidden_layers": 2,
            }
        )
    )
    write_safetensors(d / "model.safetensors", {"model.norm.weight": [576]})
    return d


def test_models_add_refuses_what_cannot_be_served(
    ws_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = ["--workspace", str(ws_dir)]
    assert main([*w, "models", "add", "tiny", "--path", str(tiny_base(tmp_path))]) == 0
    capsys.readouterr()

    def refused(path: Path, *extra: str) -> str:
        assert main([*w, "models", "add", "x", "--path", str(path), "--base", "tiny", *extra]) != 0
        return err(capsys)

    not_json = tmp_path / "not-json"
    not_json.mkdir()
    (not_json / "config.json").write_text("{not json")
    write_safetensors(not_json / "model.safetensors", {"w": [1]})
    assert "cannot read it as JSON" in refused(not_json)
    noise = write_adapter(tmp_path / "noise")
    (noise / "adapter_model.safetensors").write_bytes(os.urandom(4096))
    assert "not a valid safetensors file" in refused(noise)
    other = write_adapter(
        tmp_path / "other-base",
        shapes=lora_shapes(
            hidden_in={**SMOLLM2_IN, "q_proj": 2048, "v_proj": 2048},
            out={**SMOLLM2_OUT, "q_proj": 2048, "v_proj": 256},
        ),
        base="meta-llama/Llama-3.2-1B",
    )
    msg = refused(other)
    assert (
        "does not fit base 'tiny'" in msg
        and "input size is 2048, and the base's is 576" in msg
        and "Llama-3.2-1B" in msg
    )
    deep = write_adapter(tmp_path / "deep", shapes=lora_shapes(layers=(0, 5)))
    assert "adapts layer 5, and the base has 2 layers" in refused(deep)
    wide = write_adapter(tmp_path / "wide", r=128)
    assert "LoRA rank 128 is above 64" in refused(wide)
    good = write_adapter(tmp_path / "good")
    assert "task 'intents' runs on base 'base'" in refused(
        good, "--task", "intents"
    )  # the task's base is another
    assert [v.name for v in registry_rows(ws_dir)] == ["base", "tiny"]  # nothing was registered
    assert main([*w, "models", "add", "ok", "--path", str(good), "--base", "tiny"]) == 0


def registry_rows(ws_dir: Path) -> list:
    from kaizen.tools.store import Store

    s = Store(f"sqlite:///{ws_dir / '.kaizen' / 'kaizen.db'}")
    try:
        return s.list_model_versions()
    finally:
        s.close()


def test_promoting_another_tasks_version_is_refused(
    ws_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kaizen.tools.store import Store

    s = Store(f"sqlite:///{ws_dir / '.kaizen' / 'kaizen.db'}")
    s.add_task(TaskSpec(name="sums", kind="math"))
    registry.add_external(s, "intents-v1", write_adapter(tmp_path / "a"), task="intents")
    with pytest.raises(ModelError, match="version 'intents-v1' belongs to task 'intents', not 'sums'"):
        registry.promote(s, "sums", "intents-v1")
    assert s.get_alias("sums", "production").model_version == "base"
    s.close()
    assert main(["--workspace", str(ws_dir), "models", "promote", "intents-v1", "--task", "sums"]) != 0
    assert "belongs to task 'intents'" in err(capsys)
    assert main(["--workspace", str(ws_dir), "models", "promote", "intents-v1", "--task", "intents"]) == 0


# --- item 10: an explicit format that matches nothing --------------------------------------------


def test_vllm_log_format_on_another_file_is_an_error(
    ws_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = FIX / "kaizen_small.jsonl"
    assert (
        main(["--workspace", str(ws_dir), "ingest", str(f), "--format", "vllm-log", "--task", "intents"]) == 2
    )
    msg = err(capsys)
    assert f"{f}:0: <format>: no record of format vllm-log" in msg and "looks like kaizen" in msg
    assert (
        main(
            [
                "--workspace",
                str(ws_dir),
                "ingest",
                str(f),
                "--format",
                "langfuse",
                "--task",
                "intents",
                "--skip-invalid",
            ]
        )
        == 2
    )
    assert "no record of format langfuse" in err(capsys)


# --- item 11: kaizen.yaml and skill files --------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"model:\n  base: caf\xe9\n", "kaizen.yaml:2: not valid UTF-8"),
        (b"gate:\n  min_gain: 0.1\n  min_gain: 0.5\n", "key 'min_gain' is given twice (lines 2 and 3)"),
        (b"schedule:\n  format: bogus\n", "schedule.format: unknown log format 'bogus'"),
        (None, "kaizen.yaml is a directory"),
    ],
)
def test_bad_kaizen_yaml_is_one_line(
    ws_dir: Path, content: bytes | None, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = ws_dir / "kaizen.yaml"
    cfg.unlink()
    if content is None:
        cfg.mkdir()
    else:
        cfg.write_bytes(content)
    assert main(["--workspace", str(ws_dir), "task", "list"]) == 2
    assert says in err(capsys)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"- system_prompt: x\n", "not a list"),
        (b"just a sentence\n", "not a single value (str)"),
        (b"instructions: r\xe9ponds\n", "not valid UTF-8"),
        (b"instructions: a\ninstructions: b\n", "key 'instructions' is given twice"),
    ],
)
def test_bad_skill_files(
    ws_dir: Path, tmp_path: Path, content: bytes, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "skill.yaml"
    f.write_bytes(content)
    assert main(["--workspace", str(ws_dir), "skills", "add", str(f), "--task", "intents"]) == 2
    assert says in err(capsys)


# --- item 12: the LLM brain's API key ------------------------------------------------------------


def test_a_missing_api_key_fails_fast_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kaizen.agent.llm_client import LLMClient

    monkeypatch.delenv("KAIZEN_TEST_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):  # api.openai.com always needs one
        LLMClient(BrainSettings(kind="llm", model="gpt-4o-mini"), cache_dir=tmp_path / "c")
    named = BrainSettings(
        kind="llm", model="m", base_url="https://llm.example/v1", api_key_env="KAIZEN_TEST_KEY"
    )
    with pytest.raises(
        ConfigError, match="KAIZEN_TEST_KEY is not set"
    ):  # a variable kaizen.yaml names must be set
        LLMClient(named, cache_dir=tmp_path / "c")
    # a local server without a key is fine; with the variable set, so is the named endpoint
    LLMClient(
        BrainSettings(kind="llm", model="m", base_url="http://127.0.0.1:8000/v1"), cache_dir=tmp_path / "c"
    )
    monkeypatch.setenv("KAIZEN_TEST_KEY", "sk-test")
    assert LLMClient(named, cache_dir=tmp_path / "c").client.api_key == "sk-test"
