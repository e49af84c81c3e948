"""The training launcher setting: ``train.launcher`` in kaizen.yaml → ``TrainJob.launcher`` → the command line.

What runs is proven in tests/integration/test_train_distributed.py (2 gloo processes on the CPU); here:
the command lines and accelerate configs kaizen writes for each strategy, the setting's validation, the
path resolution against the workspace, and the one-line diagnosis of a failed rank.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from kaizen.tools.config import load_settings
from kaizen.tools.errors import ConfigError
from kaizen.tools.train.launch import accelerate_config, rank_failure, runner_command
from kaizen.tools.train.spec import LauncherSpec, TrainJob


def job(tmp_path: Path, **launcher) -> TrainJob:
    return TrainJob(
        kind="sft",
        base_dir=tmp_path / "base",
        data_path=tmp_path / "d.jsonl",
        output_dir=tmp_path / "job",
        launcher=LauncherSpec(**launcher),
    )


def test_python_is_the_default_and_runs_the_runner_directly(tmp_path: Path) -> None:
    j = job(tmp_path)
    assert runner_command(j, tmp_path / "job.json") == [
        sys.executable,
        "-m",
        "kaizen.tools.train.runner",
        str(tmp_path / "job.json"),
    ]


def test_accelerate_ddp_writes_a_config_and_launches_the_runner_module(tmp_path: Path) -> None:
    j = job(
        tmp_path, kind="accelerate", num_processes=2, main_process_port=29877, extra_args=["--gpu_ids", "0,1"]
    )
    j.output_dir.mkdir()
    cmd = runner_command(j, tmp_path / "job.json")
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[-3:] == ["-m", "kaizen.tools.train.runner", str(tmp_path / "job.json")]
    assert cmd[cmd.index("--main_process_port") + 1] == "29877" and "--gpu_ids" in cmd
    cfg = yaml.safe_load(Path(cmd[cmd.index("--config_file") + 1]).read_text())
    # MULTI_GPU is accelerate's torchrun launcher; ranks without CUDA join a gloo group on the CPU.
    assert (cfg["distributed_type"], cfg["num_processes"], cfg["num_machines"]) == ("MULTI_GPU", 2, 1)


@pytest.mark.parametrize(
    ("strategy", "kind", "key", "expected"),
    [
        ("deepspeed-zero2", "DEEPSPEED", "deepspeed_config", {"zero_stage": 2, "zero3_init_flag": False}),
        (
            "deepspeed-zero3",
            "DEEPSPEED",
            "deepspeed_config",
            {"zero_stage": 3, "zero3_save_16bit_model": True},
        ),
        (
            "fsdp",
            "FSDP",
            "fsdp_config",
            {"fsdp_use_orig_params": True, "fsdp_state_dict_type": "FULL_STATE_DICT"},
        ),
    ],
)
def test_strategy_configs(strategy: str, kind: str, key: str, expected: dict) -> None:
    cfg = accelerate_config(LauncherSpec(kind="accelerate", strategy=strategy), 4)
    assert cfg["distributed_type"] == kind and cfg["num_processes"] == 4
    assert expected.items() <= cfg[key].items()


def test_one_ddp_process_is_not_distributed() -> None:
    assert accelerate_config(LauncherSpec(kind="accelerate"), 1)["distributed_type"] == "NO"


def test_a_user_config_file_is_passed_as_is(tmp_path: Path) -> None:
    own = tmp_path / "multinode.yaml"
    own.write_text("distributed_type: MULTI_GPU\n")
    cmd = runner_command(
        job(tmp_path, kind="accelerate", config_file=own, num_processes=8), tmp_path / "job.json"
    )
    assert cmd[cmd.index("--config_file") + 1] == str(own) and cmd[cmd.index("--num_processes") + 1] == "8"
    missing = job(tmp_path, kind="accelerate", config_file=tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        runner_command(missing, tmp_path / "job.json")


def test_settings_section_and_relative_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "kaizen.yaml"
    cfg.write_text(
        "train:\n  launcher:\n    kind: accelerate\n    num_processes: 2\n    config_file: conf/acc.yaml\n"
    )
    launcher = load_settings(cfg).train.launcher
    assert (launcher.kind, launcher.num_processes) == ("accelerate", 2)
    assert launcher.relative_to(tmp_path).config_file == (tmp_path / "conf" / "acc.yaml").resolve()
    assert load_settings(tmp_path / "absent.yaml").train.launcher.kind == "python"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("train:\n  launcher:\n    kind: torchrun\n", "train.launcher.kind"),
        ("train:\n  launcher:\n    num_processes: 2\n", "need the accelerate launcher"),
        ("train:\n  launcher:\n    kind: accelerate\n    strategy: zero9\n", "train.launcher.strategy"),
    ],
)
def test_bad_launcher_settings_name_the_field(tmp_path: Path, body: str, message: str) -> None:
    cfg = tmp_path / "kaizen.yaml"
    cfg.write_text(body)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg)


ELASTIC_SUMMARY = """\
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
=======================================================
kaizen.tools.train.runner FAILED
-------------------------------------------------------
Failures:
[1]:
  time      : 2026-11-30_14:20:02
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 12368)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 12368
-------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-30_14:20:02
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 12369)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 12369
=======================================================
"""


def test_the_rank_that_died_first_is_named() -> None:
    line = rank_failure(ELASTIC_SUMMARY, 2)
    assert line is not None and "training rank 1 of 2 (pid 12369) was killed by SIGKILL" in line
    exited = ELASTIC_SUMMARY.replace("-9 (pid: 12369)  (SIGKILL)", "1 (pid: 12369)")
    assert "exited with code 1" in (rank_failure(exited) or "")
    assert rank_failure("Traceback (most recent call last):\nValueError: bad data") is None
