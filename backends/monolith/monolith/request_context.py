"""The id of the request being served, for log lines and outgoing calls.

The gateway sends `X-Request-ID`; a well-formed value (1-128 characters of `[A-Za-z0-9._-]`, the
gateway's and auth-service's rule) is kept, anything else is replaced by a new id. The
middleware sets it for the duration of the request; code outside a request sees `None`.
"""

import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar

from django.db import transaction

REQUEST_ID_HEADER = "X-Request-ID"
_WELL_FORMED = re.compile(r"[A-Za-z0-9._-]{1,128}")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


def is_well_formed(value: str) -> bool:
    return _WELL_FORMED.fullmatch(value) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return request_id_var.get()


def on_commit_in_this_request(callback: Callable[[], None]) -> None:
    """`transaction.on_commit(callback)`, with the current request id restored while the
    callback runs, whenever the commit happens (so its logs and outgoing calls keep the id)."""
    request_id = current_request_id()

    def run() -> None:
        token = request_id_var.set(request_id)
        try:
            callback()
        finally:
            request_id_var.reset(token)

    transaction.on_commit(run)
