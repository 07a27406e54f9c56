"""Tools: `@tool` turns a function into a model-callable tool; `run_tool_calls` executes calls.

A tool's JSON schema comes from its signature (`Annotated[..., "description"]`, pydantic
types, defaults), its description from its docstring. Arguments are validated before the
call. Whatever goes wrong while running a call (unknown tool, invalid arguments, the tool
raising) becomes a tool result that tells the model what happened, so the agent loop goes on.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any, Generic, Literal, ParamSpec, TypeVar, overload

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from memweave.errors import ConfigurationError, InvalidArgument
from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration._state import (
    Command,
    InjectedState,
    ToolBatch,
    command_text,
    current_batch,
)

__all__ = [
    "TOOL_ERROR_KEY",
    "Approval",
    "Tool",
    "ToolArgumentsInvalid",
    "run_tool_call",
    "run_tool_calls",
    "tool",
]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

Approval = Literal["never", "always"]
"""When a tool call needs a person's approval before it runs."""

TOOL_ERROR_KEY = "memweave.tool_error"
"""Metadata key set on a tool result that reports a failure: `"unknown_tool"`,
`"invalid_arguments"`, `"tool_raised"`, `"denied"`, `"no_state"` (a tool reading the
shared state outside a workflow that has one) or `"invalid_state"` (its state update broke
the schema)."""

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Returns|Raises|Yields|Example|Examples|Note)"
    r"\s*:\s*$"
)
_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_MAX_SHOWN_INPUT = 200


class ToolArgumentsInvalid(InvalidArgument):
    """The arguments of a tool call do not match the tool's schema.

    Attributes:
        tool: The tool's name.
        errors: One line per problem, e.g. `"a: Input should be a valid integer (got 'x')"`.
    """

    def __init__(self, tool: str, arguments: object, errors: Sequence[str]):
        self.tool = tool
        self.errors = tuple(errors)
        super().__init__("arguments", arguments, f"for tool {tool!r}: " + "; ".join(errors))


def _docstring_parts(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into the description and the `Args:` descriptions."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in lines:
        heading = _SECTION.match(line)
        if heading:
            section = heading.group(1)
            current = None
            continue
        if section is None:
            description.append(line)
        elif section in ("Args", "Arguments", "Parameters"):
            match = _ARG_LINE.match(line)
            indent = len(line) - len(line.lstrip())
            if match and indent <= 4:
                current = match.group(1).lstrip("*")
                params[current] = match.group(2).strip()
            elif current is not None and line.strip():
                params[current] = f"{params[current]} {line.strip()}".strip()
    return "\n".join(description).strip(), params


def _split_description(annotation: Any) -> tuple[Any, str | None]:
    """Take a plain-string description out of `Annotated[...]` metadata."""
    if typing.get_origin(annotation) is not Annotated:
        return annotation, None
    base, *metadata = typing.get_args(annotation)
    texts = [item for item in metadata if isinstance(item, str)]
    rest = [item for item in metadata if not isinstance(item, str)]
    described = Annotated[(base, *rest)] if rest else base
    return described, " ".join(texts) if texts else None


def _is_injected(annotation: Any) -> bool:
    """Whether a parameter is annotated `Annotated[..., InjectedState]`."""
    if typing.get_origin(annotation) is not Annotated:
        return False
    return any(
        item is InjectedState or isinstance(item, InjectedState)
        for item in typing.get_args(annotation)[1:]
    )


def _strip_titles(schema: dict[str, Any]) -> dict[str, Any]:
    # Pydantic adds a title per field, which only repeats the property name to the model.
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)
    return schema


def _to_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Command):
        return command_text(value)
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return pydantic_core.to_json(value, fallback=repr).decode()


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN_INPUT else text[: _MAX_SHOWN_INPUT - 3] + "..."


