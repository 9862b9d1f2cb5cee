# mcp-tasks-redis: one image for server replicas and workers (the compose file picks the command).
#   docker build -t mcp-tasks-redis:local .
#   docker build --build-arg EXTRAS=arq -t mcp-tasks-redis:local .   # with optional extras
#   docker build --build-arg MCP_SDK="mcp>=2.3,<3" -t mcp-tasks-redis:local .   # the other wire

# The requirement list, read from pyproject.toml ([project] dependencies plus the EXTRAS asked for).
# A stage of its own: the install layer below is keyed on this list's content, so an edit of
# pyproject.toml that leaves the dependencies alone (version, tool settings) keeps it cached.
# An extra may name the project itself ("mcp-tasks-redis[test]"): the package is installed later.
# MCP_SDK picks the wire the servers speak: the installed `mcp` major decides (mcp_tasks_redis.wire).
FROM python:3.11-slim AS requirements
ARG EXTRAS=""
ARG MCP_SDK="mcp>=1.24,<2"
COPY pyproject.toml /src/pyproject.toml
RUN python -c "import os, re, tomllib; \
p = tomllib.load(open('/src/pyproject.toml', 'rb'))['project']; \
extras = [e.strip() for e in os.environ.get('EXTRAS', '').split(',') if e.strip()]; \
reqs = p['dependencies'] + [r for e in extras for r in p['optional-dependencies'][e]]; \
reqs = [os.environ['MCP_SDK'] if re.match(r'mcp\b(?![-_.])', r) else r for r in reqs]; \
print('\n'.join(r for r in reqs if not re.match(re.escape(p['name']) + r'\b', r)))" \
    > /requirements.txt

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app

COPY --from=requirements /requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt

# Then the package itself, built as a wheel and installed without touching the dependencies
# above; its sources do not stay in the image.
COPY pyproject.toml README.md /tmp/src/
COPY mcp_tasks_redis /tmp/src/mcp_tasks_redis
RUN pip install --no-deps /tmp/src && rm -rf /tmp/src

# The deployable entry point (`--app workers.demo:app`): the working directory is on the app
# path of `mcp-tasks-redis serve|worker`, so modules here are importable, as in the repository.
WORKDIR /app
COPY workers ./workers

USER app
EXPOSE 8000
# Health checks live in docker-compose.yml (servers and workers need different ones).
ENTRYPOINT ["mcp-tasks-redis"]
CMD ["serve", "--transport", "streamable-http", "--host", "0.0.0.0"]
