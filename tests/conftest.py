pytest_plugins = ["redis_fixtures"]
