"""The step ids under which the flow keeps its state are part of every recovery directory.

Bytewax ignores state stored under a step id the flow does not have, so a
renamed step would resume from nothing without a word. These tests pin the
ids, check that a directory written under the old ones is refused, and that
one upgraded with `operators.runtime.recovery_upgrade` continues exactly.
"""

import base64
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from dataflow import Sinks, build_flow
from devkit.memory_source import KeyValue, MemorySource
from devkit.reference import expected_output
from operators.pure.encoding import KafkaRecord
from operators.runtime.recovery_upgrade import upgrade_recovery_directory
from operators.runtime.resume import STEP_RENAMES, IncompatibleRecoveryError, stored_state
from operators.runtime.settings import Settings
from tests.outputs import by_source, latest_metrics, source_of

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "recovery-before-composites"

# The Kafka sinks keep theirs under write_login_metrics.produce, write_dlq.produce
# and write_late.produce, the ids they had before; TestingSinks keep none.
STATEFUL_STEPS = {"loginflow.read_user_login.read_and_parse", "loginflow.count_slices_in_windows.close_windows"}


def stored_step_ids(directory: Path) -> set[str]:
    ids: set[str] = set()
    for path in directory.glob("*.sqlite3"):
        connection = sqlite3.connect(path)
        try:
            ids.update(row[0] for row in connection.execute("SELECT DISTINCT step_id FROM snaps"))
        finally:
            connection.close()
    return ids


def run_flow(settings: Settings, partitions: dict[int, list[KeyValue]], recovery: Path) -> dict[str, list[KafkaRecord]]:
    out: dict[str, list[KafkaRecord]] = {"metrics": [], "dlq": [], "late": []}
    source = MemorySource(partitions, settings.window_seconds, settings.allowed_lateness_seconds)
    sinks = Sinks(TestingSink(out["metrics"]), TestingSink(out["dlq"]), TestingSink(out["late"]))
    run_main(
        build_flow(settings, source=source, sinks=sinks),
        epoch_interval=timedelta(seconds=1),
        recovery_config=RecoveryConfig(str(recovery)),
    )
    return out


def test_the_flow_keeps_its_state_under_the_pinned_step_ids(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 2)
    assert stored_state(tmp_path).resuming is False
    event = b'{"user_id":"u","device_id":"d","ip":"10.0.0.1","timestamp":1709251200}'
    out = run_flow(Settings.from_env({"WINDOW_SECONDS": "60"}), {0: [(b"k", event), (b"k", event)]}, tmp_path)
    assert out["metrics"], "the flow counted nothing"
    assert stored_step_ids(tmp_path) == STATEFUL_STEPS == set(STEP_RENAMES.values())
    assert stored_state(tmp_path).resuming is True


def test_state_under_the_step_ids_before_the_composite_operators_is_refused(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 2)
    flow = Dataflow("loginflow")
    op.output("out", op.input("read_and_parse_user_login", flow, TestingSource([1, 2])), TestingSink([]))
    run_main(flow, epoch_interval=timedelta(seconds=1), recovery_config=RecoveryConfig(str(tmp_path)))
    assert "loginflow.read_and_parse_user_login" in stored_step_ids(tmp_path)
    with pytest.raises(IncompatibleRecoveryError, match="read_and_parse_user_login.*recovery_upgrade"):
        stored_state(tmp_path)


def _bytes(text: Any) -> bytes | None:
    if text is None:
        return None
    if isinstance(text, dict):
        return base64.b64decode(text["base64"])
    return str(text).encode()


def test_a_directory_from_before_the_composite_operators_is_upgraded_and_continues_exactly(tmp_path: Path) -> None:
    run = json.loads((FIXTURE / "run.json").read_text())
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    for path in FIXTURE.glob("*.sqlite3"):
        shutil.copyfile(path, recovery / path.name)
    assert stored_step_ids(recovery) >= set(STEP_RENAMES)

    assert upgrade_recovery_directory(recovery) > 0
    assert stored_step_ids(recovery).isdisjoint(STEP_RENAMES)
    assert upgrade_recovery_directory(recovery) == 0, "a second upgrade must change nothing"
    assert stored_state(recovery).resuming is True

    inputs = {int(p): [(_bytes(k), _bytes(v)) for k, v in pairs] for p, pairs in run["input"].items()}
    settings = Settings.from_env(run["settings"])
    after = run_flow(settings, inputs, recovery)

    # The old run's offsets were resumed: nothing it read is forwarded again.
    read_before = {int(p): n for p, n in run["read_by_old_run"].items()}
    for record in after["dlq"] + after["late"]:
        partition, offset = source_of(record)
        assert offset >= read_before[partition]

    # Its windows were resumed: the old output then the new, latest count per
    # key as a compacted topic keeps it, is the answer over the whole input.
    old_metrics = [value.encode() for value in run["old_output"]["metrics"]]
    latest = latest_metrics(old_metrics + [record.value for record in after["metrics"]])
    lateness = settings.allowed_lateness_seconds
    values = {p: [value for _key, value in pairs] for p, pairs in inputs.items()}
    expected = expected_output(values, settings.window_seconds, lateness)
    assert latest == expected.metrics

    # Forwarded records: the old run's, then the new run's (disjoint, checked above).
    for name, header, want in (("dlq", "error", expected.rejects), ("late", "window_start", expected.late)):
        before = {
            (int(r["headers"]["source_partition"]), int(r["headers"]["source_offset"])): r["headers"][header]
            for r in run["old_output"][name]
        }
        assert {**before, **by_source(after[name], header)} == want, name


def test_init_recovery_upgrades_an_old_directory_before_any_process_starts(tmp_path: Path) -> None:
    for path in FIXTURE.glob("*.sqlite3"):
        shutil.copyfile(path, tmp_path / path.name)
    env = {"PATH": os.environ["PATH"], "RECOVERY_DIR": str(tmp_path), "PYTHON": sys.executable}
    script = FIXTURE.parents[2] / "scripts" / "init-recovery"
    result = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "moved to today's step ids" in result.stderr
    assert stored_step_ids(tmp_path).isdisjoint(STEP_RENAMES)
