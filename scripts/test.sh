#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit, integration and property tests.
# Starts what the tests need and is not already running (RabbitMQ, a Kafka-protocol
# broker),
# stops only what it started, and exits non-zero on the first failure.
#
# KAFKA_BOOTSTRAP=host:port reuses a running Kafka-protocol broker instead.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

started_pids=()
stop_rabbitmq=0
cleanup() {
    for pid in "${started_pids[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
    done
    if [ "$stop_rabbitmq" = 1 ]; then
        rabbitmqctl -q stop >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

port_is_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A fresh in-memory tansu broker for this run: it speaks the Kafka protocol, and its
# storage grows without limit, so it is not reused across runs.
start_kafka() {
    if [ -n "${KAFKA_BOOTSTRAP:-}" ]; then
        step "using the Kafka-protocol broker at $KAFKA_BOOTSTRAP"
        return
    fi
    if ! command -v tansu >/dev/null 2>&1; then
        step "installing the tansu broker (the first time takes 10 to 20 minutes)"
        cargo install --locked tansu --features dynostore,postgres
    fi
    local port=29092
    while port_is_open "$port"; do port=$((port + 1)); done
    local log
    log=$(mktemp -t tansu.XXXXXX.log)
    step "starting tansu on 127.0.0.1:$port (log: $log)"
    tansu broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ >"$log" 2>&1 &
    started_pids+=($!)
    for _ in $(seq 1 150); do
        if port_is_open "$port"; then
            export KAFKA_BOOTSTRAP="127.0.0.1:$port"
            return
        fi
        sleep 0.2
    done
    echo "tansu did not start listening on $port; its log:" >&2
    cat "$log" >&2
    exit 1
}

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

# The RabbitMQ sink's integration tests need a broker on 127.0.0.1:5672 (guest/guest):
# the running one, or one started here and stopped at exit.
ensure_rabbitmq() {
    step "RabbitMQ on 127.0.0.1:5672"
    if port_is_open 5672; then
        echo "using the running broker"
    elif command -v rabbitmq-server >/dev/null; then
        rabbitmq-server -detached
        stop_rabbitmq=1
        for _ in $(seq 60); do port_is_open 5672 && break; sleep 1; done
        port_is_open 5672 || { echo "RabbitMQ did not start listening on 5672 within 60s" >&2; exit 1; }
        echo "started a broker (stopped again at exit)"
    else
        echo "no RabbitMQ on 127.0.0.1:5672 and no rabbitmq-server to start: install RabbitMQ or start one (guest/guest)" >&2
        exit 1
    fi
}

ensure_rabbitmq
start_kafka

step "cargo test"
log=$(mktemp -t vizion-bridge-tests.XXXXXX.log)
cargo test --all-targets --locked --no-fail-fast 2>&1 | tee "$log"

# One closing line for the whole run: cargo prints one summary per test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
rm -f "$log"
