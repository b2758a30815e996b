"""URL map: one include per app under /api/, plus /healthz."""

from django.urls import include, path

from . import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("api/users/", include("users.urls")),
    path("api/orders/", include("orders.urls")),
    path("api/payments/", include("payments.urls")),
    path("api/notifications/", include("notifications.urls")),
]

handler404 = "monolith.exceptions.handler404"
handler500 = "monolith.exceptions.handler500"
