# syntax=docker/dockerfile:1
#
# vizion-bridge container image: `docker build -t vizion-bridge .`
#
# Stages: `chef` (toolchain + cargo-chef), `planner` (the dependency recipe),
# `builder` (dependencies first, in a layer of their own that survives source
# changes, then the binaries), `runtime` (Debian slim, non-root, no toolchain).

# Base images, pinned to a release. A release pipeline can pin them by digest as well:
#   --build-arg BUILD_IMAGE=rust:1.89.0-bookworm@sha256:… \
#   --build-arg RUNTIME_IMAGE=debian:bookworm-slim@sha256:…
# (`docker buildx imagetools inspect IMAGE` prints the digest).
ARG BUILD_IMAGE=rust:1.89.0-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
# cargo-chef, pinned: the recipe format is its own.
ARG CARGO_CHEF_VERSION=0.1.78

FROM ${BUILD_IMAGE} AS chef
ARG CARGO_CHEF_VERSION
# librdkafka is compiled from source by rdkafka-sys (its `configure` + make; no cmake):
# it needs a C toolchain, perl, pkg-config, and the OpenSSL and zlib headers.
# Package versions are those of the base image's Debian release, which only takes
# security fixes; pinning exact versions would break the build whenever Debian
# replaces one in its archive.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential perl pkg-config libssl-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only (librdkafka included), of every workspace member: rebuilt when a
# Cargo.toml or Cargo.lock changes, not when the sources do.
RUN cargo chef cook --release --locked --workspace --recipe-path recipe.json
COPY . .
# Every binary of the workspace: vizion-bridge (the service) and vizion-sim (the Vizion
# simulator used by the compose stack, a member of its own in crates/vizion-sim).
RUN cargo build --release --locked --workspace --bins \
    && mkdir -p /out \
    && cp target/release/vizion-bridge target/release/vizion-sim /out/

FROM ${RUNTIME_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="vizion-bridge" \
      org.opencontainers.image.description="Receives Vizion container-tracking webhooks, authenticates them, and publishes them durably to Kafka, RabbitMQ or files." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.vendor="vizion-bridge"
# libssl3 for librdkafka's TLS and SASL/SCRAM, ca-certificates for TLS to brokers and to
# the Vizion API. zlib is part of the slim base already. Not pinned, for the reason
# given in the build stage: the release's security fixes are wanted.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 vizion \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin vizion \
    && mkdir -p /etc/vizion-bridge /var/lib/vizion-bridge/data /var/lib/vizion-bridge/spool \
    && chown -R 10001:10001 /var/lib/vizion-bridge
COPY --from=builder /out/vizion-bridge /out/vizion-sim /usr/local/bin/

# The root file system can be mounted read-only: the bridge writes only under
# /var/lib/vizion-bridge (file sink output in data/, the spool in spool/), which are
# volumes. The relative default `storage.data_dir = "./data"` resolves to data/ here.
WORKDIR /var/lib/vizion-bridge
VOLUME ["/var/lib/vizion-bridge/data", "/var/lib/vizion-bridge/spool"]
# The configuration file: mount one here (or point VIZION_BRIDGE_CONFIG elsewhere).
ENV VIZION_BRIDGE_CONFIG=/etc/vizion-bridge/vizion-bridge.toml
USER 10001:10001
# 8080: webhooks, /healthz, /readyz. 9090: /metrics.
EXPOSE 8080 9090
# SIGTERM starts the graceful shutdown (shutdown_delay, then shutdown_timeout).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/vizion-bridge"]
CMD ["serve"]
