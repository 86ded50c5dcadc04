# syntax=docker/dockerfile:1
#
# One image for the whole loginflow stack: the dataflow (default entrypoint),
# the event generator (`--entrypoint python ... -m devkit.generator`) and the
# one-shot recovery init (`--entrypoint /app/scripts/init-recovery`).
#
# Base image: CPython 3.12, the newest line Bytewax 0.21.1 ships wheels for
# (there are no 3.13 wheels, and the slim image has no compiler to build one).
# bytewax, confluent-kafka and orjson all have manylinux cp312 wheels for
# x86_64 and aarch64; bytewax's x86_64 wheel needs glibc >= 2.31.
# Debian 13 "trixie" slim: current Debian stable (bookworm left regular security
# support in June 2026). Its Essential set includes bash and util-linux, which
# provides `flock`; scripts/run-dataflow and scripts/init-recovery need both,
# so nothing is apt-installed.
# Pinned by its exact tag. The build machines have no Docker engine, so no
# digest could be resolved and none is guessed here: when you first pull it,
# append the digest (`FROM python:3.12.12-slim-trixie@sha256:<digest>`).
FROM python:3.12.12-slim-trixie

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# A fixed, unprivileged uid/gid so volume ownership is predictable.
# /var/lib/loginflow/recovery: Bytewax recovery partitions (a volume, below).
# /var/lib/loginflow/api: where Bytewax's dataflow API writes dataflow.json.
# With BYTEWAX_DATAFLOW_API_ENABLED, bytewax.run writes that file to the
# working directory unless BYTEWAX_DATAFLOW_API_CACHE_PATH names an existing
# writable directory, and exits with "Permission denied" when it cannot; /app
# is owned by root.
RUN groupadd --gid 10001 loginflow \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin loginflow \
    && mkdir -p /var/lib/loginflow/recovery /var/lib/loginflow/api \
    && chown -R 10001:10001 /var/lib/loginflow

WORKDIR /app

# Dependency layer first: it is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore -r requirements.txt

# Only what runs: no tests, benchmarks or dev tooling (see .dockerignore).
COPY dataflow.py ./
COPY operators/ ./operators/
COPY devkit/ ./devkit/
COPY --chmod=0755 scripts/run-dataflow ./scripts/run-dataflow
COPY --chmod=0755 scripts/init-recovery ./scripts/init-recovery

# Read by scripts/run-dataflow and scripts/init-recovery. Snapshot (10 s) and
# backup (0 s) intervals and the partition count (4) keep the scripts' defaults.
ENV RECOVERY_DIR=/var/lib/loginflow/recovery \
    PYTHON=python \
    BYTEWAX_DATAFLOW_API_CACHE_PATH=/var/lib/loginflow/api

USER 10001:10001
VOLUME ["/var/lib/loginflow/recovery"]

# 3030: Bytewax dataflow API and Prometheus /metrics (BYTEWAX_DATAFLOW_API_ENABLED=true).
# 2101: the port the compose file gives Bytewax's inter-process addresses (-a).
EXPOSE 3030 2101

# The dataflow with recovery on: scripts/run-dataflow creates the recovery
# partitions when the directory is empty (under flock, so processes that start
# together do not race), then execs `python -m bytewax.run dataflow -r ... -s ... -b ...`.
# Extra arguments are passed to bytewax.run; the cluster layout comes from
# BYTEWAX_PROCESS_ID / BYTEWAX_ADDRESSES / BYTEWAX_WORKERS_PER_PROCESS.
# Python is exec'ed, so it gets SIGTERM directly: run with an init process
# (`init: true` in compose, `docker run --init`) so it is not PID 1, where the
# kernel would drop SIGTERM because Python installs no handler for it.
ENTRYPOINT ["/app/scripts/run-dataflow"]
CMD []
