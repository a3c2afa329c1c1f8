#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit, integration and property tests.
# Starts whatever the tests need that is not already running, and stops only what it
# started. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

# The RabbitMQ sink's integration tests need a broker on 127.0.0.1:5672 (guest/guest).
rabbitmq_listening() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
step "RabbitMQ on 127.0.0.1:5672"
if rabbitmq_listening; then
    echo "using the running broker"
elif command -v rabbitmq-server >/dev/null; then
    rabbitmq-server -detached
    trap 'rabbitmqctl -q stop >/dev/null 2>&1 || true' EXIT
    for _ in $(seq 60); do rabbitmq_listening && break; sleep 1; done
    rabbitmq_listening || { echo "RabbitMQ did not start listening on 5672 within 60s" >&2; exit 1; }
    echo "started a broker (stopped again at exit)"
else
    echo "no RabbitMQ on 127.0.0.1:5672 and no rabbitmq-server to start: install RabbitMQ or start one (guest/guest)" >&2
    exit 1
fi

step "cargo test"
cargo test --all-targets --locked
