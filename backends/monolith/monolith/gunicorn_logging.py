"""gunicorn's logs as JSON lines on stderr, like the application's (monolith.jsonlog).

The access line carries the request id the response echoes (`X-Request-ID`, set by
monolith.middleware.RequestIdMiddleware), so a request is found by its id in these logs too.
"""

import json
import logging
import sys
from datetime import UTC, datetime

from gunicorn import glogging


class _JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = getattr(record, "json_entry", None)
        if entry is None:
            entry = {"level": record.levelname, "logger": "gunicorn", "message": record.getMessage()}
            if record.exc_info:
                entry["exception"] = self.formatException(record.exc_info)
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        return json.dumps({"ts": ts.replace("+00:00", "Z"), **entry}, default=str)


class JsonLogger(glogging.Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        formatter = _JsonLineFormatter()
        for handler in self.error_log.handlers:
            handler.setFormatter(formatter)
        if cfg.accesslog == "-":
            # gunicorn's "-" is stdout; every log of this service goes to stderr.
            for handler in list(self.access_log.handlers):
                self.access_log.removeHandler(handler)
            handler = logging.StreamHandler(sys.stderr)
            self.access_log.addHandler(handler)
        for handler in self.access_log.handlers:
            handler.setFormatter(formatter)

    def access(self, resp, req, environ, request_time) -> None:
        if not (self.cfg.accesslog or self.cfg.logconfig or self.cfg.logconfig_dict or self.cfg.syslog):
            return
        atoms = self.atoms(resp, req, environ, request_time)
        entry = {
            "level": "INFO",
            "logger": "gunicorn.access",
            "message": "request completed",
            "request_id": atoms.get("{x-request-id}o") or atoms.get("{x-request-id}i") or None,
            "remote": atoms["h"],
            "method": atoms["m"],
            "path": atoms["U"],
            "query": atoms["q"] or None,
            "status": int(atoms["s"]) if str(atoms["s"]).isdigit() else atoms["s"],
            "bytes": atoms["B"],
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "user_agent": atoms["a"],
        }
        try:
            self.access_log.info("request completed", extra={"json_entry": entry})
        except Exception:  # a log line must never break a response
            self.exception("failed to write the access log line")