class Tool(Generic[P, R]):
    """A function the model can call, with its name, description and JSON-schema parameters.

    Build one with `@tool`. Calling the tool object calls the function unchanged; `invoke`
    validates model-written arguments first. Sync functions run in a worker thread when
    invoked, so several calls run in parallel and a blocking tool does not stall the loop.

    Attributes:
        name: The name the model calls the tool by.
        description: What the tool does, as the model reads it.
        parameters: The JSON schema of the arguments (an object schema).
        approval: `"always"` when each call needs a person's approval before it runs.
        function: The wrapped function.
        injected: The parameters annotated `InjectedState`, which the workflow fills in and
            the schema leaves out.
    """

    def __init__(
        self,
        function: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        approval: Approval = "never",
    ) -> None:
        if not callable(function):
            raise ConfigurationError(f"@tool needs a function, got {function!r}")
        tool_name = name if name is not None else getattr(function, "__name__", "")
        if not isinstance(tool_name, str) or not _NAME.match(tool_name):
            raise ConfigurationError(
                f"invalid tool name {tool_name!r}: use 1-64 letters, digits, '_' or '-' "
                "(the rule OpenAI function names follow)"
            )
        if approval not in ("never", "always"):
            raise ConfigurationError(
                f"invalid approval {approval!r} for tool {tool_name!r}: use 'never' or 'always'"
            )
        doc_description, doc_params = _docstring_parts(inspect.getdoc(function))
        self.name = tool_name
        self.description = description if description is not None else doc_description
        self.approval: Approval = approval
        self.function = function
        self._is_async = inspect.iscoroutinefunction(function)
        self.injected: tuple[str, ...] = ()
        self._model, self._positional = self._build_model(function, doc_params)
        self.parameters: dict[str, Any] = _strip_titles(
            self._model.model_json_schema(by_alias=True)
        )

    def _build_model(
        self, function: Callable[..., Any], doc_params: Mapping[str, str]
    ) -> tuple[type[BaseModel], list[str]]:
        try:
            signature = inspect.signature(function)
            hints = typing.get_type_hints(function, include_extras=True)
        except (TypeError, ValueError, NameError) as exc:
            raise ConfigurationError(
                f"cannot read the signature of tool {self.name!r}: {exc}"
            ) from exc
        fields: dict[str, Any] = {}
        positional: list[str] = []
        for index, (param_name, param) in enumerate(signature.parameters.items()):
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ConfigurationError(
                    f"tool {self.name!r} has parameter {param_name!r} of kind {param.kind}; "
                    "tools take named parameters only, so the model can fill them in"
                )
            if _is_injected(hints.get(param_name, Any)):
                if param.kind is param.POSITIONAL_ONLY:
                    raise ConfigurationError(
                        f"tool {self.name!r}: the injected parameter {param_name!r} must not be "
                        "positional-only"
                    )
                self.injected = (*self.injected, param_name)
                continue
            if param.kind is param.POSITIONAL_ONLY:
                positional.append(param_name)
            annotation, described = _split_description(hints.get(param_name, Any))
            default = ... if param.default is param.empty else param.default
            # Fields get neutral names and the parameter name as alias, so a parameter called
            # `schema` or `json` cannot shadow a BaseModel attribute.
            extra: dict[str, Any] = {}
            text = described or doc_params.get(param_name)
            if text:
                extra["description"] = text
            fields[f"p{index}"] = (annotation, Field(default, alias=param_name, **extra))
        try:
            model = create_model(
                f"{self.name}_arguments",
                __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=False),
                **fields,
            )
            model.model_json_schema(by_alias=True)
        except Exception as exc:
            raise ConfigurationError(
                f"cannot build a JSON schema for tool {self.name!r}: {exc}"
            ) from exc
        typed_model: type[BaseModel] = model
        return typed_model, positional

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the wrapped function directly, without validation."""
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool(name={self.name!r}, approval={self.approval!r})"

    def to_openai(self) -> dict[str, Any]:
        """Return the tool as an OpenAI function-tool definition."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}

    def validate_arguments(self, arguments: str | Mapping[str, Any]) -> dict[str, Any]:
        """Validate arguments written by the model and return them by parameter name.

        Args:
            arguments: A JSON object in a string (as in `ToolCall.arguments`; `""` means no
                arguments) or a mapping.

        Raises:
            ToolArgumentsInvalid: The arguments are not a JSON object or break the schema; the
                error lists every problem.
        """
        if isinstance(arguments, str):
            try:
                data = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                raise ToolArgumentsInvalid(
                    self.name, arguments, [f"not valid JSON ({exc.msg} at position {exc.pos})"]
                ) from None
        else:
            data = arguments
        if not isinstance(data, Mapping):
            raise ToolArgumentsInvalid(
                self.name, arguments, [f"expected a JSON object, got {type(data).__name__}"]
            )
        try:
            parsed = self._model.model_validate(dict(data))
        except ValidationError as exc:
            problems = []
            for error in exc.errors(include_url=False):
                where = ".".join(str(part) for part in error["loc"]) or "arguments"
                shown = ""
                if error["type"] not in ("missing", "extra_forbidden"):
                    shown = f" (got {_shown(error.get('input'))})"
                message = "unknown argument" if error["type"] == "extra_forbidden" else error["msg"]
                problems.append(f"{where}: {message}{shown}")
            raise ToolArgumentsInvalid(self.name, arguments, problems) from None
        return {
            info.alias or field: getattr(parsed, field)
            for field, info in type(parsed).model_fields.items()
        }

    async def invoke(
        self, arguments: str | Mapping[str, Any], *, injected: Mapping[str, Any] | None = None
    ) -> Any:
        """Validate `arguments`, call the function with them, and return what it returns
        (awaited, for an async function).

        Args:
            arguments: The arguments as the model wrote them.
            injected: Values for the `InjectedState` parameters, by name.

        Raises:
            ToolArgumentsInvalid: The arguments break the schema; the function was not called.
            InvalidArgument: An injected parameter has no value.
            Exception: Whatever the function raises, unchanged.
        """
        values = self.validate_arguments(arguments)
        for name in self.injected:
            if injected is None or name not in injected:
                raise InvalidArgument(
                    "injected", name, f"tool {self.name!r} needs the shared state of a workflow"
                )
            values[name] = injected[name]
        args = [values.pop(name) for name in self._positional]
        if self._is_async:
            result = await typing.cast(Callable[..., Awaitable[R]], self.function)(*args, **values)
        else:
            result = await asyncio.to_thread(self.function, *args, **values)
        return result


