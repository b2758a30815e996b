"""Keeps the benchmark harness honest without running any load (scripts/test.sh runs this).

- every config the harness generates is rendered; the gateway ones are checked by the real
  `gateway validate`, the nginx and HAProxy ones by `nginx -t` / `haproxy -c` (scripts/setup.sh
  installs them through bench/install.sh);
- the tokens verify against the JWKS the gateway is given (PyJWT), and a token from another key
  does not; the real (debug) gateway, run on the policy row's config with a small Python origin
  serving the JWKS, admits them and refuses a missing or forged token;
- ratios are computed within each round before the medians, and targets say PASS/MISS;
- the gateway-shadow row's slow upstream (`slow_origin.py`) answers after its delay, keeps
  connections alive and counts what it saw; the real gateway on that row's config answers the
  client before the copy is answered, and counts the copy's verdict;
- the instructions-only gateway-shadow-copy row: the real gateway on its config copies every
  request to the same origin under a second name and counts a `match` for each, as
  `instructions.py` checks after its window (and refuses a window with skips or mismatches);
- `instructions.py` counts a real gateway's instructions per request under callgrind.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import jwt
import pytest

BENCH = Path(__file__).resolve().parents[1]
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402
import instructions  # noqa: E402
import render  # noqa: E402
import slow_origin  # noqa: E402

POOL = 20


class FakeOrigin(http.server.ThreadingHTTPServer):
    """Stands in for the origin nginx: the JWKS file, and 200 with the small body elsewhere."""

    work: Path

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == "/.well-known/jwks.json":
                body = (self.server.work / "jwks.json").read_bytes()
            else:
                body = render.SMALL_BODY.encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass


@pytest.fixture(scope="module")
def origin():
    server = FakeOrigin(("127.0.0.1", 0), FakeOrigin.Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, origin) -> render.Prepared:
    work = tmp_path_factory.mktemp("bench-work")
    ports = render.allocate_ports()
    ports.origin = origin.server_address[1]
    origin.work = work
    return render.prepare(work, ports, pool_size=POOL)


def gateway_bin() -> Path:
    return Path(os.environ.get("GATEWAY_BIN", REPO / "target" / "debug" / "gateway"))


ALL_ROWS = [*harness.ROWS, *harness.INSTRUCTIONS_ONLY_ROWS]


def test_every_template_renders_completely(prepared):
    assert set(prepared.configs) == set(ALL_ROWS) - harness.ARGV_ROWS
    ports = {prepared.ports.of_row(r) for r in ALL_ROWS}
    assert len(ports) == len(ALL_ROWS), "each row listens on its own port"
    for row, path in prepared.configs.items():
        text = path.read_text()
        assert "{{" not in text and "}}" not in text, f"{row}: unfilled placeholder"
        if row != "origin":
            assert f":{prepared.ports.of_row(row)}" in text, f"{row}: its own port"
            assert f"127.0.0.1:{prepared.ports.origin}" in text, f"{row}: forwards to the origin"
    with pytest.raises(KeyError, match="nope"):
        render.render_template("x {{nope}}", {})


def test_bare_pingora_row_listens_on_its_port_and_forwards_to_the_origin(prepared):
    s = harness.Settings.from_env({})
    argv = harness.command_for("pingora-bare", prepared, s)
    assert argv[:3] == ["taskset", "-c", s.proxy_cpu], "pinned to the proxy core"
    assert argv[3] == str(s.bare_pingora_bin)
    assert argv[4:] == [f"127.0.0.1:{prepared.ports.pingora_bare}", f"127.0.0.1:{prepared.ports.origin}"]


def test_single_thread_everywhere(prepared):
    cfg = prepared.configs
    for row in ("origin", "nginx"):
        assert "worker_processes 1;" in cfg[row].read_text()
    for row in ("haproxy", "haproxy-jwt"):
        assert "nbthread 1" in cfg[row].read_text()
    for row in harness.GATEWAY_ROWS:
        assert "threads: 1" in cfg[row].read_text()


def test_every_gateway_row_runs_the_gateway_on_its_config(prepared):
    s = harness.Settings.from_env({})
    for row in harness.GATEWAY_ROWS:
        assert harness.command_for(row, prepared, s) == [
            "taskset", "-c", s.proxy_cpu, str(s.gateway_bin), "run", "--config", str(prepared.configs[row])]
    with pytest.raises(ValueError, match="envoy"):
        harness.command_for("envoy", prepared, s)


def test_gateway_configs_pass_the_real_validator(prepared):
    binary = gateway_bin()
    assert binary.exists(), f"{binary} missing: cargo build -p gateway (scripts/test.sh does)"
    files = [str(prepared.configs[row]) for row in harness.GATEWAY_ROWS]
    out = subprocess.run([str(binary), "validate", *files], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    policy = prepared.configs["gateway-policy"].read_text()
    assert f"http://127.0.0.1:{prepared.ports.origin}/.well-known/jwks.json" in policy
    assert "claims_to_headers" in policy and "auth: { roles: [user] }" in policy
    # The full policy path: a per-user limit, the access log and 1% of traces to the receiver.
    assert "\nrate_limits:" in policy and "rate_limit: [per_user]" in policy
    assert "\nobservability:" in policy and "sample_ratio: 0.01" in policy
    assert f"http://127.0.0.1:{prepared.ports.otlp_grpc}" in policy
    # The shadow row: the plain route plus a shadow to the slow upstream, as issue 19 states it.
    shadow = prepared.configs["gateway-shadow"].read_text()
    assert f"targets: [127.0.0.1:{prepared.ports.slow_origin}]" in shadow
    assert "shadow: { upstream: slow, max_in_flight: 64, timeout: 5s }" in shadow
    assert harness.SHADOW_MAX_IN_FLIGHT == 64
    # The copy row: the shadow at its defaults, its candidate the primary's origin by another name.
    copy = prepared.configs["gateway-shadow-copy"].read_text()
    origin = f"targets: [127.0.0.1:{prepared.ports.origin}]"
    assert f"  origin:\n    {origin}\n  copy:\n    {origin}\n" in copy
    assert f"  - name: {instructions.SHADOW_COPY_ROUTE}\n" in copy
    assert "    upstream: origin\n    shadow: { upstream: copy }\n" in copy


def require(tool: str) -> None:
    """scripts/setup.sh installs the benchmark's tools, so a missing one is a failure, not a skip."""
    assert shutil.which(tool), f"`{tool}` is not installed: run bench/install.sh (scripts/setup.sh does)"


