"""The 2025-11-25 Tasks wire adapter (SEP-1686) on ``mcp>=1.23,<2``.

A thin layer over the protocol-neutral engine: ``RedisTaskStore`` and ``RedisTaskMessageQueue``
implement the SDK's ``TaskStore`` and ``TaskMessageQueue`` so that an existing server swaps them in
for the in-memory ones, and the response router carries a client's reply to a queued request back
to the waiter in whichever process queued it.
"""
