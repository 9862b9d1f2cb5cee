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

from mcp_tasks_redis.engine.identity import may_access, principal
from mcp_tasks_redis.engine.tasks import ListScope

__all__ = ["current_owner", "list_scope", "may_access", "session_id"]

_session_ids: weakref.WeakKeyDictionary[ServerSession, str] = weakref.WeakKeyDictionary()


def current_owner() -> str | None:
    token = get_access_token()
    if token is None:
        return None
    return principal(str((token.claims or {}).get("iss") or ""), token.client_id, token.subject)


def session_id(session: ServerSession) -> str:
    """A random id per live session: the scope of `tasks/list` when there is no auth."""
    sid = _session_ids.get(session)
    if sid is None:
        sid = _session_ids[session] = secrets.token_hex(16)
    return sid


def list_scope(session: ServerSession) -> ListScope:
    owner = current_owner()
    return ListScope(owner=owner) if owner is not None else ListScope(session=session_id(session))
