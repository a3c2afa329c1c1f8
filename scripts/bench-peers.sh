#!/usr/bin/env bash
# This bridge beside the peer bridges of the shared webhook benchmark, in one run.
#
# Every target is driven by that benchmark's harness (PEERS_BENCH, default
# ../shared/bench): wrk with its Lua script, the same connections and duration, the same
# signed corpus (journeys of 6 updates per reference, large enough that no update id is
# sent twice), and afterwards every acknowledged update counted in the broker. Targets,
# in this order: the HTTP ceiling and the verification ceiling (no broker), this bridge
# on its file sink (its CPU per request against the verification ceiling's), then on Kafka
# and on RabbitMQ the Python peer, the Node peer and this bridge (release build, its
# default configuration: changes mode, raw bodies published). The target
# `bridge-updates` is this bridge publishing the tracking update alone
# (`events.milestones = "off"`, `events.publish_raw = false`): one message per webhook,
# as the peers publish, so that the two rows tell the cost of the bridge from the cost
# of the messages it adds.
#
# Usage: scripts/bench-peers.sh --bridge PATH [--results DIR] [--kafka HOST:PORT]
#                               [--duration S] [--connections N] [--targets "..."]
#
#   --bridge   the vizion-bridge binary to run (a release build)
#   --kafka    the Kafka-protocol broker to use; without it the benchmark's setup starts
#              its own tansu on 127.0.0.1:19092
#   --targets  TARGET:BROKER pairs; TARGET is ceiling, ceiling-verify, python, node,
#              bridge or bridge-updates, BROKER none, kafka or rabbitmq, or file for this
#              bridge on its file sink (no broker: nothing is counted, the CPU per
#              request is what that run is for)
#
# Results: one JSON file per target, results.json and a Markdown table (results.md, and
# stdout). Fails when a target fails or the harness finds an acknowledged update missing
# from the broker, never on speed.
set -euo pipefail
cd "$(dirname "$0")/.."

bridge=""
results=""
kafka=""
duration=20
connections=64
targets="ceiling:none ceiling-verify:none bridge:file python:kafka node:kafka bridge:kafka bridge-updates:kafka python:rabbitmq node:rabbitmq bridge:rabbitmq bridge-updates:rabbitmq"
while [ $# -gt 0 ]; do
    case "$1" in
        --bridge) bridge=$2; shift ;;
        --results) results=$2; shift ;;
        --kafka) kafka=$2; shift ;;
        --duration) duration=$2; shift ;;
        --connections) connections=$2; shift ;;
        --targets) targets=$2; shift ;;
        -h | --help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done
step() { echo "==> $*" >&2; }

peers_bench=${PEERS_BENCH:-../shared/bench}
if [ ! -x "$peers_bench/run.sh" ]; then
    echo "no peer benchmark at $peers_bench (set PEERS_BENCH)" >&2
    exit 2
fi
if [ -z "$bridge" ] || [ ! -x "$bridge" ]; then
    echo "--bridge: the vizion-bridge binary to run (cargo build --release)" >&2
    exit 2
