#!/usr/bin/env bash
# Runs every check and every test, as CI does. On a fresh Debian 12 machine it first installs
# what is missing (scripts/setup.sh). Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

scripts/setup.sh

say "cargo fmt --check"
cargo fmt --all --check

say "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "cargo doc (warnings, e.g. broken intra-doc links, are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

say "building the binaries the tests run"
cargo build --workspace --bins --locked

say "cargo test"
cargo test --workspace --locked -- --test-threads 4

say "monolith tests (Django)"
(cd backends/monolith && ../../.venv/bin/python manage.py test --verbosity 1)

say "deploy files agree with the code; dashboards and alerts against a real Prometheus; the benchmark harness renders valid configs; the whole stack end to end (pytest)"
bin="$PWD/target/debug"
GATEWAY_BIN="$bin/gateway" AUTH_SERVICE_BIN="$bin/auth-service" ECHO_BIN="$bin/echo" \
  NOTIFICATIONS_BIN="$bin/notifications" PAYMENTS_BIN="$bin/payments" \
  .venv/bin/python -m pytest -q -p no:cacheprovider deploy/tests bench/tests tests/e2e
