"""The Django monolith behind the gateway: project package (settings, URLs, cross-cutting code).

Module map:
- settings:        every setting, read from the environment with safe defaults
- request_context: the request id of the current request (a contextvar) and its validation
- jsonlog:          JSON log lines on stderr, each carrying the request id
- middleware:      request id in/out, `X-Served-By: monolith`
- authentication:  identity from the gateway's headers (trusted peers only) and from JWTs (JWKS)
- permissions:     role checks for DRF views
- exceptions:      every API error as RFC 9457 problem+json
- gunicorn_logging: gunicorn's access and error logs as JSON lines
"""
