"""The topology tests load their fixtures with ``pytest_plugins = ["tests.topology.servers"]``; this
conftest only lets pytest rewrite that module's asserts and knows the ``topology`` marker before the
test modules are collected."""

import pytest

pytest.register_assert_rewrite("tests.topology.servers")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "topology: starts a real Redis Cluster or Sentinel topology (seconds)")
