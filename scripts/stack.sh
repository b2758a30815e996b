#!/usr/bin/env bash
# Builds and starts the local stack with embedded defaults, in the foreground; Ctrl-C stops it.
#
#   gateway        http://127.0.0.1:8080   (admin http://127.0.0.1:9901)   routes: config/gateway.yaml
#   auth-service   http://127.0.0.1:8001   (SQLite in data/auth.db)
#   monolith       http://127.0.0.1:8000   (Django + DRF under gunicorn, SQLite in data/monolith.sqlite3)
#   notifications  http://127.0.0.1:8002   (Rust, extracted from the monolith)
#   payments       http://127.0.0.1:8003   (Rust, the canary side of /api/payments/)
#   prometheus     http://127.0.0.1:9090   (when `prometheus` is on PATH: the jobs and alert rules of
#                                           config/prometheus.yml on this run's ports; data in data/prometheus)
#
# Ports: STACK_GATEWAY_PORT, STACK_ADMIN_PORT, STACK_AUTH_PORT, STACK_MONOLITH_PORT,
# STACK_NOTIFICATIONS_PORT, STACK_PAYMENTS_PORT, STACK_PROMETHEUS_PORT. With any of them changed, the gateway runs on a
# copy of config/gateway.yaml with the ports substituted (.stack/gateway.yaml; edit that copy).
# STACK_DIR (default .stack) holds logs/ and pids/; STACK_DATA (default data) the databases.
# STACK_NO_BUILD=1 skips set-up and build (for tests that already built everything);
# STACK_AUTH_CONFIG replaces config/auth-service.yaml (the tests use cheaper password hashing).
#
# Logs go to .stack/logs/. Edit config/gateway.yaml while it runs: the gateway reloads it.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

gw_port=${STACK_GATEWAY_PORT:-8080}
admin_port=${STACK_ADMIN_PORT:-9901}
auth_port=${STACK_AUTH_PORT:-8001}
monolith_port=${STACK_MONOLITH_PORT:-8000}
notifications_port=${STACK_NOTIFICATIONS_PORT:-8002}
payments_port=${STACK_PAYMENTS_PORT:-8003}
prometheus_port=${STACK_PROMETHEUS_PORT:-9090}
state=${STACK_DIR:-.stack}
data=${STACK_DATA:-data}
for p in "$gw_port" "$admin_port" "$auth_port" "$monolith_port" "$notifications_port" "$payments_port" "$prometheus_port"; do
  case $p in
    '' | *[!0-9]*) echo "error: port \"$p\" is not a number (STACK_*_PORT)" >&2; exit 2 ;;
  esac
done

if [ "${STACK_NO_BUILD:-0}" != 1 ]; then
  scripts/setup.sh
  say "building (release profile is for benchmarks; the stack uses the dev build)"
  cargo build --workspace --bins
fi

mkdir -p "$state/logs" "$state/pids" "$data"
logs=$state/logs
pids=()
stopped=0
cleanup() {
  [ "$stopped" = 1 ] && return
  stopped=1
  say "stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -f "$state"/pids/*.pid
}
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
check_port() { # name port variable
  if ! port_free "$2"; then
    echo "error: port $2 (for $1) is already in use; stop what listens there, or choose another port with $3=..." >&2
    exit 1
  fi
}
start() { # name command...
  local name=$1; shift
  "$@" >"$logs/$name.log" 2>&1 &
  pids+=($!)
  echo $! >"$state/pids/$name.pid"
}
wait_up() { # name url
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$2" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "error: $1 did not start; see $logs/$1.log" >&2
  tail -n 20 "$logs/$1.log" >&2 || true
  exit 1
}

bin=target/debug
# The gateway's routes: config/gateway.yaml itself with the default ports (so edits to it are
# live), else a copy with the chosen ports substituted.
config=config/gateway.yaml
if [ "$gw_port:$admin_port:$auth_port:$monolith_port:$notifications_port:$payments_port" != 8080:9901:8001:8000:8002:8003 ]; then
  config=$state/gateway.yaml
  sed -e "s/127\.0\.0\.1:8080\b/127.0.0.1:$gw_port/g" \
      -e "s/127\.0\.0\.1:9901\b/127.0.0.1:$admin_port/g" \
      -e "s/127\.0\.0\.1:8001\b/127.0.0.1:$auth_port/g" \
      -e "s/127\.0\.0\.1:8000\b/127.0.0.1:$monolith_port/g" \
      -e "s/127\.0\.0\.1:8002\b/127.0.0.1:$notifications_port/g" \
      -e "s/127\.0\.0\.1:8003\b/127.0.0.1:$payments_port/g" \
      config/gateway.yaml >"$config"
fi
"$bin/gateway" validate "$config" >/dev/null

