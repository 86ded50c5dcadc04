"""Create or refresh the benchmark's two virtual environments; standard library only.

Run with the interpreter that should host them (``make bench`` passes
``$(PYTHON)``)::

    python3 -m bench.setup_venvs

Two venvs, because pip cannot put Quix Streams (confluent-kafka<2.13) next to
loginflow's pinned confluent-kafka 2.16.1:

- ``.cache/bench/venv``: requirements.txt + requirements-bench.txt; runs the
  harness, loginflow, the consume ceiling, the pandas and Bytewax peers.
- ``.cache/bench/quix-venv``: bench/requirements-quix.txt; runs only the Quix peer.

A venv is rebuilt only when its requirement files (or the interpreter) change.
A failed Quix install is reported and tolerated: the harness then marks that
peer as unavailable instead of stopping the whole benchmark. The JVM peers
(Flink, Kafka Streams) are built last by `bench.setup_jvm`, tolerated the same way.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import setup_jvm

REPO = Path(__file__).resolve().parent.parent
BENCH_VENV = REPO / ".cache" / "bench" / "venv"
QUIX_VENV = REPO / ".cache" / "bench" / "quix-venv"
STAMP_NAME = ".bench-installed"


@dataclass(frozen=True)
class VenvSpec:
    """One venv: where it lives, what it installs, and whether the bench needs it."""

    path: Path
    requirements: tuple[Path, ...]
    # Files whose content decides whether to reinstall (includes `-r` targets).
    inputs: tuple[Path, ...]
    required: bool


SPECS = (
    VenvSpec(
        BENCH_VENV,
        (REPO / "requirements-bench.txt",),
        (REPO / "requirements.txt", REPO / "requirements-bench.txt"),
        required=True,
    ),
    VenvSpec(
        QUIX_VENV,
        (REPO / "bench" / "requirements-quix.txt",),
        (REPO / "bench" / "requirements-quix.txt",),
        required=False,
    ),
)


def python_of(venv: Path) -> Path:
    """The interpreter inside `venv`."""
    return venv / "bin" / "python"


def _digest(spec: VenvSpec) -> str:
    sha = hashlib.sha256(sys.version.encode())
    for path in spec.inputs:
        sha.update(path.name.encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()


def ensure(spec: VenvSpec) -> bool:
    """Make `spec`'s venv current; returns whether it is usable."""
    stamp = spec.path / STAMP_NAME
    digest = _digest(spec)
    if stamp.exists() and stamp.read_text().strip() == digest and python_of(spec.path).exists():
        return True
    print(f"bench: installing {spec.path.relative_to(REPO)} ...", file=sys.stderr, flush=True)
    if spec.path.exists():
        # A half-built or outdated venv: start clean rather than layer pins.
        shutil.rmtree(spec.path)
    subprocess.run([sys.executable, "-m", "venv", str(spec.path)], check=True)
    pip = [str(python_of(spec.path)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for requirements in spec.requirements:
        pip += ["-r", str(requirements)]
    result = subprocess.run(pip, check=False)
    if result.returncode != 0:
        print(f"bench: pip failed for {spec.path.relative_to(REPO)} (exit {result.returncode})", file=sys.stderr)
        return False
    stamp.write_text(digest + "\n")
    return True


def main() -> int:
    """Set up every venv; fail only when a required one cannot be built."""
    if sys.version_info[:2] < (3, 11) or sys.version_info[:2] > (3, 12):
        print("bench: needs CPython 3.11 or 3.12 (Bytewax 0.21.1, quixstreams); set PYTHON=", file=sys.stderr)
        return 1
    for spec in SPECS:
        if not ensure(spec) and spec.required:
            return 1
    setup_jvm.ensure()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
