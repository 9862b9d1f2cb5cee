"""The tool registry: schemas from signatures, argument validation, injection and loading."""

from __future__ import annotations

import dataclasses
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

# pydantic only accepts typing_extensions.TypedDict before Python 3.12.
from typing_extensions import TypedDict

from mcp_tasks_redis.engine.context import CancellationToken, InlineBackend, RequestInfo, ToolContext
from mcp_tasks_redis.engine.loading import RegistryLoadError, load_registry
from mcp_tasks_redis.engine.progress import ProgressReporter
from mcp_tasks_redis.engine.registry import (
    InvalidArguments,
    Services,
    ToolRegistry,
    ToolSpec,
)
from mcp_tasks_redis.engine.results import ToolResult


def make_services() -> Services:
    request = RequestInfo(task_id="task-1", owner=None, session=None, progress_token=None, tool="t")
    return Services.from_context(ToolContext.create(InlineBackend(), request))


def spec_of(app: ToolRegistry, name: str) -> ToolSpec:
    spec = app.get(name)
    assert spec is not None
    return spec


def schema_of(app: ToolRegistry, name: str) -> dict[str, Any]:
    return spec_of(app, name).input_schema


# -- schema generation -----------------------------------------------------------------


def test_parameter_types_map_to_json_schema_types() -> None:
    app = ToolRegistry()

    @app.tool
    async def kinds(
        count: int, ratio: float, label: str, flag: bool, tags: list[str], mode: Literal["a", "b"]
    ) -> None: ...

    props = schema_of(app, "kinds")["properties"]
    assert props["count"] == {"type": "integer"}
    assert props["ratio"] == {"type": "number"}
    assert props["label"] == {"type": "string"}
    assert props["flag"] == {"type": "boolean"}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["mode"]["enum"] == ["a", "b"]


def test_parameters_without_defaults_are_required_and_defaults_are_published() -> None:
    app = ToolRegistry()

    @app.tool
    async def slow_compute(seconds: float, label: str = "job", repeat: int | None = None) -> str:
        return label

    schema = schema_of(app, "slow_compute")
    assert schema["required"] == ["seconds"]
    assert schema["properties"]["label"]["default"] == "job"
    assert schema["properties"]["repeat"]["default"] is None


def test_field_descriptions_come_from_annotated_or_field_defaults() -> None:
    app = ToolRegistry()

    @app.tool
    async def describe(
        seconds: Annotated[float, Field(description="How long to work", ge=0)],
        steps: int = Field(10, description="Number of steps"),
    ) -> None: ...

    props = schema_of(app, "describe")["properties"]
    assert props["seconds"] == {"type": "number", "description": "How long to work", "minimum": 0}
    assert props["steps"] == {"type": "integer", "description": "Number of steps", "default": 10}


def test_schema_forbids_additional_properties_and_has_no_generated_titles() -> None:
    app = ToolRegistry()

    @app.tool
    async def plain(value: int) -> None: ...

    assert schema_of(app, "plain") == {
        "type": "object",
        "properties": {"value": {"type": "integer"}},
        "required": ["value"],
        "additionalProperties": False,
    }


def test_parameters_named_like_basemodel_attributes_are_ordinary_arguments() -> None:
    app = ToolRegistry()

    @app.tool
    async def odd_names(schema: str, json: int = 1) -> None: ...

    assert set(schema_of(app, "odd_names")["properties"]) == {"schema", "json"}


def test_description_defaults_to_the_first_docstring_paragraph() -> None:
    app = ToolRegistry()

    @app.tool
    async def documented() -> None:
        """Compute something slowly,
        across two lines.

        Details that clients do not need.
        """

    @app.tool(description="Explicit wins")
    async def overridden() -> None:
        """Docstring loses."""

    @app.tool
    async def undocumented() -> None: ...

    assert spec_of(app, "documented").description == "Compute something slowly, across two lines."
    assert spec_of(app, "overridden").description == "Explicit wins"
    assert spec_of(app, "undocumented").description is None


