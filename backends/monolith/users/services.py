"""Business logic of the users app."""

from django.db import IntegrityError, transaction

from .models import User


def sync_external_user(*, subject: str, email: str, roles: list[str]) -> User:
    """The local user for an external identity, created on first sight; email and roles are
    updated when they changed (no write otherwise). Safe against two workers racing to create."""
    user = User.objects.filter(external_id=subject).first()
    if user is None:
        try:
            with transaction.atomic():
                user = User(username=subject, external_id=subject, email=email, roles=roles)
                user.set_unusable_password()
                user.save()
                return user
        except IntegrityError:
            user = User.objects.get(external_id=subject)
    changed = []
    if user.email != email:
        user.email = email
        changed.append("email")
    if user.roles != roles:
        user.roles = roles
        changed.append("roles")
    if changed:
        user.save(update_fields=changed)
    return user

