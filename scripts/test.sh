#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, the deployment checks, unit, integration
# and property tests.
# Starts what the tests need and is not already running (RabbitMQ, Redis, a
# Kafka-protocol broker), stops only what it started, and exits non-zero when anything failed.
#
# KAFKA_BOOTSTRAP=host:port reuses a running Kafka-protocol broker instead.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
trap stop_started EXIT

# Commands the tests and checks call: a TLS listener in front of RabbitMQ with a
# throw-away CA (openssl, socat), HTTP and JSON on the command line (curl, jq), unpacking
# the deployment tools (unzip), the AsyncAPI schema package (npm).
ensure_commands socat:socat openssl:openssl curl:curl jq:jq unzip:unzip npm:npm

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The crate's layering: no module uses one above it, and no cycle (docs/ARCHITECTURE.md).
step "scripts/module-graph.py"
python3 scripts/module-graph.py

# The chart, compose stack, Dockerfile, alerts, dashboard and AsyncAPI document, checked
# with helm, kubernetes-validate, docker-compose, hadolint, a PromQL parser and the
# AsyncAPI 3.0 schema (about two minutes once the tools are cached; installing them
# takes about a minute more).
step "scripts/check-deploy.sh"
scripts/check-deploy.sh

# The RabbitMQ sink's integration tests need a broker on 127.0.0.1:5672 (guest/guest).
ensure_rabbitmq
ensure_redis
start_kafka

# The integration tests run built binaries that `cargo test` does not produce: the
# simulator (`vizion-sim`, another workspace member) and the example consumers
# (tests/api/example_consumers.rs; `--all-targets` builds examples as test harnesses).
step "cargo build --workspace --bins --examples"
cargo build --workspace --bins --examples --locked

step "cargo test --workspace"
log=$(mktemp -t vizion-bridge-tests.XXXXXX.log)
set +e
cargo test --workspace --all-targets --locked --no-fail-fast 2>&1 | tee "$log"
test_status=${PIPESTATUS[0]}
set -e

# The load benchmark, a few seconds per sink on the debug build: it fails only when the
# benchmark itself breaks (e.g. an accepted update is not read back), never for speed.
if [ "$test_status" -eq 0 ]; then
    step "scripts/bench.sh --quick"
    bench_results=$(mktemp -d -t vizion-bridge-bench.XXXXXX)
    scripts/bench.sh --quick --results "$bench_results"
    rm -rf "$bench_results"
fi

# One closing line for the whole run, also when a test failed: cargo prints one summary
# per test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
rm -f "$log"
exit "$test_status"
