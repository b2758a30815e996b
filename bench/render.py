"""What the benchmark runs on: the signing key, the JWKS, the tokens, the bodies and every
proxy's config, rendered from `bench/templates/`.

Pure functions plus file writes into a work directory, so `bench/tests/` can render and check
everything without starting any load. `harness.py` drives the processes.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
TEMPLATES = BENCH_DIR / "templates"

ISSUER = "http://127.0.0.1:8001"
AUDIENCE = "api"
KID = "bench-rsa-2026"
# What every small request asks for, through every proxy (the origin answers any path).
SMALL_PATH = "/api/v1/orders/42"
# The 1 MB static file on the origin.
BIG_PATH = "/big"
BIG_BYTES = 1024 * 1024
# ~100 bytes of JSON, like a small API answer.
SMALL_BODY = (
    '{"id":42,"status":"shipped","customer":"user-000042",'
    '"total_cents":12999,"currency":"EUR","items":3}'
)
# How long the `slow` upstream of the gateway-shadow row waits before each answer (seconds).
SLOW_ORIGIN_DELAY = 3.0
# Tokens live a day: long enough for any run, regenerated when less than an hour is left.
TOKEN_LIFETIME = 24 * 3600
TOKEN_MIN_REMAINING = 3600

# One row per proxy under test, and its config template (None: started differently).
TEMPLATE_OF_ROW = {
    "origin": "origin.nginx.conf",
    "nginx": "nginx.conf",
    "haproxy": "haproxy.cfg",
    "haproxy-jwt": "haproxy-jwt.cfg",
    "gateway-plain": "gateway-plain.yaml",
    "gateway-policy": "gateway-policy.yaml",
    "gateway-shadow": "gateway-shadow.yaml",
    "gateway-shadow-copy": "gateway-shadow-copy.yaml",
}


# --------------------------------------------------------------------------------------------
# Templates: `{{name}}` placeholders (nginx and YAML use single braces and `$` themselves).

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


def render_template(text: str, values: dict[str, object]) -> str:
    """Fills every `{{name}}`; an unknown name is an error, never a silent blank."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            raise KeyError(f"template placeholder {{{{{name}}}}} has no value")
        return str(values[name])

    return _PLACEHOLDER.sub(sub, text)