@overload
def tool(function: Callable[P, R], /) -> Tool[P, R]: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    approval: Approval = "never",
) -> Callable[[Callable[P, R]], Tool[P, R]]: ...


def tool(
    function: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    approval: Approval = "never",
) -> Tool[P, R] | Callable[[Callable[P, R]], Tool[P, R]]:
    """Turn a sync or async function into a `Tool`, with or without options.

    The parameters' JSON schema comes from the type hints (any type pydantic validates,
    including models, enums and `Literal`), their defaults, and their descriptions: a string
    in `Annotated[int, "..."]`, a `Field(description=...)`, or the docstring's `Args:` section.
    The docstring (without its sections) describes the tool. A parameter annotated
    `Annotated[MyState, InjectedState]` is left out of the schema: a workflow with shared
    state fills it in (see `InjectedState`), and the tool may return a `Command`.

    Args:
        function: The function, when used as a bare `@tool`.
        name: The tool's name; defaults to the function's name.
        description: The tool's description; defaults to the docstring.
        approval: `"always"` makes every call wait for a person's approval (in a handoff
            workflow, a `ToolApprovalRequest`).

    Raises:
        ConfigurationError: The name is not a valid function name, the function takes
            `*args`/`**kwargs`, or a parameter type has no JSON schema.

    Example:
        ```python
        @tool
        async def get_weather(city: Annotated[str, "The city, e.g. 'Paris'"]) -> str:
            \"\"\"Return the current weather in a city.\"\"\"
            return f"Sunny in {city}"

        @tool(approval="always")
        def refund(order_id: str, amount: float) -> str:
            \"\"\"Refund an order.\"\"\"
            return "refunded"
        ```
    """
    if function is not None:
        return Tool(function, name=name, description=description, approval=approval)

    def decorate(inner: Callable[P, R]) -> Tool[P, R]:
        return Tool(inner, name=name, description=description, approval=approval)

    return decorate


