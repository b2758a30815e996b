"""gunicorn settings for the monolith:  gunicorn -c gunicorn.conf.py  (from backends/monolith).

| env | default | meaning |
|---|---|---|
| `MONOLITH_BIND` | `127.0.0.1:8000` | address to listen on (`0.0.0.0:8000` in a container) |
| `MONOLITH_WORKERS` | `2` | worker processes |
| `MONOLITH_MIGRATE_ON_START` | `1` | apply migrations in the master before workers start (SQLite / single replica; set 0 when several replicas share a database and migrations run as a separate step) |

Logs: JSON lines on stderr, access lines included (with the request id).
"""

import os

_here = os.path.dirname(os.path.abspath(__file__))

wsgi_app = "monolith.wsgi:application"
chdir = _here
bind = [os.environ.get("MONOLITH_BIND", "127.0.0.1:8000")]
workers = int(os.environ.get("MONOLITH_WORKERS", "2"))
worker_class = "sync"
timeout = 30
graceful_timeout = 10
keepalive = 5
# The gateway keeps connections alive; sync workers serve one request at a time each.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("MONOLITH_LOG_LEVEL", "info").lower()
logger_class = "monolith.gunicorn_logging.JsonLogger"
# Header names with underscores are dropped (gunicorn's default), so that `X_User_Id` can never
# be read as `X-User-Id`; spelled out because identity depends on it.
header_map = "drop"
# gunicorn >= 24 opens a control socket at one fixed per-user path ($HOME/.gunicorn/gunicorn.ctl):
# two monoliths on one machine (the stack and a test run) would fight over it. Not used here.
control_socket_disable = True


def on_starting(server) -> None:
    if os.environ.get("MONOLITH_MIGRATE_ON_START", "1").strip() in ("0", "false", "no", "off"):
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monolith.settings")
    import django
    from django.core.management import call_command
    from django.db import connections

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    # Workers are forked from this process: they must not inherit its database connections.
    connections.close_all()
    server.log.info("database migrations applied")
