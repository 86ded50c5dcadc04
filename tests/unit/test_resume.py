"""Telling a resumed run from a fresh one, from the recovery store every process shares."""

from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from operators.runtime.resume import has_committed_epoch, recovery_directory


def test_the_recovery_directory_comes_from_bytewax_runs_arguments_or_environment() -> None:
    assert recovery_directory(["bytewax.run", "dataflow", "-r", "/r", "-s", "1"], {}) == Path("/r")
    assert recovery_directory(["x", "--recovery-directory=/q"], {}) == Path("/q")
    assert recovery_directory(["x"], {"BYTEWAX_RECOVERY_DIRECTORY": "/e"}) == Path("/e")
    assert recovery_directory(["x", "-w", "2"], {}) is None


def test_a_fresh_recovery_directory_has_no_committed_epoch(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 2)
    assert has_committed_epoch(tmp_path) is False
    assert has_committed_epoch(tmp_path / "missing") is False


def test_a_directory_a_run_committed_to_has_a_committed_epoch(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 2)
    flow = Dataflow("probe")
    op.output("out", op.input("in", flow, TestingSource([1, 2, 3])), TestingSink([]))
    run_main(flow, epoch_interval=timedelta(seconds=1), recovery_config=RecoveryConfig(str(tmp_path)))
    assert has_committed_epoch(tmp_path) is True
