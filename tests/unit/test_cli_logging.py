"""The CLI shows ``tools/``'s log records on stderr as the prints they replaced: ``kaizen: message`` at INFO
and up (DEBUG with ``--debug``), training progress as bare ``  train: step N/M, ...`` lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from kaizen.tools.versions import progress_printer
from kaizen.workflows.cli.main import main
from kaizen.workflows.cli.output import configure_logging


@pytest.fixture(autouse=True)
def _restore_kaizen_logger() -> Iterator[None]:
    logger = logging.getLogger("kaizen")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


def test_records_print_as_kaizen_lines_and_progress_as_is(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging()
    configure_logging()  # a second main() in the same process: still one line per record
    logging.getLogger("kaizen.tools.lock").warning(
        "took over the stale lock of run %s on %r (%s)", "r1", "t", "why"
    )
    logging.getLogger("kaizen.tools.train.launch").info("adopting training runner pid %s", 42)
    logging.getLogger("kaizen.tools.lock").debug("hidden without --debug")
    logging.getLogger("other.library").info("not kaizen's")
    show = progress_printer(" (of 3 jobs)")
    show({"step": 2, "max_steps": 10, "loss": 1.23456, "learning_rate": 5e-05})
    show({"step": 2, "max_steps": 10, "train_runtime": 1.0})  # no loss/reward: not a progress step
    assert capsys.readouterr().err.splitlines() == [
        "kaizen: took over the stale lock of run r1 on 't' (why)",
        "kaizen: adopting training runner pid 42",
        "  train: step 2/10, loss 1.235, learning_rate 5e-05 (of 3 jobs)",
    ]


def test_debug_shows_debug_records(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(debug=True)
    logging.getLogger("kaizen.tools.lock").debug("now shown")
    assert capsys.readouterr().err == "kaizen: now shown\n"


def test_main_configures_logging(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path)]) == 0
    capsys.readouterr()
    logging.getLogger("kaizen.tools.train.launch").info("visible after main()")
    assert capsys.readouterr().err == "kaizen: visible after main()\n"
