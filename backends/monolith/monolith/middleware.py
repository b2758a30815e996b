"""Cross-cutting HTTP behaviour: the request id, the caller's trace, the `X-Served-By` header."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .request_context import (
    REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
    is_well_formed,
    new_request_id,
    request_id_var,
    traceparent_var,
    well_formed_traceparent,
)

SERVED_BY = "monolith"


class RequestIdMiddleware:
    """Keeps a well-formed incoming `X-Request-ID` (or makes one), exposes it to logs and
    outgoing calls through a contextvar and `request.request_id`, and echoes it on the response.
    A well-formed `traceparent` is kept the same way (log lines get its `trace_id`; outgoing
    calls pass it on).
    Every response also says who served it (`X-Served-By: monolith`), which is how a split
    between the monolith and an extracted service is observed from outside."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if is_well_formed(incoming) else new_request_id()
        request.request_id = request_id
        traceparent = well_formed_traceparent(request.headers.get(TRACEPARENT_HEADER, ""))
        token = request_id_var.set(request_id)
        trace_token = traceparent_var.set(traceparent)
        try:
            response = self.get_response(request)
        finally:
            traceparent_var.reset(trace_token)
            request_id_var.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        response["X-Served-By"] = SERVED_BY
        return response
