"""The protocol-neutral engine: task records, atomic state machine, events, dispatch, worker runtime.

Nothing in this package imports the `mcp` SDK; the wire adapters build on it.
"""
