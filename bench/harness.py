"""The proxy benchmark: every row in one session, interleaved over rounds, ratios within rounds.

Run it through `bench/run.sh` (installs wrk/nginx/haproxy when missing and builds the release
gateway). Settings come from the environment (see `Settings.from_env` and bench/README.md).

Per round, per scenario, per row: a warm-up wrk run (discarded), then a measured wrk run. Around
the measured run the harness reads utime+stime of the row's process tree (`/proc/PID/stat`) and
its peak RSS (`VmHWM`, reset just before the run through `/proc/PID/clear_refs`). Ratios to nginx,
to HAProxy-JWT and to the plain gateway route are computed inside each round (the machine drifts
between rounds; a ratio within a round holds), then the medians over rounds are reported, with
PASS/MISS per target. The gateway-shadow row's runs also record what its shadow did (copies that
reached bench/slow_origin.py, the most open at once, the gateway's verdicts and skips).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import render  # noqa: E402
import slow_origin  # noqa: E402

BENCH_DIR = render.BENCH_DIR
REPO = BENCH_DIR.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

ROWS = ["origin", "nginx", "haproxy", "haproxy-jwt", "pingora-bare", "gateway-plain", "gateway-policy",
        "gateway-shadow"]
ROW_TITLES = {
    "origin": "origin direct (the ceiling)",
    "nginx": "nginx proxy_pass + keepalive",
    "haproxy": "HAProxy http mode",
    "haproxy-jwt": "HAProxy + jwt_verify RS256 (+alg/iss/aud/exp)",
    "pingora-bare": "bare pingora proxy (pingora's own cost)",
    "gateway-plain": "gateway, plain route",
    "gateway-policy": "gateway, full policy path",
    "gateway-shadow": "gateway, plain route + a shadow answering in 3 s",
}
# Rows whose success needs a valid token (a request without one must be refused).
JWT_ROWS = {"haproxy-jwt", "gateway-policy"}
GATEWAY_ROWS = ("gateway-plain", "gateway-policy", "gateway-shadow", "gateway-shadow-copy")
# Rows only bench/instructions.py runs, and only when named: in no wrk scenario, not in ROWS.
INSTRUCTIONS_ONLY_ROWS = ("gateway-shadow-copy",)
# Rows configured by their command line alone (no rendered config file).
ARGV_ROWS = {"pingora-bare"}


@dataclass(frozen=True)
class Scenario:
    name: str
    connections: int
    tokens: str  # "one": one reused token; "pool": the pool of distinct tokens
    path: str
    rows: tuple[str, ...]
    title: str
    # Its table gets a "p99 × plain" column: each row's p99 over gateway-plain's, within the round.
    p99_vs_plain: bool = False


# The shadow row runs in its own scenario only (c64-shadow, next to gateway-plain).
_CLASSIC_ROWS = tuple(r for r in ROWS if r != "gateway-shadow")

SCENARIOS = [
    Scenario("c64", 64, "one", render.SMALL_PATH, _CLASSIC_ROWS,
             "64 connections, one reused token, ~100-byte answer"),
    Scenario("c8", 8, "one", render.SMALL_PATH, _CLASSIC_ROWS,
             "8 connections, one reused token, ~100-byte answer"),
    Scenario("c64-pool", 64, "pool", render.SMALL_PATH,
             ("nginx", "haproxy-jwt", "gateway-policy"),
             "64 connections, a pool of distinct tokens, ~100-byte answer"),
    Scenario("c64-1mb", 64, "one", render.BIG_PATH,
             ("nginx", "haproxy", "haproxy-jwt", "pingora-bare", "gateway-plain", "gateway-policy"),
             "64 connections, one reused token, 1 MB answer"),
    # What a slow shadow costs the client: the same route with and without a shadow whose
    # upstream answers after 3 s (bench/slow_origin.py); at most 64 copies open at once.
    Scenario("c64-shadow", 64, "one", render.SMALL_PATH, ("gateway-plain", "gateway-shadow"),
             "64 connections, one reused token, ~100-byte answer; the shadow's upstream answers after 3 s",
             p99_vs_plain=True),
]


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (e.g. 10s, 500ms, 1m)")
    value, unit = float(m.group(1)), m.group(2) or "s"
    return value / 1000 if unit == "ms" else value * 60 if unit == "m" else value


@dataclass
class Settings:
    duration: float = 10.0
    warmup: float = 2.0
    rounds: int = 3
    pool_size: int = 10_000
    proxy_cpu: str = "0"
    load_cpu: str = "1"
    scenarios: list[str] = field(default_factory=lambda: [s.name for s in SCENARIOS])
    rows: list[str] = field(default_factory=lambda: list(ROWS))
    gateway_bin: Path = REPO / "target" / "release" / "gateway"
    bare_pingora_bin: Path = REPO / "target" / "release" / "examples" / "bare_pingora"
    otlp_receiver_bin: Path = REPO / "target" / "release" / "otlp-receiver"
    out_dir: Path = BENCH_DIR / "results"

    @staticmethod
    def from_env(env: dict[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        s = Settings()
        if "BENCH_DURATION" in env:
            s.duration = parse_duration(env["BENCH_DURATION"])
        if "BENCH_WARMUP" in env:
            s.warmup = parse_duration(env["BENCH_WARMUP"])
        s.rounds = int(env.get("BENCH_ROUNDS", s.rounds))
        s.pool_size = int(env.get("BENCH_POOL", s.pool_size))
        s.proxy_cpu = env.get("BENCH_PROXY_CPU", s.proxy_cpu)
        s.load_cpu = env.get("BENCH_LOAD_CPU", s.load_cpu)
        if env.get("BENCH_SCENARIOS"):
            s.scenarios = [x.strip() for x in env["BENCH_SCENARIOS"].split(",") if x.strip()]
        if env.get("BENCH_ROWS"):
            s.rows = [x.strip() for x in env["BENCH_ROWS"].split(",") if x.strip()]
        if env.get("GATEWAY_BIN"):
            s.gateway_bin = Path(env["GATEWAY_BIN"])
        if env.get("BARE_PINGORA_BIN"):
            s.bare_pingora_bin = Path(env["BARE_PINGORA_BIN"])
        if env.get("OTLP_RECEIVER_BIN"):
            s.otlp_receiver_bin = Path(env["OTLP_RECEIVER_BIN"])
        if env.get("BENCH_OUT"):
            s.out_dir = Path(env["BENCH_OUT"])
        known_s = {x.name for x in SCENARIOS}
        for name in s.scenarios:
            if name not in known_s:
                raise ValueError(f"BENCH_SCENARIOS: unknown scenario {name!r} (known: {sorted(known_s)})")
        for name in s.rows:
            if name not in ROWS:
                raise ValueError(f"BENCH_ROWS: unknown row {name!r} (known: {ROWS})")
        if s.rounds < 1 or s.duration <= 0:
            raise ValueError("BENCH_ROUNDS must be >= 1 and BENCH_DURATION > 0")
        return s


# --------------------------------------------------------------------------------------------
# Processes: started by the harness, stopped by PID, never by name.


def tree(pid: int) -> list[int]:
    """`pid` and its descendants (nginx's master and worker)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ticks(pids: list[int]) -> int:
    """utime + stime of every process in `pids` (all threads included), in clock ticks."""
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total


def reset_peak_rss(pids: list[int]) -> bool:
    """Resets VmHWM to the current RSS (`5` to clear_refs, Linux >= 4.0). False if refused."""
    ok = True
    for p in pids:
        try:
            Path(f"/proc/{p}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


def peak_rss_kib(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


class Proc:
    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log = log
        self.fh = open(log, "wb")
        self.p = subprocess.Popen(
            argv, stdout=self.fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
        self.pids: list[int] = [self.p.pid]

    def alive(self) -> bool:
        return self.p.poll() is None

    def refresh_tree(self) -> list[int]:
        if self.alive():
            self.pids = tree(self.p.pid)
        return self.pids

    def stop(self) -> None:
        pids = self.refresh_tree()
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=5)
        for pid in pids[1:]:  # a worker left behind by its master
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.fh.close()

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def missing_binaries(rows: list[str], s: Settings) -> list[str]:
    """What the rows need that is not built, each with the command that builds it."""
    needed = []
    if any(r in GATEWAY_ROWS for r in rows):
        needed.append((s.gateway_bin, "cargo build --release -p gateway"))
    if "gateway-policy" in rows:  # its traces go to a real receiver
        needed.append((s.otlp_receiver_bin, "cargo build --release -p testkit --bin otlp-receiver"))
    if "pingora-bare" in rows:
        needed.append((s.bare_pingora_bin, "cargo build --release -p gateway --example bare_pingora"))
    return [f"{path} is missing ({build})" for path, build in needed if not path.exists()]


def command_for(row: str, prep: render.Prepared, s: Settings) -> list[str]:
    if row in ("origin", "nginx"):
        cfg = str(prep.configs[row])
        errlog = str(prep.work / "logs" / f"{row}.startup.log")
        argv = ["nginx", "-p", str(prep.work), "-e", errlog, "-c", cfg]
    elif row.startswith("haproxy"):
        argv = ["haproxy", "-db", "-f", str(prep.configs[row])]
    elif row == "pingora-bare":
        argv = [str(s.bare_pingora_bin), f"127.0.0.1:{prep.ports.pingora_bare}",
                f"127.0.0.1:{prep.ports.origin}"]
    elif row in GATEWAY_ROWS:
        argv = [str(s.gateway_bin), "run", "--config", str(prep.configs[row])]
    else:
        raise ValueError(f"no command for row {row!r}")
    cpu = s.load_cpu if row == "origin" else s.proxy_cpu
    return ["taskset", "-c", cpu, *argv]


# --------------------------------------------------------------------------------------------
# Checks before any load: each row answers what it should, so no row measures its error path.


def http_get(port: int, path: str, headers: dict[str, str] | None = None,
             timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def poll(what: str, limit: float, check, interval: float = 0.05):
    """Calls `check` until it returns something other than None, and returns that; raises
    `RuntimeError` naming `what` (and `check`'s last `Exception`, if any) after `limit`
    seconds. The one bounded wait on a signal the harness and its tests use: a process's answer,
    a counter that grows. `check` may raise `RuntimeError` to stop the wait at once."""
    deadline = time.monotonic() + limit
    last = None
    while True:
        try:
            value = check()
            if value is not None:
                return value
        except RuntimeError:
            raise
        except Exception as e:  # noqa: BLE001 - an answer not there yet, reported on timeout
            last = e
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {limit:g}s" + (f" ({last})" if last else ""))
        time.sleep(interval)


def wait_ready(port: int, path: str, headers: dict[str, str], proc: Proc, limit: float = 20.0) -> None:
    def ready():
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited (code {proc.p.returncode}):\n{proc.log_tail()}")
        status, _, _ = http_get(port, path, headers, timeout=1.0)
        if status != 200:
            raise OSError(f"status {status}")
        return True

    try:
        poll(f"{proc.name} ready on port {port}", limit, ready, interval=0.1)
    except RuntimeError as e:
        if not proc.alive():
            raise
        raise RuntimeError(f"{e}:\n{proc.log_tail()}") from None


def preflight(row: str, port: int, prep: render.Prepared, pool_token: str | None) -> list[str]:
    """Facts about a ready row; raises on anything that would make its figures meaningless."""
    auth = {"Authorization": f"Bearer {prep.token}"}
    notes = []
    status, headers, body = http_get(port, render.SMALL_PATH, auth)
    if status != 200 or body.decode() != render.SMALL_BODY:
        raise RuntimeError(f"{row}: GET {render.SMALL_PATH} answered {status} {body[:200]!r}")
    status, _, body = http_get(port, render.BIG_PATH, auth, timeout=10)
    if status != 200 or len(body) != render.BIG_BYTES:
        raise RuntimeError(f"{row}: GET {render.BIG_PATH} answered {status}, {len(body)} bytes")
    if row.startswith("gateway") and "x-request-id" not in headers:
        raise RuntimeError(f"{row}: no X-Request-ID on the answer")
    if row == "gateway-shadow":
        notes.append(preflight_shadow(prep))
    if row in JWT_ROWS:
        for what, hdrs in [
            ("no token", {}),
            ("a token signed by another key", {"Authorization": "Bearer " + forged_token()}),
        ]:
            status, _, _ = http_get(port, render.SMALL_PATH, hdrs)
            if status not in (401, 403):
                raise RuntimeError(f"{row}: a request with {what} was answered {status}, not 401/403")
        notes.append("refuses a missing and a forged token")
        if pool_token:
            status, _, _ = http_get(port, render.SMALL_PATH, {"Authorization": f"Bearer {pool_token}"})
            if status != 200:
                raise RuntimeError(f"{row}: a pool token was answered {status}")
    return notes


def preflight_shadow(prep: render.Prepared, limit: float = 5.0) -> str:
    """The shadow row's copies reach the slow upstream (marked `X-Gateway-Shadow`), and the
    client's answer does not wait for them: when it arrives, its copy is still waiting there."""
    before = slow_origin_stats(prep.ports.slow_origin)
    auth = {"Authorization": f"Bearer {prep.token}"}
    status, _, body = http_get(prep.ports.gateway_shadow, render.SMALL_PATH, auth)
    if status != 200 or body.decode() != render.SMALL_BODY:
        raise RuntimeError(f"gateway-shadow: GET {render.SMALL_PATH} answered {status} {body[:200]!r}")
    def arrived():
        now = slow_origin_stats(prep.ports.slow_origin)
        return now if now["shadow_copies"] > before["shadow_copies"] else None

    now = poll("gateway-shadow: a copy reaching the slow upstream", limit, arrived)
    if now["answered"] > before["answered"]:
        raise RuntimeError("gateway-shadow: the slow upstream answered a copy before the client had its answer")
    return f"copies reach the slow upstream ({render.SLOW_ORIGIN_DELAY:g} s) and the client does not wait for them"


_FORGED: list[str] = []


def forged_token() -> str:
    if not _FORGED:
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            other = render.load_or_create_key(Path(d))
        _FORGED.append(render.sign(other, render.claims_for(1, int(time.time()))))
    return _FORGED[0]


# --------------------------------------------------------------------------------------------
# One wrk run.


@dataclass
class Run:
    round: int
    scenario: str
    row: str
    requests: int
    seconds: float
    rps: float
    p50_us: int
    p99_us: int
    p999_us: int
    errors: dict[str, int]
    cpu_us_per_req: float
    peak_rss_mib: float
    rss_reset: bool
    # gateway rows: verified-token cache hits/misses during the run (from the admin /metrics)
    token_cache: dict[str, int] | None = None
    # gateway-shadow: what the shadow did during the run (`shadow_figures`)
    shadow: dict | None = None

    @property
    def valid(self) -> bool:
        socket_errors = sum(v for k, v in self.errors.items() if k != "status")
        # A shadow row whose copies never reached the slow upstream measured a plain route.
        shadow_ok = self.shadow is None or self.shadow["copies"] > 0
        return (self.requests > 0 and self.errors.get("status", 0) == 0
                and socket_errors <= self.requests / 1000 and shadow_ok)


def wrk_argv(sc: Scenario, port: int, seconds: float, prep: render.Prepared, s: Settings) -> list[str]:
    argv = [
        "taskset", "-c", s.load_cpu, "wrk", "-t1", f"-c{sc.connections}",
        f"-d{max(1, round(seconds))}s", "--timeout", "5s", "--latency",
    ]
    if sc.tokens == "pool":
        argv += ["-s", str(prep.work / "pool-run.lua")]
    else:
        argv += ["-H", f"Authorization: Bearer {prep.token}", "-s", str(BENCH_DIR / "wrk" / "report.lua")]
    argv.append(f"http://127.0.0.1:{port}{sc.path}")
    if sc.tokens == "pool":
        argv += ["--", str(prep.pool)]
    return argv


def run_wrk(argv: list[str], seconds: float) -> dict:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):])
    raise RuntimeError(f"wrk printed no result (exit {out.returncode}):\n{out.stdout}\n{out.stderr}")


_CACHE_METRIC = re.compile(r'^gateway_auth_token_cache_total\{result="(hit|miss)"\} (\S+)$', re.M)


def token_cache_counts(admin_port: int) -> dict[str, int]:
    """The gateway's verified-token cache counters (zeros when it has no auth block)."""
    _, _, body = http_get(admin_port, "/metrics")
    counts = {"hit": 0, "miss": 0}
    for result, value in _CACHE_METRIC.findall(body.decode()):
        counts[result] = int(float(value))
    return counts


_SHADOW_METRIC = re.compile(r'^gateway_shadow_(requests|skipped)_total\{([^}]*)\} (\S+)$', re.M)
_LABEL = re.compile(r'([a-z_]+)="([^"]*)"')
# The shadow row's max_in_flight (templates/gateway-shadow.yaml).
SHADOW_MAX_IN_FLIGHT = 64


def shadow_counts(admin_port: int, route: str | None = None) -> dict[str, dict[str, int]]:
    """The gateway's shadow counters, of one route or summed over all:
    {"requests": {result: n}, "skipped": {reason: n}}."""
    _, _, body = http_get(admin_port, "/metrics")
    counts: dict[str, dict[str, int]] = {"requests": {}, "skipped": {}}
    for family, labels, value in _SHADOW_METRIC.findall(body.decode()):
        label = dict(_LABEL.findall(labels))
        if route is not None and label.get("route") != route:
            continue
        key = label.get("result" if family == "requests" else "reason", "")
        counts[family][key] = counts[family].get(key, 0) + int(float(value))
    return counts


def slow_origin_stats(port: int) -> dict[str, int]:
    """bench/slow_origin.py's counters; reading them starts a new `peak_in_flight`."""
    _, _, body = http_get(port, slow_origin.STATS_PATH)
    return json.loads(body)


def shadow_figures(before: tuple[dict, dict], after: tuple[dict, dict]) -> dict:
    """What the shadow did between two readings of (slow origin stats, gateway shadow counts):
    copies that reached the slow upstream and were answered, the most open at once, the
    gateway's verdicts and skips."""
    (stats0, gw0), (stats1, gw1) = before, after

    def delta(family: str) -> dict[str, int]:
        return {k: v - gw0[family].get(k, 0) for k, v in sorted(gw1[family].items()) if v - gw0[family].get(k, 0)}

    return {
        "copies": stats1["shadow_copies"] - stats0["shadow_copies"],
        "answered": stats1["answered"] - stats0["answered"],
        "peak_in_flight": stats1["peak_in_flight"],
        "verdicts": delta("requests"),
        "skipped": delta("skipped"),
    }


def measure(r: int, sc: Scenario, row: str, proc: Proc, port: int,
            prep: render.Prepared, s: Settings) -> Run:
    if s.warmup > 0:
        run_wrk(wrk_argv(sc, port, s.warmup, prep, s), s.warmup)
    admin = getattr(prep.ports, row.replace("-", "_") + "_admin", None)
    cache_before = token_cache_counts(admin) if admin else None
    shadow_before = ((slow_origin_stats(prep.ports.slow_origin), shadow_counts(admin))
                     if row == "gateway-shadow" else None)
    pids = proc.refresh_tree()
    reset = reset_peak_rss(pids)
    before = cpu_ticks(pids)
    res = run_wrk(wrk_argv(sc, port, s.duration, prep, s), s.duration)
    after = cpu_ticks(pids)
    rss = peak_rss_kib(pids)
    cache = None
    if admin and cache_before is not None:
        cache_after = token_cache_counts(admin)
        cache = {k: cache_after[k] - cache_before[k] for k in cache_after}
    shadow = None
    if shadow_before is not None:
        shadow = shadow_figures(shadow_before, (slow_origin_stats(prep.ports.slow_origin), shadow_counts(admin)))
    if not proc.alive():
        raise RuntimeError(f"{row} died during the run:\n{proc.log_tail()}")
    n = res["requests"]
    secs = res["duration_us"] / 1e6
    lat = res["latency_us"]
    return Run(
        round=r, scenario=sc.name, row=row, requests=n, seconds=secs,
        rps=n / secs if secs else 0.0,
        p50_us=lat["p50"], p99_us=lat["p99"], p999_us=lat["p999"],
        errors=res["errors"],
        cpu_us_per_req=(after - before) * 1e6 / CLK_TCK / n if n else float("nan"),
        peak_rss_mib=rss / 1024, rss_reset=reset, token_cache=cache, shadow=shadow,
    )


# --------------------------------------------------------------------------------------------
# Figures: ratios within each round, medians over rounds, targets.


def median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def sum_counts(dicts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


def summarize(runs: list[Run]) -> dict:
    """{scenario: {row: medians and per-round ratios}}."""
    out: dict[str, dict[str, dict]] = {}
    by_key = {(x.round, x.scenario, x.row): x for x in runs}
    rounds = sorted({x.round for x in runs})
    for sc in SCENARIOS:
        rows = sorted({x.row for x in runs if x.scenario == sc.name}, key=ROWS.index)
        if not rows:
            continue
        table: dict[str, dict] = {}
        for row in rows:
            mine = [by_key[(r, sc.name, row)] for r in rounds if (r, sc.name, row) in by_key]

            def ratio(ref: str, attr: str) -> list[float]:
                vals = []
                for x in mine:
                    base = by_key.get((x.round, sc.name, ref))
                    if base and getattr(base, attr):
                        vals.append(getattr(x, attr) / getattr(base, attr))
                return vals

            table[row] = {
                "rounds": len(mine),
                "valid": all(x.valid for x in mine),
                "rps": median([x.rps for x in mine]),
                "p50_us": median([x.p50_us for x in mine]),
                "p99_us": median([x.p99_us for x in mine]),
                "cpu_us_per_req": median([x.cpu_us_per_req for x in mine]),
                "peak_rss_mib": median([x.peak_rss_mib for x in mine]),
                "errors": {k: sum(x.errors.get(k, 0) for x in mine) for k in mine[0].errors},
                "rps_vs_nginx": median(ratio("nginx", "rps")),
                "rps_vs_haproxy_jwt": median(ratio("haproxy-jwt", "rps")),
                "cpu_vs_nginx": median(ratio("nginx", "cpu_us_per_req")),
                "cpu_vs_pingora_bare": median(ratio("pingora-bare", "cpu_us_per_req")),
                "p99_vs_nginx": median(ratio("nginx", "p99_us")),
                "p99_vs_plain": median(ratio("gateway-plain", "p99_us")),
            }
            if any(x.shadow for x in mine):
                table[row]["shadow"] = {
                    "copies": sum(x.shadow["copies"] for x in mine if x.shadow),
                    "peak_in_flight": max(x.shadow["peak_in_flight"] for x in mine if x.shadow),
                    "verdicts": sum_counts([x.shadow["verdicts"] for x in mine if x.shadow]),
                    "skipped": sum_counts([x.shadow["skipped"] for x in mine if x.shadow]),
                }
        out[sc.name] = table
    return out


@dataclass
class Target:
    text: str
    scenario: str
    rows: tuple[str, ...]
    key: str
    op: str  # ">=" or "<="
    bound: float
    unit: str = "×"


TARGETS = [
    Target("plain gateway req/s ≥ 1.0× nginx (64 conns)", "c64", ("gateway-plain",), "rps_vs_nginx", ">=", 1.0),
    Target("plain gateway CPU/request ≤ nginx's (64 conns)", "c64", ("gateway-plain",), "cpu_vs_nginx", "<=", 1.0),
    Target("policy path, reused token ≥ 0.8× nginx req/s (64 conns)", "c64", ("gateway-policy",), "rps_vs_nginx", ">=", 0.8),
    Target("policy path, reused token ≥ 3× HAProxy-JWT req/s (64 conns)", "c64", ("gateway-policy",), "rps_vs_haproxy_jwt", ">=", 3.0),
    Target("policy path, distinct tokens ≥ 1.0× HAProxy-JWT req/s (64 conns)", "c64-pool", ("gateway-policy",), "rps_vs_haproxy_jwt", ">=", 1.0),
    Target("plain gateway p99 ≤ 1.2× nginx's p99 (8 conns)", "c8", ("gateway-plain",), "p99_vs_nginx", "<=", 1.2),
    Target("policy path p99 ≤ 1.2× nginx's p99 (8 conns)", "c8", ("gateway-policy",), "p99_vs_nginx", "<=", 1.2),
    # 64 MB as the issue states it, compared in MiB (what /proc reports): 61.04 MiB.
    Target("gateway peak RSS ≤ 64 MB (61.0 MiB) under 64-connection load (max over the plain and policy rows, c64 scenarios)",
           "c64*", ("gateway-plain", "gateway-policy"), "peak_rss_mib", "<=", 64e6 / 2**20, " MiB"),
    # Issue 19: a shadow that sleeps 3 s leaves the client's p99 within 10% of a run without one.
    Target("slow shadow (3 s): client p99 ≤ 1.10× the plain route's (64 conns)", "c64-shadow",
           ("gateway-shadow",), "p99_vs_plain", "<=", 1.10),
]


def evaluate(summary: dict) -> list[dict]:
    results = []
    for t in TARGETS:
        scenarios = [k for k in summary if k.startswith(t.scenario[:-1])] if t.scenario.endswith("*") else [t.scenario]
        cells = [summary.get(sc, {}).get(row) for sc in scenarios for row in t.rows]
        cells = [c for c in cells if c is not None]
        values = [c[t.key] for c in cells if c[t.key] is not None]
        if not values:
            verdict, value = "n/a", None
        else:
            value = max(values) if t.op == "<=" else min(values)
            ok = value >= t.bound if t.op == ">=" else value <= t.bound
            verdict = "PASS" if ok else "MISS"
            if not all(c["valid"] for c in cells):
                verdict = "INVALID"
        results.append({"target": t.text, "value": value, "bound": t.bound, "op": t.op,
                        "unit": t.unit, "verdict": verdict})
    return results


def fmt(v, spec: str, dash: str = "–") -> str:
    return dash if v is None else format(v, spec)


def shadow_line(row: str, sh: dict) -> str:
    """What the shadow did over a row's measured runs, under its scenario's table."""
    peak = f"{sh['peak_in_flight']} (max_in_flight {SHADOW_MAX_IN_FLIGHT})"
    if sh["peak_in_flight"] > SHADOW_MAX_IN_FLIGHT:
        peak = f"**{peak}: over max_in_flight**"
    counts = lambda d: ", ".join(f"{k} {v:,}" for k, v in d.items()) or "none"  # noqa: E731
    return (f"{ROW_TITLES[row]}: {sh['copies']:,} copies reached the slow upstream, at most {peak} open at "
            f"once; verdicts: {counts(sh['verdicts'])}; skipped: {counts(sh['skipped'])} "
            "(over the measured runs; copies still open when a run ended are counted in the next reading).")


def markdown(meta: dict, summary: dict, targets: list[dict]) -> str:
    lines = [f"# Proxy benchmark {meta['started']}", ""]
    lines.append(
        f"{meta['rounds']} round(s) × {meta['duration_s']:g}s per row (+{meta['warmup_s']:g}s warm-up), "
        f"proxy on CPU {meta['proxy_cpu']}, wrk + origin on CPU {meta['load_cpu']}; "
        f"token {meta['token_bytes']} bytes, pool of {meta['pool_size']} tokens. "
        f"Medians over rounds; ratios computed within each round."
    )
    lines += ["", f"Machine: {meta['cpu_model']} × {meta['cpus']}, kernel {meta['kernel']}; "
              f"load average at start {meta['loadavg_start']}. Versions: " +
              ", ".join(f"{k} {v}" for k, v in meta["versions"].items()), ""]
    if meta.get("noisy"):
        lines += [f"**Warning:** {meta['noisy']}", ""]
    for sc in SCENARIOS:
        if sc.name not in summary:
            continue
        extra = " p99 × plain |" if sc.p99_vs_plain else ""
        lines += [f"## {sc.name}: {sc.title}", "",
                  "| row | req/s | × nginx | × HAProxy-JWT | p50 ms | p99 ms |" + extra + " CPU µs/req "
                  "| CPU × bare pingora | peak RSS MiB | errors |",
                  "|---|---:|---:|---:|---:|---:|" + ("---:|" if extra else "") + "---:|---:|---:|---|"]
        for row, c in summary[sc.name].items():
            errs = ", ".join(f"{k} {v}" for k, v in c["errors"].items() if v) or "0"
            if not c["valid"]:
                errs = "**INVALID** " + errs
            lines.append(
                f"| {ROW_TITLES[row]} | {fmt(c['rps'], ',.0f')} | {fmt(c['rps_vs_nginx'], '.2f')} | "
                f"{fmt(c['rps_vs_haproxy_jwt'], '.2f')} | {fmt(c['p50_us'] and c['p50_us'] / 1000, '.2f')} | "
                f"{fmt(c['p99_us'] and c['p99_us'] / 1000, '.2f')} |"
                + (f" {fmt(c.get('p99_vs_plain'), '.2f')} |" if extra else "")
                + f" {fmt(c['cpu_us_per_req'], '.1f')} | "
                f"{fmt(c.get('cpu_vs_pingora_bare'), '.2f')} | {fmt(c['peak_rss_mib'], '.1f')} | {errs} |"
            )
        lines.append("")
        for row, c in summary[sc.name].items():
            if c.get("shadow"):
                lines += [shadow_line(row, c["shadow"]), ""]
    lines += ["## Targets", "", "| target | median | verdict |", "|---|---:|---|"]
    for t in targets:
        v = fmt(t["value"], ".2f")
        lines.append(f"| {t['target']} | {v}{t['unit'] if t['value'] is not None else ''} "
                     f"(bound {t['op']} {t['bound']:g}) | {t['verdict']} |")
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def version_of(argv: list[str], pattern: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "missing"
    m = re.search(pattern, out.stdout + out.stderr)
    return m.group(1) if m else "unknown"


def machine_meta(s: Settings, prep: render.Prepared) -> dict:
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load1 = float(Path("/proc/loadavg").read_text().split()[0])
    git_rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "started": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "rounds": s.rounds, "duration_s": s.duration, "warmup_s": s.warmup,
        "pool_size": s.pool_size, "proxy_cpu": s.proxy_cpu, "load_cpu": s.load_cpu,
        "token_bytes": len(prep.token),
        "cpus": os.cpu_count(), "cpu_model": cpu_model, "kernel": platform.release(),
        "loadavg_start": load1,
        "noisy": (f"the 1-minute load average was {load1:.1f} when the run started: other work "
                  "shared the CPUs, so these figures are noise") if load1 > 0.5 else None,
        "versions": {
            "gateway": f"{git_rev}{'-dirty' if dirty else ''}",
            "nginx": version_of(["nginx", "-v"], r"nginx/(\S+)"),
            "haproxy": version_of(["haproxy", "-v"], r"version (\S+)"),
            "wrk": version_of(["wrk", "-v"], r"wrk (?:debian/)?(\S+)"),
        },
    }


def main() -> int:
    s = Settings.from_env()
    for tool in ("wrk", "nginx", "haproxy", "taskset"):
        if not shutil.which(tool):
            print(f"bench: `{tool}` is not installed (bench/run.sh installs it)", file=sys.stderr)
            return 2
    scenarios = [sc for sc in SCENARIOS if sc.name in s.scenarios]
    rows_needed = [r for r in ROWS if r in s.rows and any(r in sc.rows for sc in scenarios)]
    need_pool = any(sc.tokens == "pool" for sc in scenarios)
    for missing in missing_binaries(rows_needed, s):
        print(f"bench: {missing}", file=sys.stderr)
        return 2

    work = s.out_dir / "work"
    t0 = time.monotonic()
    prep = render.prepare(work, render.allocate_ports(), s.pool_size if need_pool else 0)
    (work / "pool-run.lua").write_text(
        (BENCH_DIR / "wrk" / "pool.lua").read_text() + "\n" + (BENCH_DIR / "wrk" / "report.lua").read_text()
    )
    pool_token = prep.pool.read_text().split("\n", 1)[0] if prep.pool else None
    print(f"bench: keys, {s.pool_size if need_pool else 0} pool tokens and configs ready in "
          f"{time.monotonic() - t0:.1f}s (work dir {work})", flush=True)
    meta = machine_meta(s, prep)
    if meta["noisy"]:
        print(f"bench: WARNING: {meta['noisy']}", flush=True)

    procs: dict[str, Proc] = {}
    runs: list[Run] = []

    def on_signal(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        env = dict(os.environ)
        if "gateway-policy" in rows_needed:
            # The policy row exports 1% of its traces: to a real OTLP receiver, on the load core.
            procs["otlp-receiver"] = Proc("otlp-receiver", [
                "taskset", "-c", s.load_cpu, str(s.otlp_receiver_bin),
                "--grpc", f"127.0.0.1:{prep.ports.otlp_grpc}",
                "--http", f"127.0.0.1:{prep.ports.otlp_http}",
                "--out", str(work / "logs" / "spans.jsonl"),
            ], work / "logs" / "otlp-receiver.log", env)
        if "gateway-shadow" in rows_needed:
            # The shadow row's `slow` upstream, on the load core next to the origin.
            procs["slow-origin"] = Proc("slow-origin", [
                "taskset", "-c", s.load_cpu, sys.executable, str(BENCH_DIR / "slow_origin.py"),
                "--listen", f"127.0.0.1:{prep.ports.slow_origin}", "--delay", str(render.SLOW_ORIGIN_DELAY),
            ], work / "logs" / "slow-origin.log", env)
            wait_ready(prep.ports.slow_origin, slow_origin.STATS_PATH, {}, procs["slow-origin"])
        for row in ["origin", *[r for r in rows_needed if r != "origin"]]:
            procs[row] = Proc(row, command_for(row, prep, s), work / "logs" / f"{row}.log", env)
        auth = {"Authorization": f"Bearer {prep.token}"}
        for row, proc in procs.items():
            if row in ("otlp-receiver", "slow-origin"):
                continue
            port = prep.ports.of_row(row)
            wait_ready(port, render.SMALL_PATH, auth, proc)
            notes = preflight(row, port, prep, pool_token)
            print(f"bench: {row} ready on 127.0.0.1:{port}" + (f" ({'; '.join(notes)})" if notes else ""), flush=True)

        total = sum(len([r for r in sc.rows if r in rows_needed]) for sc in scenarios) * s.rounds
        done = 0
        for r in range(1, s.rounds + 1):
            for sc in scenarios:
                rows = [x for x in sc.rows if x in rows_needed]
                k = (r - 1) % len(rows)  # rotate the order each round
                for row in rows[k:] + rows[:k]:
                    run = measure(r, sc, row, procs[row], prep.ports.of_row(row), prep, s)
                    runs.append(run)
                    done += 1
                    print(f"bench: [{done}/{total}] round {r} {sc.name:8} {row:15} "
                          f"{run.rps:>10,.0f} req/s  p99 {run.p99_us / 1000:7.2f} ms  "
                          f"{run.cpu_us_per_req:6.1f} µs/req  {run.peak_rss_mib:6.1f} MiB"
                          + (f"  token cache {run.token_cache}" if run.token_cache and any(run.token_cache.values()) else "")
                          + (f"  shadow {run.shadow}" if run.shadow else "")
                          + ("" if run.valid else f"  INVALID {run.errors}"), flush=True)
    except KeyboardInterrupt:
        print("bench: interrupted; stopping", file=sys.stderr)
        return 130
    finally:
        for proc in procs.values():
            proc.stop()

    summary = summarize(runs)
    targets = evaluate(summary)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    s.out_dir.mkdir(parents=True, exist_ok=True)
    md = markdown(meta, summary, targets)
    doc = {"meta": meta, "summary": summary, "targets": targets,
           "runs": [run.__dict__ | {"valid": run.valid} for run in runs],
           "scenarios": {sc.name: sc.title for sc in scenarios},
           "rows": {r: ROW_TITLES[r] for r in rows_needed}}
    (s.out_dir / f"{stamp}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (s.out_dir / f"{stamp}.md").write_text(md)
    print()
    print(md)
    print(f"bench: written {s.out_dir / (stamp + '.json')} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
