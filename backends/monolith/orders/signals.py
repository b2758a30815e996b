"""Signals the orders app sends. Other apps subscribe; orders imports none of them.

`order_placed(sender=Order, order=Order)`: sent once the order is committed. Receivers must not
raise (they are called with `send_robust`, so a failing receiver is logged and never fails the
order).
"""

from django.dispatch import Signal

order_placed = Signal()
