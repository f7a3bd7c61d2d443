# One image for the four services; pick one with the command, e.g.
#   docker run xo-reseller services.licensing
# (docker-compose.yml runs all four, with RabbitMQ and MongoDB).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install the project as a package (pinned dependencies from pyproject.toml), then drop
# the sources: the services run from site-packages only.
WORKDIR /src
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
RUN pip install . && cd / && rm -rf /src

# Unprivileged user; /data belongs to it before it becomes a volume, so a new named
# volume starts with the right owner.
RUN useradd --system --create-home --uid 10001 --shell /usr/sbin/nologin reseller \
    && mkdir /data && chown reseller:reseller /data
WORKDIR /home/reseller

# Containers listen on every interface; logs are JSON for the log collector.
ENV DATA_DIR=/data \
    HTTP_HOST=0.0.0.0 \
    LOG_FORMAT=json
VOLUME ["/data"]
USER reseller
EXPOSE 8101 8102 8103 8104

ENTRYPOINT ["python", "-m"]
CMD ["services.orders"]
