# syntax=docker/dockerfile:1
# auth-service: issues JWTs, publishes the JWKS (SQLite by default, PostgreSQL via AUTH_DATABASE_URL)
# Build from the repository root:  docker build -f deploy/docker/auth-service.Dockerfile -t auth-service .
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
    cargo build --release --locked -p auth-service --bin auth-service \
    && cp target/release/auth-service /usr/local/bin/auth-service

FROM debian:12-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /usr/local/bin/auth-service /usr/local/bin/auth-service
# The working directory holds data/auth.db when AUTH_DATABASE_URL is the SQLite default.
RUN mkdir -p /var/lib/auth-service && chown 10001:10001 /var/lib/auth-service
WORKDIR /var/lib/auth-service
USER 10001:10001
ENV AUTH_LISTEN=0.0.0.0:8001
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=2s --retries=3 CMD curl -fsS http://127.0.0.1:8001/healthz || exit 1
ENTRYPOINT ["auth-service"]
CMD ["serve"]
