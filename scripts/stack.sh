#!/usr/bin/env bash
# Builds and starts the local stack with embedded defaults, in the foreground; Ctrl-C stops it.
#
#   gateway        http://127.0.0.1:8080   (admin http://127.0.0.1:9901)   routes: config/gateway.yaml
#   auth-service   http://127.0.0.1:8001   (SQLite in data/auth.db)
#   monolith       http://127.0.0.1:8000   (Django + DRF under gunicorn, SQLite in data/monolith.sqlite3)
#   notifications  http://127.0.0.1:8002   (Rust, extracted from the monolith)
#   payments       http://127.0.0.1:8003   (Rust, the canary side of /api/payments/)
#   prometheus     http://127.0.0.1:9090   (when `prometheus` is on PATH; port: PROMETHEUS_PORT;
#                                           config generated from config/prometheus.yml, data in data/prometheus)
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
stopped=0
cleanup() {
  [ "$stopped" = 1 ] && return
  stopped=1
  say "stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

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
start auth-service 8001 "$bin/auth-service" serve --config config/auth-service.yaml
start notifications 8002 "$bin/notifications" --listen 127.0.0.1:8002
start payments 8003 "$bin/payments" --listen 127.0.0.1:8003
start monolith 8000 env MONOLITH_BIND=127.0.0.1:8000 MONOLITH_DB="$PWD/data/monolith.sqlite3" \
  JWK_URL=http://127.0.0.1:8001/.well-known/jwks.json JWT_ISSUER=http://127.0.0.1:8001 \
  NOTIFICATIONS_URL=http://127.0.0.1:8002 \
  sh -c 'cd backends/monolith && exec ../../.venv/bin/gunicorn -c gunicorn.conf.py'
wait_up auth-service http://127.0.0.1:8001/healthz
wait_up notifications http://127.0.0.1:8002/healthz
wait_up payments http://127.0.0.1:8003/healthz
wait_up monolith http://127.0.0.1:8000/healthz
start gateway 8080 "$bin/gateway" run --config config/gateway.yaml
wait_up gateway http://127.0.0.1:9901/readyz

# Prometheus is optional: started when installed (scripts/setup.sh installs Debian's package),
# with the scrape jobs and alert rules of config/prometheus.yml, targets on 127.0.0.1.
PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090}
prometheus_url=""
if ! command -v prometheus >/dev/null 2>&1; then
  echo "prometheus is not on PATH: not starting it (Debian: apt-get install prometheus)"
elif ! port_free "$PROMETHEUS_PORT"; then
  echo "port $PROMETHEUS_PORT is in use (a system Prometheus?): not starting ours; set PROMETHEUS_PORT to another port"
else
  .venv/bin/python scripts/prometheus_config.py >.stack/prometheus.yml
  start prometheus "$PROMETHEUS_PORT" prometheus --config.file=.stack/prometheus.yml \
    --storage.tsdb.path=data/prometheus --web.listen-address="127.0.0.1:$PROMETHEUS_PORT"
  wait_up prometheus "http://127.0.0.1:$PROMETHEUS_PORT/-/ready"
  prometheus_url="http://127.0.0.1:$PROMETHEUS_PORT"
fi

cat <<'TXT'

The stack is up: gateway http://127.0.0.1:8080 (admin :9901), auth-service :8001,
monolith :8000, notifications :8002, payments :8003. Walk through it (needs curl and jq):

  # register and log in (through the gateway)
  curl -s localhost:8080/api/auth/register -H 'content-type: application/json' \
       -d '{"email":"ada@example.com","password":"correct horse battery"}'
  TOKEN=$(curl -s localhost:8080/api/auth/login -H 'content-type: application/json' \
       -d '{"email":"ada@example.com","password":"correct horse battery"}' | jq -r .access_token)

  # place an order in the monolith; its order_placed signal notifies the notifications service
  curl -s localhost:8080/api/orders/ -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
       -d '{"items":[{"sku":"BOOK","quantity":2,"unit_price":"12.50"}]}'
  curl -s localhost:8080/api/notifications/ -H "authorization: Bearer $TOKEN"   # served by notifications
  curl -s -i localhost:8080/api/payments/ -H "authorization: Bearer $TOKEN" | grep -i x-served-by
                                                     # payments (10%) or monolith, sticky per user
  curl -s localhost:8080/api/orders/                 # 401 from the monolith: anonymous
  curl -s localhost:9901/admin/routes | jq '.routes[].name'
  curl -s localhost:9901/metrics | grep '^gateway_requests_total'
  target/debug/gateway explain --config config/gateway.yaml GET /api/payments/

Edit config/gateway.yaml and save: the gateway reloads it (a broken file is refused and logged).
Logs: .stack/logs/   Ctrl-C stops everything.
TXT
if [ -n "$prometheus_url" ]; then
  echo "Prometheus: $prometheus_url (targets: $prometheus_url/targets, alerts: $prometheus_url/alerts)"
  echo "Dashboards and alerts: docs/observability-dashboards.md"
fi
wait -n "${pids[@]}" || true
say "a process exited; see .stack/logs/"
