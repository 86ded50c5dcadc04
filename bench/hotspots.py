"""Summarise a py-spy ``--format raw`` (collapsed stacks) file: self and inclusive time per function.

    py-spy record --rate 200 --format raw -o /tmp/loginflow.txt -- python -m bytewax.run dataflow
    python -m bench.hotspots /tmp/loginflow.txt [--top 25]

It also sums the samples per stage of the pipeline (`STAGES`): consume,
parse + validate, lateness, pre-aggregate, exchange, window state + close,
encode, produce, the runtime and start-up.

Each line of the file is ``frame;frame;...;leaf count``; a frame looks like
``function (path/to/file.py:line)``. Lines are dropped so that one function
counts once per stack, whatever lines of it were sampled.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")
# Frames on every stack of `python -m bytewax.run`; their inclusive share says nothing.
# (Self time in bytewax's `<module> (run.py)` is time spent in its Rust runtime.)
_ROOTS = frozenset({"_run_module_as_main (<frozen runpy>)", "_run_code (<frozen runpy>)", "<module> (run.py)"})


def function_of(frame: str) -> str:
    """``name (file)`` with the line number and directories dropped."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{match.group('name')} ({Path(match.group('file')).name})"


# Where a sample's time goes: the stage of the leaf-most frame that names one.
# C calls (librdkafka's consume, orjson, msgspec) count as their caller's time.
_STAGE_OF_FILE = {
    "source.py": "consume",
    "growth.py": "consume",
    "client.py": "consume",
    "events.py": "parse + validate",
    "jsonio.py": "parse + validate",
    "partition.py": "lateness",
    "shards.py": "pre-aggregate",
    "count.py": "window state + close",
    "window_shard.py": "window state + close",
    "window_counts.py": "window state + close",
    "shard_snapshot.py": "window state + close",
    "encoding.py": "encode",
    "write.py": "produce",
    "sink.py": "produce",
    "transactional_writer.py": "produce",
}
_EXCHANGE = frozenset({"ShardUpdate.__reduce__ (shards.py)", "_update_from_wire (shards.py)"})
STAGES = (
    "consume",
    "parse + validate",
    "lateness",
    "pre-aggregate",
    "exchange (between processes)",
    "window state + close",
    "encode",
    "produce",
    "Bytewax runtime",
    "start-up imports",
    "other",
)


def stage_of(frames: list[str]) -> str:
    """The stage one sampled stack (root first) spends its time in."""
    for frame in reversed(frames):
        name, _, file = frame.rpartition(" (")
        file = file.rstrip(")")
        if frame in _EXCHANGE:
            return "exchange (between processes)"
        if name == "<module>":
            return "Bytewax runtime" if file == "run.py" else "start-up imports"
        if file.startswith("<frozen importlib"):
            return "start-up imports"
        stage = _STAGE_OF_FILE.get(file)
        if stage is not None:
            return stage
    return "other"


def stages(path: Path) -> Counter[str]:
    """Samples per stage (`STAGES`) in one py-spy raw file."""
    per_stage: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack and count_text.isdigit():
            per_stage[stage_of([function_of(frame) for frame in stack.split(";") if frame])] += int(count_text)
    return per_stage


def summarize(path: Path) -> tuple[int, Counter[str], Counter[str]]:
    """Total samples, self samples per function, inclusive samples per function."""
    total = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [function_of(frame) for frame in stack.split(";") if frame]
        total += count
        if frames:
            own[frames[-1]] += count
        for name in set(frames) - _ROOTS:
            inclusive[name] += count
    return total, own, inclusive


def main() -> None:
    """Print both tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    total, own, inclusive = summarize(args.raw)
    per_stage = stages(args.raw)
    print(f"stages, {total} samples")
    for name in STAGES:
        print(f"{per_stage[name] / total:7.1%}  {name}")
    for title, table in (("self", own), ("inclusive", inclusive)):
        print(f"\n{title} time, {total} samples")
        for name, count in table.most_common(args.top):
            print(f"{count / total:7.1%}  {name}")


if __name__ == "__main__":
    main()
