"""Finding the tool registry a process serves or runs: ``--app module:attribute``."""

from __future__ import annotations

import importlib
from typing import Any

from mcp_tasks_redis.engine.registry import ToolRegistry

__all__ = ["RegistryLoadError", "load_registry"]


class RegistryLoadError(RuntimeError):
    """``load_registry`` could not produce a usable registry."""


def load_registry(spec: str) -> ToolRegistry:
    """Import ``"package.module:attr"`` (attr defaults to ``app``) and return that registry."""
    module_name, _, attr_path = spec.partition(":")
    module_name = module_name.strip()
    attr_path = attr_path.strip() or "app"
    if not module_name:
        raise RegistryLoadError(
            f"Invalid registry spec {spec!r}: expected 'module:attr', e.g. 'workers.tools:app'"
        )

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise RegistryLoadError(f"Cannot import registry module {module_name!r}: {exc}") from exc
        # The module exists but one of its own imports is missing.
        raise RegistryLoadError(f"Error while importing registry module {module_name!r}: {exc}") from exc
    except Exception as exc:
        raise RegistryLoadError(
            f"Error while importing registry module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc

    target: Any = module
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise RegistryLoadError(
                f"Module {module_name!r} has no attribute {attr_path!r} (from registry spec {spec!r})"
            ) from None

    if not isinstance(target, ToolRegistry):
        raise RegistryLoadError(f"{module_name}:{attr_path} is a {type(target).__name__}, not a ToolRegistry")
    if len(target) == 0:
        raise RegistryLoadError(f"Registry {module_name}:{attr_path} has no tools registered")
    return target
