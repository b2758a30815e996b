"""The Grafana dashboards and the Prometheus alert rules work against the real thing.

A real Prometheus (the `prometheus` binary; scripts/setup.sh installs Debian's package), started
on an ephemeral port with its own storage and the scrape config generated from
config/prometheus.yml (1s scrapes and rule evaluations, targets on 127.0.0.1), scrapes a real
gateway (JWT auth against the real auth-service, a 50/50 split between two `echo` origins and
a cohort split at 50% between the same two, an unreachable upstream with a fallback, a role-protected route, rate limits in a real
`redis-server`, shadow copies from the monolith echo to the payments echo compared inline), the
real auth-service and the extracted services while `generate_load` runs for LOAD_SECONDS. Then:

- every target expression of every panel of grafana/dashboards/*.json, with the dashboard's
  variables resolved (each must resolve to values; "All" becomes `.*`) and `$__rate_interval`
  as RATE_INTERVAL, returns at least one finite sample through /api/v1/query, and each result
  series carries the labels its legend names;
- every metric name the dashboards and alerts use is exposed by a scraped target;
- Prometheus loaded config/alerts.yml and evaluates every rule without error;
- `promtool check metrics` finds no problem in any scraped /metrics;
- `promtool check config`, `check rules` and `test rules` (config/alerts.test.yml) pass.

Panels and alerts for metrics whose code is not merged yet may be listed in PENDING_METRICS (empty
when an issue closes).

Run:  .venv/bin/python -m pytest deploy/tests/test_observability.py
Needs the workspace binaries (cargo build --workspace --bins); their paths come from GATEWAY_BIN,
AUTH_SERVICE_BIN, ECHO_BIN, NOTIFICATIONS_BIN, PAYMENTS_BIN (default target/debug/<name>).
"""

import json
import math
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "grafana" / "dashboards"
PROVISIONING = ROOT / "grafana" / "provisioning"
PROMETHEUS_YML = ROOT / "config" / "prometheus.yml"
ALERTS = ROOT / "config" / "alerts.yml"
ALERTS_TEST = ROOT / "config" / "alerts.test.yml"
DOC = ROOT / "docs" / "observability-dashboards.md"

sys.path.insert(0, str(ROOT / "scripts"))
from prometheus_config import local_config  # noqa: E402

# Metric families the dashboards and alerts use whose code is not merged yet: queries that use
# one are skipped, not checked, and the test fails once a listed family is exposed (remove it
# then, and add a load step that exercises it). Keep it empty when closing an issue.
PENDING_METRICS: set[str] = set()

LOAD_SECONDS = 12
# What the panels' Grafana built-ins become. Queries are evaluated at one instant just after the
# load, so RATE_INTERVAL must cover the whole load (its one-off steps run first).
RATE_INTERVAL = "1m"
GRAFANA_BUILTINS = {"__rate_interval": RATE_INTERVAL, "__interval": "5s", "__range": "5m"}
START_TIMEOUT = 30.0
PASSWORD = "correct horse battery staple"


# --- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(what: str, timeout: float, check):
    """Calls `check` until it returns something truthy; fails naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except requests.RequestException as e:
            last_error = e
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


def wait_http_ok(url: str, timeout: float = START_TIMEOUT) -> None:
    eventually(f"GET {url} to answer 2xx", timeout, lambda: requests.get(url, timeout=2).ok)


class Proc:
    """A child process with its output in files; stopped by its PID (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, args: list, workdir: Path):
        self.name = name
        self.out = workdir / f"{name}.log"
        with self.out.open("wb") as log:
            self.popen = subprocess.Popen(
                [str(a) for a in args], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)

    def log_tail(self, n: int = 1500) -> str:
        return self.out.read_text(errors="replace")[-n:] if self.out.exists() else ""


def binary(name: str) -> Path:
    env = name.upper().replace("-", "_") + "_BIN"
    path = Path(os.environ.get(env, ROOT / "target" / "debug" / name))
    if not path.is_file():
        pytest.fail(f"{path} not found: run `cargo build --workspace --bins` first (or set {env})")
    return path


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: scripts/setup.sh installs Debian's `prometheus` package")
    return path


