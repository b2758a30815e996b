"""Instructions per request, counted by callgrind: the noise-free companion of `harness.py`.

Wall-clock figures on a shared 2-core machine move by ±10% between rounds; an instruction count
for the same binary, config and requests moves by under 0.5%. This is how a change to the hot
path is judged before it is benchmarked:

    .venv/bin/python bench/instructions.py                 # pingora-bare, gateway-plain, gateway-policy
    .venv/bin/python bench/instructions.py gateway-plain   # one row
    .venv/bin/python bench/instructions.py gateway-plain gateway-shadow-copy   # a shadow on
    INSTR_REQUESTS=5000 INSTR_TOP=25 .venv/bin/python bench/instructions.py gateway-plain

For each row: the origin (nginx) starts, the row starts under `valgrind --tool=callgrind`
with instrumentation off, a warm-up of requests runs (connections, caches, the verified-token
cache, lazy statics), then instrumentation is switched on for exactly INSTR_REQUESTS requests
sent over one keep-alive connection (the same bytes wrk sends: `Host` and the bearer token),
switched off and dumped. Instructions per request = the dump's total ÷ requests. Everything the process does in
that window counts, background threads included (the access-log writer, the OTLP exporter), so
the figure is the request's whole cost, as CPU µs/request is in the harness.

`gateway-shadow-copy` runs only when named: the plain route with a shadow at its defaults, to a
second name for the same origin, so every request is also copied and compared (`match`). Copies
finish after the client's answer, so the row waits for the warm-up's verdicts before the window
and, after it, for one `match` per request in the route's `gateway_shadow_requests_total`; any
skip or other verdict fails the row, rather than report a figure that copied nothing.

The release binaries are used as built (`bench/run.sh` builds them; `GATEWAY_BIN` and
`BARE_PINGORA_BIN` choose others). Output files stay in `bench/results/work/callgrind/` for
`callgrind_annotate`. Each row takes 10–20 seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import render  # noqa: E402

ROWS = ["pingora-bare", "gateway-plain", "gateway-policy"]  # the default
KNOWN_ROWS = ROWS + list(harness.INSTRUCTIONS_ONLY_ROWS)
# The shadowed route of gateway-shadow-copy (templates/gateway-shadow-copy.yaml).
SHADOW_COPY_ROUTE = "copied"
# How long copies may take to get their verdicts after the last request's answer, under callgrind.
COPY_SETTLE_LIMIT = 60.0
_TOTALS = re.compile(r"^totals:\s+(\d+)", re.M)


def request_bytes(port: int, token: str, path: str = render.SMALL_PATH) -> bytes:
    """What wrk sends for one request."""
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\n\r\n").encode()


def read_response(sock: socket.socket, buf: bytearray) -> int:
    """Reads one Content-Length-framed response off `sock`; returns its status."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before a response head")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    m = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    if not m:
        raise ValueError(f"response without Content-Length: {head[:200]!r}")
    need = int(m.group(1))
    body = bytearray(rest)
    while len(body) < need:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed mid-body")
        body += chunk
    buf[:] = body[need:]
    return status


def send_requests(sock: socket.socket, port: int, token: str, n: int) -> None:
    """`n` requests, one at a time, on the keep-alive connection `sock`; each must get 200."""
    req = request_bytes(port, token)
    buf = bytearray()
    for i in range(n):
        sock.sendall(req)
        status = read_response(sock, buf)
        if status != 200:
            raise RuntimeError(f"request {i + 1} of {n} answered {status}")
        if buf:
            raise RuntimeError(f"request {i + 1} of {n}: bytes after the response")


def callgrind_total(out: Path) -> int:
    m = _TOTALS.search(out.read_text(errors="replace"))
    if not m:
        raise RuntimeError(f"no totals in {out}")
    return int(m.group(1))