fi
bridge=$(cd "$(dirname "$bridge")" && pwd)/$(basename "$bridge")
results=${results:-target/bench-results/peers-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$results"
results=$(cd "$results" && pwd)

# The benchmark's own working directory (venv, node modules, corpus, logs).
bench_dir=${VIZION_BENCH_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vizion-bench}
mkdir -p "$bench_dir"
export VIZION_BENCH_DIR=$bench_dir RESULTS="$results/harness.jsonl"
if [ -n "$kafka" ]; then
    export KAFKA_BOOTSTRAP=$kafka KAFKA_PORT=${kafka##*:}
fi
# Each journey is one reference followed through 6 growing updates; the corpus must
# outlast the fastest target, or an id sent twice would be taken for a repeat.
export CORPUS_JOURNEYS=6 CORPUS_N=${CORPUS_N:-400000}
export CORPUS=${CORPUS:-$bench_dir/corpus-journeys6.tsv}

step "peer benchmark: setup (dependencies, brokers, corpus of $CORPUS_N)"
"$peers_bench/setup.sh" deps
"$peers_bench/setup.sh" brokers
"$peers_bench/setup.sh" corpus

# This bridge, as the harness's `custom` target: its port, key and secret (the
# harness's own knobs, PORT, VIZION_KEY_ID and VIZION_SECRET), its broker.
port=${PORT:-18080}
key_id=${VIZION_KEY_ID:-bench-key}
export VIZION_SECRET=${VIZION_SECRET:-bench-secret}
bridge_vhost=benchbridge
bridge_config() {
    local target=$1 broker=$2 file="$results/$1-$2.toml" events=""
    if [ "$target" = bridge-updates ]; then
        events=$'[events]\nmilestones = "off"\npublish_raw = false'
    fi
    cat >"$file" <<EOF
sinks = ["$broker"]

[server]
listen = "127.0.0.1:$port"

[metrics]
listen = "127.0.0.1:$((port + 11))"

[log]
level = "warn"

[ingest]
allowed_sources = ["127.0.0.0/8"]

[[auth.secrets]]
key_id = "$key_id"
secret_env = "VIZION_SECRET"

[kafka]
brokers = "${KAFKA_BOOTSTRAP:-127.0.0.1:19092}"
ensure_topics = true

[rabbitmq]
url = "amqp://guest:guest@127.0.0.1:5672/$bridge_vhost"

$events
EOF
    echo "$file"
}

# A vhost of the bridge's own, emptied before and after: the bridge publishes milestone
# and raw messages beside the update the harness counts, and those wait in its unrouted
# queue.
fresh_bridge_vhost() {
    rabbitmqctl -q delete_vhost "$bridge_vhost" >/dev/null 2>&1 || true
    rabbitmqctl -q add_vhost "$bridge_vhost" &&
        rabbitmqctl -q set_permissions -p "$bridge_vhost" guest '.*' '.*' '.*'
}

failed=0
done_runs=()
for pair in $targets; do
    target=${pair%%:*}
    broker=${pair#*:}
    name="$target-$broker"
    step "peer benchmark: $name ($duration s, $connections connections)"
    env_args=()
    harness_target=$target
    harness_broker=$broker
    [ "$broker" = file ] && harness_broker=none
    if [ "$target" = bridge ] || [ "$target" = bridge-updates ]; then
        harness_target=custom
        config=$(bridge_config "$target" "$broker")
        data="$results/$name.data"
        rm -rf "$data"
        env_args+=(
            BRIDGE_NAME=vizion-bridge
            BRIDGE_READY_URL="http://127.0.0.1:$port/readyz"
            BRIDGE_CMD="export VIZION_BRIDGE__STORAGE__DATA_DIR=$(printf %q "$data"); exec $(printf %q "$bridge") serve --config $(printf %q "$config")"
        )
        if [ "$broker" = rabbitmq ]; then
            if ! fresh_bridge_vhost; then
                echo "$name: cannot prepare the RabbitMQ vhost $bridge_vhost" >&2
                failed=1
                continue
            fi
            env_args+=(
                AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$bridge_vhost"
                AMQP_QUEUE=bench.updates
                AMQP_BINDING='update.#'
                AMQP_ALTERNATE_EXCHANGE=vizion.tracking.unrouted
            )
        fi
    elif [ "$target" = node ] && [ "$broker" = kafka ]; then
        # kafkajs cannot run an idempotent producer against tansu.
        env_args+=(NODE_KAFKA_IDEMPOTENT=0)
    fi
    if env "${env_args[@]}" "$peers_bench/run.sh" "$harness_target" "$harness_broker" "$duration" "$connections" \
        >"$results/$name.out" 2>"$results/$name.log"; then
        if tail -n 1 "$results/$name.out" | jq --arg name "$name" '. + {name: $name}' >"$results/$name.json"; then
            done_runs+=("$results/$name.json")
            # `lost` counts acknowledged updates not in the broker; `lost_max` adds the
            # requests unanswered at the stop, which may or may not have been.
            # Negative when the broker holds more than was acknowledged (answers in
            # flight at the stop).
            lost=$(jq -r '[.lost // 0, 0] | max' "$results/$name.json")
            if [ "$lost" != 0 ]; then
                echo "$name: $lost acknowledged updates missing from the broker" >&2
                failed=1
            fi
        else
            echo "$name: the harness printed no result" >&2
            failed=1
        fi
    else
        echo "$name failed; its log:" >&2
        tail -n 20 "$results/$name.log" >&2
        failed=1
    fi
    if [ "$harness_target" = custom ]; then
        rm -rf "$results/$name.data"
        if [ "$broker" = rabbitmq ]; then
            rabbitmqctl -q delete_vhost "$bridge_vhost" >/dev/null 2>&1 || true
        fi
    fi
done

if [ ${#done_runs[@]} -gt 0 ]; then
    jq -s '.' "${done_runs[@]}" >"$results/results.json"
else
    echo '[]' >"$results/results.json"
fi
# The table: each target's accepted rate also as a ratio to the peers on its broker.
jq -r --arg duration "$duration" --arg connections "$connections" '
  def r2: . * 100 | round / 100;
  (map({key: .name, value: .ok_rps}) | from_entries) as $rate
  | "Peer benchmark harness: wrk, \($connections) connections, \($duration) s after its warm-up, journeys of 6 updates per reference",
    "",
    "| Target | Broker | Accepted/s | × Python | × Node | p50 ms | p99 ms | CPU ms / request | Peak RSS MiB | Lost (at most) |",
    "|---|---|---|---|---|---|---|---|---|---|",
    (.[] | (.name | split("-") | .[-1]) as $broker
      | def ratio($peer): if ($rate[$peer + "-" + $broker] // 0) > 0 then (.ok_rps / $rate[$peer + "-" + $broker] | r2) else "" end;
      "| \(.name | sub("-[a-z]+$"; "")) | \($broker) | \(.ok_rps | round) | \(ratio("python")) | \(ratio("node")) | \(.p50_ms) | \(.p99_ms) | \(.cpu_ms_per_req) | \(.peak_rss_mb) | \(.lost_max // "") |")
' "$results/results.json" | tee "$results/results.md"

if [ "$failed" != 0 ]; then
    echo "bench-peers: FAILED (see above)" >&2
    exit 1
fi