# Every port is checked before anything starts: a taken port stops the script with its name.
check_port gateway "$gw_port" STACK_GATEWAY_PORT
check_port "gateway admin" "$admin_port" STACK_ADMIN_PORT
check_port auth-service "$auth_port" STACK_AUTH_PORT
check_port monolith "$monolith_port" STACK_MONOLITH_PORT
check_port notifications "$notifications_port" STACK_NOTIFICATIONS_PORT
check_port payments "$payments_port" STACK_PAYMENTS_PORT
start auth-service env AUTH_LISTEN="127.0.0.1:$auth_port" \
  AUTH_DATABASE_URL="sqlite://$data/auth.db" \
  "$bin/auth-service" serve --config "${STACK_AUTH_CONFIG:-config/auth-service.yaml}"
start notifications "$bin/notifications" --listen "127.0.0.1:$notifications_port"
start payments "$bin/payments" --listen "127.0.0.1:$payments_port"
start monolith env MONOLITH_BIND="127.0.0.1:$monolith_port" \
  MONOLITH_DB="$(cd "$data" && pwd)/monolith.sqlite3" \
  JWK_URL="http://127.0.0.1:$auth_port/.well-known/jwks.json" JWT_ISSUER="http://127.0.0.1:$auth_port" \
  NOTIFICATIONS_URL="http://127.0.0.1:$notifications_port" \
  sh -c 'cd backends/monolith && exec ../../.venv/bin/gunicorn -c gunicorn.conf.py'
wait_up auth-service "http://127.0.0.1:$auth_port/healthz"
wait_up notifications "http://127.0.0.1:$notifications_port/healthz"
wait_up payments "http://127.0.0.1:$payments_port/healthz"
wait_up monolith "http://127.0.0.1:$monolith_port/healthz"
start gateway "$bin/gateway" run --config "$config"
wait_up gateway "http://127.0.0.1:$admin_port/readyz"

# Prometheus is optional: started when installed (scripts/setup.sh installs Debian's package),
# with the scrape jobs and alert rules of config/prometheus.yml, its targets on this run's ports.
# A taken port skips it rather than stopping the stack (Debian's package runs one on 9090).
prometheus_url=""
if ! command -v prometheus >/dev/null 2>&1; then
  echo "prometheus is not on PATH: not starting it (Debian: apt-get install prometheus)"
elif ! port_free "$prometheus_port"; then
  echo "port $prometheus_port (for prometheus) is already in use (a system Prometheus?): not starting ours; choose another port with STACK_PROMETHEUS_PORT=..."
else
  .venv/bin/python scripts/prometheus_config.py \
    --target "gateway=127.0.0.1:$admin_port" --target "auth-service=127.0.0.1:$auth_port" \
    --target "notifications=127.0.0.1:$notifications_port" --target "payments=127.0.0.1:$payments_port" \
    >"$state/prometheus.yml"
  start prometheus prometheus --config.file="$state/prometheus.yml" \
    --storage.tsdb.path="$data/prometheus" --web.listen-address="127.0.0.1:$prometheus_port"
  wait_up prometheus "http://127.0.0.1:$prometheus_port/-/ready"
  prometheus_url="http://127.0.0.1:$prometheus_port"
fi

# The walkthrough, with the ports and paths of this run.
cat <<'TXT' | sed -e "s/localhost:8080/localhost:$gw_port/g; s/localhost:9901/localhost:$admin_port/g" \
  -e "s/:8080 (admin :9901)/:$gw_port (admin :$admin_port)/; s/auth-service :8001/auth-service :$auth_port/" \
  -e "s/monolith :8000/monolith :$monolith_port/; s/notifications :8002/notifications :$notifications_port/" \
  -e "s/payments :8003/payments :$payments_port/; s|config/gateway.yaml|$config|g; s|\.stack/|$state/|g"

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
                                                     # payments for 10% of users (cohort early), else
                                                     # monolith; always the same side for this user
  curl -s localhost:8080/api/orders/                 # 401 from the monolith: anonymous
  curl -s localhost:9901/admin/routes | jq '.routes[].name'
  curl -s localhost:9901/metrics | grep '^gateway_requests_total'
  curl -s localhost:9901/admin/shadow | jq '.routes[] | {route, counts, parity}'
                                                     # monolith users' payments GETs, also sent to the
                                                     # payments service and compared (the shadow)
  target/debug/gateway explain --config config/gateway.yaml GET /api/payments/

  # the notifications service fails: the gateway falls back to the monolith
  kill $(cat .stack/pids/notifications.pid)
  curl -s -i localhost:8080/api/notifications/ -H "authorization: Bearer $TOKEN" | grep -i x-served-by
  curl -s localhost:9901/admin/upstreams | jq '.upstreams[] | {name, targets: [.targets[] | {target, available}]}'

Edit config/gateway.yaml and save: the gateway reloads it (a broken file is refused and logged).
Logs: .stack/logs/   Ctrl-C stops everything.
TXT
if [ -n "$prometheus_url" ]; then
  echo "Prometheus: $prometheus_url (targets: $prometheus_url/targets, alerts: $prometheus_url/alerts)"
  echo "Dashboards and alerts: docs/observability-dashboards.md"
fi
wait -n "${pids[@]}" || true
say "a process exited; see $logs/ (Ctrl-C stops the rest)"
wait
