from django.test import TestCase

from monolith.testing import ALICE, BOB, gateway_headers
from orders.models import Order
from orders.signals import order_placed


def place(client, subject=ALICE, items=None, **extra):
    items = items if items is not None else [
        {"sku": "BOOK-1", "quantity": 2, "unit_price": "12.50"},
        {"sku": "PEN-9", "quantity": 3, "unit_price": "1.10"},
    ]
    return client.post(
        "/api/orders/", {"items": items}, content_type="application/json", **gateway_headers(subject), **extra
    )


class PlaceOrderTests(TestCase):
    def setUp(self):
        self.settings_override = self.settings(NOTIFICATIONS_URL="")
        self.settings_override.enable()
        self.addCleanup(self.settings_override.disable)

    def test_placing_an_order_returns_201_with_the_total(self):
        response = place(self.client)
        self.assertEqual(response.status_code, 201, response.content)
        body = response.json()
        self.assertEqual(body["total"], "28.30")
        self.assertEqual(body["status"], "placed")
        self.assertEqual([item["sku"] for item in body["items"]], ["BOOK-1", "PEN-9"])
        order = Order.objects.get(pk=body["id"])
        self.assertEqual(order.user.external_id, ALICE)

    def test_order_placed_is_sent_after_commit(self):
        received = []

        def receiver(sender, order, **kwargs):
            received.append(order.pk)

        order_placed.connect(receiver, dispatch_uid="test-receiver")
        self.addCleanup(order_placed.disconnect, dispatch_uid="test-receiver")
        with self.captureOnCommitCallbacks(execute=False) as callbacks:
            response = place(self.client)
        self.assertEqual(received, [], "must not be sent before the transaction commits")
        for callback in callbacks:
            callback()
        self.assertEqual(received, [response.json()["id"]])

    def test_a_failing_receiver_does_not_fail_the_order(self):
        def broken(sender, order, **kwargs):
            raise RuntimeError("boom")

        order_placed.connect(broken, dispatch_uid="broken-receiver")
        self.addCleanup(order_placed.disconnect, dispatch_uid="broken-receiver")
        with self.assertLogs("django.dispatch", "ERROR"):
            with self.captureOnCommitCallbacks(execute=True):
                response = place(self.client)
        self.assertEqual(response.status_code, 201)

    def test_invalid_orders_are_422_with_field_errors(self):
        cases = {
            "no items": ([], "items"),
            "zero quantity": ([{"sku": "A", "quantity": 0, "unit_price": "1.00"}], "items[0].quantity"),
            "negative price": ([{"sku": "A", "quantity": 1, "unit_price": "-1"}], "items[0].unit_price"),
            "three decimals": ([{"sku": "A", "quantity": 1, "unit_price": "1.005"}], "items[0].unit_price"),
            "missing sku": ([{"quantity": 1, "unit_price": "1.00"}], "items[0].sku"),
        }
        for name, (items, field) in cases.items():
            with self.subTest(name):
                response = place(self.client, items=items)
                self.assertEqual(response.status_code, 422, response.content)
                self.assertEqual(response["Content-Type"], "application/problem+json")
                self.assertIn(field, [error["field"] for error in response.json()["errors"]])
        self.assertFalse(Order.objects.exists())

    def test_malformed_json_is_400(self):
        response = self.client.post(
            "/api/orders/", "{not json", content_type="application/json", **gateway_headers(ALICE)
        )
        self.assertEqual(response.status_code, 400)
        self.assertEqual(response.json()["status"], 400)


class ReadOrdersTests(TestCase):
    def setUp(self):
        with self.settings(NOTIFICATIONS_URL=""):
            self.alice_order = place(self.client, ALICE).json()
            self.bob_order = place(self.client, BOB).json()

    def test_list_shows_only_the_callers_orders(self):
        response = self.client.get("/api/orders/", **gateway_headers(ALICE))
        self.assertEqual(response.status_code, 200)
        self.assertEqual([order["id"] for order in response.json()], [self.alice_order["id"]])

    def test_detail_of_own_order_and_404_for_others(self):
        own = self.client.get(f"/api/orders/{self.alice_order['id']}/", **gateway_headers(ALICE))
        self.assertEqual(own.status_code, 200)
        self.assertEqual(own.json()["total"], "28.30")
        other = self.client.get(f"/api/orders/{self.bob_order['id']}/", **gateway_headers(ALICE))
        self.assertEqual(other.status_code, 404)
        self.assertEqual(other["Content-Type"], "application/problem+json")

    def test_reading_requires_authentication(self):
        self.assertEqual(self.client.get("/api/orders/").status_code, 401)
        self.assertEqual(self.client.get(f"/api/orders/{self.alice_order['id']}/").status_code, 401)