@dataclass
class Stack:
    """The processes under observation and what the load needs to reach them."""

    workdir: Path
    procs: list = field(default_factory=list)
    ports: dict = field(default_factory=dict)
    gateway_config: Path | None = None
    gateway_config_text: str = ""
    redis: Proc | None = None

    def start(self, name: str, args: list, health_url: str | None, ready=None) -> Proc:
        proc = Proc(name, args, self.workdir)
        self.procs.append(proc)
        try:
            if health_url:
                wait_http_ok(health_url)
            else:
                eventually(f"{name} to be ready", START_TIMEOUT, ready)
        except BaseException:
            print(f"--- {name} log ---\n{proc.log_tail()}", file=sys.stderr)
            raise
        return proc

    def start_redis(self) -> Proc:
        """A throwaway redis-server (no persistence) for the limiter's shared store; the load
        stops it and starts it again on the same port."""
        port = self.ports["redis"]
        args = [tool("redis-server"), "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.redis = self.start("redis-server", args, None, lambda: redis_answers(port))
        return self.redis

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}{path}"

    def admin_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.ports['gateway-admin']}{path}"

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def gateway_config(p: dict) -> str:
    return f"""\
listen: 127.0.0.1:{p['gateway']}
admin: {{ listen: 127.0.0.1:{p['gateway-admin']} }}
server: {{ threads: 1, reload_debounce: 50ms, drain_timeout: 1s }}
auth:
  issuer: http://127.0.0.1:{p['auth-service']}
  audiences: [api]
  jwks_url: http://127.0.0.1:{p['auth-service']}/.well-known/jwks.json
  algorithms: [RS256]
  leeway: 5s
  jwks_unknown_kid_cooldown: 1s
  claims_to_headers: {{ sub: X-User-Id, email: X-User-Email, roles: X-User-Roles }}
upstreams:
  monolith:
    targets: [127.0.0.1:{p['echo-monolith']}]
    timeouts: {{ connect: 500ms, response: 5s }}
    health_check: {{ path: /healthz, interval: 500ms, timeout: 400ms }}
  payments:
    targets: [127.0.0.1:{p['echo-payments']}]
    timeouts: {{ connect: 500ms, response: 5s }}
    health_check: {{ path: /healthz, interval: 500ms, timeout: 400ms }}
  auth: {{ targets: [127.0.0.1:{p['auth-service']}], timeouts: {{ connect: 500ms, response: 5s }} }}
  gone:                                  # nothing listens: connections are refused
    targets: [127.0.0.1:{p['gone']}]
    timeouts: {{ connect: 200ms, response: 1s }}
    health_check: {{ path: /healthz, interval: 500ms, timeout: 400ms, unhealthy_threshold: 100 }}
    retries: {{ attempts: 1, budget: {{ ratio: 0.2, min_retries_per_second: 0, window: 10s }} }}
    circuit_breaker: {{ min_requests: 8, failure_ratio: 0.5, window: 10s, open_for: 2s }}
cohorts:
  early: {{ by: claim.sub, fallback_by: cookie.sessionid, salt: dashboards }}
rate_limits:
  store: redis
  redis_url: redis://127.0.0.1:{p['redis']}/0
  store_timeout: 100ms
  on_store_error: local
  policies:
    tiny: {{ key: route, limit: 5, per: 1s }}
    per_user: {{ key: claim.sub, limit: 1000, per: 1s }}
routes:
  - name: auth
    match: {{ path_prefix: /api/auth/ }}
    upstream: auth
    auth: none
  - name: payments                       # as the stack's: copies whose primary is payments are skipped (same_upstream)
    match: {{ path_prefix: /api/payments/ }}
    split: [ {{ upstream: payments, weight: 50 }}, {{ upstream: monolith, weight: 50 }} ]
    auth: required
    rate_limit: [per_user]
    shadow: {{ upstream: payments, compare: {{ ignore: [/server, /peer, /headers] }} }}
  - name: shadowed                       # GETs copied to the payments echo: the echoes answer alike but for
    match: {{ path_prefix: /api/shadowed/ }}  # `server` (ignored) and, with echo_body_bytes, x-echo-server
    upstream: monolith
    auth: none
    shadow:
      upstream: payments
      timeout: 250ms                     # echo_delay_ms=400 makes the copy a shadow_error
      compare: {{ headers: [x-echo-server], ignore: [/server, /peer, /headers] }}
  - name: shadowed-noisy                 # every copied GET also sent to the primary again: the copy's
    match: {{ path_prefix: /api/shadowed-noisy/ }}  # X-Gateway-Shadow differs there too, so it is noise
    upstream: monolith
    auth: none
    shadow:
      upstream: payments
      noise: 1.0
      compare: {{ ignore: [/server, /peer, /headers/traceparent] }}
  - name: invoices                       # half of the `early` cohort on the new side
    match: {{ path_prefix: /api/invoices/ }}
    split: {{ to: payments, percent: 50, cohort: early, rest: monolith }}
    auth: optional
  - name: limited
    match: {{ path_prefix: /api/limited/ }}
    upstream: monolith
    auth: none
    rate_limit: [tiny]
  - name: admin
    match: {{ path_prefix: /api/admin/ }}
    upstream: monolith
    auth: {{ roles: [admin] }}
  - name: gone
    match: {{ path_prefix: /api/gone/ }}
    upstream: gone
    fallback: monolith
    auth: none
  - name: monolith
    match: {{ path_prefix: / }}
    upstream: monolith
    auth: optional
"""


