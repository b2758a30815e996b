"""Role checks. Roles come from the gateway's `X-User-Roles` or the token's `roles` claim."""

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

# Roles allowed to create notifications for any user (the service-to-service API).
SERVICE_ROLES = ("service", "admin")


def has_any_role(request: Request, roles: tuple[str, ...]) -> bool:
    user_roles = getattr(request.user, "roles", None) or []
    return any(role in user_roles for role in roles)


def require_any_role(*roles: str) -> type[BasePermission]:
    """A permission class admitting authenticated users holding one of `roles`."""

    class HasAnyRole(BasePermission):
        message = f"requires one of the roles: {', '.join(roles)}"

        def has_permission(self, request: Request, view) -> bool:
            return bool(request.user and request.user.is_authenticated) and has_any_role(
                request, roles
            )

    HasAnyRole.__name__ = f"HasAnyRole({','.join(roles)})"
    return HasAnyRole
