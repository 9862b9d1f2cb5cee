"""Runtime configuration for servers, workers and the dev stack, read from the environment.

Every setting is an environment variable with the prefix ``MCP_TASKS_`` (``MCP_TASKS_LEASE_MS``,
``MCP_TASKS_CONCURRENCY`` ...); the Redis URL is also accepted as plain ``REDIS_URL``. Command-line
flags override the environment by passing keyword arguments to :class:`Settings`. The field
descriptions below are the documented configuration reference.
"""

from __future__ import annotations

import logging
from typing import Literal, Self

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_APP", "DEFAULT_REDIS_URL", "ENV_PREFIX", "Settings"]

ENV_PREFIX = "MCP_TASKS_"
"""Prefix of every environment variable read by :class:`Settings`."""

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
"""The Redis used when no URL is configured and no embedded Redis is wanted."""

DEFAULT_APP = "mcp_tasks_redis.examples.demo:app"
"""The tool registry served and run when no ``--app`` is given: the demo tools shipped in the wheel,
so `mcp-tasks-redis demo` and `dev` work from any folder."""

REDIS_URL_PREFIXES: tuple[str, ...] = (
    "redis://",
    "rediss://",
    "unix://",
    "redis+cluster://",
    "redis+sentinel://",
)
"""The schemes `redis_url` accepts (see `mcp_tasks_redis.engine.urls.parse_redis_url`)."""

_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


