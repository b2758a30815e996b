# syntax=docker/dockerfile:1
# payments: the payments service, canary side of the payments split
# Build from the repository root:  docker build -f deploy/docker/payments.Dockerfile -t payments .
# (deploy/compose.yaml does this.)

FROM rust:1-bookworm AS build
# cmake: pingora's and aws-lc's native builds.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake clang \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p payments --bin payments \
    && cp target/release/payments /usr/local/bin/payments

FROM debian:12-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /usr/local/bin/payments /usr/local/bin/payments
USER 10001:10001
ENV PAYMENTS_LISTEN=0.0.0.0:8003
EXPOSE 8003
HEALTHCHECK --interval=10s --timeout=2s --retries=3 CMD curl -fsS http://127.0.0.1:8003/healthz || exit 1
ENTRYPOINT ["payments"]
