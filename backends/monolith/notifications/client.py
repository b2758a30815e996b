"""HTTP client of the notifications service (backends/notifications).

`POST {NOTIFICATIONS_URL}/api/notifications/` with the current request's `X-Request-ID` and
`traceparent` (so the service's span joins the caller's trace), a
per-attempt timeout (`NOTIFICATIONS_TIMEOUT`, 2 s) and `NOTIFICATIONS_ATTEMPTS` attempts (2: one
retry). Retried: connection errors, timeouts and 5xx answers. Not retried: other answers (a 4xx
means the request itself is wrong; sending it again cannot help).

The call identifies the monolith as a service: `X-User-Id: service:monolith`,
`X-User-Roles: service`. The service believes those headers only from its trusted peers (the
same rule as for the gateway), and the gateway strips client-sent copies of them.
"""

import logging
import time
from dataclasses import dataclass

import requests
from django.conf import settings

from monolith.request_context import (
    REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
    current_request_id,
    current_traceparent,
    new_request_id,
)

logger = logging.getLogger(__name__)

SERVICE_SUBJECT = "service:monolith"
RETRY_BACKOFF_SECONDS = 0.1


class DeliveryFailed(Exception):
    """Every attempt failed; the message says why the last one did."""


@dataclass(frozen=True)
class Delivered:
    id: int | str
    attempts: int


def send(*, user_id: str, kind: str, message: str) -> Delivered:
    url = f"{settings.NOTIFICATIONS_URL}/api/notifications/"
    headers = {
        REQUEST_ID_HEADER: current_request_id() or new_request_id(),
        "X-User-Id": SERVICE_SUBJECT,
        "X-User-Roles": "service",
        "User-Agent": "monolith/1.0",
    }
    traceparent = current_traceparent()
    if traceparent:
        headers[TRACEPARENT_HEADER] = traceparent
    body = {"user_id": user_id, "kind": kind, "message": message}
    attempts = settings.NOTIFICATIONS_ATTEMPTS
    last_error = "no attempt made"
    with requests.Session() as session:
        session.trust_env = False  # never route service-to-service calls through an env proxy
        for attempt in range(1, attempts + 1):
            try:
                response = session.post(url, json=body, headers=headers, timeout=settings.NOTIFICATIONS_TIMEOUT)
            except requests.RequestException as exc:
                last_error = f"POST {url}: {type(exc).__name__}: {exc}"
            else:
                if response.status_code == 201:
                    return Delivered(id=_created_id(response), attempts=attempt)
                last_error = f"POST {url}: HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code < 500:
                    break
            if attempt < attempts:
                logger.info(
                    "notifications call failed, retrying",
                    extra={"event": "notify_retry", "attempt": attempt, "error": last_error},
                )
                time.sleep(RETRY_BACKOFF_SECONDS)
    raise DeliveryFailed(last_error)


def _created_id(response: requests.Response) -> int | str:
    try:
        return response.json()["id"]
    except (ValueError, KeyError, TypeError):
        return "unknown"
