"""Settings from the environment: defaults, parsing, and one clear error per bad value."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from operators.pure.slices import SliceSpec
from operators.runtime.settings import DEFAULT_SLICES, ConfigError, Settings, parse_slices

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.brokers == "localhost:9092"
    assert settings.input_topic == "user-login"
    assert settings.output_topic == "login-metrics"
    assert settings.dlq_topic == "user-login-dlq"
    assert settings.late_topic == "user-login-late"
    assert settings.window_seconds == 60
    assert settings.allowed_lateness_seconds == 10.0
    assert settings.slices == (
        SliceSpec(("user_id", "device_id"), 2),
        SliceSpec(("user_id", "ip"), 2),
        SliceSpec(("app_version", "locale"), 1),
        SliceSpec(("app_version", "device_type"), 1),
    )
    assert settings.stop_at_end is False
    assert settings.start_offset == "earliest"
    assert settings.shards_per_slice == 4
    assert settings.batch_size == 5000
    assert settings.max_field_bytes == 1024
    assert settings.output_retention_hours == 168
    assert settings.log_level == "INFO"
    assert settings.kafka_props == {}
    assert settings.kafka_config() == {"bootstrap.servers": "localhost:9092"}


def test_from_env_without_variables_equals_the_dataclass_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_default_slices_text_parses_to_the_default_slices() -> None:
    assert parse_slices(DEFAULT_SLICES) == Settings().slices


@pytest.mark.parametrize(
    ("name", "text", "attribute", "value"),
    [
        ("KAFKA_BROKERS", "b1:9092,b2:9092", "brokers", "b1:9092,b2:9092"),
        ("KAFKA_BROKERS", "  b1:9092 ", "brokers", "b1:9092"),
        ("INPUT_TOPIC", "in", "input_topic", "in"),
        ("OUTPUT_TOPIC", "out", "output_topic", "out"),
        ("DLQ_TOPIC", "dlq", "dlq_topic", "dlq"),
        ("LATE_TOPIC", "late", "late_topic", "late"),
        ("WINDOW_SECONDS", "300", "window_seconds", 300),
        ("WINDOW_SECONDS", "1", "window_seconds", 1),
        ("ALLOWED_LATENESS_SECONDS", "0", "allowed_lateness_seconds", 0.0),
        ("ALLOWED_LATENESS_SECONDS", "2.5", "allowed_lateness_seconds", 2.5),
        ("ALLOWED_LATENESS_SECONDS", "30", "allowed_lateness_seconds", 30.0),
        ("STOP_AT_END", "true", "stop_at_end", True),
        ("STOP_AT_END", "1", "stop_at_end", True),
        ("STOP_AT_END", "YES", "stop_at_end", True),
        ("STOP_AT_END", " on ", "stop_at_end", True),
        ("STOP_AT_END", "false", "stop_at_end", False),
        ("STOP_AT_END", "0", "stop_at_end", False),
        ("STOP_AT_END", "no", "stop_at_end", False),
        ("STOP_AT_END", "Off", "stop_at_end", False),
        ("STOP_AT_END", "", "stop_at_end", False),
        ("START_OFFSET", "latest", "start_offset", "latest"),
        ("START_OFFSET", "earliest", "start_offset", "earliest"),
        ("START_OFFSET", " LATEST ", "start_offset", "latest"),
        ("SHARDS_PER_SLICE", "16", "shards_per_slice", 16),
        ("SHARDS_PER_SLICE", "1", "shards_per_slice", 1),
        ("BATCH_SIZE", "100", "batch_size", 100),
        ("MAX_FIELD_BYTES", "64", "max_field_bytes", 64),
        ("OUTPUT_RETENTION_HOURS", "24", "output_retention_hours", 24),
        ("LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("LOG_LEVEL", "WARNING", "log_level", "WARNING"),
        ("LOG_LEVEL", " error ", "log_level", "ERROR"),
    ],
)
def test_each_variable_is_parsed(name: str, text: str, attribute: str, value: object) -> None:
    settings = Settings.from_env({name: text})
    assert getattr(settings, attribute) == value
    assert type(getattr(settings, attribute)) is type(value)


def test_slices_are_parsed_in_order_with_min_counts() -> None:
    settings = Settings.from_env({"SLICES": "user_id:3, ip+locale+device_type:1 ,device_id:2,"})
    assert settings.slices == (
        SliceSpec(("user_id",), 3),
        SliceSpec(("ip", "locale", "device_type"), 1),
        SliceSpec(("device_id",), 2),
    )
    assert [spec.name for spec in settings.slices] == ["user_id", "ip+locale+device_type", "device_id"]


def test_slice_field_names_are_trimmed() -> None:
    assert parse_slices(" user_id + ip : 2") == (SliceSpec(("user_id", "ip"), 2),)


def test_kafka_prop_variables_become_librdkafka_properties() -> None:
    settings = Settings.from_env({"KAFKA_BROKERS": "b1:9092", "KAFKA_PROP_SECURITY_PROTOCOL": "SASL_SSL"})
    assert settings.kafka_props == {"security.protocol": "SASL_SSL"}
    assert settings.kafka_config() == {"bootstrap.servers": "b1:9092", "security.protocol": "SASL_SSL"}


def test_kafka_props_keep_values_verbatim_and_ignore_the_bare_prefix() -> None:
    env = {
        "KAFKA_PROP_SASL_MECHANISM": "PLAIN",
        "KAFKA_PROP_SASL_PASSWORD": " p@ss word ",
        "KAFKA_PROP_": "ignored",
        "KAFKA_BROKERS_EXTRA": "ignored",
    }
    assert Settings.from_env(env).kafka_props == {"sasl.mechanism": "PLAIN", "sasl.password": " p@ss word "}


def test_unrelated_variables_are_ignored() -> None:
    assert Settings.from_env({"PATH": "/bin", "HOME": "/root"}) == Settings()


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINDOW_SECONDS", "120")
    monkeypatch.setenv("INPUT_TOPIC", "from-os-environ")
    settings = Settings.from_env()
    assert (settings.window_seconds, settings.input_topic) == (120, "from-os-environ")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("SLICES", "user_id+timestamp:1"),
        ("SLICES", "user:1"),
        ("SLICES", "user_id+:1"),
        ("SLICES", "user_id+ip"),
        ("SLICES", "user_id:1,ip"),
        ("SLICES", "user_id+ip:0"),
        ("SLICES", "user_id+ip:-1"),
        ("SLICES", "user_id+ip:"),
        ("SLICES", "user_id+ip:two"),
        ("SLICES", "user_id+ip:1.5"),
        ("SLICES", "user_id+user_id:1"),
        ("SLICES", "user_id+ip:1,user_id+ip:2"),
        ("SLICES", ""),
        ("SLICES", " , ,"),
        ("WINDOW_SECONDS", "0"),
        ("WINDOW_SECONDS", "-5"),
        ("WINDOW_SECONDS", "abc"),
        ("WINDOW_SECONDS", "1.5"),
        ("WINDOW_SECONDS", ""),
        ("ALLOWED_LATENESS_SECONDS", "-1"),
        ("ALLOWED_LATENESS_SECONDS", "nan"),
        ("ALLOWED_LATENESS_SECONDS", "inf"),
        ("ALLOWED_LATENESS_SECONDS", "-inf"),
        ("ALLOWED_LATENESS_SECONDS", "ten"),
        ("START_OFFSET", "middle"),
        ("START_OFFSET", ""),
        ("STOP_AT_END", "maybe"),
        ("LOG_LEVEL", "LOUD"),
        ("LOG_LEVEL", ""),
        ("SHARDS_PER_SLICE", "0"),
        ("SHARDS_PER_SLICE", "-1"),
        ("BATCH_SIZE", "x"),
        ("BATCH_SIZE", "0"),
        ("MAX_FIELD_BYTES", "0"),
        ("MAX_FIELD_BYTES", "1kb"),
        ("OUTPUT_RETENTION_HOURS", "-1"),
        ("OUTPUT_RETENTION_HOURS", "1.5"),
        ("KAFKA_BROKERS", ""),
        ("KAFKA_BROKERS", "   "),
        ("INPUT_TOPIC", ""),
        ("OUTPUT_TOPIC", ""),
        ("DLQ_TOPIC", ""),
        ("LATE_TOPIC", " "),
        ("PROCESSING_GUARANTEE", "twice"),
    ],
)
def test_bad_value_raises_config_error_naming_the_variable(name: str, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: text})
    assert str(caught.value).startswith(f"{name}: ")


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_unknown_slice_field_message_names_the_field_and_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_slices("user_id+browser:1")
    message = str(caught.value)
    assert "'browser'" in message
    assert "user_id, app_version, device_type, ip, locale, device_id" in message


@pytest.mark.parametrize(("name", "value"), [("WINDOW_SECONDS", "0"), ("PROCESSING_GUARANTEE", "twice")])
def test_bad_setting_stops_the_dataflow_import_with_one_line_naming_the_variable(name: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import dataflow"],
        env={**os.environ, name: value},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0]
    assert repr(value) in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"PSEUDONYMIZE": "ip,email", "PSEUDONYMIZE_KEY": "k" * 16}, "PSEUDONYMIZE"),
        ({"PSEUDONYMIZE": "ip"}, "PSEUDONYMIZE_KEY"),
        ({"PSEUDONYMIZE": "ip", "PSEUDONYMIZE_KEY": "short"}, "PSEUDONYMIZE_KEY"),
    ],
)
def test_logging_and_pseudonymization_settings_are_checked(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}: "):
        Settings.from_env(env)


def test_pseudonymize_settings_parse_and_secrets_stay_out_of_repr() -> None:
    settings = Settings.from_env(
        {
            "PSEUDONYMIZE": "ip, user_id",
            "PSEUDONYMIZE_KEY": "a-long-enough-key",
            "KAFKA_PROP_SASL_PASSWORD": "hunter2",
            "LOG_FORMAT": "JSON",
        }
    )
    assert settings.pseudonymize == frozenset({"ip", "user_id"})
    assert settings.log_format == "json"
    assert "hunter2" not in repr(settings) and "a-long-enough-key" not in repr(settings)


TOPICS = {"INPUT_TOPIC": "in-a", "OUTPUT_TOPIC": "out", "DLQ_TOPIC": "dlq", "LATE_TOPIC": "late"}


def test_an_unset_transactional_id_prefix_is_derived_from_the_four_topics() -> None:
    settings = Settings.from_env(TOPICS)
    assert re.fullmatch(r"loginflow-[0-9a-f]{10}", settings.transactional_id_prefix)
    assert settings.transactional_id_prefix_is_derived
    assert Settings.from_env(TOPICS).transactional_id_prefix == settings.transactional_id_prefix
    # Any other topic is another dataflow, with another prefix.
    for name, topic in TOPICS.items():
        other = Settings.from_env({**TOPICS, name: topic + "-2"})
        assert other.transactional_id_prefix != settings.transactional_id_prefix, name
    # Topic names are not interchangeable: a swap of two of them is another dataflow too.
    swapped = Settings.from_env({**TOPICS, "DLQ_TOPIC": "late", "LATE_TOPIC": "dlq"})
    assert swapped.transactional_id_prefix != settings.transactional_id_prefix
    # Settings built directly derive it the same way.
    direct = Settings(input_topic="in-a", output_topic="out", dlq_topic="dlq", late_topic="late")
    assert direct.transactional_id_prefix == settings.transactional_id_prefix


def test_the_derived_prefix_is_the_same_in_every_process() -> None:
    """Every process of one dataflow must compute it alike: no per-process hash seed may reach it."""
    script = "from operators.runtime.settings import Settings; print(Settings.from_env().transactional_id_prefix)"
    seen = set()
    for seed in ("1", "2", "random"):
        env = {**os.environ, **TOPICS, "PYTHONHASHSEED": seed}
        env.pop("TRANSACTIONAL_ID_PREFIX", None)
        result = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
        )
        seen.add(result.stdout.strip())
    assert seen == {Settings.from_env(TOPICS).transactional_id_prefix}


def test_an_explicit_transactional_id_prefix_wins_and_a_blank_one_is_refused() -> None:
    settings = Settings.from_env({**TOPICS, "TRANSACTIONAL_ID_PREFIX": " loginflow "})
    assert settings.transactional_id_prefix == "loginflow"
    assert not settings.transactional_id_prefix_is_derived
    with pytest.raises(ConfigError, match="TRANSACTIONAL_ID_PREFIX: must not be empty"):
        Settings.from_env({**TOPICS, "TRANSACTIONAL_ID_PREFIX": "  "})
