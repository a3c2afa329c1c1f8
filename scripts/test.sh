#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit, integration and property tests.
# Starts what the tests need and is not already running (a Kafka-protocol broker),
# stops only what it started, and exits non-zero on the first failure.
#
# KAFKA_BOOTSTRAP=host:port reuses a running Kafka-protocol broker instead.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

started_pids=()
cleanup() {
    for pid in "${started_pids[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
    done
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

start_kafka

step "cargo test"
cargo test --all-targets --locked
