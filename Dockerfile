# sora-bot: one image for `run`, `worker`, `sync` and `db upgrade`.
# Build stage: install the project and its dependencies (wheels only; the ffmpeg binary comes inside the
# imageio-ffmpeg wheel, so no system packages are needed at run time).
FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
COPY storage ./storage
RUN python -m venv /opt/sora-bot && /opt/sora-bot/bin/pip install /src

# Run stage: the virtual environment only, a non-root user, data in a volume.
FROM python:3.11-slim
RUN groupadd --gid 10001 sora && useradd --create-home --uid 10001 --gid 10001 sora \
    && mkdir -p /data \
    && chown sora:sora /data
COPY --from=build /opt/sora-bot /opt/sora-bot
ENV PATH=/opt/sora-bot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DATABASE_PATH=/data/sora-bot.db \
    VIDEO_DIR=/data/videos \
    METRICS_HOST=0.0.0.0 \
    METRICS_PORT=9100
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
# 8080: upstream callbacks (when CALLBACK_PUBLIC_URL is set); 9100: /metrics and /healthz.
EXPOSE 8080 9100
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('METRICS_PORT', '9100') + '/healthz', timeout=4)"]
ENTRYPOINT ["sora-bot"]
CMD ["run"]
