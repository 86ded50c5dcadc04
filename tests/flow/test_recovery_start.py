"""Rows of the recovery store are deleted only by a real `bytewax.run` start, and only on one host's own directory.

Each test builds a real Bytewax store that one run stopped on, with a row at
its resume epoch such as a crash leaves (tests/recovery_store.py): the row
the start-up prune must delete (operators/runtime/abandoned_epochs.py).
Importing the flow module is not a start: `bytewax.visualize`, `python -c`,
a REPL or a test import it with whatever arguments and environment they
have, and must delete nothing.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.outputs import TopicFactory
from tests.recovery_store import leftover_rows, store_with_a_leftover_row

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180
RECOVERY_ENV = "BYTEWAX_RECOVERY_DIRECTORY"


def run_python(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if name != RECOVERY_ENV}
    return subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, *args],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        check=False,
    )


@pytest.mark.parametrize(
    ("program", "via_env"),
    [
        (["-c", "import dataflow"], False),
        (["-m", "bytewax.visualize", "dataflow"], True),
    ],
    ids=["python_c_with_r_in_argv", "bytewax_visualize_with_env"],
)
def test_importing_the_flow_outside_bytewax_run_deletes_nothing(
    tmp_path: Path, program: list[str], via_env: bool
) -> None:
    recovery = tmp_path / "recovery"
    epoch = store_with_a_leftover_row(recovery)
    args = [*program] if via_env else [*program, "-r", str(recovery), "-s", "1", "-b", "0"]
    done = run_python(args, {RECOVERY_ENV: str(recovery)} if via_env else {})
    assert done.returncode == 0, done.stderr
    assert "dropped snapshots" not in done.stderr
    assert leftover_rows(recovery, epoch) == 1


@pytest.mark.kafka
@pytest.mark.parametrize("form", ["-r{}", "-r={}", "--recovery-directory={}"])
def test_a_bytewax_run_start_prunes_with_every_form_of_the_recovery_argument(
    tmp_path: Path, form: str, kafka_brokers: str, topic_factory: TopicFactory
) -> None:
    recovery = tmp_path / "recovery"
    epoch = store_with_a_leftover_row(recovery)
    topics = {name: topic_factory(1) for name in ("INPUT_TOPIC", "OUTPUT_TOPIC", "DLQ_TOPIC", "LATE_TOPIC")}
    env = {"KAFKA_BROKERS": kafka_brokers, "STOP_AT_END": "true", **topics}
    # A bounded run of an empty topic: the whole start, then the end at once.
    done = run_python(["-m", "bytewax.run", "dataflow", form.format(recovery), "-s", "1", "-b", "0"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"dropped snapshots of epochs the stopped run did not finish directory={recovery}" in done.stderr
    assert leftover_rows(recovery, epoch) == 0
