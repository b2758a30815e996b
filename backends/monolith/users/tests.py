from django.test import TestCase

from monolith.testing import ALICE, BOB, gateway_headers
from users import services
from users.models import User


class MeEndpointTests(TestCase):
    def test_me_describes_the_caller(self):
        response = self.client.get("/api/users/me", **gateway_headers(ALICE, email="alice@example.com"))
        self.assertEqual(response.status_code, 200)
        body = response.json()
        self.assertEqual(set(body), {"id", "email", "roles", "first_seen"})
        self.assertEqual((body["id"], body["email"], body["roles"]), (ALICE, "alice@example.com", ["user"]))
        self.assertEqual(self.client.get("/api/users/me/", **gateway_headers(ALICE)).status_code, 200)

    def test_me_requires_authentication(self):
        self.assertEqual(self.client.get("/api/users/me").status_code, 401)


class SyncExternalUserTests(TestCase):
    def test_creates_once_and_updates_only_on_change(self):
        first = services.sync_external_user(subject=BOB, email="b@example.com", roles=["user"])
        again = services.sync_external_user(subject=BOB, email="b@example.com", roles=["user"])
        self.assertEqual(first.pk, again.pk)
        with self.assertNumQueries(1):  # one SELECT, no UPDATE when nothing changed
            services.sync_external_user(subject=BOB, email="b@example.com", roles=["user"])
        services.sync_external_user(subject=BOB, email="b@example.com", roles=["user", "admin"])
        self.assertEqual(User.objects.get(external_id=BOB).roles, ["user", "admin"])
