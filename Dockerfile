# emoflow as a container image: `docker build -t emoflow .` (docs/docker.md).
#
# Two stages: the builder compiles the `emoflow` binary (release profile: fat LTO, one codegen
# unit, so expect 10-20 minutes on 2 cores); the runtime image holds that binary and little else.
# The cache mounts below need BuildKit (the default builder of Docker 23 and later, and of
# `docker compose build`); they only keep the cargo registry and the target directory between
# builds, and the binary is copied out of them, so a build with empty caches gives the same image.

ARG RUST_VERSION=1.89
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder

# librdkafka is compiled from source by rdkafka-sys (its ./configure and make, not cmake: the
# `cmake-build` feature is off) and statically linked, with zlib (`libz-static`) and without
# TLS or SASL; SQLite (`bundled`), zstd and mimalloc are compiled by `cc`. All that needs a C
# toolchain, make, pkg-config, perl, and python3 (librdkafka's linker-script generator). The
# rust image has them already; they are named here so that a slimmer base fails loudly.
# Debian's packages are not pinned: the release's security updates should come in.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config perl python3 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# The whole workspace: every member's manifest and sources, Cargo.lock, build.rs (which includes
# tests/support/find_tansu.rs) and the dashboard's assets (compiled into the binary). What is not
# needed is left out by .dockerignore.
COPY . .

RUN --mount=type=cache,id=emoflow-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=emoflow-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=emoflow-target,target=/src/target,sharing=locked \
    cargo build --release --locked --bin emoflow --no-default-features --features mimalloc \
    && install -D -m 0755 target/release/emoflow /out/emoflow

FROM debian:${DEBIAN_RELEASE}-slim AS runtime

# ca-certificates for any TLS a later build adds; curl for HEALTHCHECK; tini as PID 1 (forwards
# SIGTERM to emoflow, which then stops cleanly, and reaps children).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl tini \
    && rm -rf /var/lib/apt/lists/*

# A fixed non-root user; /data belongs to it, so a named volume mounted there (initialised from
# the image) is writable.
RUN groupadd --system --gid 10001 emoflow \
    && useradd --system --uid 10001 --gid emoflow --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin emoflow \
    && mkdir -p /data /etc/emoflow \
    && chown emoflow:emoflow /data

COPY --from=builder /out/emoflow /usr/local/bin/emoflow

LABEL org.opencontainers.image.title="emoflow" \
      org.opencontainers.image.description="Exact real-time analytics for reaction and activity events on timely/differential dataflow" \
      org.opencontainers.image.licenses="MIT"

# emoflow's state (the lock, the filter store, the Parquet archive) and the HTTP API on every
# interface of the container. Every other flag has its own EMOFLOW_* variable (docs/docker.md).
ENV EMOFLOW_DATA_DIR=/data \
    EMOFLOW_LISTEN=0.0.0.0:8080

WORKDIR /data
# Numeric, so that a runtime can tell it is not root without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080
VOLUME ["/data"]

# Liveness: /health answers 200 while the HTTP API runs, degraded or not (its body says which).
# The port is taken from EMOFLOW_LISTEN, so overriding that variable keeps the check right.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS -o /dev/null \"http://127.0.0.1:${EMOFLOW_LISTEN##*:}/health\" || exit 1"]

ENTRYPOINT ["/usr/bin/tini", "--", "emoflow"]
CMD ["serve"]
