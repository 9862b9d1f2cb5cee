"""Who is asking: the principal a task is bound to, and the session a task was created in.

With authentication, a task belongs to a stable identity (issuer or client id, plus subject;
never a hash of the token or its scopes) and every tasks/* call checks it. Without it, the task
id is the capability, and listing is limited to the tasks of the calling session.
"""

from __future__ import annotations

import secrets
import weakref

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.session import ServerSession

from mcp_tasks_redis.engine.record import TaskRecord
from mcp_tasks_redis.engine.tasks import ListScope

_session_ids: weakref.WeakKeyDictionary[ServerSession, str] = weakref.WeakKeyDictionary()


def current_owner() -> str | None:
    token = get_access_token()
    if token is None:
        return None
    issuer = str((token.claims or {}).get("iss") or "")
    # Each part escaped, so that the joined string names one principal only: unescaped,
    # (client "app", subject "a|b") and (client "app|a", subject "b") would be the same owner.
    return "|".join(_escape(part) for part in (issuer, token.client_id, token.subject or ""))


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace("|", "%7C")


def session_id(session: ServerSession) -> str:
    """A random id per live session: the scope of `tasks/list` when there is no auth."""
    sid = _session_ids.get(session)
    if sid is None:
        sid = _session_ids[session] = secrets.token_hex(16)
    return sid


def may_access(record: TaskRecord, owner: str | None) -> bool:
    """Another owner's task looks exactly like a missing one (no existence oracle)."""
    return record.owner is None or record.owner == owner


def list_scope(session: ServerSession) -> ListScope:
    owner = current_owner()
    return ListScope(owner=owner) if owner is not None else ListScope(session=session_id(session))
