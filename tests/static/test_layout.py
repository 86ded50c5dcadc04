"""The layout's promises, checked from the imports: what is pure stays pure, nothing ships tests."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("dataflow.py", "operators", "devkit", "report", "bench", "scripts")


def python_files(*places: str) -> list[Path]:
    files: list[Path] = []
    for place in places:
        path = ROOT / place
        files.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return files


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def test_pure_modules_import_only_the_standard_library_the_json_decoders_and_each_other() -> None:
    allowed_first_party = ("operators.pure", "operators.runtime.logs")
    # orjson, and msgspec for the input contract's common shape (events.py).
    decoders = ("orjson", "msgspec")
    for path in python_files("operators/pure"):
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top == "operators":
                assert module.startswith(allowed_first_party), f"{path.name} imports {module}"
            else:
                assert top in sys.stdlib_module_names or top in decoders, f"{path.name} imports {module}"


def test_importing_pure_logic_loads_no_kafka_client_or_bytewax() -> None:
    probe = (
        "import sys, operators.pure.events, operators.pure.partition, operators.pure.window_shard, "
        "operators.pure.encoding, operators.runtime.settings; "
        "print(sorted(m for m in ('bytewax', 'confluent_kafka', 'prometheus_client') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_nothing_outside_tests_imports_tests() -> None:
    for path in python_files(*SHIPPED):
        for module in imported_modules(path):
            assert module.split(".")[0] != "tests", f"{path.relative_to(ROOT)} imports {module}"


def test_product_code_imports_neither_the_dev_kit_nor_the_benchmarks() -> None:
    for path in python_files("operators", "dataflow.py"):
        for module in imported_modules(path):
            assert module.split(".")[0] not in ("devkit", "bench"), f"{path.relative_to(ROOT)} imports {module}"
    for path in python_files("devkit", "report"):
        for module in imported_modules(path):
            assert module.split(".")[0] != "bench", f"{path.relative_to(ROOT)} imports {module}"


def test_the_report_reads_what_the_dataflow_wrote_without_importing_its_topology_or_io() -> None:
    # A tool beside the dataflow: its settings, its pure code, no dataflow steps or Kafka writers.
    allowed = ("operators.pure", "operators.runtime.settings", "operators.runtime.logs", "operators.runtime.shutdown")
    for path in python_files("report"):
        for module in imported_modules(path):
            if module.split(".")[0] in ("operators", "dataflow"):
                assert module.startswith(allowed), f"{path.relative_to(ROOT)} imports {module}"
