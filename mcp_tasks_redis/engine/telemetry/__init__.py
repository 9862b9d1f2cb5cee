"""What a process tells its operators about the tasks it handles: Prometheus metrics
(`metrics.py`, with the queue depths sampled at scrape time in `queues.py`) and, with the
``[otel]`` extra, OpenTelemetry traces (`tracing.py`). Nothing here adds a Redis command to a
task's life: counters live in memory, and the queue depths are read when someone scrapes.
"""
