"""orders: placing orders. Announces `order_placed` (orders.signals) instead of calling other apps."""
