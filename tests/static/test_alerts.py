"""The Prometheus alert rules: promtool checks them and runs their unit tests; each alert is tested firing and quiet.

promtool comes from Debian's `prometheus` package (requirements-system.txt,
installed by scripts/system-packages). Without it these tests fail: the
rules would otherwise ship unchecked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache

import yaml

from tests.monitoring import ALERTS_FILE, ALERTS_TEST_FILE, PROMETHEUS_CONFIG, ROOT, alert_rules

OPERATIONS = ROOT / "docs" / "operations.md"


@cache
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: run scripts/system-packages (Debian's prometheus, requirements-system.txt)"
    return path


def run_promtool(*args: str) -> str:
    done = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{output}"
    return output


def test_promtool_is_the_pinned_version() -> None:
    (pin,) = re.findall(r"^prometheus=(\S+)", (ROOT / "requirements-system.txt").read_text(encoding="utf-8"), re.M)
    version = run_promtool("--version")
    assert f"version {pin.split('+')[0]}" in version, version


def test_promtool_accepts_the_rules() -> None:
    assert f"SUCCESS: {len(alert_rules())} rules found" in run_promtool("check", "rules", str(ALERTS_FILE))


def test_promtool_accepts_the_prometheus_config_and_the_rule_files_it_loads() -> None:
    output = run_promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert "SUCCESS: 1 rule files found" in output, output
    assert yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))["rule_files"] == [ALERTS_FILE.name]


def test_the_rules_unit_tests_pass() -> None:
    assert "SUCCESS" in run_promtool("test", "rules", str(ALERTS_TEST_FILE))


def test_every_alert_is_tested_both_firing_and_quiet() -> None:
    tests = yaml.safe_load(ALERTS_TEST_FILE.read_text(encoding="utf-8"))
    assert tests["rule_files"] == [ALERTS_FILE.name]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "never tested firing"
    assert names - quiet == set(), "never tested quiet"
    assert (firing | quiet) - names == set(), "tests of alerts that do not exist"


def test_every_alert_has_a_severity_and_points_at_what_to_do() -> None:
    doc = OPERATIONS.read_text(encoding="utf-8")
    assert "## Watching it" in doc
    watching = doc.split("## Watching it", 1)[1].split("\n## ", 1)[0]
    for rule in alert_rules():
        assert rule["alert"].startswith("Loginflow"), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]
        assert 'docs/operations.md "Watching it"' in rule["annotations"]["description"], rule["alert"]
        assert f"`{rule['alert']}`" in watching, f"docs/operations.md 'Watching it' does not explain {rule['alert']}"
