"""RedisTaskStore.list_tasks: an opaque cursor over a creation-time index, stable while tasks are
added, in either order, scoped by a hook the server controls; a malformed cursor is refused.
"""

from __future__ import annotations

import base64
import contextvars
import json

import pytest
import redis.asyncio as aioredis
from mcp.types import Task, TaskMetadata

from mcp_tasks_redis.engine.errors import InvalidCursor
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.tasks import ListScope
from mcp_tasks_redis.mcp_v1.store import RedisTaskStore

META = TaskMetadata(ttl=60_000)


def store_for(redis: aioredis.Redis, namespace: str, **options: object) -> RedisTaskStore:
    return RedisTaskStore(redis, namespace=namespace, limits=TaskLimits(list_page_size=3), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "cursor",
    [
        "invalid-cursor",
        "%%%",
        base64.urlsafe_b64encode(b'{"not": "a list"}').decode(),
        base64.urlsafe_b64encode(json.dumps(["desc", 1, "bad id!"]).encode()).decode(),
    ],
)
async def test_malformed_cursor_is_refused(redis: aioredis.Redis, namespace: str, cursor: str) -> None:
    store = store_for(redis, namespace)
    await store.create_task(META)
    with pytest.raises(InvalidCursor, match="Invalid cursor"):
        await store.list_tasks(cursor)


async def test_cursor_of_the_other_order_is_refused(redis: aioredis.Redis, namespace: str) -> None:
    newest = store_for(redis, namespace, newest_first=True)
    for _ in range(4):
        await newest.create_task(META)
    _, cursor = await newest.list_tasks()
    assert cursor is not None
    with pytest.raises(InvalidCursor):
        await store_for(redis, namespace).list_tasks(cursor)


@pytest.mark.parametrize("newest_first", [True, False])
async def test_listing_is_stable_while_tasks_are_added(
    redis: aioredis.Redis, namespace: str, newest_first: bool
) -> None:
    store = store_for(redis, namespace, newest_first=newest_first)
    before = [await store.create_task(META) for _ in range(8)]
    pages: list[list[Task]] = []
    added: list[Task] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list_tasks(cursor)
        pages.append(page)
        added.append(await store.create_task(META))  # a new task between every two pages
        if cursor is None:
            break
    listed = [t for page in pages for t in page]
    assert all(len(page) <= 3 for page in pages)
    assert len({t.taskId for t in listed}) == len(listed), "a task listed twice"
    # The index keeps creation order, even for tasks created within the same millisecond.
    created = {t.taskId: n for n, t in enumerate([*before, *added])}
    expected = list(reversed(before)) if newest_first else before
    old_ids = {t.taskId for t in before}
    assert [t.taskId for t in listed if t.taskId in old_ids] == [t.taskId for t in expected]
    assert [t.taskId for t in listed] == [
        t.taskId for t in sorted(listed, key=lambda t: created[t.taskId], reverse=newest_first)
    ]
    if newest_first:
        # Newer than the cursor: a newest-first walk never shows tasks added during it.
        assert not {t.taskId for t in listed} & {t.taskId for t in added}


async def test_scope_restricts_listing_to_a_session_or_owner(redis: aioredis.Redis, namespace: str) -> None:
    current: contextvars.ContextVar[ListScope | None] = contextvars.ContextVar("scope", default=None)
    store = store_for(redis, namespace, scope=current.get)
    mine = {(await store.create_task(META, session="s1")).taskId for _ in range(4)}
    theirs = {(await store.create_task(META, session="s2", owner="alice")).taskId for _ in range(2)}

    async def all_pages() -> set[str]:
        ids: set[str] = set()
        cursor: str | None = None
        while True:
            page, cursor = await store.list_tasks(cursor)
            ids |= {t.taskId for t in page}
            if cursor is None:
                return ids

    current.set(ListScope(session="s1"))
    assert await all_pages() == mine
    current.set(ListScope(owner="alice"))
    assert await all_pages() == theirs
    current.set(ListScope(session="nobody"))
    assert await all_pages() == set()
    current.set(None)
    assert await all_pages() == mine | theirs
