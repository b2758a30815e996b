"""Business logic of the notifications app."""

import logging

from django.conf import settings

from . import client
from .models import Notification

logger = logging.getLogger(__name__)


def create_local(*, user_id: str, kind: str, message: str) -> Notification:
    return Notification.objects.create(user_id=user_id, kind=kind, message=message)


def notify(*, user_id: str, kind: str, message: str) -> str:
    """Delivers a notification: to the notifications service when `NOTIFICATIONS_URL` is set,
    else (or when the service cannot be reached) into the local table. Never raises for a
    delivery problem: a notification is a side effect, never a reason to fail the caller.
    Returns where it went: "service" or "local"."""
    if not settings.NOTIFICATIONS_URL:
        create_local(user_id=user_id, kind=kind, message=message)
        return "local"
    try:
        delivered = client.send(user_id=user_id, kind=kind, message=message)
    except client.DeliveryFailed as exc:
        notification = create_local(user_id=user_id, kind=kind, message=message)
        logger.warning(
            "notifications service unavailable; stored the notification locally",
            extra={"event": "notify_fallback", "error": str(exc), "notification_id": notification.pk},
        )
        return "local"
    logger.info(
        "notification delivered",
        extra={"event": "notify_delivered", "remote_id": delivered.id, "attempts": delivered.attempts},
    )
    return "service"


def notifications_for(user_id: str):
    return Notification.objects.filter(user_id=user_id)