def start_stack(workdir: Path) -> Stack:
    stack = Stack(workdir)
    p = stack.ports
    for name in ("echo-monolith", "echo-payments", "auth-service", "notifications", "payments",
                 "gateway", "gateway-admin", "gone", "redis"):
        p[name] = free_port()  # `gone`: nothing listens there (connection refused → 502)
    try:
        for name in ("monolith", "payments"):
            port = p[f"echo-{name}"]
            stack.start(f"echo-{name}", [binary("echo"), "--listen", f"127.0.0.1:{port}", "--name", name],
                        f"http://127.0.0.1:{port}/healthz")
        auth_config = workdir / "auth-service.yaml"
        auth_config.write_text(
            f'listen: 127.0.0.1:{p["auth-service"]}\ndatabase_url: "sqlite://{workdir}/auth.db"\n'
            "access_ttl: 5m\njwks_max_age: 1s\n"
            "password_hash: { memory_kib: 64, iterations: 1, parallelism: 1 }\n"
            # every step_auth_service fails a login from 127.0.0.1: keep the per-IP limit away
            "login_throttle: { ip_max_failures: 1000000 }\n"
        )
        stack.start("auth-service", [binary("auth-service"), "serve", "--config", auth_config],
                    f"http://127.0.0.1:{p['auth-service']}/healthz")
        for name in ("notifications", "payments"):
            stack.start(name, [binary(name), "--listen", f"127.0.0.1:{p[name]}"],
                        f"http://127.0.0.1:{p[name]}/healthz")
        stack.start_redis()
        stack.gateway_config = workdir / "gateway.yaml"
        stack.gateway_config_text = gateway_config(p)
        stack.gateway_config.write_text(stack.gateway_config_text)
        stack.start("gateway", [binary("gateway"), "run", "--config", stack.gateway_config],
                    stack.admin_url("/readyz"))
    except BaseException:
        stack.stop()
        raise
    return stack


# The scrape jobs of config/prometheus.yml and the processes that answer them here.
SCRAPE_TARGETS = {
    "gateway": "gateway-admin",
    "auth-service": "auth-service",
    "notifications": "notifications",
    "payments": "payments",
}


# --- the load ----------------------------------------------------------------------------------