def test_nginx_configs_pass_nginx_t(prepared):
    require("nginx")
    for row in ("origin", "nginx"):
        out = subprocess.run(
            ["nginx", "-t", "-q", "-p", str(prepared.work),
             "-e", str(prepared.work / "logs" / f"{row}.t.log"), "-c", str(prepared.configs[row])],
            capture_output=True, text=True, timeout=30,
        )
        assert out.returncode == 0, f"{row}: {out.stderr}"


def test_haproxy_configs_pass_haproxy_c(prepared):
    require("haproxy")
    for row in ("haproxy", "haproxy-jwt"):
        out = subprocess.run(["haproxy", "-c", "-f", str(prepared.configs[row])],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, f"{row}: {out.stdout}{out.stderr}"
    # jwt_verify reads the public key the tokens are signed for.
    assert str(prepared.work / "signing-key.pub.pem") in prepared.configs["haproxy-jwt"].read_text()


def verify_with_jwks(token: str, jwks: dict) -> dict:
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(jwks)[kid]
    return jwt.decode(token, key=key.key, algorithms=["RS256"], audience=render.AUDIENCE,
                      issuer=render.ISSUER, options={"require": ["exp", "iss", "aud", "sub"]})


def test_tokens_verify_against_the_jwks_and_a_stranger_does_not(prepared, tmp_path):
    jwks = json.loads((prepared.work / "jwks.json").read_text())
    assert [k["kid"] for k in jwks["keys"]] == [render.KID]
    pool = prepared.pool.read_text().split()
    assert len(pool) == POOL
    for token in [prepared.token, *pool]:
        header = jwt.get_unverified_header(token)
        assert header == {"alg": "RS256", "kid": render.KID, "typ": "at+jwt"}
        claims = verify_with_jwks(token, jwks)
        assert claims["roles"] == ["user"] and claims["token_type"] == "access"
        assert 550 <= len(token) <= 800, f"token of {len(token)} bytes: not like a real one"
    subs = {verify_with_jwks(t, jwks)["sub"] for t in pool}
    assert len(subs) == POOL, "every pool token has its own sub"
    stranger = render.load_or_create_key(tmp_path)
    forged = render.sign(stranger, render.claims_for(1, int(time.time())))
    with pytest.raises(jwt.InvalidSignatureError):
        verify_with_jwks(forged, jwks)
    # The pool is reused while fresh and from the same key.
    assert render.token_pool(prepared.key, prepared.work, POOL).read_text().split() == pool


def test_settings_from_the_environment():
    s = harness.Settings.from_env({"BENCH_DURATION": "3s", "BENCH_ROUNDS": "1",
                                   "BENCH_SCENARIOS": "c64,c8", "BENCH_WARMUP": "500ms"})
    assert (s.duration, s.rounds, s.scenarios, s.warmup) == (3.0, 1, ["c64", "c8"], 0.5)
    with pytest.raises(ValueError, match="unknown scenario"):
        harness.Settings.from_env({"BENCH_SCENARIOS": "c65"})
    with pytest.raises(ValueError, match="unknown row"):
        harness.Settings.from_env({"BENCH_ROWS": "envoy"})


def run(r, sc, row, rps, cpu=10.0, p99=1000, rss=20.0, status=0):
    return harness.Run(round=r, scenario=sc, row=row, requests=int(rps * 10), seconds=10.0,
                       rps=rps, p50_us=100, p99_us=p99, p999_us=p99, cpu_us_per_req=cpu,
                       errors={"connect": 0, "read": 0, "write": 0, "status": status, "timeout": 0},
                       peak_rss_mib=rss, rss_reset=True)


def test_ratios_are_taken_within_each_round_then_the_median():
    runs = [
        # round 1: a fast machine; round 2: a slow one; round 3: in between.
        run(1, "c64", "nginx", 100_000), run(1, "c64", "gateway-plain", 110_000, cpu=9.0),
        run(1, "c64", "haproxy-jwt", 20_000), run(1, "c64", "gateway-policy", 70_000, rss=30),
        run(2, "c64", "nginx", 50_000), run(2, "c64", "gateway-plain", 60_000, cpu=11.0),
        run(2, "c64", "haproxy-jwt", 10_000), run(2, "c64", "gateway-policy", 35_000, rss=70),
        run(3, "c64", "nginx", 80_000), run(3, "c64", "gateway-plain", 72_000, cpu=10.5),
        run(3, "c64", "haproxy-jwt", 16_000), run(3, "c64", "gateway-policy", 52_000, rss=40),
    ]
    summary = harness.summarize(runs)
    plain = summary["c64"]["gateway-plain"]
    # Per-round ratios 1.1, 1.2, 0.9 -> median 1.1; the ratio of the medians (72k / 80k = 0.9)
    # would mix a fast round's nginx with a slow round's gateway.
    assert plain["rps_vs_nginx"] == pytest.approx(1.1)
    assert plain["rps"] == 72_000
    assert plain["cpu_vs_nginx"] == pytest.approx(1.05)
    policy = summary["c64"]["gateway-policy"]
    assert policy["rps_vs_haproxy_jwt"] == pytest.approx(3.5)
    assert policy["rps_vs_nginx"] == pytest.approx(0.7)
    assert policy["peak_rss_mib"] == 40
    verdicts = {t["target"]: t["verdict"] for t in harness.evaluate(summary)}
    assert verdicts["plain gateway req/s ≥ 1.0× nginx (64 conns)"] == "PASS"
    assert verdicts["plain gateway CPU/request ≤ nginx's (64 conns)"] == "MISS"
    assert verdicts["policy path, reused token ≥ 0.8× nginx req/s (64 conns)"] == "MISS"
    assert verdicts["policy path, reused token ≥ 3× HAProxy-JWT req/s (64 conns)"] == "PASS"
    assert verdicts["policy path, distinct tokens ≥ 1.0× HAProxy-JWT req/s (64 conns)"] == "n/a"
    md = harness.markdown(
        {"started": "now", "rounds": 3, "duration_s": 10, "warmup_s": 2, "proxy_cpu": "0",
         "load_cpu": "1", "token_bytes": 700, "pool_size": 10000, "cpus": 2, "cpu_model": "x",
         "kernel": "k", "loadavg_start": 0.1, "noisy": None, "versions": {"nginx": "1"}},
        summary, harness.evaluate(summary))
    assert "| gateway, plain route | 72,000 | 1.10 |" in md


def test_a_run_with_error_answers_is_invalid():
    bad = run(1, "c64", "gateway-policy", 50_000, status=3)
    assert not bad.valid
    summary = harness.summarize([run(1, "c64", "nginx", 60_000), bad,
                                 run(1, "c64", "haproxy-jwt", 10_000)])
    verdicts = {t["target"]: t["verdict"] for t in harness.evaluate(summary)}
    assert verdicts["policy path, reused token ≥ 3× HAProxy-JWT req/s (64 conns)"] == "INVALID"


def test_the_shadow_row_is_judged_by_its_p99_over_the_plain_rows_in_the_same_round():
    shadowed = {"copies": 120, "answered": 100, "peak_in_flight": 64,
                "verdicts": {"match": 100}, "skipped": {"in_flight": 400_000}}
    runs = [
        run(1, "c64-shadow", "gateway-plain", 30_000, p99=2000),
        run(1, "c64-shadow", "gateway-shadow", 29_000, p99=2100),   # 1.05
        run(2, "c64-shadow", "gateway-plain", 20_000, p99=4000),
        run(2, "c64-shadow", "gateway-shadow", 19_000, p99=4800),   # 1.20
        run(3, "c64-shadow", "gateway-plain", 25_000, p99=3000),
        run(3, "c64-shadow", "gateway-shadow", 24_000, p99=3150),   # 1.05
    ]
    for x in runs:
        if x.row == "gateway-shadow":
            x.shadow = dict(shadowed)
    summary = harness.summarize(runs)
    row = summary["c64-shadow"]["gateway-shadow"]
    # The median of the per-round ratios, not 3100 / 3000.
    assert row["p99_vs_plain"] == pytest.approx(1.05)
    assert row["shadow"] == {"copies": 360, "peak_in_flight": 64, "verdicts": {"match": 300},
                             "skipped": {"in_flight": 1_200_000}}
    target = "slow shadow (3 s): client p99 ≤ 1.10× the plain route's (64 conns)"
    assert {t["target"]: t["verdict"] for t in harness.evaluate(summary)}[target] == "PASS"
    runs[1].p99_us = runs[5].p99_us = 3600  # rounds 1 and 3 at 1.8 and 1.2
    assert {t["target"]: t["verdict"] for t in harness.evaluate(harness.summarize(runs))}[target] == "MISS"
    # The RSS target stays about the plain and policy rows.
    rss = next(t for t in harness.TARGETS if t.key == "peak_rss_mib")
    assert rss.rows == ("gateway-plain", "gateway-policy")
    md = harness.markdown(
        {"started": "now", "rounds": 3, "duration_s": 10, "warmup_s": 2, "proxy_cpu": "0",
         "load_cpu": "1", "token_bytes": 700, "pool_size": 10000, "cpus": 2, "cpu_model": "x",
         "kernel": "k", "loadavg_start": 0.1, "noisy": None, "versions": {"nginx": "1"}},
        summary, harness.evaluate(summary))
    assert "| p99 ms | p99 × plain | CPU µs/req |" in md
    assert "| gateway, plain route + a shadow answering in 3 s | 24,000 | – | – | 0.10 | 3.15 | 1.05 |" in md
    assert "360 copies reached the slow upstream, at most 64 (max_in_flight 64) open at once" in md
    assert "skipped: in_flight 1,200,000" in md


def test_a_shadow_run_whose_copies_never_arrived_is_invalid():
    x = run(1, "c64-shadow", "gateway-shadow", 30_000)
    x.shadow = {"copies": 0, "answered": 0, "peak_in_flight": 0, "verdicts": {}, "skipped": {}}
    assert not x.valid
    x.shadow["copies"] = 1
    assert x.valid


def start_slow_origin(port: int, delay: float, log: Path) -> harness.Proc:
    proc = harness.Proc("slow-origin", [sys.executable, str(BENCH / "slow_origin.py"),
                                        "--listen", f"127.0.0.1:{port}", "--delay", str(delay)], log)
    harness.wait_ready(port, slow_origin.STATS_PATH, {}, proc)
    return proc


def test_the_slow_origin_answers_after_its_delay_on_a_kept_alive_connection(tmp_path):
    port = render.free_ports(1)[0]
    proc = start_slow_origin(port, 0.5, tmp_path / "slow-origin.log")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for shadow in (True, False):
            started = time.monotonic()
            conn.request("GET", render.SMALL_PATH, headers={"X-Gateway-Shadow": "1"} if shadow else {})
            resp = conn.getresponse()
            assert (resp.status, resp.read().decode()) == (200, render.SMALL_BODY)
            assert resp.getheader("connection") == "keep-alive"
            assert time.monotonic() - started >= 0.5, "answered before its delay"
        # Three requests at once: all three wait together.
        threads = [threading.Thread(target=harness.http_get, args=(port, "/x")) for _ in range(3)]
        for t in threads:
            t.start()
        harness.poll("three requests waiting at once", 5,
                     lambda: True if harness.slow_origin_stats(port)["in_flight"] >= 3 else None)
        for t in threads:
            t.join()
        # The stats request itself is not counted, and reading the stats starts a new peak.
        stats = harness.slow_origin_stats(port)
        assert stats == {"received": 5, "answered": 5, "shadow_copies": 1, "in_flight": 0, "peak_in_flight": 3}
        assert harness.slow_origin_stats(port)["peak_in_flight"] == 0
        conn.request("GET", "/x", headers={"Transfer-Encoding": "chunked"})
        assert conn.getresponse().status == 501
        conn.close()
    finally:
        proc.stop()
    assert proc.p.returncode == 0, proc.log_tail()


@contextmanager
def running_gateway(prepared: render.Prepared, row: str, ready_within: float = 20.0):
    """The real (debug) gateway on `row`'s config, ready (its admin `/readyz` answers 200);
    stopped when the block ends."""
    binary = gateway_bin()
    assert binary.exists(), f"{binary} missing: cargo build -p gateway (scripts/test.sh does)"
    log_path = prepared.work / "logs" / f"{row}.test.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([str(binary), "run", "--config", str(prepared.configs[row])],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        admin = getattr(prepared.ports, f"{row.replace('-', '_')}_admin")
        def ready():
            assert proc.poll() is None, log_path.read_text()
            return True if harness.http_get(admin, "/readyz", timeout=1)[0] == 200 else None

        harness.poll(f"{row}: gateway ready", ready_within, ready)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_the_real_gateway_answers_before_its_shadow_and_counts_the_copy(prepared, tmp_path):
    """The shadow row's config end to end: the real (debug) gateway in front of the fake origin,
    its shadow to a real slow origin (1 s here; 3 s in the benchmark). The harness's own preflight
    passes (a copy arrives marked X-Gateway-Shadow, the client's answer did not wait for it), and
    once the copy is answered the gateway counts its verdict: a match, the bodies being equal."""
    slow = start_slow_origin(prepared.ports.slow_origin, 1.0, tmp_path / "slow-origin.log")
    try:
        with running_gateway(prepared, "gateway-shadow"):
            admin = prepared.ports.gateway_shadow_admin
            before = (harness.slow_origin_stats(prepared.ports.slow_origin), harness.shadow_counts(admin))
            note = harness.preflight_shadow(prepared)
            assert "client does not wait" in note
            harness.poll("a verdict counted", 10,
                         lambda: True if harness.shadow_counts(admin)["requests"].get("match", 0) >= 1 else None)
            after = (harness.slow_origin_stats(prepared.ports.slow_origin), harness.shadow_counts(admin))
            figures = harness.shadow_figures(before, after)
            assert figures["copies"] == figures["answered"] == 1, figures
            assert figures["verdicts"] == {"match": 1}, figures
            assert figures["peak_in_flight"] == 1, figures
    finally:
        slow.stop()


def test_the_copy_row_copies_every_request_and_each_matches(prepared):
    """The instructions-only copy row's config on the real gateway, checked as `instructions.py`
    checks its window: requests one at a time over one connection, then one `match` per request
    in the route's counter (copies end after the answers: waited for), nothing skipped."""
    with running_gateway(prepared, "gateway-shadow-copy"):
        port, admin = prepared.ports.gateway_shadow_copy, prepared.ports.gateway_shadow_copy_admin
        before = harness.shadow_counts(admin, instructions.SHADOW_COPY_ROUTE)
        # Every verdict and skip reason is registered at zero when the config loads.
        assert before["requests"]["match"] == 0 and before["skipped"]["same_upstream"] == 0, before
        assert instructions.settled(before) == 0, before
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            instructions.send_requests(sock, port, prepared.token, 50)
        after = instructions.wait_for_copies(admin, instructions.settled(before) + 50, limit=10)
        assert instructions.check_copies(before, after, 50) == "50 copies matched"
        # Another route's counters are not this one's.
        assert harness.shadow_counts(admin, "no-such-route") == {"requests": {}, "skipped": {}}


def counts(match=0, mismatch=0, **skipped):
    return {"requests": {"match": match, "mismatch": mismatch, "shadow_error": 0},
            "skipped": {"same_upstream": 0, "in_flight": 0, **skipped}}


def test_a_copy_window_with_skips_or_mismatches_fails_the_row():
    before = counts(match=501)
    assert instructions.check_copies(before, counts(match=2501), 2000) == "2,000 copies matched"
    # About: a straggler of the warm-up either side of the window.
    assert instructions.check_copies(before, counts(match=2502), 2000) == "2,001 copies matched"
    for after, says in [
        (counts(match=501, same_upstream=2000), "skipped {'same_upstream': 2000}"),
        (counts(match=2401, in_flight=100), "skipped {'in_flight': 100}; 1900 matches"),
        (counts(match=2500, mismatch=1), "verdicts other than match {'mismatch': 1}"),
        (counts(match=1501), "1000 matches"),  # copies that never ended (waited for in vain)
    ]:
        with pytest.raises(RuntimeError, match=re.escape(says)):
            instructions.check_copies(before, after, 2000)


def test_the_real_gateway_admits_the_tokens_on_the_policy_row(prepared, tmp_path):
    """The policy row's config and tokens, end to end through the gateway's own verifier (the
    fake origin serves the JWKS); a missing or forged token is refused."""
    with running_gateway(prepared, "gateway-policy"):  # ready: the JWKS is fetched
        port = prepared.ports.gateway_policy
        good = [prepared.token, *prepared.pool.read_text().split()[:3]]
        for token in good:
            status, headers, body = harness.http_get(
                port, render.SMALL_PATH, {"Authorization": f"Bearer {token}"})
            assert (status, body.decode()) == (200, render.SMALL_BODY)
            assert "x-request-id" in headers
        stranger = render.load_or_create_key(tmp_path)
        forged = render.sign(stranger, render.claims_for(1, int(time.time())))
        for hdrs in ({}, {"Authorization": f"Bearer {forged}"}):
            assert harness.http_get(port, render.SMALL_PATH, hdrs)[0] == 401


def test_instruction_counter_measures_the_real_gateway(tmp_path):
    """bench/instructions.py end to end on the debug gateway: valgrind, the fixed request count
    over one keep-alive connection, the callgrind dump and its arithmetic; and the copy row,
    named, with its check that every request of the window was copied and matched."""
    require("valgrind")
    require("nginx")
    env = dict(os.environ, GATEWAY_BIN=str(gateway_bin()), BENCH_OUT=str(tmp_path),
               INSTR_REQUESTS="40", INSTR_WARMUP="5", INSTR_TOP="3")
    proc = subprocess.Popen([sys.executable, str(BENCH / "instructions.py"), "gateway-plain",
                             "gateway-shadow-copy"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the tool stops what it started
        stdout, stderr = proc.communicate(timeout=30)
        pytest.fail(f"instructions.py took over 300 s:\n{stdout}{stderr}")
    assert proc.returncode == 0, stdout + stderr
    m = re.search(r"gateway-plain\s+([\d,]+) instructions/request \(40 requests", stdout)
    assert m, stdout
    plain = int(m.group(1).replace(",", ""))
    # A proxied request is tens of thousands of instructions (release) to a few hundred
    # thousand (debug); a figure outside that means the window or the division is wrong.
    assert 10_000 < plain < 5_000_000, stdout
    m = re.search(r"gateway-shadow-copy\s+([\d,]+) instructions/request \(40 requests.*; "
                  r"40 copies matched$", stdout, re.M)
    assert m, stdout
    assert int(m.group(1).replace(",", "")) > plain, "a copied and compared request costs more"
    # INSTR_TOP=3: three functions per row, each with its instructions per request.
    top = [ln for ln in stdout.splitlines() if re.match(r"^ {4}\s*[\d,]+  \S", ln)]
    assert len(top) == 6, stdout
    for row in ("gateway-plain", "gateway-shadow-copy"):
        assert list((tmp_path / "work" / "callgrind").glob(f"{row}.callgrind.out.*")), row
    # Nothing it started is left running.
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert left.stdout.strip() == "", left.stdout


def test_instruction_counter_rejects_an_unknown_row():
    out = subprocess.run([sys.executable, str(BENCH / "instructions.py"), "envoy"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "unknown row" in out.stderr


def test_instruction_counter_refuses_missing_binaries_before_starting_anything(tmp_path):
    env = dict(os.environ, GATEWAY_BIN=str(tmp_path / "no-such-gateway"), BENCH_OUT=str(tmp_path))
    out = subprocess.run([sys.executable, str(BENCH / "instructions.py"), "gateway-plain"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2 and "no-such-gateway" in out.stderr, out.stderr
    assert not (tmp_path / "work").exists(), "nothing prepared, nothing started"
