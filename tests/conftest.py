"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

# The converted default model is cached once per user, not per test or per tmp dir: the
# conversion takes ~30-40 s. Read at import time, so a test that later points KAIZEN_CACHE at a
# temporary directory (monkeypatch) does not make the session fixture convert again.
SHARED_MODEL_CACHE = Path(os.environ.get("KAIZEN_CACHE") or Path.home() / ".cache" / "kaizen").expanduser()


@pytest.fixture(scope="session")
def shared_model_cache() -> Path:
    """The cache directory the session's converted models live in."""
    return SHARED_MODEL_CACHE


@pytest.fixture(scope="session")
def smollm_dir(shared_model_cache: Path) -> Path:
    """The embedded SmolLM2-135M-Instruct as a safetensors directory (converted once, cached)."""
    from kaizen.tools.models import resolve_base

    return resolve_base("smollm2-135m", cache=shared_model_cache)


@pytest.fixture(scope="session")
def tiny_llama_dir(smollm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama with the SmolLM2 tokenizer: seconds to train, for fast tests."""
    from kaizen.tools.models import build_tiny_random_llama

    return build_tiny_random_llama(tmp_path_factory.mktemp("tiny-llama"), smollm_dir)


# ------------------------------------------------------------------------------------------
# A "deployed v1" for the CLINC150 banking slice: the default model after a brief LoRA SFT on
# three of four intents. The fourth intent (card_declined) is the deliberate gap that the
# repair tests then fix. Trained once per session (≈1 min on 2 CPU cores) and shared by every
# test that needs a trained model; cached across sessions under the model cache, keyed by the
# exact data and recipe, so a local re-run does not pay it again.
CLINC_LABELS = ["balance", "transfer", "freeze_account", "card_declined"]
CLINC_GAP = "card_declined"


@pytest.fixture(scope="session")
def clinc_task():
    from kaizen.tools.schema import TaskSpec
    from kaizen.workflows.bench.clinc import SYSTEM_PROMPT

    return TaskSpec(name="intents", kind="classification", labels=CLINC_LABELS, system_prompt=SYSTEM_PROMPT)


@pytest.fixture(scope="session")
def clinc_v1(smollm_dir: Path, shared_model_cache: Path, clinc_task) -> dict:
    """Train (or reuse) the v1 adapter; returns {"adapter": Path, "result": dict, "train_ids": set}."""
    import json

    from kaizen.tools.data import sft_rows, write_items
    from kaizen.tools.schema import content_hash
    from kaizen.tools.train.launch import run_job
    from kaizen.tools.train.spec import LoraSpec, TrainJob
    from kaizen.workflows.bench.clinc import rows, to_items

    seen = [lab for lab in CLINC_LABELS if lab != CLINC_GAP]
    items = to_items(rows("train", seen, per_label=12, seed=1))
    data = sft_rows(clinc_task, items)
    recipe = dict(
        epochs=3,
        learning_rate=1e-3,
        batch_size=8,
        lora=LoraSpec(r=16, alpha=32, top_layers=12).model_dump(),
        seed=0,
    )
    key = content_hash({"data": data, "recipe": recipe, "v": 1})
    job_dir = shared_model_cache / "test-fixtures" / f"clinc-v1-{key}"
    job_dir.mkdir(parents=True, exist_ok=True)
    write_items(job_dir / "data.jsonl", data)
    job = TrainJob(
        kind="sft",
        base_dir=smollm_dir,
        data_path=job_dir / "data.jsonl",
        output_dir=job_dir,
        save_steps=100,
        **{k: v for k, v in recipe.items() if k != "lora"},
        lora=LoraSpec(**recipe["lora"]),
    )
    result = run_job(job)
    (job_dir / "fixture.json").write_text(json.dumps({"labels": CLINC_LABELS, "gap": CLINC_GAP}))
    return {
        "adapter": Path(result["output_path"]),
        "result": result,
        "train_ids": {it.id for it in items},
        "job_dir": job_dir,
    }


# ------------------------------------------------------------------------------------------
# GRPO needs reward *variance* inside a group: with identical rewards every advantage is zero
# and so is the gradient. A random Llama answers random tokens (reward always 0), so GRPO tests
# use this variant, which answers "yes" or "no" about equally often as its first token.
YES_NO_LABELS = ["yes", "no"]


@pytest.fixture(scope="session")
def grpo_trainer_classes():  # noqa: ANN201
    """``(KaizenGRPOTrainer, GRPOTrainer)``, imported with tests/ off sys.path.

    pytest puts tests/ on sys.path (this conftest.py), where tests/vllm/ then looks like a namespace
    package ``vllm`` to TRL's import-time vLLM check, which fails on its missing version. The runner
    subprocess never has tests/ on its path.
    """
    import sys

    tests_dir = Path(__file__).resolve().parent
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != tests_dir]
    try:
        from trl import GRPOTrainer

        from kaizen.tools.train.grpo_trainer import KaizenGRPOTrainer
    finally:
        sys.path[:] = saved
    return KaizenGRPOTrainer, GRPOTrainer


@pytest.fixture(scope="session")
def yes_no_llama_dir(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_llama_dir`` whose first generated token is "yes" or "no" (≈43 % each, any prompt).

    The embedding rows of the two tokens (tied with the output head) are set to the same vector,
    scaled so its logit at the generation position is ≈12 against ≈0 for every other token. That
    position is always after ``<|im_start|>assistant\\n``, so its hidden state barely depends on
    the prompt (cosine ≥ 0.998 measured). Sampling one token then gives label_exact_match
    rewards of 0 and 1 within each group: a real GRPO learning signal.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("yes-no-llama")
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    chat = [
        {"role": "system", "content": "Answer with one label: yes, no."},
        {"role": "user", "content": "Is 4 even?"},
    ]
    ids = tok(
        tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False),
        add_special_tokens=False,
        return_tensors="pt",
    ).input_ids
    label_ids = [tok.encode(w, add_special_tokens=False) for w in YES_NO_LABELS]
    assert all(len(t) == 1 for t in label_ids), label_ids
    with torch.no_grad():
        h = model.model(input_ids=ids).last_hidden_state[0, -1]  # after the final norm: what the head sees
        emb = model.get_input_embeddings().weight
        for (t,) in label_ids:
            emb[t] = h * (12.0 / h.dot(h))
        probs = model(input_ids=ids).logits[0, -1].softmax(-1)
    assert all(0.3 < probs[t].item() < 0.6 for (t,) in label_ids), [probs[t].item() for (t,) in label_ids]
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


# ------------------------------------------------------------------------------------------
# PostgreSQL. The store, the task lock, ingestion, cursors and resume run against SQLite *and*
# PostgreSQL (the ``kaizen_db`` fixture). The server comes from ``KAIZEN_TEST_PG_URL`` (CI starts
# one: see .ci/run), else this session starts a throwaway one when PostgreSQL's binaries are
# installed (initdb + pg_ctl; PostgreSQL refuses to run as root, so as root through
# ``runuser -u postgres``). Without either the postgres cases skip — or fail, with
# ``KAIZEN_REQUIRE_POSTGRES=1`` (CI), so a missing server can never pass as a green run.
PG_REQUIRED = os.environ.get("KAIZEN_REQUIRE_POSTGRES") == "1"


def _pg_unavailable(why: str) -> None:
    if PG_REQUIRED:
        pytest.fail(f"KAIZEN_REQUIRE_POSTGRES=1 but PostgreSQL is not available: {why}", pytrace=False)
    pytest.skip(f"PostgreSQL not available ({why}); set KAIZEN_TEST_PG_URL or install postgresql")


def _pg_bin(name: str) -> str | None:
    import glob
    import shutil

    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    return found[-1] if found else shutil.which(name)


def _pg_admin(base_url: str, sql: str) -> None:
    """Run one statement on the server's ``postgres`` database, outside a transaction (CREATE/DROP DATABASE)."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(base_url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(
        url.render_as_string(hide_password=False), autocommit=True, connect_timeout=10
    ) as conn:
        conn.execute(sql)