def annotated(dump: Path, inclusive: bool) -> list[tuple[int, str]]:
    """`callgrind_annotate`'s per-function lines of `dump`: (instructions, function), costliest
    first, without the PROGRAM TOTALS line."""
    out = subprocess.run(["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}",
                          str(dump)], capture_output=True, text=True, check=False).stdout
    lines = []
    for ln in out.splitlines():
        m = re.match(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", ln)
        if m and "PROGRAM TOTALS" not in ln:
            lines.append((int(m.group(1).replace(",", "")), m.group(2)))
    return lines


def print_top(dump: Path, top: int, requests: int) -> None:
    """The `top` functions by their own (exclusive) instructions, per request."""
    for count, function in annotated(dump, inclusive=False)[:top]:
        print(f"    {count / requests:>9,.0f}  {function[:150]}")


def software_sha256(dump: Path) -> int:
    """Instructions spent in `sha2`'s SHA-256 compression (inclusive).

    valgrind does not emulate the SHA-NI instructions, so under callgrind `sha2` takes its
    portable path: ~45,000 instructions for the 713-byte token the verified-token cache hashes
    (and a few for the Redis limiter's bucket keys, when configured), where the native run
    (SHA-NI on this machine's CPU) spends about a microsecond. Reported apart so the figure is
    not mistaken for a cost of the real process.
    """
    return next((count for count, function in annotated(dump, inclusive=True)
                 if "sha2::sha256::compress256 [" in function), 0)


def settled(counts: dict[str, dict[str, int]]) -> int:
    """Requests whose copy is over: a verdict, or skipped."""
    return sum(counts["requests"].values()) + sum(counts["skipped"].values())


def wait_for_copies(admin_port: int, at_least: int, limit: float = COPY_SETTLE_LIMIT,
                    route: str = SHADOW_COPY_ROUTE) -> dict[str, dict[str, int]]:
    """The route's shadow counters once `at_least` copies are over (they finish after the
    client's answer), or the last reading after `limit` seconds: `check_copies` judges it."""
    last = {}

    def over():
        last["counts"] = harness.shadow_counts(admin_port, route)
        return last["counts"] if settled(last["counts"]) >= at_least else None

    try:
        return harness.poll(f"{at_least} copies over", limit, over)
    except RuntimeError:
        if "counts" not in last:
            raise
        return last["counts"]


def check_copies(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]],
                 requests: int) -> str:
    """Every request of the window was copied and matched; raises otherwise, so the row's figure
    never measures a shadow that copied nothing (a skip: same_upstream, in_flight, ...)."""

    def grown(family: str) -> dict[str, int]:
        return {k: v - before[family].get(k, 0) for k, v in after[family].items()
                if v != before[family].get(k, 0)}

    verdicts, skipped = grown("requests"), grown("skipped")
    matched = verdicts.pop("match", 0)
    problems = []
    if skipped:
        problems.append(f"skipped {skipped}")
    if verdicts:
        problems.append(f"verdicts other than match {verdicts}")
    if abs(matched - requests) > requests // 100:
        problems.append(f"{matched} matches")
    if problems:
        raise RuntimeError(f"gateway-shadow-copy: {requests} requests, {'; '.join(problems)}: the "
                           "figure counts one copy per request, each a match, or it measures nothing")
    return f"{matched:,} copies matched"


