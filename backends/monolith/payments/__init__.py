"""payments: capturing payments for orders. Being extracted: the gateway splits /api/payments/
between this app and the payments service (backends/payments), sticky per user."""
