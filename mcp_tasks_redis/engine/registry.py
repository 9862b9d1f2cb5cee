"""The tool registry shared by the MCP server and the arq workers.

Both processes import the same ``ToolRegistry`` (via ``load_registry("module:attr")``):
the server uses it to list tools and validate calls, the workers to run them.
A tool is a plain (async or sync) function; its signature becomes the input JSON
Schema, and parameters annotated with a runtime type (``ToolContext``,
``CancellationToken``, ``RequestInfo``, ``ProgressReporter``) are injected instead
of being read from the arguments.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import time
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar, cast, get_args, get_origin, overload

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic.json_schema import GenerateJsonSchema

from mcp_tasks_redis.engine.context import CancellationToken, RequestInfo, ToolContext
from mcp_tasks_redis.engine.policy import Policy, Priority, Retry
from mcp_tasks_redis.engine.prepare import PrepareFn
from mcp_tasks_redis.engine.progress import ProgressReporter
from mcp_tasks_redis.engine.results import ToolResult

__all__ = [
    "InvalidArguments",
    "Services",
    "TaskSupport",
    "ToolRegistry",
    "ToolSpec",
]

TaskSupport = Literal["forbidden", "optional", "required"]
_TASK_SUPPORT_VALUES: frozenset[str] = frozenset(typing.get_args(TaskSupport))

F = TypeVar("F", bound=Callable[..., Any])

InjectedKind = Literal["context", "cancellation", "request", "progress"]
_INJECTABLE: tuple[tuple[type, InjectedKind], ...] = (
    (ToolContext, "context"),
    (CancellationToken, "cancellation"),
    (RequestInfo, "request"),
    (ProgressReporter, "progress"),
)


class InvalidArguments(ValueError):
    """The arguments of a ``tools/call`` do not match the tool's input schema."""


@dataclass(frozen=True)
class Services:
    """The per-invocation objects the runtime injects into tools."""

    context: ToolContext
    cancellation: CancellationToken
    request: RequestInfo
    progress: ProgressReporter

    @classmethod
    def from_context(cls, context: ToolContext) -> Services:
        return cls(context, context.cancellation, context.request, context.progress)

    def get(self, kind: InjectedKind) -> Any:
        return getattr(self, kind)


class _NoTitles(GenerateJsonSchema):
    # Auto-generated titles ("Seconds" for "seconds") only add noise to tool listings;
    # titles set explicitly with Field(title=...) are still emitted.
    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


@dataclass(frozen=True)
class _Param:
    name: str
    field_name: str  # internal pydantic field name; the JSON name is its alias


