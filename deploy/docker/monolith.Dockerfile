# syntax=docker/dockerfile:1
# monolith: the Django monolith (Django 5 + DRF) served by gunicorn on 8000.
# Build from the repository root:  docker build -f deploy/docker/monolith.Dockerfile -t monolith .

FROM python:3.11-slim-bookworm AS build
RUN python -m venv /opt/venv
COPY backends/monolith/requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app \
    && mkdir -p /data && chown 10001:10001 /data
COPY --from=build /opt/venv /opt/venv
COPY backends/monolith /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MONOLITH_BIND=0.0.0.0:8000 \
    MONOLITH_DB=/data/db.sqlite3
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=2s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["gunicorn", "-c", "/app/gunicorn.conf.py"]
