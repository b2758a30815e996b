import time

from django.test import TestCase

from monolith.testing import ADMIN, ALICE, BOB, LocalHTTPServer, closed_port_url, gateway_headers, json_response
from notifications.models import Notification


class NotificationsApiTests(TestCase):
    def setUp(self):
        Notification.objects.create(user_id=ALICE, kind="welcome", message="hi Alice")
        Notification.objects.create(user_id=ALICE, kind="order_placed", message="order #1")
        Notification.objects.create(user_id=BOB, kind="welcome", message="hi Bob")

    def post(self, body, **headers):
        return self.client.post("/api/notifications/", body, content_type="application/json", **headers)

    def test_get_lists_the_callers_notifications_newest_first(self):
        response = self.client.get("/api/notifications/", **gateway_headers(ALICE))
        self.assertEqual(response.status_code, 200)
        body = response.json()
        self.assertEqual([n["message"] for n in body], ["order #1", "hi Alice"])
        self.assertEqual(set(body[0]), {"id", "user_id", "kind", "message", "created_at"})

    def test_admins_may_read_anyones_notifications(self):
        response = self.client.get(f"/api/notifications/?user_id={BOB}", **gateway_headers(ADMIN, roles="user,admin"))
        self.assertEqual([n["message"] for n in response.json()], ["hi Bob"])
        denied = self.client.get(f"/api/notifications/?user_id={BOB}", **gateway_headers(ALICE))
        self.assertEqual(denied.status_code, 403)
        self.assertEqual(denied["Content-Type"], "application/problem+json")

    def test_get_requires_authentication(self):
        self.assertEqual(self.client.get("/api/notifications/").status_code, 401)

    def test_post_is_for_services_and_admins(self):
        body = {"user_id": BOB, "kind": "promo", "message": "10% off"}
        created = self.post(body, **gateway_headers("service:billing", roles="service"))
        self.assertEqual(created.status_code, 201, created.content)
        self.assertEqual({k: created.json()[k] for k in body}, body)
        self.assertTrue(Notification.objects.filter(user_id=BOB, kind="promo").exists())
        self.assertEqual(self.post(body, **gateway_headers(ADMIN, roles="admin")).status_code, 201)
        self.assertEqual(self.post(body, **gateway_headers(ALICE, roles="user")).status_code, 403)
        self.assertEqual(self.post(body).status_code, 401)

    def test_post_validates_input(self):
        service = gateway_headers("service:billing", roles="service")
        for body, field in (
            ({"kind": "k", "message": "m"}, "user_id"),
            ({"user_id": "bad id", "kind": "k", "message": "m"}, "user_id"),
            ({"user_id": BOB, "kind": "", "message": "m"}, "kind"),
            ({"user_id": BOB, "kind": "k", "message": "x" * 2001}, "message"),
        ):
            with self.subTest(body=body):
                response = self.post(body, **service)
                self.assertEqual(response.status_code, 422)
                self.assertEqual([e["field"] for e in response.json()["errors"]], [field])


ORDER = {"items": [{"sku": "A", "quantity": 1, "unit_price": "9.99"}]}


