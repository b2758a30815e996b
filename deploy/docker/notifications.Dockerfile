# syntax=docker/dockerfile:1
# notifications: the notifications service extracted from the monolith
# Build from the repository root:  docker build -f deploy/docker/notifications.Dockerfile -t notifications .
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
    cargo build --release --locked -p notifications --bin notifications \
    && cp target/release/notifications /usr/local/bin/notifications

FROM debian:12-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /usr/local/bin/notifications /usr/local/bin/notifications
USER 10001:10001
ENV NOTIFICATIONS_LISTEN=0.0.0.0:8002
EXPOSE 8002
HEALTHCHECK --interval=10s --timeout=2s --retries=3 CMD curl -fsS http://127.0.0.1:8002/healthz || exit 1
ENTRYPOINT ["notifications"]
