"""Test helpers: gateway identity headers, and real local HTTP servers standing in for the
notifications service and the auth-service's JWKS endpoint."""

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ALICE = "3f0c8a4e-0000-4000-8000-00000000a11c"
BOB = "3f0c8a4e-0000-4000-8000-000000000b0b"
ADMIN = "3f0c8a4e-0000-4000-8000-0000000ad111"


def gateway_headers(subject: str, email: str = "", roles: str = "user", **extra) -> dict:
    """Django test-client kwargs for a request the gateway forwarded (peer 127.0.0.1 by default)."""
    headers = {"HTTP_X_USER_ID": subject, "HTTP_X_USER_EMAIL": email or f"{subject[-4:]}@example.com"}
    if roles is not None:
        headers["HTTP_X_USER_ROLES"] = roles
    headers.update(extra)
    return headers


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


Responder = Callable[[Recorded, int], tuple[int, dict, bytes]]


@dataclass
class LocalHTTPServer:
    """A real HTTP server on 127.0.0.1:<ephemeral> in a background thread. `responder(request,
    n)` answers the n-th request (0-based) with (status, headers, body); every request is
    recorded. Use as a context manager: it stops (and joins its thread) on exit."""

    responder: Responder
    requests: list[Recorded] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> "LocalHTTPServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                recorded = Recorded(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                with server._lock:
                    index = len(server.requests)
                    server.requests.append(recorded)
                status, headers, body = server.responder(recorded, index)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            do_GET = do_POST = _serve

            def log_message(self, format, *args) -> None:  # keep test output clean
                pass

        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()  # unblock handlers that wait on it (slow-server tests)
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"


def json_response(status: int, payload) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def closed_port_url() -> str:
    """The URL of a port nothing listens on (bound, then released: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
