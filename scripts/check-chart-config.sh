#!/usr/bin/env bash
# Checks, off-cluster, the configuration file the chart renders from your values with
# `vizion-bridge check-config`, before installing:
#
#   scripts/check-chart-config.sh [--helm HELM] [--bridge VIZION_BRIDGE] -- -f my-values.yaml
#
# Everything after `--` goes to `helm template` (values files, --set ...). The pod's
# paths (/etc/vizion-bridge/secrets/…, /var/lib/vizion-bridge/…) are moved into a
# temporary directory, and each secret file the configuration names is created there
# with a placeholder of the right form (the real secrets are not needed, and not read).
# Files mounted through extraVolumes (CA certificates, …) are not checked.
set -euo pipefail

helm=helm
bridge=vizion-bridge
while [ $# -gt 0 ]; do
    case "$1" in
        --helm) helm=$2; shift 2 ;;
        --bridge) bridge=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "usage: $0 [--helm HELM] [--bridge VIZION_BRIDGE] -- HELM_TEMPLATE_ARGS..." >&2; exit 2 ;;
    esac
done
chart=$(cd "$(dirname "$0")/../helm/vizion-bridge" && pwd)

work=$(mktemp -d -t vizion-bridge-config.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/secrets" "$work/var"

# The TOML is the ConfigMap's literal block `vizion-bridge.toml: |`, indented by 4.
"$helm" template vizion-bridge "$chart" --show-only templates/configmap.yaml "$@" \
    | awk '/^  vizion-bridge.toml: \|/ { inside = 1; next } inside { sub(/^    /, ""); print }' \
    | sed -e "s#/etc/vizion-bridge/secrets/#$work/secrets/#g" \
        -e "s#/var/lib/vizion-bridge/#$work/var/#g" >"$work/vizion-bridge.toml"
[ -s "$work/vizion-bridge.toml" ] || { echo "no vizion-bridge.toml in the rendering" >&2; exit 1; }

# A placeholder for each secret file the configuration names.
grep -o "$work/secrets/[^\"]*" "$work/vizion-bridge.toml" | sort -u | while read -r file; do
    case "$(basename "$file")" in
        rabbitmq-url) echo 'amqps://placeholder:placeholder@rabbitmq.invalid:5671/%2f' ;;
        redis-url) echo 'redis://:placeholder@redis.invalid:6379/0' ;;
        *) echo 'placeholder' ;;
    esac >"$file"
done

"$bridge" check-config --config "$work/vizion-bridge.toml"
