"""kaizen as users install it: a built wheel, beside another package named ``tools``, run from elsewhere.

The wheel is installed with ``--no-deps`` into a fresh venv whose dependencies come from the test venv (a
``.pth`` line; never a new resolution, which would pull a CUDA torch), next to a dummy top-level ``tools``
package. Both must keep working: kaizen imports only ``kaizen.*``.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import shutil

    tmp = tmp_path_factory.mktemp("wheel")
    # Build from a copy: setuptools writes build/ and *.egg-info into the source tree it builds.
    src = tmp / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv*",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".kaizen",
            "v1-job",
            ".pytest_cache",
        ),
    )
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp / "dist"),
            str(src),
        ],
        cwd=tmp,
    )
    wheel = next((tmp / "dist").glob("kaizen-*.whl"))
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    purelib = Path(
        _run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp
        ).stdout.strip()
    )
    # The test venv's packages (torch, trl …) without its editable kaizen: a plain path line adds the
    # directory, and .pth files inside it (the editable finder) are not processed.
    (purelib / "zz_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=tmp)
    dummy = purelib / "tools"
    dummy.mkdir()
    (dummy / "__init__.py").write_text("WHO = 'someone else'\n")
    return env_dir


def test_wheel_beside_a_foreign_tools_package(wheel_venv: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    out = _run([str(wheel_venv / "bin" / "kaizen"), "--help"], cwd=tmp_path, env=env).stdout
    assert "repair" in out and "ingest" in out
    code = (
        "import tools, kaizen.tools.schema, kaizen.workflows.cli, kaizen.agent.graph; "
        "print(tools.WHO, kaizen.tools.schema.__file__, kaizen.workflows.report.build.TEMPLATE.exists() "
        "if hasattr(kaizen.workflows, 'report') else '')"
    )
    got = _run([str(wheel_venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=env).stdout
    assert got.startswith("someone else "), got
    assert str(wheel_venv) in got, "kaizen must come from the wheel, not the source tree"
    tmpl = _run(
        [
            str(wheel_venv / "bin" / "python"),
            "-c",
            "from kaizen.workflows.report.build import TEMPLATE; print(TEMPLATE.is_file())",
        ],
        cwd=tmp_path,
        env=env,
    )
    assert tmpl.stdout.strip() == "True", "the report template must ship in the wheel"


def test_training_job_from_outside_the_repository(
    wheel_venv: Path, tiny_llama_dir: Path, tmp_path: Path
) -> None:
    """``kaizen train sft`` from a directory far from the source tree: the runner subprocess is found by name."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")} | {
        "KAIZEN_HOME": str(tmp_path / "ws")
    }
    kz = str(wheel_venv / "bin" / "kaizen")
    work = tmp_path / "elsewhere"
    work.mkdir()
    data = work / "train.jsonl"
    data.write_text(
        "".join(
            f'{{"messages": [{{"role": "user", "content": "{t}"}}], "expected": "{lab}"}}\n'
            for t, lab in [("what is my balance", "balance"), ("send money to Ann", "transfer")] * 4
        )
    )
    _run([kz, "init"], cwd=work, env=env)
    _run([kz, "models", "add", "tiny", "--path", str(tiny_llama_dir)], cwd=work, env=env)
    _run(
        [kz, "task", "add", "t", "--kind", "classification", "--labels", "balance,transfer"],
        cwd=work,
        env=env,
    )
    out = _run(
        [
            kz,
            "train",
            "sft",
            "--data",
            str(data),
            "--task",
            "t",
            "--base",
            "tiny",
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--lora-r",
            "4",
            "--json",
        ],
        cwd=work,
        env=env,
        timeout=600,
    ).stdout
    assert '"steps": 2' in out, out
