"""Who owns a task: the protocol-neutral half of DESIGN decision 3, shared by both wire adapters.

With authentication, a task belongs to a stable identity: issuer (or client id) plus subject,
never a hash of the token or its scopes, so a refreshed token keeps its tasks. Each adapter reads
the caller's token through its own SDK and turns it into an owner string here; every tasks/*
call then checks it with `may_access`. Without authentication the owner is None and the task id
is the capability.
"""

from __future__ import annotations

from mcp_tasks_redis.engine.record import TaskRecord


def principal(issuer: str | None, client_id: str | None, subject: str | None) -> str:
    """The owner string of an authenticated caller.

    Each part is escaped before joining, so that the joined string names one principal only:
    unescaped, (client "app", subject "a|b") and (client "app|a", subject "b") would collide.
    """
    return "|".join(_escape(part or "") for part in (issuer, client_id, subject))


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace("|", "%7C")


def may_access(record: TaskRecord, owner: str | None) -> bool:
    """Whether ``owner`` may see the task. Another owner's task must look exactly like a missing
    one to the caller (no existence oracle): callers answer both with the same error."""
    return record.owner is None or record.owner == owner