def test_injected_parameters_are_left_out_of_the_schema() -> None:
    app = ToolRegistry()

    @app.tool
    async def busy(
        n: int,
        ctx: ToolContext,
        token: CancellationToken,
        info: RequestInfo,
        progress: ProgressReporter,
        maybe_ctx: ToolContext | None = None,
    ) -> None: ...

    spec = spec_of(app, "busy")
    assert list(spec.input_schema["properties"]) == ["n"]
    assert spec.injected == {
        "ctx": "context",
        "token": "cancellation",
        "info": "request",
        "progress": "progress",
        "maybe_ctx": "context",
    }


class Summary(BaseModel):
    total: int
    note: str | None = None


class SummaryDict(TypedDict):
    total: int


@dataclasses.dataclass
class SummaryData:
    total: int


def test_output_schema_comes_from_structured_return_annotations_only() -> None:
    app = ToolRegistry()

    @app.tool
    async def as_model() -> Summary:
        return Summary(total=1)

    @app.tool
    async def as_typeddict() -> SummaryDict:
        return {"total": 1}

    @app.tool
    async def as_dataclass() -> SummaryData:
        return SummaryData(total=1)

    @app.tool
    async def as_int() -> int:
        return 1

    for name in ("as_model", "as_typeddict", "as_dataclass"):
        spec = spec_of(app, name)
        assert spec.output_schema is not None
        assert spec.output_schema["type"] == "object"
        assert spec.output_schema["properties"]["total"] == {"type": "integer"}
    assert spec_of(app, "as_int").output_schema is None


def test_a_tool_returning_a_tool_result_declares_no_output_schema() -> None:
    """`ToolResult` wraps whatever structured content the tool gives: its own fields are not
    that content's schema (clients such as FastMCP parse the content with the declared schema)."""
    app = ToolRegistry()

    @app.tool
    async def wrapped() -> ToolResult:
        return ToolResult(text="done", structured={"seconds": 2.0})

    assert spec_of(app, "wrapped").output_schema is None


# -- registration ----------------------------------------------------------------------


def test_decorator_works_bare_and_with_options_and_returns_the_function() -> None:
    app = ToolRegistry("demo", version="1.2.3", instructions="Be nice")

    @app.tool
    async def first() -> int:
        return 1

    @app.tool("renamed", task_support="required", title="Second tool")
    async def second() -> int:
        return 2

    assert app.names() == ["first", "renamed"]
    assert len(app) == 2
    assert [spec.name for spec in app] == ["first", "renamed"]
    renamed = spec_of(app, "renamed")
    assert (renamed.task_support, renamed.title, renamed.fn) == ("required", "Second tool", second)
    assert spec_of(app, "first").task_support == "optional"
    assert app.get("missing") is None
    assert (app.name, app.version, app.instructions) == ("demo", "1.2.3", "Be nice")


def test_registering_the_same_name_twice_is_an_error() -> None:
    app = ToolRegistry()

    @app.tool
    async def twice() -> None: ...

    with pytest.raises(ValueError, match="'twice' is already registered"):
        app.tool(name="twice")(lambda: None)


def test_unknown_task_support_value_is_rejected() -> None:
    app = ToolRegistry()
    with pytest.raises(ValueError, match="task_support"):
        app.tool(task_support="sometimes")  # pyright: ignore[reportArgumentType, reportCallIssue]


# -- invocation ------------------------------------------------------------------------


async def test_invoke_validates_coerces_and_calls_the_tool() -> None:
    app = ToolRegistry()

    @app.tool
    async def add(a: int, b: float = 0.5) -> float:
        return a + b

    assert await spec_of(app, "add").invoke({"a": "2"}, make_services()) == 2.5


async def test_invoke_injects_the_runtime_objects() -> None:
    app = ToolRegistry()
    seen: dict[str, Any] = {}

    @app.tool
    async def grab(
        ctx: ToolContext, token: CancellationToken, info: RequestInfo, rep: ProgressReporter
    ) -> None:
        seen.update(ctx=ctx, token=token, info=info, rep=rep)

    services = make_services()
    await spec_of(app, "grab").invoke({}, services)
    assert seen == {
        "ctx": services.context,
        "token": services.cancellation,
        "info": services.request,
        "rep": services.progress,
    }


