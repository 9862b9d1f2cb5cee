"""Structured logs for every process: text for people, JSON lines for log collectors.

Records carry the task id, tool, worker and attempt when the runtime knows them (``extra=``),
so one grep or one query follows a task across server replicas and workers.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_FIELDS = ("task_id", "tool", "worker", "attempt")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: int | str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # arq logs every job start and end at INFO; our own task logs say more.
    logging.getLogger("arq").setLevel(logging.WARNING)
    # The SDK logs a traceback whenever a client closes its SSE stream: routine, not an error.
    logging.getLogger("mcp.server.streamable_http").addFilter(
        lambda r: (
            not (r.exc_info and r.exc_info[0] is not None and r.exc_info[0].__name__ == "ClosedResourceError")
        )
    )
    # The SDK warns for every non-numeric response id; ours are deliberately not numeric.
    root.addFilter(lambda r: "cannot be normalized" not in r.getMessage())
