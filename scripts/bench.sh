#!/usr/bin/env bash
# Load benchmark of the whole service, per sink, next to this machine's ceilings.
#
# Starts the brokers as scripts/test.sh does, builds once, then for each sink starts the
# bridge with a generated configuration, drives it with `vizion-sim load` (signed
# updates of 3 to 15 milestones from concurrent keep-alive clients), and records
# accepted/s, the messages it published per update, latency percentiles, non-2xx
# answers, the bridge's CPU milliseconds per update and its peak RSS, then reads every
# accepted update back from the sink. In the same run it measures the HTTP ceiling (a
# bare actix-web handler under the same load) and each broker's ceiling (the same
# messages published straight to the broker), and gives every figure as a ratio to the
# lower of the two ceilings.
#
# Usage: scripts/bench.sh [--quick] [--duration S] [--warmup S] [--clients N]
#                         [--sinks "file rabbitmq kafka"] [--results DIR] [--drain N]
#                         [--mode journey|snapshot] [--profile] [--peers] [--peers-only]
#
#   --quick   a few seconds per sink on a debug build: checks that the benchmark works
#             (every accepted update read back), judges nothing on speed.
#   --profile records where the bridge spends its CPU during each measured window
#             (`perf record`, DWARF call graphs) and writes the top entries, by own and
#             by inclusive time, to RUN.profile.txt in the results directory.
#   --mode    the shape of the load, passed to every `vizion-sim load`: journey (the
#             default: references followed through their journeys, several growing
#             updates each) or snapshot (every update a reference of its own).
#
# Spool modes (`delivery.mode` = spool, broker_then_spool) are measured too; after their
# load the run waits until the spool has forwarded everything, and reports how long that
# took. A run is named SINK[+MODE][:MILESTONES]: `kafka+spool` is Kafka behind the
# spool, `rabbitmq:all` RabbitMQ with `events.milestones = "all"` (the default is the
# bridge's own, "changes"), e.g. --sinks "rabbitmq rabbitmq:all kafka kafka:all"
# compares what publishing the changes instead of every milestone does.
#
# --drain N (RabbitMQ) fills a spool with at least N updates while the broker is
# unreachable, then restarts the bridge with the broker back and times the drain.
#
# --peers runs the peer bridges of ../shared/bench (PEERS_BENCH) beside this bridge, all
# driven by that benchmark's own harness (wrk, 64 connections, its signed journey corpus
# of 6 updates per reference, every acknowledged update counted in the broker): its HTTP
# and verification ceilings, the Python and Node bridges on Kafka and RabbitMQ, and this
# bridge, release build, default configuration, on its file sink and on both brokers,
# and again publishing the tracking update alone (one message per webhook, as the
# peers). --peers-only skips this script's own runs.
#
# Results: a Markdown table on stdout, and results.json, results.md and the raw outputs
# in the results directory.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

quick=0
duration=30
warmup=5
clients=64
sinks=""
results=""
drain=0
peers=0
profile_cpu=0
own_runs=1
load_mode=journey
spool_max_bytes=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --duration) duration=$2; shift ;;
        --warmup) warmup=$2; shift ;;
        --clients) clients=$2; shift ;;
        --sinks) sinks=$2; shift ;;
        --results) results=$2; shift ;;
        --drain) drain=$2; shift ;;
        --mode) load_mode=$2; shift ;;
        --profile) profile_cpu=1 ;;
        --peers) peers=1 ;;
        --peers-only) peers=1; own_runs=0 ;;
        -h | --help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done
case "$load_mode" in
    journey | snapshot) ;;
    *) echo "--mode: journey or snapshot, not $load_mode" >&2; exit 2 ;;
esac
if [ "$peers" = 1 ] && [ "$quick" = 1 ]; then
    echo "--peers measures the release build: not with --quick" >&2
    exit 2
fi
if [ "$profile_cpu" = 1 ] && ! command -v perf >/dev/null 2>&1; then
    echo "--profile needs perf (Debian: linux-perf)" >&2
    exit 2
