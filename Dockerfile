# syntax=docker/dockerfile:1
#
# Build: docker build -t sluice .
# Run:   docker run -p 9092:9092 -p 8080:8080 -e SLUICE_ADVERTISED_KAFKA_ADDR=localhost:9092 sluice
# A three-node cluster behind nginx: docker-compose.yml (docs/OPERATIONS.md, "Container images").
#
# Three stages: npm installs the dashboard's Bootstrap and Chart.js from the
# lockfile (build.rs embeds them), cargo builds the binary, and the image holds
# only the binary, run as an unprivileged user with its data in a volume.
# tests/test_deploy.py runs the binary with this file's ENV, ENTRYPOINT, CMD
# and HEALTHCHECK.

ARG RUST_VERSION=1
ARG NODE_VERSION=22
ARG DEBIAN_RELEASE=bookworm

FROM node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim AS assets
WORKDIR /src/assets
COPY assets/package.json assets/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
COPY --from=assets /src/assets/node_modules assets/node_modules
# build.rs runs `npm ci` only when node_modules is older than the lockfile: mark
# the copied modules as installed from this lockfile, so this stage needs no npm.
RUN touch assets/node_modules/.package-lock.json \
    && cargo build --release --locked --bin sluice \
    && strip target/release/sluice

FROM debian:${DEBIAN_RELEASE}-slim
# curl: the HEALTHCHECK's client (the only package the image adds).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home sluice \
    && mkdir -p /data \
    && chown sluice:sluice /data
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
ENV SLUICE_DATA_DIR=/data \
    SLUICE_KAFKA_ADDR=0.0.0.0:9092 \
    SLUICE_HTTP_ADDR=0.0.0.0:8080
# Kafka, HTTP (REST API, WebSocket, dashboard, /readyz), cluster listener (--cluster-addr).
EXPOSE 9092 8080 9093
VOLUME ["/data"]
USER 10001:10001
WORKDIR /data
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["sluice"]
CMD ["serve"]
