"""Randomized real-Kafka scenarios (chaos): producers, runs, crashes and clocks drawn from a seed.

By default a fixed few seeds run (under about two minutes together), plus six
named scenarios that reproduce issue-21 findings. `CHAOS_SCENARIOS=N` runs N
fresh seeds instead of the fixed ones; `CHAOS_SEED=S` makes them S, S+1, ...
(`make chaos` runs CHAOS_SCENARIOS=200). A failure names its seed, the steps
and the command that replays it.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.chaos.run import run_scenario
from tests.chaos.scenario import (
    LATENESS,
    WINDOW,
    AwaitExit,
    CloseTxn,
    ExpectFailure,
    KeepSending,
    OpenTxn,
    Recreate,
    Row,
    RowKind,
    Scenario,
    Send,
    Sleep,
    Start,
    Stop,
    generate,
)

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.chaos]

FIXED_SEEDS = (11, 12, 13)


def seeds() -> list[int]:
    count = os.environ.get("CHAOS_SCENARIOS")
    if not count:
        return list(FIXED_SEEDS)
    first = os.environ.get("CHAOS_SEED")
    start = int(first) if first else random.SystemRandom().randrange(1, 10**9)
    return [start + i for i in range(int(count))]


@pytest.mark.parametrize("seed", seeds(), ids=lambda seed: f"seed-{seed}")
def test_random_scenario(kafka_brokers: str, tmp_path: Path, seed: int) -> None:
    replay = f"CHAOS_SEED={seed} CHAOS_SCENARIOS=1 make chaos"
    run_scenario(kafka_brokers, generate(seed), tmp_path, replay)


def rows(partition: int, kind: RowKind, count: int, start: float = 0.0, step: float = 0.3) -> tuple[Row, ...]:
    return tuple(Row(partition, kind, round(start + i * step, 3)) for i in range(count))


def both(count: int, start: float = 0.0) -> tuple[Row, ...]:
    return rows(0, "valid", count, start) + rows(1, "valid", count, start + 0.1)


def txn(batch: tuple[Row, ...]) -> Send:
    return Send(batch, "transactional")


IDLE_CLOSE_S = WINDOW + LATENESS + 45.0

NAMED = {
    # 1: the bounded run must end at the end offsets it fixed at start, and the next run reads the rest.
    "bounded_run_over_growing_transactional_input": Scenario(
        "bounded_run_over_growing_transactional_input",
        None,
        2,
        "at-least-once",
        "2024",
        (
            txn(both(40)),
            Start(bounded=True),
            *(s for i in range(5) for s in (txn(both(20, 12.0 + 6 * i)), Sleep(0.4))),
            AwaitExit(),
        ),
    ),
    # 2: a partition that only ever gets rejects must not hold the others' windows back in tail mode.
    "partition_receiving_only_rejects": Scenario(
        "partition_receiving_only_rejects",
        None,
        2,
        "at-least-once",
        "now",
        (
            Start(bounded=False),
            Sleep(3.0),
            Send(rows(0, "valid", 60) + rows(1, "garbage", 5), "plain"),
            KeepSending(1, "garbage", IDLE_CLOSE_S),
            Stop("TERM"),
        ),
    ),
    # 3: one valid event stamped 2030, far ahead of its record's timestamp: rejected, the front stays.
    "event_stamped_2030": Scenario(
        "event_stamped_2030",
        None,
        1,
        "at-least-once",
        "2024",
        (Send(rows(0, "valid", 30) + (Row(0, "y2030"),) + rows(0, "valid", 30, 9.0), "idempotent"),),
    ),
    # 4: a transaction left open across a restart whose wall clock jumped two hours ahead, in tail mode.
    "clock_jump_forward_with_open_transaction": Scenario(
        "clock_jump_forward_with_open_transaction",
        None,
        2,
        "exactly-once",
        "now",
        (
            Start(bounded=False),
            Send(both(30), "plain"),
            OpenTxn(both(20, 9.0)),
            Sleep(3.0),
            Stop("KILL"),
            Start(bounded=False, clock=7200),
            Sleep(4.0),
            CloseTxn("commit"),
            Send(both(20, 15.0), "idempotent"),
            Sleep(2.0),
            Stop("KILL"),
        ),
        final="tail",
        final_clock=7200,
    ),
    # 5: the input topic deleted and created again under a recovery directory: stop, saying so.
    "input_topic_recreated": Scenario(
        "input_topic_recreated",
        None,
        2,
        "at-least-once",
        "2024",
        (
            Send(both(20), "plain"),
            Start(bounded=True),
            AwaitExit(),
            Recreate(),
            Send(both(10), "plain"),
            Start(bounded=True),
            ExpectFailure("recreated"),
        ),
        final="none",
    ),
    # 6: tail mode, then a partition backfilled a thousand windows behind the others.
    "backfill_far_behind_in_tail_mode": Scenario(
        "backfill_far_behind_in_tail_mode",
        None,
        2,
        "at-least-once",
        "now",
        (
            Start(bounded=False, workers=2),
            Send(rows(0, "valid", 60), "plain"),
            Sleep(WINDOW + LATENESS + 3.0),
            Send(rows(1, "valid", 80, -1000.0 * WINDOW, 3.0), "plain"),
            Send(rows(0, "valid", 30, 18.0), "plain"),
            Sleep(3.0),
            Stop("KILL"),
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_scenario(kafka_brokers: str, tmp_path: Path, name: str) -> None:
    replay = f"KAFKA_BROKERS={kafka_brokers} .venv/bin/python -m pytest tests/chaos -k {name}"
    run_scenario(kafka_brokers, NAMED[name], tmp_path, replay)


def test_the_grammar_is_a_function_of_the_seed() -> None:
    assert generate(7) == generate(7)
    assert len({generate(seed) for seed in range(20)}) == 20
    assert LATENESS < WINDOW
