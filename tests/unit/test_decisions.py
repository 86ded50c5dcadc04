"""Settings that decide something: every process and every resume must agree on them."""

import pickle

import pytest

from operators.pure.shards import ConfigFingerprint, ShardCounter
from operators.pure.slices import SliceSpec
from operators.pure.window_shard import ResumeMismatchError, WindowShard
from operators.runtime.settings import Settings

BY_USER = SliceSpec(("user_id",), 1)
KEY = "k" * 16

# One value per setting that must differ from the default; each decides something.
CHANGED = {
    "ALLOWED_LATENESS_SECONDS": "3",
    "MAX_AHEAD_OF_RECORD_SECONDS": "60",
    "MAX_FIELD_BYTES": "64",
    "PSEUDONYMIZE": "ip",
    "PSEUDONYMIZE_KEY": "another-key-of-16-chars",
    "PROCESSING_GUARANTEE": "exactly-once",
    "STOP_AT_END": "true",
    "MAX_WINDOWS_PER_SHARD": "7",
    "INPUT_TOPIC": "other-input",
    "OUTPUT_TOPIC": "other-output",
    "DLQ_TOPIC": "other-dlq",
    "LATE_TOPIC": "other-late",
    "TRANSACTIONAL_ID_PREFIX": "other-prefix",
}
MAY_CHANGE_ACROSS_RESUME = {
    "STOP_AT_END",
    "MAX_WINDOWS_PER_SHARD",
    "INPUT_TOPIC",
    "OUTPUT_TOPIC",
    "DLQ_TOPIC",
    "LATE_TOPIC",
    "TRANSACTIONAL_ID_PREFIX",
}
BASE = {"PSEUDONYMIZE": "user_id", "PSEUDONYMIZE_KEY": KEY}


def decisions(**env: str) -> tuple:
    return Settings.from_env({**BASE, **env}).decisions()


def shard(env: dict[str, str], snapshot: object = None) -> WindowShard:
    return WindowShard([BY_USER], 60, 4, snapshot, decisions=decisions(**env))  # type: ignore[arg-type]


def test_every_setting_that_decides_is_in_the_fingerprint() -> None:
    named = {name for name, _value, _fixed in decisions()}
    assert named == set(CHANGED)
    assert {name for name, _value, fixed in decisions() if not fixed} == MAY_CHANGE_ACROSS_RESUME


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_processes_that_disagree_on_a_setting_are_named_with_both_values(name: str) -> None:
    here = ConfigFingerprint.of([BY_USER], 60, 4, decisions())
    there = ConfigFingerprint.of([BY_USER], 60, 4, decisions(**{name: CHANGED[name]}))
    problem = here.mismatch(there)
    assert problem is not None
    assert problem.startswith(f"{name}: the processes of this dataflow disagree")
    assert here.mismatch(here) is None


def test_a_counter_stamps_its_updates_with_its_process_settings() -> None:
    counter = ShardCounter((BY_USER,), 60, 4, decisions(ALLOWED_LATENESS_SECONDS="3"))
    mine = WindowShard([BY_USER], 60, 4, decisions=decisions())
    assert mine.fingerprint.mismatch(counter.fingerprint) == (
        "ALLOWED_LATENESS_SECONDS: the processes of this dataflow disagree: 10.0 here, 3.0 in the process "
        "that sent a count; start every process with the same settings"
    )


@pytest.mark.parametrize("name", sorted(set(CHANGED) - MAY_CHANGE_ACROSS_RESUME))
def test_a_resume_with_a_changed_decision_setting_stops_naming_it(name: str) -> None:
    snapshot = pickle.loads(pickle.dumps(shard({}).snapshot()))  # noqa: S301 - our own bytes
    with pytest.raises(ResumeMismatchError, match=f"^{name}: recovery state was written with .*, now .*"):
        shard({name: CHANGED[name]}, snapshot)


@pytest.mark.parametrize("name", sorted(MAY_CHANGE_ACROSS_RESUME))
def test_a_resume_may_change_topics_bounds_and_mode(name: str) -> None:
    snapshot = shard({}).snapshot()
    resumed = shard({name: CHANGED[name]}, snapshot)
    assert resumed.snapshot()._replace(decisions=None) == snapshot._replace(decisions=None)
    assert resumed.fingerprint.settings()[name] != shard({}).fingerprint.settings()[name]


def test_the_key_is_named_by_a_digest_never_by_its_value() -> None:
    snapshot = shard({}).snapshot()
    with pytest.raises(ResumeMismatchError) as raised:
        shard({"PSEUDONYMIZE_KEY": CHANGED["PSEUDONYMIZE_KEY"]}, snapshot)
    message = str(raised.value)
    assert message.startswith("PSEUDONYMIZE_KEY: recovery state was written with a key with digest ")
    assert KEY not in message
    assert CHANGED["PSEUDONYMIZE_KEY"] not in message


def test_a_snapshot_from_before_the_settings_were_recorded_resumes() -> None:
    older = shard({}).snapshot()._replace(decisions=None)
    assert shard({"ALLOWED_LATENESS_SECONDS": "3"}, older).let_go_through == older.let_go_through