def start_throwaway_postgres(root: Path) -> tuple[str, Callable[[], None]]:
    """initdb + pg_ctl start on 127.0.0.1 and a free port; returns (base URL, a function that stops and removes it)."""
    import shutil
    import subprocess
    import tempfile

    from kaizen.tools.train.launch import free_port

    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("initdb/pg_ctl not found")
    as_user: list[str] = []
    data = Path(tempfile.mkdtemp(prefix="kaizen-pg-", dir=str(root)))
    if os.geteuid() == 0:  # "initdb: cannot be run as root"
        if not shutil.which("runuser"):
            raise RuntimeError("running as root and runuser is missing")
        shutil.chown(data, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [
            *as_user,
            initdb,
            "-D",
            str(data / "db"),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off -c full_page_writes=off -c max_connections=200"
    subprocess.run(
        [
            *as_user,
            pg_ctl,
            "-D",
            str(data / "db"),
            "-o",
            opts,
            "-l",
            str(data / "log"),
            "-w",
            "-t",
            "60",
            "start",
        ],
        check=True,
        capture_output=True,
        timeout=90,
    )

    def stop() -> None:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data / "db"), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(data, ignore_errors=True)

    return f"postgresql+psycopg://postgres@127.0.0.1:{port}", stop


@pytest.fixture(scope="session")
def pg_server() -> str:
    """Base URL (no database) of a PostgreSQL server: ``KAIZEN_TEST_PG_URL``, or one started for the session."""
    import subprocess
    import tempfile

    url = os.environ.get("KAIZEN_TEST_PG_URL")
    stop: Callable[[], None] | None = None
    if not url:
        try:
            url, stop = start_throwaway_postgres(Path(tempfile.gettempdir()))
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            err = getattr(e, "stderr", b"") or b""
            _pg_unavailable(f"{e} {err.decode(errors='replace')[-300:]}".strip())
    url = url.rstrip("/")
    try:
        _pg_admin(url, "SELECT 1")
    except Exception as e:  # noqa: BLE001 - any connection failure means "no server"; say which
        _pg_unavailable(f"cannot connect to {url}: {e}")
    yield url
    if stop:
        stop()


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """A fresh, empty PostgreSQL database for one test (dropped after it, connections and all)."""
    import uuid

    name = f"kaizen_test_{uuid.uuid4().hex[:12]}"
    _pg_admin(pg_server, f'CREATE DATABASE "{name}"')
    yield f"{pg_server}/{name}"
    _pg_admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def kaizen_db(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """Run the test on SQLite (the workspace's own file) and again on PostgreSQL (``KAIZEN_DB_URL``).

    Returns the PostgreSQL URL, or None for SQLite. Workspaces made in the test (``init_workspace``,
    ``kaizen`` subprocesses inheriting the environment) use that database.
    """
    if request.param == "sqlite":
        monkeypatch.delenv("KAIZEN_DB_URL", raising=False)
        return None
    url = request.getfixturevalue("pg_url")
    monkeypatch.setenv("KAIZEN_DB_URL", url)
    return url