class Load:
    """Clients and tokens for the load steps. Every request goes through the gateway except
    those that exercise the extracted services' own metrics."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.http = requests.Session()
        self.http.trust_env = False
        self.users: list[str] = []
        self.tokens: list[str] = []
        self.counter = 0

    def unique_email(self, what: str) -> str:
        self.counter += 1
        return f"{what}-{self.counter}-{random.randrange(10**9)}@example.com"

    def auth(self, path: str, body: dict) -> requests.Response:
        return self.http.post(self.stack.url(f"/api/auth/{path}"), json=body, timeout=10)

    def register_and_login(self) -> dict:
        email = self.unique_email("user")
        r = self.auth("register", {"email": email, "password": PASSWORD})
        assert r.status_code == 201, r.text
        r = self.auth("login", {"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        tokens = r.json()
        self.users.append(email)
        self.tokens.append(tokens["access_token"])
        return tokens

    def get(self, path: str, token: str | None = None, **params) -> requests.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return self.http.get(self.stack.url(path), headers=headers, params=params, timeout=10)

    def token(self) -> str:
        return random.choice(self.tokens)

    def expect(self, response: requests.Response, *statuses: int) -> None:
        assert response.status_code in statuses, (
            f"{response.request.method} {response.request.url}: {response.status_code} {response.text[:300]}"
        )

    def gateway_metric(self, series: str) -> float:
        text = self.http.get(self.stack.admin_url("/metrics"), timeout=5).text
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


# One-off steps run once, at the start of the load. Each exercises what a steady loop cannot.


def once_users(load: Load) -> None:
    """Registrations and logins through the gateway (auth route → the auth-service)."""
    for _ in range(3):
        load.register_and_login()


def once_refresh_rotation_reuse_and_logout(load: Load) -> None:
    tokens = load.register_and_login()
    r = load.auth("refresh", {"refresh_token": tokens["refresh_token"]})
    load.expect(r, 200)
    rotated = r.json()["refresh_token"]
    load.expect(load.auth("refresh", {"refresh_token": tokens["refresh_token"]}), 401)  # reuse: family revoked
    load.expect(load.auth("refresh", {"refresh_token": rotated}), 401)  # revoked with its family
    load.expect(load.auth("refresh", {"refresh_token": "not-a-refresh-token"}), 401)
    tokens = load.register_and_login()
    load.expect(load.auth("logout", {"refresh_token": tokens["refresh_token"]}), 204)


def once_throttled_logins(load: Load) -> None:
    """Wrong passwords for one account until the auth-service throttles it (429)."""
    email = load.users[0]
    statuses = [load.auth("login", {"email": email, "password": "wrong password!"}).status_code for _ in range(8)]
    assert 401 in statuses and 429 in statuses, statuses


def once_config_reloads(load: Load) -> None:
    """A good reload, a refused one (the gauge drops to 0), and a good one again."""
    stack = load.stack
    for text, result in (
        (stack.gateway_config_text + "# touched\n", "success"),
        (stack.gateway_config_text + "routes: this is not a list\n", "failure"),
        (stack.gateway_config_text, "success"),
    ):
        series = f'gateway_config_reloads_total{{result="{result}"}}'
        before = load.gateway_metric(series)
        stack.gateway_config.write_text(text)
        eventually(f"{series} to increase", 10, lambda: load.gateway_metric(series) > before)


def once_rate_limit_store_outage(load: Load) -> None:
    """Redis goes away: the limiter's calls fail (counted per policy) and `on_store_error: local`
    decides; then Redis comes back on the same port."""
    stack = load.stack
    stack.redis.stop()
    series = 'gateway_rate_limit_store_errors_total{policy="tiny"}'
    before = load.gateway_metric(series)
    for _ in range(5):
        load.expect(load.get("/api/limited/outage"), 200, 429)
    assert load.gateway_metric(series) > before, f"{series} did not count the outage"
    stack.start_redis()


def wait_shadow_counts(load: Load, before: dict[str, float], timeout: float = 10.0) -> None:
    """Waits until every series of `before` has grown past its value there. A verdict is counted
    once both answers are in, after the client has had its own; on a timeout the failure shows
    GET /admin/shadow."""
    stuck: list[str] = []

    def grown() -> bool:
        stuck[:] = [series for series in before if load.gateway_metric(series) <= before[series]]
        return not stuck

    try:
        eventually("the shadow's counters to grow", timeout, grown)
    except pytest.fail.Exception:
        view = load.http.get(load.stack.admin_url("/admin/shadow"), timeout=5).text
        pytest.fail(f"after {timeout}s these did not grow: {stuck}\nGET /admin/shadow: {view[:3000]}")


def once_shadow_verdicts(load: Load) -> None:
    """Every verdict and skip reason the panels show that the echoes can produce: on `shadowed`,
    matches, mismatches (echo_body_bytes: identical bytes, but `x-echo-server` names each echo),
    a copy past its 250ms deadline (shadow_error), a POST (skipped: method) and a 2 MiB answer
    (skipped: response_too_large, over the default 1MiB max_response); on `shadowed-noisy`, noise
    (learned from the second call to the primary); on the payments split, copies whose primary is
    the payments echo (skipped: same_upstream)."""
    def requests_series(route: str, result: str) -> str:
        return f'gateway_shadow_requests_total{{result="{result}",route="{route}"}}'

    def skipped_series(route: str, reason: str) -> str:
        return f'gateway_shadow_skipped_total{{reason="{reason}",route="{route}"}}'

    expected = [
        requests_series("shadowed", "match"),
        requests_series("shadowed", "mismatch"),
        requests_series("shadowed", "shadow_error"),
        requests_series("shadowed-noisy", "noise"),
        skipped_series("shadowed", "method"),
        skipped_series("shadowed", "response_too_large"),
        skipped_series("payments", "same_upstream"),
    ]
    before = {series: load.gateway_metric(series) for series in expected}
    for _ in range(3):
        load.expect(load.get("/api/shadowed/match"), 200)
        mismatch = load.get("/api/shadowed/mismatch", echo_body_bytes=16)
        load.expect(mismatch, 200)
        assert mismatch.headers["x-echo-server"] == "monolith", "the client gets the primary's answer"
    load.expect(load.get("/api/shadowed/slow", echo_delay_ms=400), 200)
    load.expect(load.http.post(load.stack.url("/api/shadowed/write"), json={"x": 1}, timeout=10), 200)
    big = load.get("/api/shadowed/big", echo_body_bytes=2 * 1024 * 1024)
    load.expect(big, 200)
    assert len(big.content) == 2 * 1024 * 1024
    for _ in range(10):  # the first verdicts may come before the noise is learned
        load.expect(load.get("/api/shadowed-noisy/x"), 200)
    for _ in range(20):  # each lands on the payments side with a probability of 1/2 (none: 1 in 10^6)
        load.expect(load.get("/api/payments/", load.token()), 200)
    wait_shadow_counts(load, before)


ONCE_STEPS = [
    once_users,
    once_refresh_rotation_reuse_and_logout,
    once_throttled_logins,
    once_config_reloads,
    once_rate_limit_store_outage,
    once_shadow_verdicts,
]


# Repeated steps run in turn until the load's time is up.


def step_split_successes(load: Load) -> None:
    """The payments route splits 50/50 between the two echo origins."""
    load.expect(load.get("/api/payments/", load.token()), 200)
    load.expect(load.get("/orders/"), 200)  # monolith route, anonymous allowed


def step_cohort_split(load: Load) -> None:
    """The invoices route sends 50% of the `early` cohort to the payments echo: a signed-in user
    by their `sub`, an anonymous visitor by their `sessionid` cookie (a new one each time, so
    both sides get visitors); a request with neither goes to the `rest` side, the monolith."""
    load.expect(load.get("/api/invoices/", load.token()), 200)
    visitor = {"cookie": f"sessionid={random.randrange(10**12)}"}
    load.expect(load.http.get(load.stack.url("/api/invoices/"), headers=visitor, timeout=10), 200)
    nobody = load.get("/api/invoices/")
    load.expect(nobody, 200)
    assert nobody.json()["server"] == "monolith", nobody.text


def step_upstream_errors(load: Load) -> None:
    load.expect(load.get("/api/payments/missing", load.token(), echo_status=404), 404)
    load.expect(load.get("/api/payments/broken", load.token(), echo_status=503), 503)


def step_dead_upstream(load: Load) -> None:
    """`gone` refuses connections: a GET is retried on the route's fallback (the monolith) while
    the retry budget lasts (then 502), until the breaker opens; then requests go straight to the
    fallback. Its health checks fail too (unhealthy_threshold keeps it in rotation, so the
    breaker, not health, decides)."""
    load.expect(load.get("/api/gone/x"), 200, 502)
    load.expect(load.http.post(load.stack.url("/api/gone/x"), timeout=10), 200, 502)


def step_rate_limited(load: Load) -> None:
    """`tiny` admits 5 requests a second on its route: a burst of 8 gets some 429s."""
    statuses = [load.get("/api/limited/x").status_code for _ in range(8)]
    assert set(statuses) <= {200, 429} and 429 in statuses, statuses


def step_latency_spread(load: Load) -> None:
    load.expect(load.get("/api/payments/slow", load.token(), echo_delay_ms=random.choice([0, 5, 20, 60])), 200)


def step_shadowed(load: Load) -> None:
    """A GET on each shadowed route: verdicts and both sides' durations all through the load."""
    load.expect(load.get("/api/shadowed/x"), 200)
    load.expect(load.get("/api/shadowed-noisy/x"), 200)


