# amo-sla worker image: `docker build -t amo-sla .`, then run it with the account's variables
# (see README) and a volume for /var/lib/amo-sla, which holds the cache, task ledger and tokens.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The runtime dependencies are the exact versions of requirements.lock, checked against its
# hashes (`python3 dev.py lock` refreshes it); the project itself is then installed from
# pyproject.toml without dependencies, and pip check fails the build if the lock lacks one.
# The sources are not kept, so the image runs exactly what was installed.
WORKDIR /src
COPY requirements.lock ./
RUN pip install --no-deps --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY amo_client ./amo_client
COPY sla ./sla
COPY config ./config
RUN pip install --no-deps . && pip check && rm -rf /src

RUN groupadd --system --gid 10001 amosla \
    && useradd --system --uid 10001 --gid amosla --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin amosla \
    && mkdir -p /var/lib/amo-sla /app \
    && chown amosla:amosla /var/lib/amo-sla \
    && chmod 0700 /var/lib/amo-sla

ENV SLA_STATE_DIR=/var/lib/amo-sla
VOLUME ["/var/lib/amo-sla"]
# Settings are read from the environment and from /app/.env when one is mounted there.
WORKDIR /app
USER 10001:10001

# The HTTP server for amoCRM's webhooks and Prometheus (off unless SLA_WEBHOOK_SECRET or
# SLA_METRICS is set; then set SLA_HTTP_LISTEN=0.0.0.0:8080 and put an HTTPS proxy in front).
EXPOSE 8080

# Fails when the last good sync cycle is older than SLA_HEALTH_MAX_AGE (default: three poll
# intervals); the start period leaves room for the first full read of a large pipeline.
HEALTHCHECK --interval=60s --timeout=10s --start-period=5m --retries=3 \
    CMD ["python", "-m", "worker", "health"]

# Exec form: python is PID 1 and receives SIGTERM itself, so `docker stop` lets the write
# batch in flight finish before the worker exits.
CMD ["python", "-m", "worker", "run"]
