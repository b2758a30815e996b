"""Cross-cutting HTTP behaviour: the request id and the `X-Served-By` header."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .request_context import REQUEST_ID_HEADER, is_well_formed, new_request_id, request_id_var

SERVED_BY = "monolith"


class RequestIdMiddleware:
    """Keeps a well-formed incoming `X-Request-ID` (or makes one), exposes it to logs and
    outgoing calls through a contextvar and `request.request_id`, and echoes it on the response.
    Every response also says who served it (`X-Served-By: monolith`), which is how a split
    between the monolith and an extracted service is observed from outside."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if is_well_formed(incoming) else new_request_id()
        request.request_id = request_id
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        response["X-Served-By"] = SERVED_BY
        return response
