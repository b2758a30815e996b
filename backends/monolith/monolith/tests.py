"""Project-level behaviour: health, request ids, JSON logs, both authentication paths, gunicorn."""

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.test import SimpleTestCase, TestCase, override_settings
from rest_framework.test import APIClient

from users.models import User

from .jsonlog import JsonFormatter, RequestIdFilter
from .testing import ALICE, LocalHTTPServer, closed_port_url, gateway_headers, json_response

PROJECT_DIR = Path(__file__).resolve().parent.parent


class HealthAndHeadersTests(TestCase):
    def test_healthz_answers_ok_without_auth(self):
        response = self.client.get("/healthz")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"status": "ok"})
        self.assertEqual(response["X-Served-By"], "monolith")

    def test_a_well_formed_request_id_is_echoed(self):
        response = self.client.get("/healthz", HTTP_X_REQUEST_ID="req-abc.123_X")
        self.assertEqual(response["X-Request-ID"], "req-abc.123_X")

    def test_a_malformed_or_missing_request_id_is_replaced(self):
        for bad in ("has space", "x" * 129, "semi;colon", ""):
            with self.subTest(bad=bad):
                response = self.client.get("/healthz", HTTP_X_REQUEST_ID=bad)
                generated = response["X-Request-ID"]
                self.assertNotEqual(generated, bad)
                self.assertRegex(generated, r"^[0-9a-f]{32}$")
        self.assertRegex(self.client.get("/healthz")["X-Request-ID"], r"^[0-9a-f]{32}$")

    def test_unknown_paths_are_problem_json_with_the_request_id(self):
        response = self.client.get("/no/such/thing", HTTP_X_REQUEST_ID="rid-404")
        self.assertEqual(response.status_code, 404)
        self.assertEqual(response["Content-Type"], "application/problem+json")
        body = response.json()
        self.assertEqual(body["status"], 404)
        self.assertEqual(body["request_id"], "rid-404")
        self.assertEqual(response["X-Served-By"], "monolith")


