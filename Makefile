# loginflow: `make demo` runs the job end to end, `make test` runs every test.
# Both set up what they need (venv, Python packages, the Kafka jars) first.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help setup demo report test test-unit test-e2e fuzz chaos lint fmt kafka-up kafka-down kafka-status clean

# `make help` lists every target that has a `## ` description on its rule line.
help:  ## list the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-z][a-z0-9-]*:.*## / { printf "  make %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

setup: $(STAMP)  ## the venv with every Python package the tests need

# Reinstall only when a requirements file changes.
$(STAMP): requirements.txt requirements-report.txt requirements-dev.txt requirements-system.txt
	scripts/system-packages
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 10) <= v <= (3, 12) else "loginflow needs CPython 3.10-3.12 (Bytewax 0.21.1 wheels); set PYTHON=python3.12")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

demo: setup  ## broker, generator, the dataflow as 2 processes, a live view
	$(PY) -m devkit.demo

# The results page of whatever cluster the dataflow's settings (KAFKA_BROKERS,
# KAFKA_PROP_*, the topics) point at; REPORT_FLAGS adds options, e.g.
# REPORT_FLAGS="--from 2024-03-01T00:00:00Z --top 20" (python -m report --help).
REPORT_FLAGS ?=
report: setup  ## the results report: login-metrics, DLQ and late topic as one offline HTML page
	@# Without KAFKA_BROKERS it reads the local broker, as make demo does, starting it if it is down.
	@[ -n "$$KAFKA_BROKERS" ] || scripts/kafka status >/dev/null 2>&1 || scripts/kafka up
	$(PY) -m report --output .cache/report/report.html $(REPORT_FLAGS)

# Two pytest workers, each test file on one of them (its module fixtures, a
# module's own broker, start once): most of the suite waits on brokers and
# dataflow subprocesses, so two share the 2 cores (19 min serial, 11 here).
test: setup  ## every test suite, against a real local broker (the bench peers' check is make bench-check)
	$(PY) -m pytest -n 2 --dist loadfile -m "not bench_peer"

test-unit: setup  ## the tests that need no broker (about 10 s)
	$(PY) -m pytest -m "not kafka" tests/unit tests/flow

test-e2e: setup  ## the end-to-end tests only
	$(PY) -m pytest -m e2e

# The differential fuzz (tests/fuzz): fresh random configurations against the
# reference; `make test` runs a fixed 20 of them.
FUZZ_EXAMPLES ?= 300
fuzz: setup  ## the differential fuzz on FUZZ_EXAMPLES fresh random cases
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_RANDOM=1 $(PY) -m pytest -q tests/fuzz

# The chaos scenarios (tests/chaos): random producers, runs, crashes and clocks
# against the real broker, about 15 s each; `make test` runs a fixed 3 of them.
# CHAOS_SEED=S replays seeds S, S+1, ... instead of fresh ones.
CHAOS_SCENARIOS ?= 200
chaos: setup  ## CHAOS_SCENARIOS fresh random chaos scenarios (about an hour)
	CHAOS_SCENARIOS=$(CHAOS_SCENARIOS) CHAOS_SEED=$(CHAOS_SEED) $(PY) -m pytest -q tests/chaos -k random_scenario

lint: setup  ## ruff check, ruff format --check, mypy (everything, tests and bench too)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

fmt: setup  ## format the tree and apply ruff's safe fixes
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

kafka-up: setup  ## start the local broker (scripts/kafka up)
	scripts/kafka up

kafka-down:  ## stop it
	scripts/kafka down

kafka-status:  ## is it up?
	scripts/kafka status

clean:  ## stop the broker, remove .venv and .cache
	scripts/kafka down || true
	rm -rf $(VENV) .cache

# Benchmarks (bench/, BENCHMARKS.md): their own venvs under .cache/bench and
# their own broker on free ports; results in bench/results/<timestamp>.json,
# which `bench` then renders into BENCHMARKS.md and bench/chart.png.
BENCH_EVENTS ?= 1000000
BENCH_RUNS ?= 3
BENCH_SLOW_EVENTS ?= 50000
# Latency mode (bench/latency.py): the generator's rate and how long it produces.
BENCH_LATENCY_RATE ?= 20000
BENCH_LATENCY_SECONDS ?= 180
# More options for `python -m bench`, last so they win: e.g. --no-latency, --no-memory.
BENCH_FLAGS ?=
BENCH_PY := .cache/bench/venv/bin/python

.PHONY: bench bench-check bench-scaling

# The JVM peers' own exactness checks need their Maven build (minutes and a few
# hundred MB on a fresh machine), so they run here and before every make bench.
bench-check: setup  ## the bench peers' checks against a real broker (builds the JVM peers)
	$(PYTHON) -m bench.setup_jvm
	$(PY) -m pytest -q -m bench_peer

bench: bench-check  ## the full benchmark (about 40 min); rewrites BENCHMARKS.md
	$(PYTHON) -m bench.setup_venvs
	$(BENCH_PY) -m bench --events $(BENCH_EVENTS) --runs $(BENCH_RUNS) --slow-events $(BENCH_SLOW_EVENTS) \
		--latency --latency-rate $(BENCH_LATENCY_RATE) --latency-seconds $(BENCH_LATENCY_SECONDS) --memory $(BENCH_FLAGS)
	$(BENCH_PY) -m bench.publish

bench-scaling:  ## workers x processes scaling only
	$(PYTHON) -m bench.setup_venvs
	$(BENCH_PY) -m bench --scaling-only --events $(BENCH_EVENTS) --runs $(BENCH_RUNS)