async def test_invalid_argument_message_names_the_tool_and_field() -> None:
    app = ToolRegistry()

    @app.tool
    async def slow_compute(seconds: float) -> None: ...

    with pytest.raises(InvalidArguments) as excinfo:
        await spec_of(app, "slow_compute").invoke({"seconds": None}, make_services())
    assert (
        str(excinfo.value)
        == "Invalid arguments for tool 'slow_compute': seconds: Input should be a valid number"
    )


async def test_missing_and_unknown_arguments_are_both_reported() -> None:
    app = ToolRegistry()

    @app.tool
    async def slow_compute(seconds: float) -> None: ...

    with pytest.raises(InvalidArguments) as excinfo:
        await spec_of(app, "slow_compute").invoke({"secs": 1}, make_services())
    message = str(excinfo.value)
    assert "seconds: Field required" in message
    assert "secs: Extra inputs are not permitted" in message


async def test_injected_parameter_names_cannot_be_passed_as_arguments() -> None:
    app = ToolRegistry()

    @app.tool
    async def guarded(ctx: ToolContext) -> None: ...

    with pytest.raises(InvalidArguments, match="ctx: Extra inputs"):
        await spec_of(app, "guarded").invoke({"ctx": "spoofed"}, make_services())


async def test_sync_tools_run_in_a_worker_thread() -> None:
    app = ToolRegistry()
    loop_thread = threading.get_ident()

    @app.tool
    def blocking(n: int) -> int:
        assert threading.get_ident() != loop_thread
        return n * 2

    assert await spec_of(app, "blocking").invoke({"n": 21}, make_services()) == 42


async def test_nested_model_arguments_arrive_as_model_instances() -> None:
    app = ToolRegistry()

    @app.tool
    async def take(summary: Summary) -> int:
        assert isinstance(summary, Summary)
        return summary.total

    assert await spec_of(app, "take").invoke({"summary": {"total": 7}}, make_services()) == 7


# -- load_registry ---------------------------------------------------------------------


ModuleWriter = Callable[[str, str], str]


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleWriter:
    """Writes an importable module into a temporary directory and returns its name."""
    monkeypatch.syspath_prepend(str(tmp_path))  # pyright: ignore[reportUnknownMemberType]

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return write


def test_load_registry_defaults_to_the_app_attribute(write_module: ModuleWriter) -> None:
    module = write_module(
        "reg_ok_tools",
        """
        from mcp_tasks_redis.engine.registry import ToolRegistry
        app, other = ToolRegistry(), ToolRegistry("other")

        @app.tool
        async def ping() -> None: ...

        @other.tool
        async def pong() -> None: ...
        """,
    )
    assert load_registry(module).names() == ["ping"]
    assert load_registry(f"{module}:other").names() == ["pong"]


def test_load_registry_reports_a_missing_module() -> None:
    with pytest.raises(RegistryLoadError, match="Cannot import registry module 'no_such_module_xyz'"):
        load_registry("no_such_module_xyz:app")


def test_load_registry_reports_a_module_that_fails_while_importing(write_module: ModuleWriter) -> None:
    module = write_module("reg_broken_tools", "raise RuntimeError('boom')\n")
    with pytest.raises(RegistryLoadError, match=r"Error while importing .*RuntimeError: boom"):
        load_registry(module)


def test_load_registry_reports_a_missing_attribute(write_module: ModuleWriter) -> None:
    module = write_module("reg_noattr_tools", "x = 1\n")
    with pytest.raises(RegistryLoadError, match="has no attribute 'tools'"):
        load_registry(f"{module}:tools")


def test_load_registry_rejects_attributes_that_are_not_registries(write_module: ModuleWriter) -> None:
    module = write_module("reg_wrongtype_tools", "app = {'not': 'a registry'}\n")
    with pytest.raises(RegistryLoadError, match="is a dict, not a ToolRegistry"):
        load_registry(module)


def test_load_registry_rejects_an_empty_registry(write_module: ModuleWriter) -> None:
    source = "from mcp_tasks_redis.engine.registry import ToolRegistry\napp = ToolRegistry()\n"
    module = write_module("reg_empty_tools", source)
    with pytest.raises(RegistryLoadError, match="has no tools registered"):
        load_registry(module)