fi
if [ "$quick" = 1 ]; then
    duration=3
    warmup=1
    clients=16
    profile=debug
else
    profile=release
fi
results=${results:-target/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$results"
results=$(cd "$results" && pwd)

bridge_pid=""
stop_bridge() {
    if [ -n "$bridge_pid" ]; then
        kill -TERM "$bridge_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$bridge_pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$bridge_pid" 2>/dev/null || true
        wait "$bridge_pid" 2>/dev/null || true
        bridge_pid=""
    fi
}
cleanup() {
    stop_bridge
    stop_started
}
trap cleanup EXIT

ensure_rabbitmq
# Unlike the tests, a benchmark can go without Kafka: without a broker to reuse and
# without tansu, the Kafka runs are left out (and said so) rather than installed for.
kafka=1
if [ -n "${KAFKA_BOOTSTRAP:-}" ] || command -v tansu >/dev/null 2>&1; then
    start_kafka
else
    kafka=0
    step "no KAFKA_BOOTSTRAP and no tansu: the Kafka runs are left out"
fi

step "load: $load_mode mode"
step "building ($profile)"
build_flags=(--locked --workspace --bin vizion-bridge --bin vizion-sim --example http_ceiling --example broker_ceiling --example broker_readback)
if [ "$profile" = release ]; then
    cargo build --release "${build_flags[@]}"
else
    cargo build "${build_flags[@]}"
fi
bin_dir="${CARGO_TARGET_DIR:-target}/$profile"
bridge="$bin_dir/vizion-bridge"
sim="$bin_dir/vizion-sim"
examples="$bin_dir/examples"

secret=bench-secret
export VIZION_BENCH_SECRET=$secret
rabbit_url="amqp://guest:guest@127.0.0.1:5672/%2f"

# The runs: each sink alone, then the brokers behind the spool in both spool modes.
if [ -z "$sinks" ]; then
    sinks="file rabbitmq kafka rabbitmq+spool kafka+spool rabbitmq+broker_then_spool kafka+broker_then_spool"
fi
if [ "$kafka" = 0 ]; then
    sinks=$(printf '%s\n' $sinks | { grep -v '^kafka' || true; } | tr '\n' ' ')
fi

# The parts of a run's name, SINK[+MODE][:MILESTONES].
run_sink() { local r=${1%%:*}; echo "${r%%+*}"; }
run_mode() { local r=${1%%:*}; if [ "$r" != "${r%%+*}" ]; then echo "${r#*+}"; fi; }
run_milestones() { if [ "$1" != "${1%%:*}" ]; then echo "${1#*:}"; fi; }

# Writes the bridge's configuration for run $1 to $2.
write_config() {
    local run=$1 file=$2
    local sink mode milestones
    sink=$(run_sink "$run")
    mode=$(run_mode "$run")
    milestones=$(run_milestones "$run")
    local data="$results/$run.data"
    rm -rf "$data"
    cat >"$file" <<EOF
sinks = ["$sink"]

[server]
listen = "127.0.0.1:$bridge_port"

[metrics]
listen = "127.0.0.1:$metrics_port"

[log]
format = "json"
level = "warn"

[ingest]
allowed_sources = ["127.0.0.1/32"]

[[auth.secrets]]
key_id = "bench"
secret_env = "VIZION_BENCH_SECRET"

[storage]
data_dir = "$data"

[kafka]
brokers = "${KAFKA_BOOTSTRAP:-127.0.0.1:9092}"
ensure_topics = true
topic_partitions = 3

[rabbitmq]
url = "$rabbit_url"
EOF
    if [ -n "$milestones" ]; then
        printf '\n[events]\nmilestones = "%s"\n' "$milestones" >>"$file"
    fi
    if [ -n "$mode" ]; then
        printf '\n[delivery]\nmode = "%s"\n\n[spool]\ndir = "%s/spool"\n' "$mode" "$data" >>"$file"
        if [ -n "$spool_max_bytes" ]; then
            printf 'max_bytes = %s\n' "$spool_max_bytes" >>"$file"
        fi
    fi
}

# A gauge of the running bridge, by its full name.
gauge() {
    curl -fsS "http://127.0.0.1:$metrics_port/metrics" | awk -v name="$1" '$1 == name { print $2 }'
}

# Waits until the bridge's spool is empty; prints the seconds it took.
wait_for_drain() {
    local started=$(date +%s.%N)
    for _ in $(seq 6000); do
        local left=$(gauge vizion_bridge_spool_entries)
        if [ "${left:-1}" = 0 ]; then
            awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f\n", b - a }'
            return 0
        fi
        sleep 0.1
    done
    echo "the spool did not drain within 10 minutes" >&2
    return 1
}

# utime + stime of process $1, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
accepted_total() {
    curl -fsS "http://127.0.0.1:$metrics_port/metrics" |
        awk '/^vizion_bridge_webhooks_total\{outcome="accepted"\}/ { print $2 }'
}

# Runs the load tool against $1 with label $2; its JSON goes to $results/$2.load.json.
run_load() {
    local url=$1 label=$2
    "$sim" load --mode "$load_mode" --url "$url" --key-id bench --secret-env VIZION_BENCH_SECRET \
        --concurrency "$clients" --warmup "${warmup}s" --duration "${duration}s" --json \
        --accepted-ids "$results/$label.accepted" >"$results/$label.load.json" \
        2>"$results/$label.load.log"
}

# Starts the bridge for run $1 and waits until it is ready.
start_bridge() {
    local run=$1 config="$results/$1.toml"
    write_config "$run" "$config"
    "$bridge" serve --config "$config" >"$results/$run.bridge.log" 2>&1 &
    bridge_pid=$!
    for _ in $(seq 150); do
        if curl -fsS "http://127.0.0.1:$bridge_port/readyz" >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$bridge_pid" 2>/dev/null || break
        sleep 0.2
    done
    echo "the bridge did not become ready for $run; its log:" >&2
    cat "$results/$run.bridge.log" >&2
    exit 1
}

# Messages the bridge published and updates it accepted so far, warm-up included: the
# brokers' confirmed messages from its metrics, the file sink's lines once it stopped.
published_total() {
    { curl -fsS "http://127.0.0.1:$metrics_port/metrics" || true; } |
        awk '/^vizion_bridge_events_published_total\{/ { n += $2 } END { print n + 0 }'
}
file_messages() {
    { cat "$results/$1.data/events.jsonl" "$results/$1.data/raw.jsonl" 2>/dev/null || true; } | wc -l
}

# The top of run $1's profile: by own time (where the cycles are), then by inclusive
# time (which part of the work they belong to).
profile_report() {
    local data="$results/$1.perf.data" out="$results/$1.profile.txt"
    {
        echo "# $1: by own time"
        # `sed -n`, not head: it reads to the end, so no SIGPIPE fails the pipeline.
        perf report -i "$data" --no-children --sort symbol --stdio --percent-limit 0.7 -g none 2>/dev/null |
            grep -v -e '^#' -e '^$' | sed -n -e 's/ *-  *- *$//' -e '1,40p' || true
        echo
        echo "# $1: by inclusive time"
        perf report -i "$data" --children --sort symbol --stdio --percent-limit 3 -g none 2>/dev/null |
            grep -v -e '^#' -e '^$' | sed -n -e 's/ *-  *- *$//' -e '1,60p' || true
    } >"$out"
    rm -f "$data"
}

readback() {
    local run=$1 sink
    sink=$(run_sink "$run")
    local out="$results/$run.readback.json"
    case "$sink" in
        file) "$examples/broker_readback" --accepted-ids "$results/$run.accepted" file --raw "$results/$run.data/raw.jsonl" >"$out" ;;
        kafka) "$examples/broker_readback" --accepted-ids "$results/$run.accepted" kafka --bootstrap "$KAFKA_BOOTSTRAP" --topic vizion.tracking.raw >"$out" ;;
        rabbitmq) "$examples/broker_readback" --accepted-ids "$results/$run.accepted" rabbitmq --url "$rabbit_url" --queue vizion.tracking.unrouted >"$out" ;;
    esac
}

