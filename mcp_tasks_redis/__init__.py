"""mcp-tasks-redis: distributed MCP Tasks on Redis, with tools run by arq worker processes."""