def _error_result(call: ToolCall, kind: str, text: str, **fields: Any) -> ChatMessage:
    metadata = dict(fields.pop("metadata", {}))
    metadata[TOOL_ERROR_KEY] = kind
    return ChatMessage.tool(call.id, f"Error: {text}", metadata=metadata, **fields)


async def run_tool_call(
    call: ToolCall, tools: Mapping[str, Tool[..., Any]], **fields: Any
) -> ChatMessage:
    """Run one tool call and return its result as a tool message; never raises for the call.

    An unknown tool name, invalid arguments, or an exception from the tool become a result
    starting with `Error:` that says what went wrong (and marked with `TOOL_ERROR_KEY` in its
    metadata), so the model can correct itself. Cancellation still propagates.

    Args:
        call: The call, as the model wrote it.
        tools: The available tools by name.
        **fields: Extra `ChatMessage` fields for the result (`metadata`, `name`, ...).
    """
    selected = tools.get(call.name)
    if selected is None:
        available = ", ".join(sorted(tools)) or "none"
        return _error_result(
            call,
            "unknown_tool",
            f"there is no tool named {call.name!r}; available tools: {available}.",
            **fields,
        )
    # A workflow step running its calls makes a batch current: it hands out the shared
    # state and keeps what each call returned (a `Command`, changes to the state).
    batch = current_batch()
    if not selected.injected:
        return await _invoke(call, selected, {}, batch, fields)
    if batch is None or not batch.gives_state(call):
        return _error_result(
            call,
            "no_state",
            f"tool {call.name!r} reads the shared state of a workflow, and this call runs "
            "outside a workflow that has one.",
            **fields,
        )
    async with batch.turn(call.id) as state:
        return await _invoke(call, selected, dict.fromkeys(selected.injected, state), batch, fields)


async def _invoke(
    call: ToolCall,
    selected: Tool[..., Any],
    injected: Mapping[str, Any],
    batch: ToolBatch | None,
    fields: Mapping[str, Any],
) -> ChatMessage:
    try:
        value = await selected.invoke(call.arguments, injected=injected)
    except ToolArgumentsInvalid as exc:
        return _error_result(
            call,
            "invalid_arguments",
            f"invalid arguments for tool {call.name!r}: {'; '.join(exc.errors)}. "
            "Call the tool again with corrected arguments.",
            **fields,
        )
    # A failing tool is reported to the model instead of ending the run; it is logged here.
    except Exception as exc:
        logger.warning("tool %r raised while running call %r", call.name, call.id, exc_info=True)
        return _error_result(
            call,
            "tool_raised",
            f"tool {call.name!r} failed: {type(exc).__name__}: {exc}",
            **fields,
        )
    if batch is not None:
        batch.record(call, value)
    return ChatMessage.tool(call.id, _to_text(value), **fields)


async def run_tool_calls(
    calls: Iterable[ToolCall], tools: Mapping[str, Tool[..., Any]], **fields: Any
) -> list[ChatMessage]:
    """Run tool calls concurrently and return their results in the order of `calls`.

    Each call is handled as by `run_tool_call`, so one failing call never hides the others'
    results.
    """
    return list(await asyncio.gather(*(run_tool_call(call, tools, **fields) for call in calls)))