def step_auth_rejections(load: Load) -> None:
    token = load.token()
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}{'AAAA' if not signature.endswith('AAAA') else 'BBBB'}"
    load.expect(load.get("/api/payments/"), 401)  # missing
    load.expect(load.get("/api/payments/", "not.a.jwt"), 401)  # malformed
    load.expect(load.get("/api/payments/", forged), 401)  # bad signature
    load.expect(load.get("/api/admin/", token), 403)  # insufficient role


def step_auth_service(load: Load) -> None:
    load.expect(load.auth("login", {"email": load.users[1], "password": PASSWORD}), 200)
    load.expect(load.auth("login", {"email": load.unique_email("nobody"), "password": PASSWORD}), 401)
    load.expect(load.get("/api/auth/me", load.token()), 200)


def step_extracted_services_directly(load: Load) -> None:
    """The extracted services' own metrics (they are scraped directly, not through the gateway)."""
    for name in ("notifications", "payments"):
        base = f"http://127.0.0.1:{load.stack.ports[name]}"
        load.expect(load.http.get(f"{base}/healthz", timeout=5), 200)
        load.expect(load.http.get(f"{base}/no-such-page", timeout=5), 404)


REPEATED_STEPS = [
    step_split_successes,
    step_cohort_split,
    step_upstream_errors,
    step_dead_upstream,
    step_rate_limited,
    step_latency_spread,
    step_shadowed,
    step_auth_rejections,
    step_auth_service,
    step_extracted_services_directly,
]


