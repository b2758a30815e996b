"""Business logic of the orders app. Views validate input and call these; nothing else writes orders."""

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction

from monolith.request_context import on_commit_in_this_request
from users.models import User

from .models import Order, OrderItem
from .signals import order_placed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LineItem:
    sku: str
    quantity: int
    unit_price: Decimal


class OrderNotFound(Exception):
    pass


def place_order(user: User, items: list[LineItem]) -> Order:
    """Stores the order and its items in one transaction, then announces `order_placed`
    after the commit (so receivers, e.g. the HTTP call to the notifications service, never
    hold the database transaction, and never see an order that was rolled back)."""
    if not items:
        raise ValueError("an order needs at least one item")
    total = sum((item.unit_price * item.quantity for item in items), Decimal("0.00"))
    with transaction.atomic():
        order = Order.objects.create(user=user, total=total)
        OrderItem.objects.bulk_create(
            OrderItem(order=order, sku=item.sku, quantity=item.quantity, unit_price=item.unit_price)
            for item in items
        )
        on_commit_in_this_request(lambda: order_placed.send_robust(sender=Order, order=order))
    logger.info(
        "order placed",
        extra={"event": "order_placed", "order_id": order.pk, "total": str(total), "user": user.external_id},
    )
    return order


def orders_of(user: User):
    return Order.objects.filter(user=user).prefetch_related("items")


def get_order(user: User, order_id: int) -> Order:
    order = orders_of(user).filter(pk=order_id).first()
    if order is None:
        raise OrderNotFound(order_id)
    return order


def mark_paid_if_settled(order_id: int, captured_total: Decimal) -> None:
    """Marks the order paid once the captured amount covers its total."""
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(pk=order_id).first()
        if order is None or order.status == Order.Status.PAID:
            return
        if captured_total >= order.total:
            order.status = Order.Status.PAID
            order.save(update_fields=["status"])
            logger.info("order paid", extra={"event": "order_paid", "order_id": order.pk})