class Settings(BaseSettings):
    """Configuration of one process (server replica, worker, or the dev stack)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MCP_TASKS_REDIS_URL", "REDIS_URL"),
        description=(
            "Redis URL (`MCP_TASKS_REDIS_URL` or `REDIS_URL`), e.g. redis://host:6379/0; a Redis Cluster:"
            " redis+cluster://host1:6379,host2:6379/; Sentinel: redis+sentinel://host1:26379,host2:26379/"
            "service_name[/db] (user:password@ before the hosts authenticates to Redis; sentinel_password=..."
            " in the query, to the sentinels). Unset: the dev"
            " stack and the demo use a Redis answering on 127.0.0.1:6379, else start an embedded one"
            f" (redis-server from PATH or in-process fakeredis); other commands use {DEFAULT_REDIS_URL}."
        ),
    )
    namespace: str = Field(
        default="mcp-tasks",
        min_length=1,
        max_length=64,
        pattern=r"^[^\s*?\[\]\\{}]+$",
        description="Prefix of every Redis key and channel of this deployment; several can share a Redis.",
    )
    shards: int = Field(
        default=1,
        ge=1,
        le=1024,
        description=(
            "Shards the tasks are spread over: each is one Redis Cluster hash slot with its own dispatch"
            " stream. 1 suits a single Redis; on a Cluster, a few per master. Part of the deployment, like"
            " the namespace: every process must agree, and it must not change while tasks exist."
        ),
    )
    dispatcher: Literal["streams", "arq"] = Field(
        default="streams",
        description=(
            "How jobs reach the workers: `streams` (Redis Streams consumer group, the default) or `arq`"
            " (the `[arq]` extra: jobs go to an arq queue and arq workers run them through"
            " `mcp_tasks_redis.arq_dispatch.ArqTasks`; single Redis only, no per-owner quotas)."
            " Every process of a deployment must agree."
        ),
    )
    arq_queue: str | None = Field(
        default=None,
        description=(
            "With `dispatcher=arq`: the arq queue (sorted set) of the jobs; default `{namespace}:arq:queue`."
        ),
    )
    arq_job_timeout_s: float = Field(
        default=300,
        gt=0,
        description=(
            "With `dispatcher=arq`: arq's timeout for a task's run. It bounds every run, and arq's"
            " in-progress key (this plus 10 s) is the lease: a lost worker's task runs again after it."
        ),
    )
    arq_poll_delay_s: float = Field(
        default=0.5,
        gt=0,
        description=(
            "With `dispatcher=arq`: how often `mcp-tasks-redis worker --dispatcher arq` polls arq's queue"
            " (arq's `poll_delay`): the longest a new task waits for pickup on an idle worker."
        ),
    )
    default_ttl_ms: int = Field(
        default=3_600_000,
        gt=0,
        description="TTL (ms) of a task whose creator requested none. Keys of a task expire together.",
    )
    min_ttl_ms: int = Field(
        default=1_000,
        gt=0,
        description="Smallest TTL (ms) a task may get; smaller requested TTLs are raised to it.",
    )
    max_ttl_ms: int = Field(
        default=86_400_000 * 7,
        gt=0,
        description="Largest TTL (ms) a task may get; larger requested TTLs are lowered to it.",
    )
    poll_interval_ms: int = Field(
        default=500,
        gt=0,
        description=(
            "Suggested client poll interval (ms) reported on tasks, and the bound on every internal wait"
            " that races pub/sub against polling the stored task."
        ),
    )
    lease_ms: int = Field(
        default=30_000,
        gt=0,
        description=(
            "Worker lease (ms) on a running task. The worker renews it well before expiry; a task whose"
            " lease lapses is picked up and re-run by another worker."
        ),
    )
    max_attempts: int = Field(
        default=3,
        gt=0,
        description=(
            "Runs of a task in all (the first, re-runs after a worker is lost, retries) before it ends"
            " failed, for tools whose retry policy does not say."
        ),
    )
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        description=(
            "How long a run of a tool may take before it is cancelled and fails, for tools that do not say."
        ),
    )
    replica_acks: int = Field(
        default=0,
        ge=0,
        description=(
            "Replicas that must hold a new task before its creation is acknowledged (Redis WAIT), so that"
            " a master lost right after it loses no acknowledged task; 0: Redis' own asynchronous"
            " replication. Not applied on a Redis Cluster."
        ),
    )
    owner_max_running: int = Field(
        default=0,
        ge=0,
        description=(
            "Per-owner quota: tasks one caller (principal, or session without auth) runs at once; over it"
            " a task waits in the caller's queue. 0: no limit."
        ),
    )
    owner_max_queued: int = Field(
        default=1_000,
        ge=0,
        description="Per-owner quota: tasks one caller may have waiting; past it a call is refused (-32029).",
    )
    owner_rate_per_min: int = Field(
        default=0,
        ge=0,
        description=(
            "Per-owner quota: tasks one caller may create per minute; past it a call is refused. 0: no limit."
        ),
    )
    call_priority_max: Literal["high", "normal", "low"] = Field(
        default="normal",
        description=(
            "The highest priority a call may ask for in its `_meta` (`dev.mcp-tasks-redis/priority`); a"
            " tool's own priority is not bounded by it."
        ),
    )
    input_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description=(
            "How long a tool waits for the client's answer to an input request (elicitation, sampling)"
            " before the task fails; unset: until the task's TTL runs out."
        ),
    )
    concurrency: int = Field(
        default=10,
        gt=0,
        description="Worker slots: how many tasks one worker process runs at the same time.",
    )
    progress_min_interval_s: float = Field(
        default=0.1,
        ge=0,
        description=(
            "Progress throttle (s): an update is stored and published only after this interval or a change"
            " of at least 1%; the final 100% always goes out."
        ),
    )
    max_argument_bytes: int = Field(
        default=1_000_000,
        gt=0,
        description="Largest JSON encoding (bytes) of a tool call's arguments accepted as a task.",
    )
    max_result_bytes: int = Field(
        default=10_000_000,
        gt=0,
        description="Largest JSON encoding (bytes) of a stored task result; a larger result fails the task.",
    )
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Interface the Streamable HTTP server binds to (0.0.0.0 in containers).",
    )
    port: int = Field(default=8000, gt=0, le=65_535, description="TCP port of the Streamable HTTP server.")
    transport: Literal["stdio", "streamable-http"] = Field(
        default="streamable-http",
        description="MCP transport of `serve`: `stdio` (one local client) or `streamable-http`.",
    )
    app: str = Field(
        default=DEFAULT_APP,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$",
        description="Tool registry to serve and run, as `module:attribute`; servers and workers must agree.",
    )
    metrics_port: int | None = Field(
        default=None,
        gt=0,
        le=65_535,
        description=(
            "Worker: serve its Prometheus metrics at http://HOST:PORT/metrics (HOST: `host`, so set"
            " MCP_TASKS_HOST=0.0.0.0 in a container); unset: no metrics endpoint. Servers always serve"
            " /metrics on their HTTP port."
        ),
    )
    traces: str | None = Field(
        default=None,
        pattern=r"^(otlp|console|jsonl:.+)$",
        description=(
            "Where this process exports its OpenTelemetry spans (needs the `otel` extra): `otlp` (with"
            " opentelemetry-exporter-otlp-proto-http installed; endpoint from OTEL_EXPORTER_OTLP_ENDPOINT),"
            " `console`, or `jsonl:PATH` (one JSON object per span, appended to PATH). Unset: spans go to"
            " whatever tracer provider the application or `opentelemetry-instrument` set up, if any."
        ),
    )
    log_level: str = Field(
        default="INFO",
        description="Log level: CRITICAL, ERROR, WARNING, INFO or DEBUG (case-insensitive).",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Log output: human-readable `text`, or `json` lines for log collectors.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _normalise_log_level(cls, value: object) -> object:
        if isinstance(value, str):
            level = value.strip().upper()
            if level not in _LOG_LEVELS:
                raise ValueError(f"log level must be one of {', '.join(_LOG_LEVELS)}, got {value!r}")
            return level
        return value

    @field_validator("redis_url", "traces", "metrics_port", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `REDIS_URL=` in a compose file or shell means "not configured", not "connect to ''".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(REDIS_URL_PREFIXES):
            raise ValueError(f"redis_url must start with {', '.join(REDIS_URL_PREFIXES)}, got {value!r}")
        if value.startswith(("redis+cluster://", "redis+sentinel://")):
            from mcp_tasks_redis.engine.urls import parse_redis_url  # (the engine imports redis-py)

            parse_redis_url(value)  # a ValueError says what is wrong with it
        return value

    @model_validator(mode="after")
    def _check_ttl_bounds(self) -> Self:
        if not self.min_ttl_ms <= self.default_ttl_ms <= self.max_ttl_ms:
            raise ValueError(
                "TTL bounds must satisfy min_ttl_ms <= default_ttl_ms <= max_ttl_ms, got"
                f" {self.min_ttl_ms} <= {self.default_ttl_ms} <= {self.max_ttl_ms}"
            )
        return self

    @property
    def resolved_redis_url(self) -> str:
        """The configured Redis URL, or :data:`DEFAULT_REDIS_URL` when none is set.

        Commands that may start an embedded Redis (dev stack, demo) check :attr:`redis_url` for
        ``None`` themselves, through :func:`mcp_tasks_redis.ops.embedded.resolve_redis`.
        """
        return self.redis_url if self.redis_url is not None else DEFAULT_REDIS_URL

    @property
    def log_level_number(self) -> int:
        """:attr:`log_level` as a :mod:`logging` level number."""
        return logging.getLevelNamesMapping()[self.log_level]