class JsonLogTests(TestCase):
    def place_order_capturing_logs(self, **headers):
        """Places an order; returns the response and the JSON lines `orders.services` logged."""
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
        handler.addFilter(RequestIdFilter())
        target = logging.getLogger("orders.services")
        target.addHandler(handler)
        try:
            response = self.client.post(
                "/api/orders/",
                {"items": [{"sku": "A", "quantity": 1, "unit_price": "2.00"}]},
                content_type="application/json",
                **headers,
                **gateway_headers(ALICE),
            )
        finally:
            target.removeHandler(handler)
        return response, [json.loads(line) for line in stream.getvalue().splitlines()]

    def test_log_lines_are_json_and_carry_the_request_id(self):
        response, lines = self.place_order_capturing_logs(HTTP_X_REQUEST_ID="rid-logged-1")
        self.assertEqual(response.status_code, 201)
        placed = [line for line in lines if line["message"] == "order placed"]
        self.assertEqual(len(placed), 1, lines)
        self.assertEqual(placed[0]["request_id"], "rid-logged-1")
        self.assertEqual(placed[0]["order_id"], response.json()["id"])
        self.assertEqual(placed[0]["level"], "INFO")
        self.assertNotIn("trace_id", placed[0], "no traceparent, no trace id")

    def test_log_lines_carry_the_callers_trace_id(self):
        response, lines = self.place_order_capturing_logs(
            HTTP_X_REQUEST_ID="rid:logged+2",
            HTTP_TRACEPARENT="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        self.assertEqual(response.status_code, 201)
        self.assertEqual(response["X-Request-ID"], "rid:logged+2", "the gateway's id rule")
        placed = [line for line in lines if line["message"] == "order placed"]
        self.assertEqual(placed[0]["request_id"], "rid:logged+2")
        self.assertEqual(placed[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736")


class GatewayIdentityTests(TestCase):
    def test_identity_headers_from_a_trusted_peer_authenticate(self):
        response = self.client.get(
            "/api/users/me", **gateway_headers(ALICE, email="alice@example.com", roles="user, admin")
        )
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["id"], ALICE)
        self.assertEqual(response.json()["email"], "alice@example.com")
        self.assertEqual(response.json()["roles"], ["user", "admin"])
        user = User.objects.get(external_id=ALICE)
        self.assertFalse(user.has_usable_password())

    def test_ipv6_loopback_and_ipv4_mapped_peers_are_trusted_by_default(self):
        for peer in ("::1", "::ffff:127.0.0.1"):
            with self.subTest(peer=peer):
                response = self.client.get("/api/users/me", REMOTE_ADDR=peer, **gateway_headers(ALICE))
                self.assertEqual(response.status_code, 200)

    def test_identity_headers_from_an_untrusted_peer_are_ignored(self):
        with self.assertLogs("monolith.authentication", "WARNING") as logs:
            response = self.client.get("/api/users/me", REMOTE_ADDR="10.1.2.3", **gateway_headers(ALICE))
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response["Content-Type"], "application/problem+json")
        self.assertEqual(response["WWW-Authenticate"], 'Bearer realm="api"')
        self.assertIn("untrusted peer", logs.output[0])
        self.assertFalse(User.objects.filter(external_id=ALICE).exists())

    def test_trusted_gateways_is_configurable(self):
        import ipaddress

        with override_settings(TRUSTED_GATEWAYS=[ipaddress.ip_network("10.0.0.0/8")]):
            ok = self.client.get("/api/users/me", REMOTE_ADDR="10.1.2.3", **gateway_headers(ALICE))
            with self.assertLogs("monolith.authentication", "WARNING"):
                loopback = self.client.get("/api/users/me", **gateway_headers(ALICE))
        self.assertEqual(ok.status_code, 200)
        self.assertEqual(loopback.status_code, 401)

    def test_no_identity_is_401_problem_json(self):
        response = self.client.get("/api/orders/", HTTP_X_REQUEST_ID="rid-401")
        self.assertEqual(response.status_code, 401)
        body = response.json()
        self.assertEqual(body["type"], "urn:problem-type:monolith:unauthorized")
        self.assertEqual(body["request_id"], "rid-401")

    def test_malformed_identity_is_rejected(self):
        for headers in (
            gateway_headers("not a subject"),
            gateway_headers(ALICE, roles="user,<script>"),
        ):
            with self.subTest(headers=headers):
                self.assertEqual(self.client.get("/api/users/me", **headers).status_code, 401)

    def test_email_and_roles_follow_the_latest_request(self):
        self.client.get("/api/users/me", **gateway_headers(ALICE, email="a@example.com", roles="user"))
        self.client.get("/api/users/me", **gateway_headers(ALICE, email="b@example.com", roles="user,admin"))
        user = User.objects.get(external_id=ALICE)
        self.assertEqual((user.email, user.roles), ("b@example.com", ["user", "admin"]))
        self.assertEqual(User.objects.filter(external_id=ALICE).count(), 1)


def _rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(private_key, kid: str) -> dict:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


ISSUER = "http://auth.test"


class JwtAuthenticationTests(TestCase):
    """simplejwt verifying auth-service-shaped tokens against a JWKS served over real HTTP."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.key = _rsa_key()
        cls.private_pem = cls.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        jwks = {"keys": [_jwk(cls.key, "kid-1")]}
        cls.jwks_server = LocalHTTPServer(lambda request, n: json_response(200, jwks)).__enter__()
        cls.addClassCleanup(cls.jwks_server.__exit__, None, None, None)

    def setUp(self):
        jwt_conf = {**settings.SIMPLE_JWT, "JWK_URL": f"{self.jwks_server.url}/.well-known/jwks.json", "ISSUER": ISSUER}
        overrides = override_settings(SIMPLE_JWT=jwt_conf)
        overrides.enable()
        self.addCleanup(overrides.disable)
        self.api = APIClient()

    def token(self, key_pem=None, kid="kid-1", **overrides) -> str:
        now = datetime.now(UTC)
        claims = {
            "iss": ISSUER,
            "aud": "api",
            "sub": ALICE,
            "email": "alice@example.com",
            "roles": ["user"],
            "scope": "api",
            "token_type": "access",
            "iat": now,
            "nbf": now,
            "exp": now + timedelta(minutes=5),
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, key_pem or self.private_pem, algorithm="RS256", headers={"kid": kid})

    def get_me(self, token: str, **extra):
        return self.api.get("/api/users/me", HTTP_AUTHORIZATION=f"Bearer {token}", **extra)

    def test_a_valid_token_authenticates_and_maps_sub_email_roles(self):
        response = self.get_me(self.token(roles=["user", "admin"]), REMOTE_ADDR="10.9.9.9")
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["id"], ALICE)
        self.assertEqual(response.json()["roles"], ["user", "admin"])
        self.assertEqual(self.jwks_server.requests[-1].path, "/.well-known/jwks.json")

    def test_bad_tokens_are_401(self):
        other_key = _rsa_key().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        past = datetime.now(UTC) - timedelta(hours=1)
        cases = {
            "wrong audience": self.token(aud="other"),
            "wrong issuer": self.token(iss="http://evil.test"),
            "expired": self.token(iat=past - timedelta(minutes=5), nbf=past - timedelta(minutes=5), exp=past),
            "refresh token": self.token(token_type="refresh"),
            "signed by another key": self.token(key_pem=other_key),
            "unknown kid": self.token(key_pem=other_key, kid="kid-unknown"),
            "no sub": self.token(sub=None),
            "garbage": "not.a.jwt",
        }
        for name, token in cases.items():
            with self.subTest(name):
                response = self.get_me(token)
                self.assertEqual(response.status_code, 401, response.content)
                self.assertEqual(response["Content-Type"], "application/problem+json")
        self.assertFalse(User.objects.exists())

    def test_the_jwt_path_is_inert_without_jwk_url(self):
        token = self.token()
        with override_settings(SIMPLE_JWT={**settings.SIMPLE_JWT, "JWK_URL": None}):
            self.assertEqual(self.get_me(token).status_code, 401)
        self.assertEqual(self.get_me(token).status_code, 200)

    def test_an_unreachable_jwks_rejects_instead_of_hanging(self):
        with override_settings(
            SIMPLE_JWT={**settings.SIMPLE_JWT, "JWK_URL": f"{closed_port_url()}/jwks", "ISSUER": ISSUER}
        ):
            started = time.monotonic()
            response = self.get_me(self.token())
        self.assertEqual(response.status_code, 401)
        self.assertLess(time.monotonic() - started, settings.JWKS_FETCH_TIMEOUT + 1)


class GunicornTests(SimpleTestCase):
    """The real server: gunicorn with gunicorn.conf.py, migrations on start, JSON access logs."""

    def test_gunicorn_serves_and_logs_the_request_id(self):
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            env = {
                **os.environ,
                "MONOLITH_BIND": f"127.0.0.1:{port}",
                "MONOLITH_DB": str(Path(tmp) / "db.sqlite3"),
                "MONOLITH_WORKERS": "1",
                "NOTIFICATIONS_URL": "",
            }
            env.pop("DJANGO_SETTINGS_MODULE", None)
            stderr_path = Path(tmp) / "stderr"
            with open(stderr_path, "wb") as stderr:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "gunicorn", "-c", str(PROJECT_DIR / "gunicorn.conf.py")],
                    cwd=PROJECT_DIR,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                )
            try:
                base = f"http://127.0.0.1:{port}"
                wait_until_ok(f"{base}/healthz", timeout=30, proc=proc, stderr_path=stderr_path)
                session = requests.Session()
                session.trust_env = False
                response = session.post(
                    f"{base}/api/orders/",
                    json={"items": [{"sku": "A", "quantity": 3, "unit_price": "1.25"}]},
                    headers={"X-Request-ID": "rid-gunicorn-1", "X-User-Id": ALICE, "X-User-Roles": "user"},
                    timeout=10,
                )
                self.assertEqual(response.status_code, 201, response.text)
                self.assertEqual(response.json()["total"], "3.75")
                self.assertEqual(response.headers["X-Served-By"], "monolith")
                # A header name with an underscore must not pass as an identity header.
                smuggled = session.get(f"{base}/api/users/me", headers={"X_User_Id": ALICE}, timeout=10)
                self.assertEqual(smuggled.status_code, 401)
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            lines = [json.loads(line) for line in stderr_path.read_text().splitlines() if line.startswith("{")]
            tagged = [line for line in lines if line.get("request_id") == "rid-gunicorn-1"]
            loggers = {line["logger"] for line in tagged}
            self.assertIn("gunicorn.access", loggers, lines)
            self.assertIn("orders.services", loggers, lines)
            access = next(line for line in tagged if line["logger"] == "gunicorn.access")
            self.assertEqual((access["method"], access["path"], access["status"]), ("POST", "/api/orders/", 201))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ok(url: str, timeout: float, proc: subprocess.Popen, stderr_path: Path) -> None:
    deadline = time.monotonic() + timeout
    session = requests.Session()
    session.trust_env = False
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited with {proc.returncode}:\n{stderr_path.read_text()}")
        try:
            if session.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} not ready after {timeout}s:\n{stderr_path.read_text()}")
        time.sleep(0.05)
