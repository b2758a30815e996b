"""Who is calling: DRF authentication classes, tried in order (settings.REST_FRAMEWORK).

1. `GatewayIdentityAuthentication`: the gateway has verified the caller's JWT and sends the
   identity as `X-User-Id` (the token's `sub`), `X-User-Email` and `X-User-Roles`
   (comma-separated). Those headers are believed only when the TCP peer (`REMOTE_ADDR`) is in
   `TRUSTED_GATEWAYS`; from anyone else they are ignored (and logged), since any client can
   write them. gunicorn drops header names containing underscores, so `X_User_Id` cannot
   smuggle a value in either.
2. `JWKSJWTAuthentication`: djangorestframework-simplejwt verifying a `Bearer` token itself
   against the auth-service's JWKS (`JWK_URL`): RS256, `aud`, `iss`, `exp`/`nbf`,
   `token_type: "access"`. Inert while `JWK_URL` is unset. This is how the monolith is called
   directly, without the gateway, and the proof that the auth-service's tokens work in Django.

Both map the external subject to a local user (created on first sight) whose `roles` feed the
permission checks (monolith.permissions).
"""

import logging
import re
from dataclasses import dataclass
from ipaddress import ip_address

from django.conf import settings
from jwt import PyJWKClient
from rest_framework import authentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt import settings as simplejwt_settings
from rest_framework_simplejwt.tokens import AccessToken

from users import services as user_services
from users.models import User

logger = logging.getLogger(__name__)

# OIDC leaves `sub` opaque; ours are UUIDs. Service identities look like `service:monolith`.
_SUBJECT = re.compile(r"[A-Za-z0-9._:@|+-]{1,128}")
_ROLE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
WWW_AUTHENTICATE = 'Bearer realm="api"'


def is_trusted_peer(remote_addr: str | None) -> bool:
    """True when `remote_addr` (the TCP peer) is inside one of `settings.TRUSTED_GATEWAYS`."""
    if not remote_addr:
        return False
    try:
        addr = ip_address(remote_addr.split("%", 1)[0])
    except ValueError:
        return False
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in network for network in settings.TRUSTED_GATEWAYS)


def parse_roles(raw: str) -> list[str]:
    roles = []
    for part in raw.split(","):
        role = part.strip()
        if not role:
            continue
        if not _ROLE.fullmatch(role):
            raise AuthenticationFailed("X-User-Roles holds a malformed role", code="bad_identity")
        if role not in roles:
            roles.append(role)
    return roles


def validate_subject(subject: str, source: str) -> str:
    if not _SUBJECT.fullmatch(subject):
        raise AuthenticationFailed(f"{source} is not a valid subject", code="bad_identity")
    return subject


@dataclass(frozen=True)
class GatewayIdentity:
    """`request.auth` for gateway-authenticated requests."""

    subject: str
    email: str
    roles: tuple[str, ...]


class GatewayIdentityAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[User, GatewayIdentity] | None:
        meta = request.META
        subject = meta.get("HTTP_X_USER_ID")
        if subject is None:
            return None
        peer = meta.get("REMOTE_ADDR")
        if not is_trusted_peer(peer):
            logger.warning(
                "ignored identity headers from an untrusted peer",
                extra={"peer": peer, "event": "untrusted_identity_headers"},
            )
            return None
        subject = validate_subject(subject.strip(), "X-User-Id")
        email = meta.get("HTTP_X_USER_EMAIL", "").strip()
        roles = parse_roles(meta.get("HTTP_X_USER_ROLES", ""))
        user = user_services.sync_external_user(subject=subject, email=email, roles=roles)
        return user, GatewayIdentity(subject=subject, email=email, roles=tuple(roles))

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) to unauthenticated calls, with a challenge.
        return WWW_AUTHENTICATE


_backends: dict[tuple, TokenBackend] = {}


def jwt_settings():
    """simplejwt's settings as they are now (simplejwt rebinds its module-level `api_settings`
    when SIMPLE_JWT changes, so a name imported from it would go stale)."""
    return simplejwt_settings.api_settings


def token_backend() -> TokenBackend:
    """A TokenBackend for the current SIMPLE_JWT settings (simplejwt builds its own once at
    import; this one follows setting changes and bounds the JWKS fetch time). Its PyJWKClient
    caches the key set, refetching on an unknown `kid` (key rotation)."""
    conf = jwt_settings()
    key = (
        conf.ALGORITHM,
        conf.AUDIENCE,
        conf.ISSUER,
        conf.JWK_URL,
        conf.LEEWAY,
        settings.JWKS_FETCH_TIMEOUT,
    )
    backend = _backends.get(key)
    if backend is None:
        backend = TokenBackend(
            conf.ALGORITHM,
            signing_key=None,
            verifying_key=None,
            audience=conf.AUDIENCE,
            issuer=conf.ISSUER,
            jwk_url=conf.JWK_URL,
            leeway=conf.LEEWAY,
        )
        if conf.JWK_URL:
            backend.jwks_client = PyJWKClient(
                conf.JWK_URL,
                cache_jwk_set=True,
                lifespan=300,
                timeout=settings.JWKS_FETCH_TIMEOUT,
            )
        _backends.clear()
        _backends[key] = backend
    return backend


class AuthServiceAccessToken(AccessToken):
    """An auth-service access token: `token_type: "access"`, verified with the JWKS."""

    @property
    def token_backend(self) -> TokenBackend:
        return token_backend()


class JWKSJWTAuthentication(JWTAuthentication):
    def authenticate(self, request: Request):
        if not jwt_settings().JWK_URL:
            return None
        return super().authenticate(request)

    def get_user(self, validated_token: AccessToken) -> User:
        subject = validated_token.get(jwt_settings().USER_ID_CLAIM)
        if not isinstance(subject, str):
            raise InvalidToken("Token contained no recognizable user identification")
        subject = validate_subject(subject, "the token's sub")
        email = validated_token.get("email") or ""
        roles = validated_token.get("roles") or []
        if not isinstance(email, str) or not isinstance(roles, list):
            raise InvalidToken("Token claims email/roles have the wrong type")
        roles = parse_roles(",".join(str(role) for role in roles))
        return user_services.sync_external_user(subject=subject, email=email, roles=roles)
