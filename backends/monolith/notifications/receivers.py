"""Reactions to other apps' signals. The orders app does not know this app exists."""

from django.dispatch import receiver

from orders.signals import order_placed

from . import services


@receiver(order_placed, dispatch_uid="notifications.notify_order_placed")
def notify_order_placed(sender, order, **kwargs) -> None:
    services.notify(
        user_id=order.user.external_id,
        kind="order_placed",
        message=f"Order #{order.pk} placed: total {order.total}",
    )