@dataclass(frozen=True)
class ToolSpec:
    """One registered tool: its MCP metadata plus how to call it."""

    name: str
    title: str | None
    description: str | None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    task_support: TaskSupport
    fn: Callable[..., Any]
    policy: Policy
    _model: type[BaseModel] = field(repr=False, compare=False)
    _params: tuple[_Param, ...] = field(repr=False, compare=False)
    _injected: tuple[tuple[str, InjectedKind], ...] = field(repr=False, compare=False)
    # Runs on the server before the task exists, to ask the client first (engine/prepare.py).
    prepare: PrepareFn | None = field(default=None, repr=False, compare=False)

    @property
    def injected(self) -> dict[str, InjectedKind]:
        """Parameters the runtime supplies, by name."""
        return dict(self._injected)

    def validate_arguments(self, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        """Validate ``arguments`` and return the keyword arguments for the tool's own parameters."""
        raw = cast(object, {} if arguments is None else arguments)
        if not isinstance(raw, Mapping):
            # Clients send arbitrary JSON; a list or string here must not surface as a TypeError.
            raise InvalidArguments(f"Invalid arguments for tool {self.name!r}: arguments must be an object")
        try:
            model = self._model.model_validate(dict(cast(Mapping[str, Any], raw)))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or '<arguments>'}: {error['msg']}"
                for error in exc.errors()
            )
            raise InvalidArguments(f"Invalid arguments for tool {self.name!r}: {problems}") from exc
        # Attribute access (not model_dump) keeps nested models as model instances.
        return {param.name: getattr(model, param.field_name) for param in self._params}

    async def invoke(self, arguments: Mapping[str, Any] | None, services: Services) -> Any:
        """Validate, inject and run the tool; sync tools run in a worker thread."""
        return await self.invoke_validated(self.validate_arguments(arguments), services)

    async def invoke_validated(
        self, kwargs: dict[str, Any], services: Services, usage: dict[str, Any] | None = None
    ) -> Any:
        """Run the tool with arguments `validate_arguments` returned, and its helpers injected.

        A sync tool runs in a worker thread, whose CPU time goes into ``usage["cpu_ms"]``. A
        cancel or timeout does not wait for the thread (it cannot be interrupted): the tool's
        cancellation token tells it to stop, and whatever it returns then is dropped.
        """
        kwargs = dict(kwargs)
        for name, kind in self._injected:
            kwargs[name] = services.get(kind)
        if _is_async_callable(self.fn):
            return await self.fn(**kwargs)

        def measured() -> Any:
            start = time.thread_time()
            try:
                return self.fn(**kwargs)
            finally:
                if usage is not None:
                    usage["cpu_ms"] = round((time.thread_time() - start) * 1000, 3)

        result = await anyio.to_thread.run_sync(measured, abandon_on_cancel=True)
        if inspect.isawaitable(result):
            # A sync wrapper (e.g. a partial over an async function) handed back a coroutine.
            return await result
        return result


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func  # pyright: ignore[reportUnknownMemberType]
    # Callable objects with an `async def __call__` are async too.
    if inspect.iscoroutinefunction(fn):
        return True
    return not inspect.isroutine(fn) and inspect.iscoroutinefunction(fn.__call__)


def _strip_annotated(annotation: Any) -> Any:
    while get_origin(annotation) is typing.Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _injected_kind(annotation: Any) -> InjectedKind | None:
    annotation = _strip_annotated(annotation)
    if get_origin(annotation) in (typing.Union, types.UnionType):
        # `ctx: ToolContext | None = None` keeps a tool callable directly in tests.
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _injected_kind(members[0]) if len(members) == 1 else None
    if inspect.isclass(annotation):
        for cls, kind in _INJECTABLE:
            if issubclass(annotation, cls):
                return kind
    return None


def _first_paragraph(fn: Callable[..., Any]) -> str | None:
    doc = inspect.getdoc(fn)
    if not doc:
        return None
    paragraph = doc.strip().split("\n\n", 1)[0]
    return " ".join(line.strip() for line in paragraph.splitlines())


def _is_structured(annotation: Any) -> bool:
    if not inspect.isclass(annotation):
        return False
    # A `ToolResult` is the envelope of a result, not its structured content: a tool returning one
    # declares no output schema (its `structured` dict can be any object), as it would if it
    # returned a plain dict. Its own fields (text, structured, is_error) are never the content.
    if issubclass(annotation, ToolResult):
        return False
    if issubclass(annotation, BaseModel) or dataclasses.is_dataclass(annotation):
        return True
    # Duck-typed so that both typing.TypedDict and typing_extensions.TypedDict count.
    return hasattr(annotation, "__required_keys__") and issubclass(annotation, dict)


def _output_schema(name: str, annotation: Any) -> dict[str, Any] | None:
    annotation = _strip_annotated(annotation)
    if not _is_structured(annotation):
        return None
    try:
        return TypeAdapter(annotation).json_schema(schema_generator=_NoTitles)
    except Exception as exc:  # pydantic raises several error types for unsupported types
        raise TypeError(f"tool {name!r}: cannot build an output schema from {annotation!r}: {exc}") from exc


