"""The id and the W3C trace of the request being served, for log lines and outgoing calls.

The gateway sends `X-Request-ID`; a well-formed value (1-128 characters of `[A-Za-z0-9._:+-]`,
the gateway's and the Rust services' rule) is kept, anything else is replaced by a new id. It
also sends `traceparent` (its upstream span); a well-formed one is kept so that log lines carry
its `trace_id` and outgoing calls pass it on (the monolith records no spans of its own, so the
services it calls become children of the gateway's span). The middleware sets both for the
duration of the request; code outside a request sees `None`.
"""

import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar

from django.db import transaction

REQUEST_ID_HEADER = "X-Request-ID"
TRACEPARENT_HEADER = "traceparent"
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:+-]{1,128}")
# W3C Trace Context level 1; version ff is invalid, all-zero ids are invalid.
_TRACEPARENT = re.compile(r"(?!ff)([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
traceparent_var: ContextVar[str | None] = ContextVar("traceparent", default=None)


def is_well_formed(value: str) -> bool:
    return _WELL_FORMED.fullmatch(value) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return request_id_var.get()


def well_formed_traceparent(value: str) -> str | None:
    """The value, when it is a valid `traceparent` for version 00 (exactly four fields)."""
    value = value.strip()
    match = _TRACEPARENT.fullmatch(value)
    if match is None or match.group(2) == "0" * 32 or match.group(3) == "0" * 16:
        return None
    return value


def current_traceparent() -> str | None:
    return traceparent_var.get()


def current_trace_id() -> str | None:
    traceparent = traceparent_var.get()
    return traceparent.split("-")[1] if traceparent else None


def on_commit_in_this_request(callback: Callable[[], None]) -> None:
    """`transaction.on_commit(callback)`, with the current request id and trace restored while
    the callback runs, whenever the commit happens (so its logs and outgoing calls keep them)."""
    request_id = current_request_id()
    traceparent = current_traceparent()

    def run() -> None:
        token = request_id_var.set(request_id)
        trace_token = traceparent_var.set(traceparent)
        try:
            callback()
        finally:
            traceparent_var.reset(trace_token)
            request_id_var.reset(token)

    transaction.on_commit(run)