bridge_port=$(free_port 18380)
metrics_port=$(free_port $((bridge_port + 1)))
ceiling_port=$(free_port $((metrics_port + 1)))
failed=0

if [ "$own_runs" = 1 ]; then
    step "ceiling: HTTP (bare actix-web handler, same load)"
    "$examples/http_ceiling" --listen "127.0.0.1:$ceiling_port" >"$results/http-ceiling.log" 2>&1 &
    ceiling_pid=$!
    started_pids+=("$ceiling_pid")
    wait_for_port "$ceiling_port" 30
    run_load "http://127.0.0.1:$ceiling_port/webhooks/vizion" http-ceiling
    kill -TERM "$ceiling_pid" 2>/dev/null || true
    wait "$ceiling_pid" 2>/dev/null || true

    for broker in rabbitmq kafka; do
        case " $sinks " in *" $broker"*) ;; *) continue ;; esac
        step "ceiling: $broker (the same messages published straight to the broker)"
        case "$broker" in
            kafka) args=(kafka --bootstrap "$KAFKA_BOOTSTRAP") ;;
            rabbitmq) args=(rabbitmq --url "$rabbit_url") ;;
        esac
        "$examples/broker_ceiling" --duration "$duration" --warmup "$warmup" --json "${args[@]}" \
            >"$results/$broker-ceiling.json" 2>"$results/$broker-ceiling.log" || {
            echo "the $broker ceiling failed:" >&2
            cat "$results/$broker-ceiling.log" >&2
            failed=1
        }
    done

    for run in $sinks; do
        step "bridge: $run"
        start_bridge "$run"
        # CPU and the accepted count are sampled together at the end of the warm-up and
        # of the measured window, so that their ratio covers the same interval.
        (
            sleep "$warmup"
            echo "$(cpu_ticks "$bridge_pid") $(accepted_total)" >"$results/$run.sample0"
            if [ "$profile_cpu" = 1 ]; then
                perf record -q -F 249 -g --call-graph dwarf,16384 -p "$bridge_pid" \
                    -o "$results/$run.perf.data" -- sleep "$duration" 2>"$results/$run.perf.log" ||
                    sleep "$duration"
            else
                sleep "$duration"
            fi
            echo "$(cpu_ticks "$bridge_pid") $(accepted_total)" >"$results/$run.sample1"
        ) &
        sampler=$!
        run_load "http://127.0.0.1:$bridge_port/webhooks/vizion" "$run"
        wait "$sampler" || true
        if [ -n "$(run_mode "$run")" ]; then
            # Spooled updates are still on their way to the broker: read back after they are.
            wait_for_drain >"$results/$run.drain_seconds" || failed=1
        fi
        awk '/^VmHWM/ { print $2 }' "/proc/$bridge_pid/status" >"$results/$run.hwm_kib"
        accepted_at_end=$(accepted_total || echo 0)
        published_at_end=$(published_total)
        stop_bridge
        if [ "$(run_sink "$run")" = file ]; then
            published_at_end=$(file_messages "$run")
        fi
        echo "$published_at_end ${accepted_at_end:-0}" >"$results/$run.messages"
        if [ "$profile_cpu" = 1 ]; then
            # Once the bridge stopped, before the next run: the machine is quiet then.
            profile_report "$run"
        fi
        if ! readback "$run"; then
            echo "readback of $run found fewer updates than were accepted:" >&2
            cat "$results/$run.readback.json" >&2
            failed=1
        fi
    done

    if [ "$drain" -gt 0 ]; then
        step "drain: fill a spool with $drain updates while RabbitMQ is unreachable, then time its drain"
        run=rabbitmq+spool
        dead_port=$(free_port 29700)
        saved_url=$rabbit_url
        rabbit_url="amqp://guest:guest@127.0.0.1:$dead_port/%2f"
        # Room for N records of up to about 20 kB each: a full spool would refuse the rest.
        spool_max_bytes=$((drain * 20000 + 1073741824))
        start_bridge "$run"
        spool_max_bytes=""
        rabbit_url=$saved_url
        # The load tool runs for a fixed time: give it enough for N at the spool's rate.
        fill_start=$(date +%s)
        while :; do
            "$sim" load --mode "$load_mode" --url "http://127.0.0.1:$bridge_port/webhooks/vizion" --key-id bench \
                --secret-env VIZION_BENCH_SECRET --concurrency "$clients" --warmup 0s \
                --duration 10s --json --accepted-ids "$results/drain.accepted.part" \
                >>"$results/drain.fill.json" 2>>"$results/drain.fill.log"
            cat "$results/drain.accepted.part" >>"$results/drain.accepted"
            [ "$(wc -l <"$results/drain.accepted")" -ge "$drain" ] && break
            if [ $(( $(date +%s) - fill_start )) -gt 600 ]; then
                echo "the spool took fewer than $drain updates in 10 minutes" >&2
                exit 1
            fi
        done
        filled=$(wc -l <"$results/drain.accepted")
        spooled=$(gauge vizion_bridge_spool_entries)
        spool_bytes=$(gauge vizion_bridge_spool_bytes)
        echo "filled $filled accepted updates ($spooled spooled, $spool_bytes bytes) in $(( $(date +%s) - fill_start )) s"
        stop_bridge
        # Same data directory and spool, broker back: the drain is timed from the start.
        sed "s|127.0.0.1:$dead_port|127.0.0.1:5672|" "$results/$run.toml" >"$results/$run.toml.drain"
        drain_start=$(date +%s.%N)
        "$bridge" serve --config "$results/$run.toml.drain" >"$results/drain.bridge.log" 2>&1 &
        bridge_pid=$!
        wait_for_port "$metrics_port" 60
        wait_for_drain >/dev/null || failed=1
        drain_seconds=$(awk -v a="$drain_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
        stop_bridge
        mv "$results/drain.accepted" "$results/$run.accepted"
        readback "$run" && found=$(jq .found "$results/$run.readback.json") || { failed=1; found="?"; }
        echo "drained $filled updates in $drain_seconds s ($(awk -v n="$filled" -v t="$drain_seconds" 'BEGIN { printf "%.0f", n / t }') updates/s); read back: $found" |
            tee "$results/drain.md"
    fi

    step "results ($results)"
    # The Markdown table: one row per ceiling and per run, each rate also as a ratio to
    # the lower ceiling that applies (HTTP alone for the file sink, else the lower of
    # HTTP and the broker).
    table='
      def r1: . * 10 | round / 10;
      def r2: . * 100 | round / 100;
      def fmt: tostring;
      (.runs | map(select(.run == "http-ceiling"))[0].load.rate_per_second) as $http
      | (.runs | map(select(.ceiling != null) | {key: .ceiling.broker, value: .ceiling.updates_per_second}) | from_entries) as $brokers
      | def lower($sink): [$http, ($brokers[$sink] // $http)] | min;
      "Load: \(.mode) mode, \(.clients) clients, \(.duration) s per run (\(.profile) build)",
      "",
      "| Run | Accepted/s | × lower ceiling | Msgs / update | Msgs/s | non-2xx | p50 ms | p90 ms | p99 ms | p99.9 ms | CPU ms / update | Peak RSS MiB | Read back |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
      (.runs[] |
        if .run == "http-ceiling" then
          "| HTTP ceiling | \(.load.rate_per_second | round) | \(.load.rate_per_second / $http | r2) | | | \(.load.non_2xx + .load.transport_errors) | \(.load.latency_ms.p50 | r2) | \(.load.latency_ms.p90 | r2) | \(.load.latency_ms.p99 | r2) | \(.load.latency_ms.p99_9 | r2) | | | |"
        elif .ceiling != null then
          "| \(.ceiling.broker) ceiling (\(.ceiling.in_flight) in flight) | \(.ceiling.updates_per_second | round) | \(.ceiling.updates_per_second / ([$http, .ceiling.updates_per_second] | min) | r2) | \(.ceiling.messages_per_second / .ceiling.updates_per_second | r2) | \(.ceiling.messages_per_second | round) | \(.ceiling.failures) | | | | | | | |"
        else
          (.run | split(":")[0] | split("+")[0]) as $sink
          | "| \(.run) | \(.load.rate_per_second | round) | \(.load.rate_per_second / lower($sink) | r2) | \(.messages_per_update | r2) | \(.load.rate_per_second * .messages_per_update | round) | \(.load.non_2xx + .load.transport_errors) | \(.load.latency_ms.p50 | r2) | \(.load.latency_ms.p90 | r2) | \(.load.latency_ms.p99 | r2) | \(.load.latency_ms.p99_9 | r2) | \(if .accepted_in_window > 0 then (.cpu_seconds / .accepted_in_window * 1000 | r2) else "n/a" end) | \(.peak_rss_kib / 1024 | r1) | \(.readback.found) / \(.readback.accepted) |"
        end)
    '

    ticks=$(getconf CLK_TCK)
    {
        jq -n --slurpfile http "$results/http-ceiling.load.json" \
            '{run: "http-ceiling", load: $http[0]}'
        for broker in rabbitmq kafka; do
            [ -s "$results/$broker-ceiling.json" ] || continue
            jq -n --slurpfile c "$results/$broker-ceiling.json" --arg run "$broker-ceiling" \
                '{run: $run, ceiling: $c[0]}'
        done
        for run in $sinks; do
            cpu0="" acc0="" cpu1="" acc1="" messages="" accepted=""
            read -r cpu0 acc0 <"$results/$run.sample0" || true
            read -r cpu1 acc1 <"$results/$run.sample1" || true
            read -r messages accepted <"$results/$run.messages" || true
            jq -n \
                --arg run "$run" \
                --slurpfile load "$results/$run.load.json" \
                --slurpfile readback "$results/$run.readback.json" \
                --argjson cpu "$(awk -v a="${cpu0:-0}" -v b="${cpu1:-0}" -v t="$ticks" 'BEGIN { print (b - a) / t }')" \
                --argjson accepted_in_window "$(awk -v a="${acc0:-0}" -v b="${acc1:-0}" 'BEGIN { print b - a }')" \
                --argjson hwm_kib "$(cat "$results/$run.hwm_kib")" \
                --argjson messages_per_update "$(awk -v m="${messages:-0}" -v a="${accepted:-0}" 'BEGIN { print (a > 0 ? m / a : 0) }')" \
                '{run: $run, load: $load[0], readback: $readback[0], cpu_seconds: $cpu,
                  accepted_in_window: $accepted_in_window, peak_rss_kib: $hwm_kib,
                  messages_per_update: $messages_per_update}'
        done
    } | jq -s --arg duration "$duration" --arg clients "$clients" --arg profile "$profile" \
        --arg mode "$load_mode" \
        '{duration: ($duration | tonumber), clients: ($clients | tonumber), profile: $profile, mode: $mode, runs: .}' \
        >"$results/results.json"

    jq -r "$table" "$results/results.json" | tee "$results/results.md"
    for run in $sinks; do
        if [ -s "$results/$run.drain_seconds" ]; then
            echo "$run: the spool forwarded its last update $(cat "$results/$run.drain_seconds") s after the load ended" |
                tee -a "$results/results.md"
        fi
    done
    if [ -s "$results/drain.md" ]; then
        cat "$results/drain.md" >>"$results/results.md"
    fi

fi

if [ "$peers" = 1 ]; then
    scripts/bench-peers.sh --bridge "$bridge" --results "$results/peers" ${KAFKA_BOOTSTRAP:+--kafka "$KAFKA_BOOTSTRAP"} || failed=1
fi

if [ "$failed" != 0 ]; then
    echo "bench: FAILED (see above)" >&2
    exit 1
fi
if [ "$own_runs" = 1 ]; then
    echo "bench: every accepted update was read back"
fi
