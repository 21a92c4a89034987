# Build: docker build -t sluice .
# Run:   docker run -p 9092:9092 -p 8080:8080 -e SLUICE_ADVERTISED_KAFKA_ADDR=localhost:9092 sluice
#
# Two stages: the build needs the Rust toolchain and npm (build.rs installs the
# dashboard's Bootstrap and Chart.js from the lockfile); the image holds only
# the binary.
FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sluice \
    && strip target/release/sluice

FROM debian:bookworm-slim
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
VOLUME /data
EXPOSE 9092 8080
ENV SLUICE_DATA_DIR=/data \
    SLUICE_KAFKA_ADDR=0.0.0.0:9092 \
    SLUICE_HTTP_ADDR=0.0.0.0:8080
ENTRYPOINT ["sluice"]
CMD ["serve"]
