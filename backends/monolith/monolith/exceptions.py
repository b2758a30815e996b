"""Every API error as RFC 9457 problem+json, the shape the gateway and the extracted services use:

`{"type": "urn:problem-type:monolith:<slug>", "title", "status", "detail", "request_id"}`,
plus `errors: [{"field", "message"}]` for invalid input (422).
"""

from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from .request_context import current_request_id

PROBLEM_CONTENT_TYPE = "application/problem+json"

_TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-failed", "Invalid input"),
    429: ("too-many-requests", "Too many requests"),
    500: ("internal", "Internal server error"),
}


def problem(status_code: int, detail: str, errors: list[dict] | None = None) -> dict:
    slug, title = _TITLES.get(status_code, ("error", "Error"))
    body = {
        "type": f"urn:problem-type:monolith:{slug}",
        "title": title,
        "status": status_code,
        "detail": detail,
        "request_id": current_request_id(),
    }
    if errors is not None:
        body["errors"] = errors
    return body


def flatten_errors(detail, prefix: str = "") -> list[dict]:
    """DRF's nested ValidationError detail → `[{"field": "items[0].quantity", "message"}]`."""
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            if isinstance(key, int):  # ListSerializer errors are keyed by item index
                path = f"{prefix}[{key}]"
            else:
                field = "" if key == "non_field_errors" else str(key)
                path = f"{prefix}.{field}" if prefix and field else (prefix or field)
            out.extend(flatten_errors(value, path))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return [{"field": prefix, "message": str(item)} for item in detail]
        out = []
        for index, item in enumerate(detail):
            if item:
                out.extend(flatten_errors(item, f"{prefix}[{index}]"))
        return out
    return [{"field": prefix, "message": str(detail)}]


def problem_exception_handler(exc, context) -> Response | None:
    response = exception_handler(exc, context)
    if response is None:
        return None  # not an API error: Django's 500 handling (logged with the traceback)
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten_errors(exc.detail)
        response.status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
        response.data = problem(422, "the request body is invalid", errors)
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        if isinstance(detail, dict):
            detail = detail.get("detail", "request failed")
        response.data = problem(response.status_code, str(detail))
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def json_problem_response(status_code: int, detail: str) -> JsonResponse:
    return JsonResponse(problem(status_code, detail), status=status_code, content_type=PROBLEM_CONTENT_TYPE)


def handler404(request, exception=None) -> JsonResponse:
    return json_problem_response(404, f"no route for {request.path}")


def handler500(request) -> JsonResponse:
    return json_problem_response(500, "internal error; see the monolith's logs for this request_id")