def _build_spec(
    fn: Callable[..., Any],
    name: str,
    *,
    title: str | None,
    description: str | None,
    task_support: TaskSupport,
    policy: Policy,
    prepare: PrepareFn | None = None,
) -> ToolSpec:
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # NameError for unresolvable forward references, mostly
        raise TypeError(f"tool {name!r}: cannot resolve type annotations: {exc}") from exc

    fields: dict[str, Any] = {}
    params: list[_Param] = []
    injected: list[tuple[str, InjectedKind]] = []
    for index, param in enumerate(inspect.signature(fn).parameters.values()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise TypeError(
                f"tool {name!r}: parameter {param.name!r} must be a named keyword-capable parameter"
            )
        annotation = hints.get(param.name, Any)
        kind = _injected_kind(annotation)
        if kind is not None:
            injected.append((param.name, kind))
            continue
        # Fields get neutral internal names with the parameter name as alias, so that
        # parameters such as `schema`, `json` or `model_config` cannot clash with BaseModel.
        field_name = f"p{index}_"
        # The default may itself be a `Field(...)`; pydantic merges it with the aliased annotation.
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[field_name] = (Annotated[annotation, Field(alias=param.name)], default)
        params.append(_Param(param.name, field_name))

    try:
        model = create_model(
            f"{name}_arguments",
            __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=False),
            **fields,
        )
        input_schema = model.model_json_schema(schema_generator=_NoTitles)
    except Exception as exc:
        raise TypeError(f"tool {name!r}: cannot build an input schema: {exc}") from exc
    input_schema.pop("title", None)

    return ToolSpec(
        name=name,
        title=title,
        description=description if description is not None else _first_paragraph(fn),
        input_schema=input_schema,
        output_schema=_output_schema(name, hints.get("return")),
        task_support=task_support,
        fn=fn,
        policy=policy,
        prepare=prepare,
        _model=model,
        _params=tuple(params),
        _injected=tuple(injected),
    )


class ToolRegistry:
    """An ordered set of tools plus the server identity advertised to clients."""

    def __init__(
        self,
        name: str = "mcp-tasks-redis",
        *,
        version: str = "0.1.0",
        instructions: str | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.instructions = instructions
        self._tools: dict[str, ToolSpec] = {}

    @overload
    def tool(self, name: F, /) -> F: ...

    @overload
    def tool(
        self,
        name: str | None = None,
        *,
        description: str | None = None,
        task_support: TaskSupport = "optional",
        title: str | None = None,
        retry: Retry | None = None,
        timeout_s: float | None = None,
        priority: Priority | None = None,
        prepare: PrepareFn | None = None,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        name: str | Callable[..., Any] | None = None,
        *,
        description: str | None = None,
        task_support: TaskSupport = "optional",
        title: str | None = None,
        retry: Retry | None = None,
        timeout_s: float | None = None,
        priority: Priority | None = None,
        prepare: PrepareFn | None = None,
    ) -> Any:
        """Register a function as a tool; usable as ``@app.tool`` or ``@app.tool(...)``.

        ``retry``, ``timeout_s`` and ``priority`` are its task policy (engine/policy.py); what is
        left out comes from the deployment's defaults. ``prepare`` runs on the server before the
        task exists, to ask the client first (engine/prepare.py); the tool reads what it returned
        as ``ctx.prepared``. The function is returned unchanged so it stays directly callable.
        """
        if task_support not in _TASK_SUPPORT_VALUES:
            raise ValueError(
                f"task_support must be one of {sorted(_TASK_SUPPORT_VALUES)}, got {task_support!r}"
            )
        policy = Policy(retry=retry, timeout_s=timeout_s, priority=priority)
        if callable(name):
            return self._register(name, None, description, task_support, title, policy, prepare)

        explicit_name = name

        def decorator(fn: F) -> F:
            return self._register(fn, explicit_name, description, task_support, title, policy, prepare)

        return decorator

    def _register(
        self,
        fn: F,
        name: str | None,
        description: str | None,
        task_support: TaskSupport,
        title: str | None,
        policy: Policy,
        prepare: PrepareFn | None = None,
    ) -> F:
        tool_name = name if name is not None else getattr(fn, "__name__", None)
        if not tool_name:
            raise ValueError("a tool needs a name; pass name= for callables without __name__")
        if tool_name in self._tools:
            raise ValueError(f"a tool named {tool_name!r} is already registered in {self.name!r}")
        self._tools[tool_name] = _build_spec(
            fn,
            tool_name,
            title=title,
            description=description,
            task_support=task_support,
            policy=policy,
            prepare=prepare,
        )
        return fn

    def get(self, name: str) -> ToolSpec | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __repr__(self) -> str:
        return f"ToolRegistry({self.name!r}, tools={self.names()!r})"
