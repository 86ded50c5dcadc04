"""Build the JVM peers (Apache Flink, Kafka Streams) with Maven; standard library only.

    python3 -m bench.setup_jvm

`bench.setup_venvs` runs this too. ``mvn -B package`` on ``bench/peers/pom.xml``
fetches the frameworks from Maven Central (as ``scripts/kafka`` fetches the
broker's jars) and leaves, per peer, ``.cache/bench/jvm/<module>/<module>.jar``
and ``lib/`` with its dependencies. The build is redone only when a pom or a
Java source changes (or the output is gone). Without Java 17+ or Maven, or
when the build fails, this says so and the harness marks those peers
unavailable instead of stopping the benchmark.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = REPO / "bench" / "peers"
POM = SOURCES / "pom.xml"
JVM_OUT = REPO / ".cache" / "bench" / "jvm"
MODULES = ("jvm-contract", "flink", "kstreams")
STAMP = JVM_OUT / ".bench-built"


def jar(module: str, out: Path = JVM_OUT) -> Path:
    """The built jar of one peer module."""
    return out / module / f"{module}.jar"


def classpath(module: str, out: Path = JVM_OUT) -> str:
    """`java -cp` for one peer: its jar and every dependency jar (a JVM wildcard, not a shell glob)."""
    return f"{jar(module, out)}:{out / module / 'lib'}/*"


def source_files(root: Path = SOURCES) -> list[Path]:
    """What decides whether to rebuild: every pom and Java source of the JVM peers, in a stable order."""
    files = [root / "pom.xml"]
    for module in MODULES:
        files.append(root / module / "pom.xml")
        files += sorted((root / module / "src").rglob("*.java"))
    return files


def digest(files: list[Path], root: Path = SOURCES) -> str:
    """One hash over the files' paths and contents."""
    sha = hashlib.sha256()
    for path in files:
        sha.update(str(path.relative_to(root)).encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()


def built(out: Path = JVM_OUT) -> bool:
    """Whether the stamp matches the sources and every runnable jar is there."""
    stamp = out / STAMP.name
    return (
        stamp.exists()
        and stamp.read_text().strip() == digest(source_files())
        and all(jar(module, out).exists() for module in MODULES)
    )


def ensure(out: Path = JVM_OUT) -> bool:
    """Build the JVM peers if their sources changed; returns whether they are usable."""
    if built(out):
        return True
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        print(
            f"bench: no {' or '.join(missing)} on PATH: the Flink and Kafka Streams peers are skipped", file=sys.stderr
        )
        return False
    print(f"bench: building the JVM peers into {out.relative_to(REPO)} ...", file=sys.stderr, flush=True)
    # A stale lib/ would keep jars of an older dependency set.
    shutil.rmtree(out, ignore_errors=True)
    command = ["mvn", "-B", "-q", "-f", str(POM), f"-Dbench.jvm.out={out}", "package"]
    result = subprocess.run(command, cwd=REPO, check=False)  # noqa: S603 - fixed Maven command line
    if result.returncode != 0:
        print(f"bench: Maven failed for the JVM peers (exit {result.returncode})", file=sys.stderr)
        return False
    (out / STAMP.name).write_text(digest(source_files()) + "\n")
    return True


def main() -> int:
    """Build; a failure is reported, not fatal (the peers are optional)."""
    ensure()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
