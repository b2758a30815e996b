"""Settings of the monolith. Every value comes from the environment, with a safe default.

| env | default | meaning |
|---|---|---|
| `DJANGO_SECRET_KEY` | `DEV_ONLY_INSECURE_SECRET_KEY` below | Django's secret key: set it in production |
| `DJANGO_DEBUG` | `0` | Django debug mode (never in production) |
| `DJANGO_ALLOWED_HOSTS` | `127.0.0.1,localhost,[::1]` | comma-separated `Host` values accepted |
| `MONOLITH_DB` | `<this project>/db.sqlite3` | SQLite database file |
| `MONOLITH_LOG_LEVEL` | `INFO` | level of the JSON logs on stderr |
| `TRUSTED_GATEWAYS` | `127.0.0.1/32,::1/128` | CIDRs of peers whose identity headers are believed |
| `JWK_URL` | empty (off) | JWKS of the auth-service; enables Bearer-token verification |
| `JWT_ISSUER` | empty (not checked) | required `iss` of Bearer tokens |
| `JWT_AUDIENCE` | `api` | required `aud` of Bearer tokens |
| `NOTIFICATIONS_URL` | `http://127.0.0.1:8002` | the notifications service; empty: store notifications locally |
| `NOTIFICATIONS_TIMEOUT` | `2` | seconds per attempt to call it |
| `NOTIFICATIONS_ATTEMPTS` | `2` | attempts (1 + retries) before falling back to local storage |

gunicorn's own settings (`MONOLITH_BIND`, `MONOLITH_WORKERS`, `MONOLITH_MIGRATE_ON_START`) are in
`gunicorn.conf.py`.
"""

import ipaddress
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

# Only for development and tests. Production sets DJANGO_SECRET_KEY.
DEV_ONLY_INSECURE_SECRET_KEY = "django-insecure-dev-only-monolith-key-do-not-use-in-production"


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}: expected a boolean (1/0, true/false), got {raw!r}")


def env_float(name: str, default: float, minimum: float) -> float:
    raw = env_str(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected a number, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}: must be at least {minimum}, got {raw!r}")
    return value


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def parse_networks(name: str, values: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {value!r} is not an IP address or CIDR") from None
    return networks


SECRET_KEY = env_str("DJANGO_SECRET_KEY", "") or DEV_ONLY_INSECURE_SECRET_KEY
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
    "users.apps.UsersConfig",
    "orders.apps.OrdersConfig",
    "payments.apps.PaymentsConfig",
    "notifications.apps.NotificationsConfig",
]

MIDDLEWARE = [
    # First, so that every log line of the request (and every response) carries its id.
    "monolith.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
]

ROOT_URLCONF = "monolith.urls"
WSGI_APPLICATION = "monolith.wsgi.application"
AUTH_USER_MODEL = "users.User"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": env_str("MONOLITH_DB", "") or str(BASE_DIR / "db.sqlite3"),
        "OPTIONS": {
            # Two gunicorn workers write to one file: WAL lets readers run beside a writer,
            # IMMEDIATE transactions take the write lock up front instead of failing on upgrade.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# --- identity -------------------------------------------------------------------------------
# Peers (the gateway, sibling services) whose X-User-Id / X-User-Email / X-User-Roles are believed.
TRUSTED_GATEWAYS = parse_networks(
    "TRUSTED_GATEWAYS", env_list("TRUSTED_GATEWAYS", "127.0.0.1/32,::1/128")
)

REST_FRAMEWORK = {
    # Both are always listed; the JWT one is inert while JWK_URL is unset (see authentication.py).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "monolith.authentication.GatewayIdentityAuthentication",
        "monolith.authentication.JWKSJWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "monolith.exceptions.problem_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SIMPLE_JWT = {
    "ALGORITHM": "RS256",
    "JWK_URL": env_str("JWK_URL", "") or None,
    "AUDIENCE": env_str("JWT_AUDIENCE", "api"),
    "ISSUER": env_str("JWT_ISSUER", "") or None,
    "LEEWAY": 30,
    # We only verify tokens the auth-service signs; nothing here signs tokens.
    "SIGNING_KEY": None,
    "VERIFYING_KEY": None,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_CLAIM": "sub",
    "USER_ID_FIELD": "external_id",
    "TOKEN_TYPE_CLAIM": "token_type",
    "JTI_CLAIM": "jti",
    "AUTH_TOKEN_CLASSES": ("monolith.authentication.AuthServiceAccessToken",),
    "UPDATE_LAST_LOGIN": False,
}
# Seconds to wait for the JWKS endpoint (PyJWKClient's own default is 30 s).
JWKS_FETCH_TIMEOUT = env_float("JWKS_FETCH_TIMEOUT", 2.0, minimum=0.1)

# --- the notifications service (order_placed → POST /api/notifications/) --------------------
NOTIFICATIONS_URL = env_str("NOTIFICATIONS_URL", "http://127.0.0.1:8002").rstrip("/")
NOTIFICATIONS_TIMEOUT = env_float("NOTIFICATIONS_TIMEOUT", 2.0, minimum=0.01)
NOTIFICATIONS_ATTEMPTS = int(env_float("NOTIFICATIONS_ATTEMPTS", 2, minimum=1))

# --- logging: JSON lines on stderr, each with the request id --------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "monolith.jsonlog.RequestIdFilter"}},
    "formatters": {"json": {"()": "monolith.jsonlog.JsonFormatter"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "json",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["stderr"], "level": env_str("MONOLITH_LOG_LEVEL", "INFO").upper()},
    "loggers": {
        # 4xx answers are the API working as designed; 5xx stay logged, with the traceback.
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "ERROR"},
    },
}

TEST_RUNNER = "monolith.test_runner.QuietLogsRunner"
