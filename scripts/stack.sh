#!/usr/bin/env bash
# Builds and starts the local stack with embedded defaults, in the foreground; Ctrl-C stops it.
#
#   gateway        http://127.0.0.1:8080   (admin http://127.0.0.1:9901)   routes: config/gateway.yaml
#   auth-service   http://127.0.0.1:8001   (SQLite in data/auth.db)         when built
#   monolith       http://127.0.0.1:8000   (stand-in: the echo origin, until backends/monolith lands)
#   notifications  http://127.0.0.1:8002   (stand-in: echo)
#   payments       http://127.0.0.1:8003   (stand-in: echo)
#
# Logs go to .stack/logs/. Edit config/gateway.yaml while it runs: the gateway reloads it.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

scripts/setup.sh
say "building (release profile is for benchmarks; the stack uses the dev build)"
cargo build --workspace --bins

mkdir -p .stack/logs data
pids=()
cleanup() {
  trap - INT TERM EXIT
  say "stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup INT TERM EXIT

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
start() { # name port command...
  local name=$1 port=$2; shift 2
  if ! port_free "$port"; then
    echo "error: port $port (for $name) is already in use; stop what listens there, or change the port" >&2
    exit 1
  fi
  "$@" >".stack/logs/$name.log" 2>&1 &
  pids+=($!)
}
wait_up() { # name url
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$2" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "error: $1 did not start; see .stack/logs/$1.log" >&2
  tail -n 20 ".stack/logs/$1.log" >&2 || true
  exit 1
}

bin=target/debug
start monolith 8000 "$bin/echo" --listen 127.0.0.1:8000 --name monolith
start notifications 8002 "$bin/echo" --listen 127.0.0.1:8002 --name notifications
start payments 8003 "$bin/echo" --listen 127.0.0.1:8003 --name payments
if [ -x "$bin/auth-service" ] && "$bin/auth-service" --help 2>/dev/null | grep -q serve; then
  start auth-service 8001 "$bin/auth-service" serve --config config/auth-service.yaml
  wait_up auth-service http://127.0.0.1:8001/healthz
fi
wait_up monolith http://127.0.0.1:8000/healthz
start gateway 8080 "$bin/gateway" run --config config/gateway.yaml
wait_up gateway http://127.0.0.1:9901/readyz

cat <<TXT

The stack is up. Try:
  curl -s localhost:8080/api/orders/?page=1            # -> monolith
  curl -s localhost:8080/api/notifications/            # -> notifications
  curl -s -b sessionid=alice localhost:8080/api/payments/  # -> payments (10%) or monolith, sticky per session
  curl -s localhost:8080/api/../api/notifications/x    # normalised before routing
  curl -s localhost:9901/admin/routes                  # routes in precedence order
  curl -s localhost:9901/metrics | grep gateway_       # Prometheus metrics
  target/debug/gateway explain --config config/gateway.yaml GET /api/payments/1
Edit config/gateway.yaml and save: the gateway reloads it (a broken file is refused and logged).
Logs: .stack/logs/   Ctrl-C stops everything.
TXT
wait -n "${pids[@]}" || true
say "a process exited; see .stack/logs/"
