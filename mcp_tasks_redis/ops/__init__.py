"""Operations: the `mcp-tasks-redis` command, the embedded default Redis, and deployment helpers.

Nothing in the engine or the wire adapters imports from here; this package sits on top of them.
"""
