# Shared by scripts/test.sh and scripts/bench.sh: starting the brokers the tests and
# benchmarks need, and stopping at exit only what was started here.
#
# Source it from a script that runs with `set -euo pipefail`, then call
# `trap stop_started EXIT`.

step() { printf '\n==> %s\n' "$*"; }

started_pids=()
stop_rabbitmq=0
stop_redis=0
stop_started() {
    for pid in "${started_pids[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
    done
    if [ "$stop_rabbitmq" = 1 ]; then
        rabbitmqctl -q stop >/dev/null 2>&1 || true
    fi
    if [ "$stop_redis" = 1 ]; then
        redis-cli -p 6379 shutdown nosave >/dev/null 2>&1 || true
    fi
}

# Installs, from Debian's packages, the commands the tests run that a fresh machine may
# lack (only when missing, and only as root with apt-get; otherwise says what to install).
# Arguments are "command:package" pairs.
ensure_commands() {
    local missing=()
    local pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    step "installing ${missing[*]}"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "missing commands; install these packages: ${missing[*]}" >&2
        exit 1
    fi
}

port_is_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The first port from $1 on that nothing listens on.
free_port() {
    local port=$1
    while port_is_open "$port"; do port=$((port + 1)); done
    echo "$port"
}

# Waits up to $2 seconds (default 30) for something to listen on port $1.
wait_for_port() {
    local tries=$((${2:-30} * 5))
    for _ in $(seq 1 "$tries"); do
        port_is_open "$1" && return 0
        sleep 0.2
    done
    return 1
}

# A fresh in-memory tansu broker for this run: it speaks the Kafka protocol, and its
# storage grows without limit, so it is not reused across runs. Exports
# KAFKA_BOOTSTRAP; an already set KAFKA_BOOTSTRAP is used as it is.
start_kafka() {
    if [ -n "${KAFKA_BOOTSTRAP:-}" ]; then
        step "using the Kafka-protocol broker at $KAFKA_BOOTSTRAP"
        return
    fi
    if ! command -v tansu >/dev/null 2>&1; then
        step "installing the tansu broker (the first time takes 10 to 20 minutes)"
        cargo install --locked tansu --features dynostore,postgres
    fi
    local port
    port=$(free_port 29092)
    local log
    log=$(mktemp -t tansu.XXXXXX.log)
    step "starting tansu on 127.0.0.1:$port (log: $log)"
    tansu broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ >"$log" 2>&1 &
    started_pids+=($!)
    if wait_for_port "$port" 30; then
        export KAFKA_BOOTSTRAP="127.0.0.1:$port"
        return
    fi
    echo "tansu did not start listening on $port; its log:" >&2
    cat "$log" >&2
    exit 1
}

# RabbitMQ on 127.0.0.1:5672 (guest/guest): the running one, or one started here and
# stopped at exit.
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

# The shared-dedup and auto-unsubscribe tests need Redis on 127.0.0.1:6379.
ensure_redis() {
    step "Redis on 127.0.0.1:6379"
    if port_is_open 6379; then
        echo "using the running server"
    elif command -v redis-server >/dev/null; then
        redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >/dev/null
        stop_redis=1
        for _ in $(seq 30); do port_is_open 6379 && break; sleep 0.2; done
        port_is_open 6379 || { echo "Redis did not start listening on 6379" >&2; exit 1; }
        echo "started a server (stopped again at exit)"
    else
        echo "no Redis on 127.0.0.1:6379 and no redis-server to start: install Redis or start one" >&2
        exit 1
    fi
}
