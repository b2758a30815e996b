#!/usr/bin/env bash
# The proxy benchmark: nginx, HAProxy, HAProxy + JWT, a bare pingora proxy and the gateway
# (plain, full policy, and plain with a shadow whose upstream answers after 3 s) side by side on
# this machine, every row in one session, interleaved over rounds.
#
#   bench/run.sh                                   # 3 rounds x 10s per row (about 15 minutes)
#   BENCH_DURATION=3s BENCH_ROUNDS=1 bench/run.sh  # a smoke run
#
# Settings (environment): BENCH_DURATION (10s), BENCH_WARMUP (2s), BENCH_ROUNDS (3),
# BENCH_POOL (10000 tokens), BENCH_SCENARIOS (c64,c8,c64-pool,c64-1mb,c64-shadow), BENCH_ROWS
# (origin,nginx,haproxy,haproxy-jwt,pingora-bare,gateway-plain,gateway-policy,gateway-shadow), BENCH_PROXY_CPU
# (0), BENCH_LOAD_CPU (1), BENCH_NO_BUILD=1 (use the release binaries as they are), GATEWAY_BIN,
# BARE_PINGORA_BIN, OTLP_RECEIVER_BIN (other binaries; GATEWAY_BIN also skips the build).
# Results: bench/results/<UTC time>.json and .md. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

bench/install.sh
scripts/python-env.sh
if [ -z "${BENCH_NO_BUILD:-}" ] && [ -z "${GATEWAY_BIN:-}" ]; then
  printf '\033[1m==> cargo build --release -p gateway\033[0m\n'
  cargo build --release -p gateway --bin gateway --example bare_pingora --locked
  # Receives the policy row's 1% of traces, on the load core next to wrk and the origin: a
  # release build, or its bursts of span decoding stall wrk and show up as the gateway's p99.
  cargo build --release -p testkit --bin otlp-receiver --locked
fi
exec .venv/bin/python bench/harness.py "$@"