# --------------------------------------------------------------------------------------------
# Keys and tokens.


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SigningKey:
    private_pem: bytes
    public_pem: bytes
    kid: str = KID

    @property
    def private_key(self):
        from cryptography.hazmat.primitives import serialization

        return serialization.load_pem_private_key(self.private_pem, password=None)

    def jwks(self) -> dict:
        from cryptography.hazmat.primitives import serialization

        pub = serialization.load_pem_public_key(self.public_pem).public_numbers()
        n = pub.n.to_bytes((pub.n.bit_length() + 7) // 8, "big")
        e = pub.e.to_bytes((pub.e.bit_length() + 7) // 8, "big")
        return {
            "keys": [
                {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                 "n": _b64url(n), "e": _b64url(e)}
            ]
        }


def load_or_create_key(work: Path) -> SigningKey:
    """An RSA-2048 key kept in the work dir, so the token pool survives between runs."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    priv_path, pub_path = work / "signing-key.pem", work / "signing-key.pub.pem"
    if priv_path.exists() and pub_path.exists():
        return SigningKey(priv_path.read_bytes(), pub_path.read_bytes())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    priv_path.write_bytes(private_pem)
    pub_path.write_bytes(public_pem)
    return SigningKey(private_pem, public_pem)


def claims_for(user: int, now: int) -> dict:
    """The claims the auth-service puts in an access token (see auth-service/src/tokens.rs)."""
    return {
        "iss": ISSUER,
        "sub": str(100000 + user),
        "aud": AUDIENCE,
        "exp": now + TOKEN_LIFETIME,
        "iat": now,
        "nbf": now,
        "jti": secrets.token_urlsafe(16),
        "email": f"u{100000 + user}@example.com",
        "roles": ["user"],
        "scope": "api",
        "token_type": "access",
    }


def sign(key: SigningKey, claims: dict, private_key=None) -> str:
    import jwt

    return jwt.encode(
        claims,
        private_key if private_key is not None else key.private_key,
        algorithm="RS256",
        headers={"kid": key.kid, "typ": "at+jwt"},
    )


def make_tokens(key: SigningKey, count: int, now: int | None = None) -> list[str]:
    """`count` valid tokens with distinct `sub` ("100000", "100001", ...)."""
    now = int(time.time()) if now is None else now
    private_key = key.private_key
    return [sign(key, claims_for(i, now), private_key) for i in range(count)]


def token_pool(key: SigningKey, work: Path, count: int) -> Path:
    """The pool file (one token per line), reused while it is fresh and from this key."""
    path = work / f"tokens-{count}.txt"
    meta = work / f"tokens-{count}.json"
    fingerprint = _b64url(key.public_pem[-64:])
    if path.exists() and meta.exists():
        m = json.loads(meta.read_text())
        if m.get("key") == fingerprint and m.get("exp", 0) > time.time() + TOKEN_MIN_REMAINING:
            return path
    now = int(time.time())
    tokens = make_tokens(key, count, now)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(tokens) + "\n")
    tmp.replace(path)
    meta.write_text(json.dumps({"key": fingerprint, "exp": now + TOKEN_LIFETIME}))
    return path


# --------------------------------------------------------------------------------------------
# The work dir: everything the processes read.


@dataclass
class Ports:
    origin: int
    nginx: int
    haproxy: int
    haproxy_jwt: int
    gateway_plain: int
    gateway_plain_admin: int
    gateway_policy: int
    gateway_policy_admin: int
    otlp_grpc: int
    otlp_http: int
    pingora_bare: int
    gateway_shadow: int
    gateway_shadow_admin: int
    slow_origin: int  # the gateway-shadow row's `slow` upstream (bench/slow_origin.py)
    gateway_shadow_copy: int  # bench/instructions.py only
    gateway_shadow_copy_admin: int

    def of_row(self, row: str) -> int:
        return getattr(self, row.replace("-", "_"))


def free_ports(n: int) -> list[int]:
    """n distinct ephemeral ports that were free a moment ago."""
    import socket

    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def allocate_ports() -> Ports:
    return Ports(*free_ports(len(dataclasses.fields(Ports))))


@dataclass
class Prepared:
    work: Path
    ports: Ports
    key: SigningKey
    token: str
    configs: dict[str, Path] = field(default_factory=dict)
    pool: Path | None = None


def template_values(work: Path, ports: Ports) -> dict[str, object]:
    return {
        "work": work,
        "user_directive": "user root;" if os.geteuid() == 0 else "",
        "origin_port": ports.origin,
        "nginx_port": ports.nginx,
        "haproxy_port": ports.haproxy,
        "haproxy_jwt_port": ports.haproxy_jwt,
        "gateway_plain_port": ports.gateway_plain,
        "gateway_plain_admin_port": ports.gateway_plain_admin,
        "gateway_policy_port": ports.gateway_policy,
        "gateway_policy_admin_port": ports.gateway_policy_admin,
        "gateway_shadow_port": ports.gateway_shadow,
        "gateway_shadow_admin_port": ports.gateway_shadow_admin,
        "slow_origin_port": ports.slow_origin,
        "gateway_shadow_copy_port": ports.gateway_shadow_copy,
        "gateway_shadow_copy_admin_port": ports.gateway_shadow_copy_admin,
        "otlp_grpc_port": ports.otlp_grpc,
        "small_body": SMALL_BODY,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "public_key_pem": work / "signing-key.pub.pem",
        "jwks_path": work / "jwks.json",
        "big_file": work / "big.bin",
    }


def prepare(work: Path, ports: Ports, pool_size: int = 0) -> Prepared:
    """Writes the key, JWKS, bodies, one token, the pool (when `pool_size`) and every config."""
    work.mkdir(parents=True, exist_ok=True)
    for sub in ("logs", "nginx-temp"):
        (work / sub).mkdir(exist_ok=True)
    key = load_or_create_key(work)
    (work / "jwks.json").write_text(json.dumps(key.jwks()))
    big = work / "big.bin"
    if not big.exists() or big.stat().st_size != BIG_BYTES:
        big.write_bytes(os.urandom(BIG_BYTES))
    token = sign(key, claims_for(42, int(time.time())))
    (work / "token.txt").write_text(token + "\n")
    values = template_values(work, ports)
    configs = {}
    for row, name in TEMPLATE_OF_ROW.items():
        text = render_template((TEMPLATES / name).read_text(), values)
        out = work / name
        out.write_text(text)
        configs[row] = out
    prepared = Prepared(work=work, ports=ports, key=key, token=token, configs=configs)
    if pool_size:
        prepared.pool = token_pool(key, work, pool_size)
    return prepared
