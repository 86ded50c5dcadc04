"""The recovery directory of a `bytewax.run` start, read as `bytewax.run` reads it, and only in such a start."""

import sys
import types
from importlib.machinery import ModuleSpec
from pathlib import Path

import bytewax.run as bytewax_run
import pytest

from operators.runtime.run_args import RECOVERY_ENV, recovery_directory, started_by_bytewax_run

FORMS = [
    ["dataflow", "-r", "/r", "-s", "1", "-b", "0"],
    ["dataflow", "-r/r", "-s", "1", "-b", "0"],
    ["dataflow", "-r=/r", "-s", "1", "-b", "0"],
    ["dataflow", "--recovery-directory", "/r", "-s", "1", "-b", "0"],
    ["dataflow", "--recovery-directory=/r", "-s", "1", "-b", "0"],
    ["dataflow", "--recovery", "/r", "-s1", "-b0"],
    ["-r", "/r", "-s", "1", "-b", "0", "dataflow"],
    ["dataflow", "-w", "2", "-s", "1", "-b", "0", "-r/r", "-i", "0", "-a", "h0:1;h1:1"],
    ["dataflow", "-w", "2"],
    ["dataflow"],
]


@pytest.mark.parametrize("args", FORMS, ids=" ".join)
@pytest.mark.parametrize("env", [{}, {RECOVERY_ENV: "/e"}], ids=["no_env", "env"])
def test_the_recovery_directory_is_what_bytewax_run_itself_parses(
    args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(RECOVERY_ENV, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if env and "-s" not in " ".join(args):
        args = [*args, "-s", "1", "-b", "0"]
    monkeypatch.setattr(sys, "argv", ["python -m bytewax.run", *args])
    expected = bytewax_run._parse_args().recovery_directory
    assert recovery_directory(args, env) == expected


def test_the_attached_forms_name_the_directory() -> None:
    # Pinned outright as well: the parity above would pass if both missed them.
    assert recovery_directory(["dataflow", "-r/r"], {}) == Path("/r")
    assert recovery_directory(["dataflow", "-r=/r"], {}) == Path("/r")
    assert recovery_directory(["dataflow", "--recovery-directory=/r"], {}) == Path("/r")
    assert recovery_directory(["dataflow"], {RECOVERY_ENV: "/e"}) == Path("/e")
    assert recovery_directory(["dataflow", "-r", "/r"], {RECOVERY_ENV: "/e"}) == Path("/r")
    assert recovery_directory(["dataflow", "-w", "2"], {}) is None


def _main(spec_name: str | None, file: str | None = None) -> types.ModuleType:
    module = types.ModuleType("__main__")
    module.__spec__ = ModuleSpec(spec_name, None) if spec_name else None
    if file is not None:
        module.__file__ = file
    return module


def test_only_bytewax_run_as_the_program_is_a_start() -> None:
    assert started_by_bytewax_run(_main("bytewax.run")) is True
    assert started_by_bytewax_run(_main(None, bytewax_run.__file__)) is True, "python .../bytewax/run.py"
    # `python -m bytewax.visualize dataflow` imports bytewax.run as a library.
    assert started_by_bytewax_run(_main("bytewax.visualize")) is False
    assert started_by_bytewax_run(_main("pytest")) is False
    assert started_by_bytewax_run(_main(None)) is False, "a REPL or python -c"
    assert started_by_bytewax_run(_main(None, "/srv/app/dataflow.py")) is False
    assert started_by_bytewax_run() is False, "this test process"
