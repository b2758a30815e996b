from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A local account keyed by the auth-service's subject (`sub`, a UUID).

    Passwords live in the auth-service; these accounts have unusable passwords. `roles` is
    refreshed from every authenticated request, so a role granted in the auth-service shows
    here with the caller's next token.
    """

    external_id = models.CharField(max_length=128, unique=True, null=True, blank=True)
    roles = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return self.external_id or self.username
