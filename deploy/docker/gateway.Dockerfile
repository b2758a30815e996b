# syntax=docker/dockerfile:1
# gateway: the pingora gateway (proxy on 8080, admin on 9901)
# Build from the repository root:  docker build -f deploy/docker/gateway.Dockerfile -t gateway .
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
    cargo build --release --locked -p gateway --bin gateway \
    && cp target/release/gateway /usr/local/bin/gateway

FROM debian:12-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /usr/local/bin/gateway /usr/local/bin/gateway
USER 10001:10001
EXPOSE 8080 9901
HEALTHCHECK --interval=10s --timeout=2s --retries=3 CMD curl -fsS http://127.0.0.1:9901/healthz || exit 1
# The routes file is mounted here (compose: deploy/gateway.compose.yaml; Kubernetes: a ConfigMap).
ENTRYPOINT ["gateway"]
CMD ["run", "--config", "/etc/gateway/gateway.yaml"]
