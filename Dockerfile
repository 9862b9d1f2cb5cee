# mcp-tasks-redis: one image for server replicas and workers (the compose file picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app
WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that source edits reuse this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the package itself, without touching the dependencies installed above.
COPY README.md ./
COPY mcp_tasks_redis ./mcp_tasks_redis
COPY workers ./workers
RUN pip install --no-deps .

USER app
EXPOSE 8000
# Health checks live in docker-compose.yml (servers and workers need different ones).
ENTRYPOINT ["mcp-tasks-redis"]
CMD ["serve", "--transport", "streamable-http", "--host", "0.0.0.0"]
