"""Business logic of the payments app."""

import logging
from decimal import Decimal

from django.db import transaction
from django.db.models import Sum

from monolith.request_context import on_commit_in_this_request
from orders.models import Order
from users.models import User

from .models import Payment
from .signals import payment_captured

logger = logging.getLogger(__name__)

# Who served a payment, in API answers: the canary (backends/payments) says "payments-service".
SERVED_BY = "monolith"


class OrderNotFound(Exception):
    pass


def capture_payment(user: User, order_id: int, amount: Decimal) -> Payment:
    """Captures `amount` for one of the caller's orders; `payment_captured` follows the commit
    (the orders app marks the order paid once it is covered)."""
    if amount <= 0:
        raise ValueError("amount must be positive")
    with transaction.atomic():
        if not Order.objects.filter(pk=order_id, user=user).exists():
            raise OrderNotFound(order_id)
        payment = Payment.objects.create(user=user, order_id=order_id, amount=amount)
        captured_total = Payment.objects.filter(order_id=order_id).aggregate(total=Sum("amount"))["total"]
        on_commit_in_this_request(
            lambda: payment_captured.send_robust(sender=Payment, payment=payment, captured_total=captured_total)
        )
    logger.info(
        "payment captured",
        extra={"event": "payment_captured", "payment_id": payment.pk, "order_id": order_id, "amount": str(amount)},
    )
    return payment


def payments_of(user: User):
    return Payment.objects.filter(user=user)
