"""The benchmark's pure helpers for the JVM peers, the fair ceiling and the lead table."""

from pathlib import Path

from bench import setup_jvm, targets
from bench.contenders import CEILING_LOGINFLOW, PEERS, RunSpec, flink, kstreams, launch, loginflow
from bench.harness import RunResult
from bench.hotspots import stage_of
from bench.peers.ceiling import loginflow_consumer_config
from bench.report import Summary, cpu_us_per_event, peers_table, summarize
from bench.results_file import Results
from operators.kafka.client import reader_config
from operators.runtime.settings import Settings


def _summary(key: str, cpu_s: float, broker_cpu_s: float, messages: int = 1000) -> Summary:
    return Summary(key, key, 3, messages, 1, 100.0, 1.0, 1.0, 100.0, cpu_s, None, 0, 0, "PASS", (), broker_cpu_s)


def test_the_lead_table_divides_cpu_per_event_by_the_fair_ceilings() -> None:
    roof = _summary(CEILING_LOGINFLOW.key, cpu_s=0.002, broker_cpu_s=0.001)
    peer = _summary(flink(1).key, cpu_s=0.010, broker_cpu_s=0.004)
    ratio = cpu_us_per_event(peer.cpu_s, peer.messages) / cpu_us_per_event(roof.cpu_s, roof.messages)  # type: ignore[operator]
    row = next(line for line in peers_table([peer, roof]).splitlines() if line.startswith(f"| {peer.label} "))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == f"{cpu_us_per_event(peer.cpu_s, peer.messages):.1f}"
    assert cells[2] == f"{ratio:.2f}"
    assert cells[3] == f"{cpu_us_per_event(peer.broker_cpu_s, peer.messages):.1f}"


def test_the_lead_table_lists_the_peers_in_their_order_and_nothing_else() -> None:
    rows = [_summary(c.key, 1.0, 1.0) for c in reversed(PEERS)] + [_summary("pandas-batches", 1.0, 1.0)]
    listed = [line.split("|")[1].strip() for line in peers_table(rows).splitlines()[2:]]
    assert listed == [c.key for c in PEERS]


def test_a_summary_keeps_the_median_broker_cpu_of_its_runs() -> None:
    runs = [RunResult("x", i, "t", 3, ok=True, broker_cpu_s=value) for i, value in enumerate((3.0, 1.0, 2.0))]
    assert summarize(loginflow(1, 1), 3, runs).broker_cpu_s == 2.0


def test_the_fair_ceiling_reads_with_loginflows_consumer_settings() -> None:
    env = {"KAFKA_PROP_CLIENT_ID": "bench"}
    settings = Settings.from_env({"KAFKA_BROKERS": "127.0.0.1:1", **env})
    loginflow_config = {k: v for k, v in reader_config(settings, lambda _e: None).items() if not callable(v)}
    loginflow_config.pop("logger")
    ceiling = loginflow_consumer_config("127.0.0.1:1", env)
    assert {k: v for k, v in ceiling.items() if k != "log_level"} == loginflow_config


def test_a_jvm_peer_runs_its_main_class_from_its_built_jar_with_the_shared_arguments(tmp_path: Path) -> None:
    spec = RunSpec("b:1", "in", {"metrics": "out"}, tmp_path, 60, 10.0, "user_id+ip:2", 5.0, 10.0)
    command = launch(kstreams(2), spec).commands[0]
    assert command[0] == "java"
    assert command[command.index("-cp") + 1] == setup_jvm.classpath("kstreams")
    assert command[command.index("-cp") + 2] == kstreams(2).module
    for flag, value in (("--output-topic", "out"), ("--threads", "2")):
        assert command[command.index(flag) + 1] == value


def test_the_jvm_build_is_redone_when_a_source_changes(tmp_path: Path) -> None:
    source = tmp_path / "A.java"
    source.write_text("class A {}")
    before = setup_jvm.digest([source], tmp_path)
    source.write_text("class A { int x; }")
    assert setup_jvm.digest([source], tmp_path) != before
    assert set(setup_jvm.source_files()) >= {setup_jvm.POM, *setup_jvm.SOURCES.glob("*/src/main/java/**/*.java")}


def test_a_sample_counts_in_the_stage_of_its_leaf_most_known_frame() -> None:
    reader = ["<module> (run.py)", "KafkaPartitionReader.next_batch (source.py)"]
    assert stage_of(reader) == "consume"
    assert (
        stage_of([*reader, "PartitionTracker.track_values (partition.py)", "parse (events.py)"]) == "parse + validate"
    )
    counting = ["<module> (run.py)", "ShardCounter.__call__ (shards.py)", "Counter.update (__init__.py)"]
    assert stage_of(counting) == "pre-aggregate"
    assert stage_of(["<module> (run.py)", "ShardUpdate.__reduce__ (shards.py)"]) == "exchange (between processes)"
    assert stage_of(["<module> (run.py)"]) == "Bytewax runtime"
    assert stage_of(["<module> (run.py)", "_find_and_load (<frozen importlib._bootstrap>)"]) == "start-up imports"
    assert stage_of(["<module> (run.py)", "<module> (dataflow.py)"]) == "start-up imports"
    assert stage_of(["somewhere (else.py)"]) == "other"


def test_the_peers_produce_with_loginflows_linger() -> None:
    from bench.peers import bytewax_naive, common  # noqa: PLC0415 - imports Bytewax, only this test needs it
    from operators.kafka import client  # noqa: PLC0415

    assert common.LINGER_MS == client.LINGER_MS
    assert bytewax_naive.PRODUCER_CONFIG["linger.ms"] == str(client.LINGER_MS)
    for java in (
        "kstreams/src/main/java/loginflow/bench/kstreams/KStreamsPeer.java",
        "flink/src/main/java/loginflow/bench/flink/FlinkPeer.java",
    ):
        source = (Path(__file__).parents[2] / "bench" / "peers" / java).read_text()
        assert f"{client.LINGER_MS})" in source or f'"{client.LINGER_MS}"' in source


def _results(main: list[Summary], latency: dict[str, object] | None = None) -> Results:
    return Results(Path("r.json"), {"cpus": 2}, main, [], [], [], latency, None)


def test_the_targets_divide_loginflows_cpu_and_broker_cpu_by_the_fair_ceilings() -> None:
    roof = _summary(CEILING_LOGINFLOW.key, cpu_s=0.004, broker_cpu_s=0.001)
    one = _summary(loginflow(1, 1).key, cpu_s=0.012, broker_cpu_s=0.0015)
    lines = targets.fair_ceiling_targets(_results([roof, one]))
    assert "**3.00** (12.0 / 4.0 µs); target ≤ 2.5: **not met**" in lines[0]
    assert "**1.50** (1.5 / 1.0 µs); target ≤ 2.0: met" in lines[1]
    assert targets.fair_ceiling_targets(_results([one])) == []


def test_the_latency_goal_follows_the_records_a_window() -> None:
    small = {"windows": [{"records": 19_000}, {"records": 21_000}, {"records": 20_500}]}
    big = {"windows": [{"records": 200_300}, {"records": 199_800}]}
    assert targets.latency_target(small) == (0.5, " at 20,500 records a window")
    assert targets.latency_target(big) == (1.0, " at 200,300 records a window")
    assert targets.latency_target({}) == (1.0, "")