class OrderPlacedNotifiesTheServiceTests(TestCase):
    """The order_placed receiver calls the notifications service over real HTTP."""

    def place_order(self, request_id="rid-order-1", **extra):
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(
                "/api/orders/",
                ORDER,
                content_type="application/json",
                HTTP_X_REQUEST_ID=request_id,
                **gateway_headers(ALICE),
                **extra,
            )

    def test_the_callers_trace_is_passed_on_and_a_bad_one_is_not(self):
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        with LocalHTTPServer(lambda request, n: json_response(201, {"id": 1})) as server:
            with self.settings(NOTIFICATIONS_URL=server.url):
                self.place_order("rid-trace:1", HTTP_TRACEPARENT=traceparent)
                self.place_order("rid-trace:2", HTTP_TRACEPARENT="00-00000000000000000000000000000000-00f067aa0ba902b7-01")
        first, second = server.requests
        self.assertEqual(first.headers["traceparent"], traceparent)
        self.assertEqual(first.headers["x-request-id"], "rid-trace:1")
        self.assertNotIn("traceparent", second.headers)
        self.assertEqual(second.headers["x-request-id"], "rid-trace:2")

    def test_the_service_receives_the_notification_with_the_request_id(self):
        with LocalHTTPServer(lambda request, n: json_response(201, {"id": 42})) as server:
            with self.settings(NOTIFICATIONS_URL=server.url):
                response = self.place_order("rid-order-1")
        self.assertEqual(response.status_code, 201)
        self.assertEqual(len(server.requests), 1)
        sent = server.requests[0]
        self.assertEqual((sent.method, sent.path), ("POST", "/api/notifications/"))
        self.assertEqual(sent.headers["x-request-id"], "rid-order-1")
        self.assertEqual(sent.headers["x-user-roles"], "service")
        self.assertEqual(sent.headers["x-user-id"], "service:monolith")
        self.assertEqual(
            sent.json(),
            {"user_id": ALICE, "kind": "order_placed", "message": f"Order #{response.json()['id']} placed: total 9.99"},
        )
        self.assertFalse(Notification.objects.exists(), "delivered: nothing stored locally")

    def test_a_5xx_is_retried_once(self):
        def flaky(request, n):
            return json_response(503, {"title": "busy"}) if n == 0 else json_response(201, {"id": 7})

        with LocalHTTPServer(flaky) as server, self.settings(NOTIFICATIONS_URL=server.url):
            response = self.place_order()
        self.assertEqual(response.status_code, 201)
        self.assertEqual(len(server.requests), 2)
        self.assertEqual({r.headers["x-request-id"] for r in server.requests}, {"rid-order-1"})
        self.assertFalse(Notification.objects.exists())

    def test_a_down_service_falls_back_to_local_storage_and_the_order_succeeds(self):
        with self.settings(NOTIFICATIONS_URL=closed_port_url()):
            with self.assertLogs("notifications.services", "WARNING") as logs:
                response = self.place_order("rid-down-1")
        self.assertEqual(response.status_code, 201)
        stored = Notification.objects.get()
        self.assertEqual((stored.user_id, stored.kind), (ALICE, "order_placed"))
        self.assertIn("stored the notification locally", logs.output[0])
        self.assertIn("ConnectionError", logs.records[0].error)

    def test_a_hanging_service_times_out_retries_once_then_falls_back(self):
        def hang(request, n):
            server.release.wait(10)  # answers only when the test ends
            return json_response(201, {"id": 1})

        with LocalHTTPServer(hang) as server, self.settings(NOTIFICATIONS_URL=server.url, NOTIFICATIONS_TIMEOUT=0.3):
            started = time.monotonic()
            with self.assertLogs("notifications.services", "WARNING"):
                response = self.place_order()
            elapsed = time.monotonic() - started
            self.assertEqual(len(server.requests), 2)
        self.assertEqual(response.status_code, 201)
        self.assertLess(elapsed, 3.0, "two 0.3 s attempts must not hold the order longer")
        self.assertEqual(Notification.objects.count(), 1)

    def test_a_4xx_is_not_retried(self):
        with LocalHTTPServer(lambda request, n: json_response(422, {"title": "bad"})) as server:
            with self.settings(NOTIFICATIONS_URL=server.url), self.assertLogs("notifications.services", "WARNING"):
                self.assertEqual(self.place_order().status_code, 201)
        self.assertEqual(len(server.requests), 1)
        self.assertEqual(Notification.objects.count(), 1)

    def test_an_empty_notifications_url_stores_locally(self):
        with self.settings(NOTIFICATIONS_URL=""):
            self.assertEqual(self.place_order().status_code, 201)
        self.assertEqual(Notification.objects.get().user_id, ALICE)
