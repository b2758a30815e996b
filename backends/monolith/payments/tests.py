from django.test import TestCase

from monolith.testing import ALICE, BOB, gateway_headers
from orders.models import Order
from payments.models import Payment


class PaymentsTests(TestCase):
    def setUp(self):
        override = self.settings(NOTIFICATIONS_URL="")
        override.enable()
        self.addCleanup(override.disable)
        response = self.client.post(
            "/api/orders/",
            {"items": [{"sku": "A", "quantity": 2, "unit_price": "5.00"}]},
            content_type="application/json",
            **gateway_headers(ALICE),
        )
        self.order_id = response.json()["id"]

    def pay(self, subject=ALICE, **body):
        payload = {"order_id": self.order_id, "amount": "10.00", **body}
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post("/api/payments/", payload, content_type="application/json", **gateway_headers(subject))

    def test_capture_returns_201_served_by_monolith_and_settles_the_order(self):
        response = self.pay(amount="4.00")
        self.assertEqual(response.status_code, 201, response.content)
        body = response.json()
        self.assertEqual(
            {k: body[k] for k in ("order_id", "amount", "status", "served_by")},
            {"order_id": self.order_id, "amount": "4.00", "status": "captured", "served_by": "monolith"},
        )
        self.assertEqual(Order.objects.get(pk=self.order_id).status, "placed")
        self.assertEqual(self.pay(amount="6.00").status_code, 201)
        self.assertEqual(Order.objects.get(pk=self.order_id).status, "paid")

    def test_someone_elses_or_unknown_order_is_404(self):
        self.assertEqual(self.pay(subject=BOB).status_code, 404)
        self.assertEqual(self.pay(order_id=999_999).status_code, 404)
        self.assertFalse(Payment.objects.exists())

    def test_invalid_amounts_are_422(self):
        for amount in ("0", "-5", "abc", "1.001"):
            with self.subTest(amount=amount):
                response = self.pay(amount=amount)
                self.assertEqual(response.status_code, 422)
                self.assertEqual(response.json()["errors"][0]["field"], "amount")

    def test_list_shows_only_the_callers_payments(self):
        self.pay()
        mine = self.client.get("/api/payments/", **gateway_headers(ALICE)).json()
        self.assertEqual([(p["order_id"], p["served_by"]) for p in mine], [(self.order_id, "monolith")])
        self.assertEqual(self.client.get("/api/payments/", **gateway_headers(BOB)).json(), [])
        self.assertEqual(self.client.get("/api/payments/").status_code, 401)
