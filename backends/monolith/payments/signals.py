"""`payment_captured(sender=Payment, payment=Payment, captured_total=Decimal)`: sent after a
capture commits; `captured_total` is everything captured for that order so far."""

from django.dispatch import Signal

payment_captured = Signal()
