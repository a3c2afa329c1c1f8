#!/usr/bin/env bash
# Checks what deploys the bridge with the tools a platform engineer would use:
#
#   - helm lint --strict and helm template, with the oldest supported helm (3.9) and the
#     newest of each major (3.17, 4.1), over every values file in helm/vizion-bridge/ci/
#     (each also rendered under a 53-character release name, the longest helm allows);
#   - kubernetes-validate --strict against the oldest and newest Kubernetes the chart
#     supports, and check-jsonschema of the ServiceMonitor and PrometheusRule against
#     the Prometheus Operator schemas in deploy/schemas/;
#   - scripts/check-manifests.py: name and label lengths, probes;
#   - vizion-bridge check-config on the configuration each values file renders;
#   - docker-compose config and the compose-spec schema; hadolint on the Dockerfile;
#   - every PromQL expression of the alert rules and the dashboard parses;
#   - docs/asyncapi.yaml against the AsyncAPI 3.0 JSON Schema (npm @asyncapi/specs).
#
# The tools come from scripts/deploy-tools.sh (pinned, cached). A tool that cannot be
# installed fails the run. VIZION_BRIDGE_BIN names the vizion-bridge binary to use
# (default: target/debug/vizion-bridge, built here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
run() {
    printf '$ %s\n' "$*" >&2
    "$@"
}

chart=helm/vizion-bridge
helm_versions=(3.9.4 3.17.2 4.1.4)
# The chart's kubeVersion floor, and the newest schemas kubernetes-validate ships.
kube_versions=(1.25.0 1.37.0)
# 53 characters, the longest release name helm accepts, without the chart name in it
# (so the chart appends it).
long_release=tracking-production-eu-west-1-blue-green-deploy-00001

step "installing the pinned tools (scripts/deploy-tools.sh)"
tools_bin=$(scripts/deploy-tools.sh | tail -n 1)
export PATH="$tools_bin:$PATH"

bridge=${VIZION_BRIDGE_BIN:-target/debug/vizion-bridge}
if [ -z "${VIZION_BRIDGE_BIN:-}" ]; then
    step "cargo build --bin vizion-bridge"
    cargo build --locked --bin vizion-bridge
fi

rendered=$(mktemp -d -t vizion-bridge-rendered.XXXXXX)
trap 'rm -rf "$rendered"' EXIT

values_files=("$chart"/ci/*-values.yaml)
checks=0

step "helm lint --strict (helm ${helm_versions[*]}; ${#values_files[@]} values files)"
for version in "${helm_versions[@]}"; do
    for values in "${values_files[@]}"; do
        run "helm-$version" lint --strict "$chart" -f "$values" --quiet
        checks=$((checks + 1))
    done
done

step "helm template (every helm, every values file, Kubernetes ${kube_versions[*]})"
for version in "${helm_versions[@]}"; do
    for values in "${values_files[@]}"; do
        name=$(basename "$values" -values.yaml)
        for kube in "${kube_versions[@]}"; do
            for release in vizion-bridge "$long_release"; do
                out="$rendered/$version/$kube/$name/$release"
                mkdir -p "$out"
                run "helm-$version" template "$release" "$chart" -f "$values" \
                    --namespace tracking --kube-version "$kube" >"$out/all.yaml"
                checks=$((checks + 1))
            done
        done
    done
done

step "the renderings of every helm are the same"
for version in "${helm_versions[@]:1}"; do
    run diff -r "$rendered/${helm_versions[0]}" "$rendered/$version"
done

# From here on, one helm's renderings stand for all of them.
newest="$rendered/${helm_versions[-1]}"

step "kubernetes-validate --strict (Kubernetes ${kube_versions[*]})"
for kube in "${kube_versions[@]}"; do
    for out in "$newest/$kube"/*/*; do
        # The Prometheus Operator's kinds are checked against their own schemas below.
        python-tools scripts/check-manifests.py split "$out/all.yaml" "$out/split"
        run kubernetes-validate --strict --quiet -k "$kube" "$out"/split/core-*.yaml
        checks=$((checks + 1))
    done
done

step "Prometheus Operator resources against deploy/schemas/"
for out in "$newest/${kube_versions[-1]}"/*/*; do
    for kind in servicemonitor prometheusrule; do
        for manifest in "$out"/split/"$kind"-*.yaml; do
            [ -e "$manifest" ] || continue
            run check-jsonschema --schemafile "deploy/schemas/$kind.json" "$manifest"
            checks=$((checks + 1))
        done
    done
done

step "names, labels and probes (scripts/check-manifests.py)"
for out in "$newest/${kube_versions[-1]}"/*/*; do
    run python-tools scripts/check-manifests.py check "$out/all.yaml"
    checks=$((checks + 1))
done

step "vizion-bridge check-config on each rendered configuration"
for values in "${values_files[@]}"; do
    # Its output is the whole configuration: only a refusal is worth reading here.
    run scripts/check-chart-config.sh --helm "helm-${helm_versions[-1]}" \
        --bridge "$bridge" -- -f "$values" >/dev/null
    checks=$((checks + 1))
done

step "docker compose"
run docker-compose --file docker-compose.yml config --quiet
run check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
checks=$((checks + 2))

step "hadolint"
run hadolint Dockerfile
checks=$((checks + 1))

step "PromQL of the alert rules, the chart's PrometheusRule and the dashboard"
run python-tools scripts/check-promql.py helm/vizion-bridge/files/alerts.yml \
    helm/vizion-bridge/files/dashboard.json \
    "$newest/${kube_versions[-1]}/ingress/vizion-bridge/split"/prometheusrule-*.yaml
checks=$((checks + 1))

step "docs/asyncapi.yaml against the AsyncAPI 3.0 schema"
run check-jsonschema --schemafile "$(dirname "$tools_bin")/schemas/asyncapi-3.0.0.json" \
    docs/asyncapi.yaml
checks=$((checks + 1))

printf '\ndeploy: %d checks passed\n' "$checks"
