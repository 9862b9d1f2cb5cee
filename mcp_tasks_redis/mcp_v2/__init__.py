"""The SEP-2663 ``io.modelcontextprotocol/tasks`` extension on ``mcp>=2.3,<3``.

A thin layer over the protocol-neutral engine, built on the 2.x SDK's public extension API:
`TasksExtension` (an ``Extension``) turns a registry tool's ``tools/call`` into a task whose job a
worker process runs, and serves ``tasks/get``, ``tasks/update`` and ``tasks/cancel`` from Redis, so
any replica answers for any task; its middleware checks the SEP-2243 routing headers and serves
``notifications/tasks`` on ``subscriptions/listen``. `TasksClientExtension` is the client half.
"""