def generate_load(stack: Stack, seconds: float) -> None:
    """Runs every ONCE_STEPS step, then REPEATED_STEPS in turn until `seconds` have passed.
    To exercise a new metric family, add a step to one of the lists (and drop the family from
    PENDING_METRICS)."""
    deadline = time.monotonic() + seconds
    load = Load(stack)
    for step in ONCE_STEPS:
        step(load)
    while time.monotonic() < deadline:
        for step in REPEATED_STEPS:
            step(load)


# --- Prometheus ----------------------------------------------------------------------------------


@dataclass
class Observed:
    prometheus: str  # base URL
    at: float  # the instant every query is evaluated at
    exposition: dict  # scrape job → /metrics text after the load
    families: dict  # metric family → type, over every target


def parse_families(text: str) -> dict:
    return {m.group(1): m.group(2) for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M)}


def prom_query(base: str, expr: str, at: float) -> list:
    r = requests.get(f"{base}/api/v1/query", params={"query": expr, "time": f"{at:.3f}"}, timeout=10)
    body = r.json()
    assert r.ok and body.get("status") == "success", f"query failed ({r.status_code}): {body.get('error')}\n  {expr}"
    return body["data"]["result"]


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    prometheus = tool("prometheus")
    workdir = tmp_path_factory.mktemp("observability")
    stack = start_stack(workdir)
    prom = None
    try:
        port = free_port()
        config = local_config(
            {job: [f"127.0.0.1:{stack.ports[proc]}"] for job, proc in SCRAPE_TARGETS.items()},
            scrape_interval="1s",
        )
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        prom = Proc("prometheus", [
            prometheus,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ], workdir)
        base = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{base}/-/ready")

        def all_targets_up():
            active = requests.get(f"{base}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            return len(active) == len(SCRAPE_TARGETS) and all(t["health"] == "up" for t in active)

        eventually("Prometheus to scrape every target", 20, all_targets_up)

        generate_load(stack, LOAD_SECONDS)
        load_end = time.time()

        def scraped_after_load():
            result = prom_query(base, "min(timestamp(up))", time.time())
            return result and float(result[0]["value"][1]) > load_end + 1

        eventually("a scrape of every target after the load", 15, scraped_after_load)
        at = time.time()
        exposition = {
            job: requests.get(f"http://127.0.0.1:{stack.ports[proc]}/metrics", timeout=5).text
            for job, proc in SCRAPE_TARGETS.items()
        }
        families = {}
        for text in exposition.values():
            families.update(parse_families(text))
        yield Observed(base, at, exposition, families)
    except BaseException:
        for proc in stack.procs + ([prom] if prom else []):
            print(f"--- {proc.name} log ---\n{proc.log_tail()}", file=sys.stderr)
        raise
    finally:
        if prom:
            prom.stop()
        stack.stop()


# --- the dashboards -------------------------------------------------------------------------------


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def all_panels(dashboard: dict):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def panel_targets():
    for file, dashboard in dashboards().items():
        for panel in all_panels(dashboard):
            for target in panel.get("targets", []):
                yield pytest.param(file, panel, target, id=f"{file}:{panel['title']}:{target['refId']}")


METRIC_NAME = re.compile(r"\b((?:gateway|auth|notifications|payments)_[a-z0-9_]+|up)\b")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (quoted strings removed first)."""
    return set(METRIC_NAME.findall(re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)))


def family_of(name: str, families: dict) -> str | None:
    """The exposed family a series name belongs to (`x_bucket` → histogram `x`)."""
    if name in families:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and families.get(base) in ("histogram", "summary"):
            return base
    return None


def pending_in(expr: str) -> set[str]:
    names = metric_names(expr)
    return {p for p in PENDING_METRICS if any(n == p or n in (p + "_bucket", p + "_sum", p + "_count") for n in names)}


VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(expr: str, values: dict[str, str]) -> str:
    def replace(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise AssertionError(f"unknown variable ${name} in {expr!r}")
        return values[name]

    return VARIABLE.sub(replace, expr)


def label_values(base: str, query: str, values: dict[str, str], at: float) -> list[str]:
    match = re.fullmatch(r"\s*label_values\(\s*(?:(.+?)\s*,\s*)?(\w+)\s*\)\s*", query)
    assert match, f"unsupported variable query {query!r} (use label_values(selector, label))"
    selector, label = match.groups()
    params = {"start": f"{at - 3600:.3f}", "end": f"{at:.3f}"}
    if selector:
        params["match[]"] = substitute(selector, values)
    r = requests.get(f"{base}/api/v1/label/{label}/values", params=params, timeout=10)
    assert r.ok, r.text
    return r.json()["data"]


def resolve_variables(base: str, dashboard: dict, at: float) -> dict[str, str]:
    """Each variable's value as Grafana would send it with its default selection: `.*` for a
    query variable with "All", else its first value; a custom variable's current value. A query
    variable that resolves to no value at all fails."""
    values = dict(GRAFANA_BUILTINS)
    for var in dashboard.get("templating", {}).get("list", []):
        kind, name = var["type"], var["name"]
        if kind == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            found = label_values(base, query, values, at)
            assert found, f"{dashboard['title']}: variable ${name} ({query}) resolves to no value"
            values[name] = (var.get("allValue") or ".*") if var.get("includeAll") else found[0]
        elif kind in ("custom", "constant", "textbox"):
            values[name] = str(var["current"]["value"])
        else:
            raise AssertionError(f"{dashboard['title']}: variable ${name} of type {kind} is not handled by this test")
    return values


@pytest.mark.parametrize("file,panel,target", list(panel_targets()))
def test_every_panel_query_returns_data(observed, file, panel, target):
    expr = target["expr"]
    pending = pending_in(expr)
    if pending:
        pytest.skip(f"uses {sorted(pending)}, in PENDING_METRICS")
    dashboard = dashboards()[file]
    query = substitute(expr, resolve_variables(observed.prometheus, dashboard, observed.at))
    result = prom_query(observed.prometheus, query, observed.at)
    assert result, f"{file}: panel {panel['title']!r} ({target['refId']}) returns no data:\n  {query}"
    finite = [r for r in result if not math.isnan(float(r["value"][1]))]
    assert finite, f"{file}: panel {panel['title']!r} returns only NaN (the load does not exercise it):\n  {query}\n  {result}"
    for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")):
        missing = [r["metric"] for r in result if label not in r["metric"]]
        assert not missing, f"{file}: panel {panel['title']!r}: legend uses {{{{{label}}}}}, absent from {missing}"


def test_every_metric_the_dashboards_and_alerts_use_is_exposed(observed):
    exprs = [t["expr"] for d in dashboards().values() for p in all_panels(d) for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for d in dashboards().values() for v in d["templating"]["list"] if v["type"] == "query"]
    exprs += [r["expr"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    families = dict(observed.families, up="gauge")
    unknown = {n for e in exprs for n in metric_names(e) if family_of(n, families) is None} - PENDING_METRICS
    unknown = {n for n in unknown if not any(n.startswith(p + "_") for p in PENDING_METRICS)}
    assert not unknown, f"not exposed by any scraped /metrics (a typo?): {sorted(unknown)}"


def test_pending_metrics_are_used_and_not_exposed_yet(observed):
    used = set()
    texts = [t["expr"] for d in dashboards().values() for p in all_panels(d) for t in p.get("targets", [])]
    texts += [r["expr"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    for text in texts:
        used |= pending_in(text)
    assert PENDING_METRICS <= used, f"PENDING_METRICS lists names no dashboard or alert uses: {sorted(PENDING_METRICS - used)}"
    landed = sorted(PENDING_METRICS & set(observed.families))
    assert not landed, (
        f"{landed} are exposed now: remove them from PENDING_METRICS and add load steps that exercise them"
    )


def test_prometheus_evaluates_every_alert_rule_without_error(observed):
    groups = requests.get(f"{observed.prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    expected = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    assert set(loaded) == expected
    for name, rule in loaded.items():
        assert rule["health"] == "ok" and not rule.get("lastError"), f"{name}: {rule.get('health')} {rule.get('lastError')}"
    # The load ends with a good config: nothing should fire on a healthy reload gauge.
    assert all(a["state"] != "firing" for a in loaded["GatewayConfigReloadFailed"]["alerts"])


@pytest.mark.parametrize("job", list(SCRAPE_TARGETS))
def test_promtool_check_metrics_finds_no_problem(observed, job):
    text = observed.exposition[job]
    assert "# TYPE" in text, f"{job}: /metrics is empty"
    result = subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        f"promtool check metrics on {job}:\n{result.stdout}{result.stderr}"
    )


# --- static checks: promtool, provisioning, dashboard hygiene ------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_promtool_checks_the_shipped_config_and_rules():
    for args in (("check", "config", "config/prometheus.yml"), ("check", "rules", "config/alerts.yml")):
        result = promtool(*args)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"


def test_promtool_unit_tests_of_the_alert_rules_pass():
    result = promtool("test", "rules", str(ALERTS_TEST.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_annotations_and_a_runbook_section():
    tests = yaml.safe_load(ALERTS_TEST.read_text())
    tested = {case["alertname"] for t in tests["tests"] for case in t.get("alert_rule_test", []) if case.get("exp_alerts")}
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", m.group(1).strip().lower()).replace(" ", "-")
        for m in re.finditer(r"^#{2,4} (.+)$", DOC.read_text(), re.M)
    }
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            name = rule["alert"]
            assert name in tested, f"{name}: no unit test in {ALERTS_TEST.name} that expects it to fire"
            assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name
            assert rule["labels"].get("severity") in ("critical", "warning", "info"), name
            doc, _, anchor = rule["annotations"]["runbook"].partition("#")
            assert (ROOT / doc).resolve() == DOC.resolve() and anchor in anchors, (
                f"{name}: runbook {rule['annotations']['runbook']} is not a section of {DOC.relative_to(ROOT)}"
            )


def provisioned_datasource() -> dict:
    files = sorted((PROVISIONING / "datasources").glob("*.y*ml"))
    sources = [d for f in files for d in yaml.safe_load(f.read_text())["datasources"]]
    assert len(sources) == 1 and sources[0]["type"] == "prometheus"
    return sources[0]


def test_dashboards_use_the_provisioned_datasource_and_a_current_schema():
    uid = provisioned_datasource()["uid"]
    found = dashboards()
    assert {"gateway-overview.json", "gateway-migration.json", "auth-service.json"} <= set(found)
    uids = [d["uid"] for d in found.values()]
    assert len(uids) == len(set(uids)), "dashboard uids must be unique"
    for file, d in found.items():
        assert "__inputs" not in d and "__requires" not in d, f"{file}: export for sharing, not provisioning"
        assert d["schemaVersion"] == 39, f"{file}: schemaVersion {d['schemaVersion']}"
        ids = [p["id"] for p in all_panels(d)]
        assert len(ids) == len(set(ids)), f"{file}: duplicate panel ids"
        for p in all_panels(d):
            if p["type"] == "row":
                continue
            assert p["datasource"] == {"type": "prometheus", "uid": uid}, f"{file}: {p['title']}"
            assert p.get("targets"), f"{file}: {p['title']} has no query"
            for t in p["targets"]:
                assert t["datasource"]["uid"] == uid and t["expr"].strip(), f"{file}: {p['title']}"
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                assert v["datasource"]["uid"] == uid, f"{file}: ${v['name']}"
