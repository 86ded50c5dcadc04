"""What `python -m bytewax.run` was asked to do, read the way it reads its own arguments.

Only a real `bytewax.run` start may act on its recovery directory: the
start-up prune deletes rows (`operators.runtime.abandoned_epochs`). The flow
module is imported by other programs too: `python -m bytewax.visualize
dataflow`, a REPL, a test, each with whatever arguments and environment it
happens to have. `bytewax.run` is a script, run as `__main__`, that imports
the flow module from its `if __name__ == "__main__"` block after parsing its
arguments; so the process is a `bytewax.run` start when `__main__` is that
module. `bytewax.visualize` imports `bytewax.run` as a library, under its own
name, and is not one.

The recovery directory is parsed with argparse and the option strings
`bytewax.run` declares (0.21.1), so every form it accepts is read the same:
`-r DIR`, `-rDIR`, `-r=DIR`, `--recovery-directory DIR`,
`--recovery-directory=DIR`, unambiguous abbreviations such as
`--recovery DIR`, and `BYTEWAX_RECOVERY_DIRECTORY` when no option is given.
That variable is Bytewax's, not a loginflow setting, so it is read here
rather than in `operators.runtime.settings`.
"""

import argparse
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import NoReturn

BYTEWAX_RUN = "bytewax.run"
RECOVERY_ENV = "BYTEWAX_RECOVERY_DIRECTORY"


class RunArgumentsError(ValueError):
    """Arguments `bytewax.run` itself would have refused."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse would print usage and exit; a library must not.
        raise RunArgumentsError(message)


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """`bytewax.run`'s options: every one is declared, so abbreviations resolve as they do there."""
    parser = _Parser(prog="python -m bytewax.run")
    parser.add_argument("import_str")
    parser.add_argument("-r", "--recovery-directory", type=Path, default=env.get(RECOVERY_ENV))
    for short, long in (
        ("-s", "--snapshot-interval"),
        ("-b", "--backup-interval"),
        ("-w", "--workers-per-process"),
        ("-i", "--process-id"),
        ("-a", "--addresses"),
    ):
        parser.add_argument(short, long)
    return parser


def recovery_directory(args: Sequence[str], env: Mapping[str, str]) -> Path | None:
    """The recovery directory `bytewax.run` would use for `args` (its argv without the program) and `env`."""
    known, _unknown = _parser(env).parse_known_args(list(args))
    directory: Path | None = known.recovery_directory
    return directory


def started_by_bytewax_run(main: ModuleType | None = None) -> bool:
    """Whether this process is `python -m bytewax.run` (or `python .../bytewax/run.py`), not an import of it."""
    main = sys.modules.get("__main__") if main is None else main
    spec = getattr(main, "__spec__", None)
    if spec is not None:
        return bool(spec.name == BYTEWAX_RUN)
    script = getattr(main, "__file__", None)
    run = importlib.util.find_spec(BYTEWAX_RUN)
    if script is None or run is None or run.origin is None:
        return False
    return Path(script).resolve() == Path(run.origin).resolve()


def run_recovery_directory() -> Path | None:
    """The recovery directory of this `bytewax.run` start; None without recovery or outside `bytewax.run`."""
    if not started_by_bytewax_run():
        return None
    return recovery_directory(sys.argv[1:], os.environ)