def measure_row(row: str, prep: render.Prepared, s: harness.Settings, out_dir: Path,
                requests: int, warmup: int, env: dict[str, str]) -> tuple[Path, str]:
    """Runs `row` under callgrind for the window; returns its one dump and a note (what the
    window's copies did, for gateway-shadow-copy)."""
    out = out_dir / f"{row}.callgrind.out"
    for old in out_dir.glob(f"{row}.callgrind.out*"):
        old.unlink()
    argv = harness.command_for(row, prep, s)
    argv = argv[3:] if argv[0] == "taskset" else argv  # valgrind serialises threads anyway
    proc = harness.Proc(row, [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
        *argv,
    ], prep.work / "logs" / f"{row}.callgrind.log", env)
    try:
        port = prep.ports.of_row(row)
        auth = {"Authorization": f"Bearer {prep.token}"}
        harness.wait_ready(port, render.SMALL_PATH, auth, proc, limit=120.0)

        def control(*args: str) -> None:
            # Through vgdb; bounded, so a machine where it cannot attach fails instead of hanging.
            subprocess.run(["callgrind_control", *args, str(proc.p.pid)], check=True,
                           capture_output=True, timeout=60)

        copies = row == "gateway-shadow-copy"
        admin = prep.ports.gateway_shadow_copy_admin
        note = ""
        # The connection is opened before and closed after the window: it holds requests only.
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            send_requests(sock, port, prep.token, warmup)
            # The readiness probe's and the warm-up's copies end before the window; a copy
            # still under way when it closes (the last one or two) ends after it.
            before = wait_for_copies(admin, warmup + 1) if copies else None
            control("-i", "on")
            send_requests(sock, port, prep.token, requests)
            control("-i", "off")
        control("-d")
        if before is not None:
            note = check_copies(before, wait_for_copies(admin, settled(before) + requests), requests)
    finally:
        proc.stop()
    dumps = sorted(out_dir.glob(f"{row}.callgrind.out.*"))  # the `-d` dump (`.1`)
    if len(dumps) != 1:
        raise RuntimeError(f"expected one callgrind dump for {row}, found {[d.name for d in dumps]}")
    return dumps[0], note


def main() -> int:
    rows = sys.argv[1:] or ROWS
    unknown = [r for r in rows if r not in KNOWN_ROWS]
    if unknown:
        print(f"instructions: unknown row(s) {unknown}; rows: {KNOWN_ROWS} (default {ROWS})",
              file=sys.stderr)
        return 2
    for tool in ("valgrind", "callgrind_control", "nginx"):
        if not shutil.which(tool):
            print(f"instructions: `{tool}` is not installed", file=sys.stderr)
            return 2
    s = harness.Settings.from_env()
    missing = harness.missing_binaries(rows, s)
    if missing:
        for m in missing:
            print(f"instructions: {m}", file=sys.stderr)
        print("instructions: bench/run.sh builds them; GATEWAY_BIN / BARE_PINGORA_BIN / "
              "OTLP_RECEIVER_BIN choose others", file=sys.stderr)
        return 2

    def on_signal(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    requests = int(os.environ.get("INSTR_REQUESTS", "2000"))
    warmup = int(os.environ.get("INSTR_WARMUP", "500"))
    top = int(os.environ.get("INSTR_TOP", "0"))
    work = s.out_dir / "work"
    out_dir = work / "callgrind"
    out_dir.mkdir(parents=True, exist_ok=True)
    prep = render.prepare(work, render.allocate_ports())
    env = dict(os.environ)
    helpers = {"origin": harness.Proc("origin", harness.command_for("origin", prep, s),
                                      work / "logs" / "origin.log", env)}
    if "gateway-policy" in rows:
        helpers["otlp-receiver"] = harness.Proc("otlp-receiver", [
            str(s.otlp_receiver_bin), "--grpc", f"127.0.0.1:{prep.ports.otlp_grpc}",
            "--http", f"127.0.0.1:{prep.ports.otlp_http}", "--out", os.devnull,
        ], work / "logs" / "otlp-receiver.log", env)
    figures = {}
    try:
        harness.wait_ready(prep.ports.origin, render.SMALL_PATH, {}, helpers["origin"])
        for row in rows:
            t0 = time.monotonic()
            dump, note = measure_row(row, prep, s, out_dir, requests, warmup, env)
            figures[row] = callgrind_total(dump) / requests
            sha = software_sha256(dump) / requests
            print(f"instructions: {row:19} {figures[row]:>10,.0f} instructions/request "
                  f"({requests} requests, {time.monotonic() - t0:.0f}s)"
                  + (f"; of which {sha:,.0f} software SHA-256 (SHA-NI natively)" if sha else "")
                  + (f"; {note}" if note else ""),
                  flush=True)
            if top:
                print_top(dump, top, requests)
    except KeyboardInterrupt:
        return 130
    finally:
        for proc in helpers.values():
            proc.stop()
    if "pingora-bare" in figures:
        base = figures["pingora-bare"]
        for row, v in figures.items():
            print(f"instructions: {row:19} {v / base:5.2f}× bare pingora")
    return 0


if __name__ == "__main__":
    sys.exit(main())
