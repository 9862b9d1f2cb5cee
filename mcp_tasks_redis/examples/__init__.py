"""Example tool registries that ship with the library.

`mcp_tasks_redis.examples.demo:app` is the default ``--app``: it is what `mcp-tasks-redis demo`
and `dev` run when nothing else is named, so an installed package works from any folder.
"""
