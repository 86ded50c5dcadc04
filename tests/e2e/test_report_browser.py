"""The results report in a real browser: a bounded run over known input, `python -m report`, headless Chromium.

The page must load without a console error, render every chart as SVG, and
show the top keys, the users' distinct devices and IPs, the DLQ reasons and
the late events exactly as `devkit.reference` computes them for the input.

Playwright drives Debian's Chromium (/usr/bin/chromium, from
requirements-system.txt) and never downloads a browser. A screenshot is kept
in the test's tmp dir; with REPORT_SCREENSHOT=path it is copied there too
(`REPORT_SCREENSHOT=docs/report.png` regenerates the README's image).
"""

import os
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import plotly.offline
import pytest
from playwright.sync_api import ConsoleMessage, Page, Request, sync_playwright

from devkit.generator.events import GeneratorConfig, generate
from devkit.records import produce
from devkit.reference import Expected, MetricKey, expected_output
from tests.dataflow_runner import REPO, DataflowCluster
from tests.evidence import error_lines
from tests.outputs import collect, flow_env, output_topics, read_partitions

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium's own connections are refused by a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WINDOW = 60
LATENESS = 10
TOP = 5
RUN_TIMEOUT_S = 120


def reference_top(metrics: dict[MetricKey, int], n: int) -> dict[str, list[tuple[list[str], int, int]]]:
    """Per slice, the n keys with the largest summed count: (values, count, windows), ties by values."""
    totals: dict[str, Counter[tuple[str, ...]]] = defaultdict(Counter)
    windows: Counter[tuple[str, tuple[str, ...]]] = Counter()
    for (_, slice_name, values), count in metrics.items():
        totals[slice_name][values] += count
        windows[(slice_name, values)] += 1
    return {
        name: [
            (list(values), total, windows[(name, values)])
            for values, total in sorted(per_key.items(), key=lambda item: (-item[1], item[0]))[:n]
        ]
        for name, per_key in totals.items()
    }


def reference_spread(metrics: dict[MetricKey, int], slice_name: str, n: int) -> list[tuple[str, int, int]]:
    """(user, distinct other values, logins) for the n users with the most distinct ones."""
    seen: dict[str, set[str]] = defaultdict(set)
    logins: Counter[str] = Counter()
    for (_, name, (user, other)), count in metrics.items():
        if name == slice_name:
            seen[user].add(other)
            logins[user] += count
    ranked = sorted(seen, key=lambda user: (-len(seen[user]), -logins[user], user))[:n]
    return [(user, len(seen[user]), logins[user]) for user in ranked]


def table_rows(page: Page, selector: str) -> list[list[str]]:
    return page.eval_on_selector_all(
        f"{selector} tr", "rows => rows.map(r => [...r.querySelectorAll('td')].map(c => c.innerText.trim()))"
    )


def watch(page: Page, problems: list[str]) -> None:
    """Collect console errors, uncaught exceptions and any request beyond the file itself."""

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text}")

    def on_request(request: Request) -> None:
        if not request.url.startswith("file:"):
            problems.append(f"request: {request.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("request", on_request)


def run_bounded(brokers: str, topic_factory, tmp_path: Path) -> tuple[dict[str, str], Expected]:
    input_topic = topic_factory(partitions=2)
    config = GeneratorConfig(
        count=1500, users=40, partitions=2, span=600.0, bad_fraction=0.03, late_fraction=0.03, late_by=120.0, seed=19
    )
    produce(brokers, input_topic, [(m.partition, m.key, m.value) for m in generate(config)])
    expected = expected_output(read_partitions(brokers, input_topic), WINDOW, LATENESS)
    topics = output_topics(topic_factory)
    env = flow_env(brokers, input_topic, topics, window=WINDOW, lateness=LATENESS, bounded=True, LOG_FORMAT="kv")
    with DataflowCluster(env, tmp_path) as cluster:
        (finished,) = cluster.wait(RUN_TIMEOUT_S)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert error_lines([finished.stderr]) == []
    # A bounded run closes each window once: nothing the report sums was left uncounted.
    assert [r for r in collect(brokers, topics)["dlq"] if r.headers.get("error") == b"window_closed"] == []
    return env, expected


def test_report_page_shows_the_reference_answer_in_chromium(kafka_brokers: str, topic_factory, tmp_path: Path) -> None:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: scripts/system-packages installs it (requirements-system.txt)"
    env, expected = run_bounded(kafka_brokers, topic_factory, tmp_path)
    assert expected.rejects and expected.late, "the input must exercise the DLQ and late sections"

    output = tmp_path / "report.html"
    built = subprocess.run(
        [sys.executable, "-m", "report", "--top", str(TOP), "--output", str(output)],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert f"report: {output.resolve()}" in built.stderr
    assert "reading topic=" in built.stderr  # progress on stderr
    markup = output.read_text(encoding="utf-8").replace(plotly.offline.get_plotlyjs(), "")
    assert "<script src=" not in markup and "<link" not in markup, "the page must load nothing from elsewhere"

    problems: list[str] = []
    with sync_playwright() as playwright:
        # A persistent context is a fresh --user-data-dir that Playwright fills in for itself.
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            page = browser.new_page()
            watch(page, problems)
            page.goto(output.as_uri())
            charts = page.locator(".js-plotly-plot")
            # Four slices, devices, IPs, DLQ, late: each a plotly div that drew an SVG.
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 8")
            assert charts.count() == 8
            assert page.locator(".js-plotly-plot g.trace").count() >= 8  # drawn traces, not empty axes

            # Each chart comes to fit its box: none stays wider than its column (and clipped there).
            page.wait_for_function(
                "[...document.querySelectorAll('.js-plotly-plot')].every(p => p.querySelector('.main-svg')"
                ".getBoundingClientRect().width <= p.parentElement.getBoundingClientRect().width + 1)"
            )

            top = reference_top(expected.metrics, TOP)
            shown_slices = page.eval_on_selector_all("table.top-keys", "ts => ts.map(t => t.dataset.slice)")
            assert sorted(shown_slices) == sorted(top)
            for name, rows in top.items():
                cells = table_rows(page, f'table.top-keys[data-slice="{name}"]')[1:]  # the first row is the header
                width = len(rows[0][0])
                assert [(r[1 : 1 + width], int(r[1 + width]), int(r[2 + width])) for r in cells] == rows, name

            for section, slice_name in (("#users-devices", "user_id+device_id"), ("#users-ips", "user_id+ip")):
                cells = table_rows(page, f"{section} table.spread")[1:]
                shown = [(user, int(distinct), int(logins)) for user, distinct, logins in cells]
                assert shown == reference_spread(expected.metrics, slice_name, TOP), section

            dlq = {reason: int(n) for reason, n in table_rows(page, "#dlq table")[1:]}
            assert dlq == dict(Counter(expected.rejects.values()))
            late = {window: int(n) for window, n in table_rows(page, "#late table")[1:]}
            assert late == dict(Counter(expected.late.values()))

            offsets = table_rows(page, "#offsets")[1:]
            assert [row[0] for row in offsets] == ["OUTPUT_TOPIC", "DLQ_TOPIC", "LATE_TOPIC"]
            assert int(offsets[1][2]) == len(expected.rejects) and int(offsets[2][2]) == len(expected.late)

            screenshot = tmp_path / "report.png"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert problems == []
    copy_to = os.environ.get("REPORT_SCREENSHOT")
    if copy_to:
        shutil.copyfile(screenshot, copy_to)
