"""The `slow` upstream of the `gateway-shadow` row: an HTTP/1.1 origin that answers every request
after a fixed delay (3 s in the benchmark), with the same ~100-byte body as the real origin, so a
shadow copy that waits it out is compared and matches.

    .venv/bin/python bench/slow_origin.py --listen 127.0.0.1:9100 --delay 3
    curl -s localhost:9100/api/v1/orders/42            # after 3 s
    curl -s localhost:9100/__bench/stats               # at once

`GET /__bench/stats` answers at once with what it has seen, as JSON:
`{"received", "answered", "shadow_copies", "in_flight", "peak_in_flight"}`: requests received
and answered (the stats themselves not counted), how many of them carried `X-Gateway-Shadow`,
how many are waiting now, and the most that waited at once since the previous stats request
(each stats request starts a new peak). The harness reads it around each measured run: the
copies that reached the shadow, and that no more than `max_in_flight` of them were ever open.

asyncio, one process, one thread: a waiting request costs a timer, not a thread. Keep-alive
as in HTTP/1.1 (closed on `Connection: close`, or HTTP/1.0 without keep-alive). Request bodies
are read by `Content-Length`; a chunked request body is refused (501, connection closed): the
benchmark copies only GETs. SIGTERM or SIGINT stops it (exit 0). Started and stopped by the
harness, by PID, like every other process of the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import render  # noqa: E402

STATS_PATH = "/__bench/stats"
MAX_HEAD = 64 * 1024


@dataclass
class Stats:
    received: int = 0
    answered: int = 0
    shadow_copies: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0


def response(status: str, body: bytes, content_type: str, close: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
        f"connection: {'close' if close else 'keep-alive'}\r\n\r\n"
    )
    return head.encode() + body


def parse_head(raw: bytes) -> tuple[str, str, str, dict[str, str]]:
    """(method, target, version, headers with lowercase names); ValueError when malformed."""
    lines = raw.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ")
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"header line without a colon: {line!r}")
        headers[name.strip().lower()] = value.strip()
    return method, target, version, headers


class SlowOrigin:
    def __init__(self, delay: float, body: bytes):
        self.delay = delay
        self.body = body
        self.stats = Stats()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self.one_request(reader, writer):
                pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # the peer went away, or sent a head over MAX_HEAD
        finally:
            writer.close()

    async def one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serves one request; True when the connection stays open for the next."""
        raw = await reader.readuntil(b"\r\n\r\n")
        try:
            method, target, version, headers = parse_head(raw[:-4])
        except ValueError:
            writer.write(response("400 Bad Request", b"", "text/plain", close=True))
            await writer.drain()
            return False
        connection = headers.get("connection", "").lower()
        close = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            writer.write(response("501 Not Implemented", b"", "text/plain", close=True))
            await writer.drain()
            return False
        length = int(headers.get("content-length", "0") or "0")
        if length:
            await reader.readexactly(length)
        if method == "GET" and target == STATS_PATH:
            body = json.dumps(asdict(self.stats)).encode()
            self.stats.peak_in_flight = self.stats.in_flight
            writer.write(response("200 OK", body, "application/json", close))
            await writer.drain()
            return not close
        s = self.stats
        s.received += 1
        s.shadow_copies += "x-gateway-shadow" in headers
        s.in_flight += 1
        s.peak_in_flight = max(s.peak_in_flight, s.in_flight)
        try:
            await asyncio.sleep(self.delay)
            writer.write(response("200 OK", b"" if method == "HEAD" else self.body, "application/json", close))
            await writer.drain()
            s.answered += 1
        finally:
            s.in_flight -= 1
        return not close


async def main_async(host: str, port: int, delay: float) -> None:
    origin = SlowOrigin(delay, render.SMALL_BODY.encode())
    server = await asyncio.start_server(origin.serve, host, port, limit=MAX_HEAD, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"slow origin listening on http://{host}:{port}, answering after {delay:g}s", flush=True)
    await stop.wait()
    server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description="An origin that answers every request after a delay")
    parser.add_argument("--listen", default="127.0.0.1:9100", help="host:port")
    parser.add_argument("--delay", type=float, default=3.0, help="seconds before each answer")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit() or args.delay < 0:
        parser.error("--listen is host:port and --delay a number of seconds >= 0")
    asyncio.run(main_async(host, int(port), args.delay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
