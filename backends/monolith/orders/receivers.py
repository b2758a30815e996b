"""What the orders app does when other apps announce something."""

from django.dispatch import receiver

from payments.signals import payment_captured

from . import services


@receiver(payment_captured, dispatch_uid="orders.mark_paid_on_capture")
def mark_paid_on_capture(sender, payment, captured_total, **kwargs) -> None:
    services.mark_paid_if_settled(payment.order_id, captured_total)
