"""Fixtures of the arq dispatcher's tests: an engine whose tasks go to an arq queue, and arq's keys
cleaned after each test.

arq names its per-job keys without any prefix of ours (``arq:job:<id>``, ``arq:in-progress:<id>``,
``arq:retry:<id>``, ``arq:result:<id>``; the job id is the task id), so the namespace fixture's
key-hygiene check cannot see them: the tests check them by task id instead
(`tests.arq_dispatch.helpers.arq_keys_left`). The queue
(``{namespace}:arq:queue``) is a sorted set without a TTL, as in arq itself: arq removes each job
as it ends and Redis drops the emptied set, so a test that ran its jobs leaves no queue; a test
that only created jobs deletes it here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from mcp_tasks_redis.engine.engine import TaskEngine
from tests.arq_dispatch.limits import LIMITS


@pytest.fixture
async def engine(redis: aioredis.Redis, namespace: str) -> AsyncIterator[TaskEngine]:
    # Imported here: without the [arq] extra the test modules skip, and this is never called.
    from mcp_tasks_redis.arq_dispatch import ArqDispatch

    dispatch = ArqDispatch.for_namespace(namespace)
    engine = TaskEngine(redis, namespace=namespace, limits=LIMITS, dispatcher=dispatch)
    yield engine
    await engine.close()
    await redis.delete(dispatch.queue_name)
