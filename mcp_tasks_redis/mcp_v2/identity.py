"""Who is asking on the 2.x SDK: the authenticated caller as a task owner (engine/identity.py).

Without authentication the owner is None and the task id is the capability (DESIGN decision 3);
SEP-2663 has no ``tasks/list``, so nothing lists another caller's tasks.
"""

from __future__ import annotations

from mcp.server.auth.middleware.auth_context import get_access_token

from mcp_tasks_redis.engine.identity import may_access, principal

__all__ = ["current_owner", "may_access"]


def current_owner() -> str | None:
    token = get_access_token()
    if token is None:
        return None
    return principal(str((token.claims or {}).get("iss") or ""), token.client_id, token.subject)
