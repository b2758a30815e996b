"""JSON log lines: one object per line, with the request id (and the W3C trace id, when the
caller sent a `traceparent`) of the request being served.

`{"ts": "2025-01-01T12:00:00.123Z", "level": "INFO", "logger": "orders.services",
"message": "order placed", "request_id": "abc", "trace_id": "4bf9…", "order_id": 7}` — fields
passed with `extra={...}` are included as they are.
"""

import json
import logging
from datetime import UTC, datetime

from .request_context import current_request_id, current_trace_id

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id", "trace_id", "taskName"}
)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (or keeps one set explicitly)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or current_request_id(),
        }
        trace_id = getattr(record, "trace_id", None) or current_trace_id()
        if trace_id:
            entry["trace_id"] = trace_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
