"""`@tool`: schemas from signatures, validation before the call, failures as tool results."""

from __future__ import annotations

import asyncio
import threading
from enum import StrEnum
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from memweave.errors import ConfigurationError, InvalidArgument
from memweave.llm import tool_to_openai
from memweave.messages import ToolCall
from memweave.orchestration.tools import (
    TOOL_ERROR_KEY,
    Tool,
    ToolArgumentsInvalid,
    run_tool_call,
    run_tool_calls,
    tool,
)


class Color(StrEnum):
    RED = "red"
    BLUE = "blue"


class Item(BaseModel):
    sku: str
    quantity: int = Field(1, ge=1)


@tool
async def add(a: Annotated[int, "The first number"], b: int = 2) -> int:
    """Add two numbers.

    Args:
        b: The second number,
            added to the first.
    """
    return a + b


@tool(name="place_order", description="Order items.", approval="always")
def order(
    items: list[Item], color: Color, speed: Literal["fast", "slow"] = "slow"
) -> dict[str, Any]:
    return {"items": len(items), "color": color.value, "speed": speed}


def test_tool_schema_comes_from_signature_and_docstring() -> None:
    """Names, types, defaults, required parameters and descriptions come from the function."""
    assert add.to_openai() == {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers.",
            "parameters": {
                "type": "object",
                "properties": {
                    "a": {"type": "integer", "description": "The first number"},
                    "b": {
                        "type": "integer",
                        "default": 2,
                        "description": "The second number, added to the first.",
                    },
                },
                "required": ["a"],
                "additionalProperties": False,
            },
        },
    }


def test_tool_schema_supports_pydantic_types() -> None:
    """Models, enums and Literals become JSON schema the model can follow."""
    spec = order.to_openai()["function"]
    assert spec["name"] == "place_order"
    assert spec["description"] == "Order items."
    props = spec["parameters"]["properties"]
    assert props["items"] == {"type": "array", "items": {"$ref": "#/$defs/Item"}}
    assert spec["parameters"]["$defs"]["Item"]["required"] == ["sku"]
    assert props["speed"]["enum"] == ["fast", "slow"]
    assert spec["parameters"]["required"] == ["items", "color"]


def test_tool_definition_is_accepted_by_chat_clients() -> None:
    """`to_openai()` passes the client's tool check unchanged."""
    assert tool_to_openai(add) == add.to_openai()


def test_field_descriptions_are_kept() -> None:
    """`Annotated[..., Field(description=...)]` describes a parameter too."""

    @tool
    def search(query: Annotated[str, Field(description="What to look for", min_length=1)]) -> str:
        """Search."""
        return query

    prop = search.parameters["properties"]["query"]
    assert prop == {"type": "string", "description": "What to look for", "minLength": 1}


def test_parameters_may_shadow_basemodel_attributes() -> None:
    """A parameter named like a BaseModel attribute (`schema`, `json`) works."""

    @tool
    def lookup(schema: str, json: int = 0) -> str:
        return f"{schema}:{json}"

    assert set(lookup.parameters["properties"]) == {"schema", "json"}
    assert lookup.validate_arguments('{"schema": "s", "json": 3}') == {"schema": "s", "json": 3}


def test_tool_object_still_calls_the_function() -> None:
    """Calling the tool calls the function directly; sync stays sync."""
    assert order([Item(sku="a")], Color.RED) == {"items": 1, "color": "red", "speed": "slow"}
    assert isinstance(add, Tool)
    assert add.approval == "never"
    assert order.approval == "always"


def _varargs(*values: int) -> int:
    return len(values)


def _plain() -> None:
    return None


@pytest.mark.parametrize(
    ("options", "function", "fragment"),
    [
        ({}, _varargs, "named parameters only"),
        ({"name": "has space"}, _plain, "invalid tool name 'has space'"),
        ({"approval": "sometimes"}, _plain, "invalid approval 'sometimes'"),
    ],
)
def test_bad_tools_are_rejected(options: dict[str, Any], function: Any, fragment: str) -> None:
    """`*args`, invalid names and unknown approval modes raise `ConfigurationError`."""
    with pytest.raises(ConfigurationError, match=fragment):
        tool(**options)(function)


def test_validate_arguments_lists_every_problem() -> None:
    """Invalid arguments raise `ToolArgumentsInvalid` naming each bad field and value."""
    with pytest.raises(ToolArgumentsInvalid) as caught:
        add.validate_arguments('{"a": "seven", "c": 1}')
    assert isinstance(caught.value, InvalidArgument)
    assert caught.value.tool == "add"
    assert caught.value.errors[0].startswith("a: Input should be a valid integer")
    assert "(got 'seven')" in caught.value.errors[0]
    assert caught.value.errors[1] == "c: unknown argument"


async def test_invalid_arguments_become_a_result_and_skip_the_call() -> None:
    """The model is told what was wrong; the function is never called."""
    called = []

    @tool
    def record(n: int) -> str:
        called.append(n)
        return "ok"

    result = await run_tool_call(
        ToolCall(id="c1", name="record", arguments='{"n": "x"}'), {"record": record}
    )
    assert called == []
    assert (result.role, result.tool_call_id) == ("tool", "c1")
    assert result.text.startswith("Error: invalid arguments for tool 'record': n:")
    assert "Call the tool again" in result.text
    assert result.metadata[TOOL_ERROR_KEY] == "invalid_arguments"


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", '"text"'])
async def test_non_object_arguments_become_a_result(arguments: str) -> None:
    """Arguments that are not a JSON object are reported, not raised."""
    result = await run_tool_call(ToolCall(id="c1", name="add", arguments=arguments), {"add": add})
    assert result.text.startswith("Error: invalid arguments for tool 'add'")


async def test_a_raising_tool_becomes_a_result() -> None:
    """The exception's type and message reach the model; the loop can go on."""

    @tool
    async def explode() -> str:
        raise ValueError("disk full")

    result = await run_tool_call(ToolCall(id="c1", name="explode"), {"explode": explode})
    assert result.text == "Error: tool 'explode' failed: ValueError: disk full"
    assert result.metadata[TOOL_ERROR_KEY] == "tool_raised"


async def test_an_unknown_tool_becomes_a_result() -> None:
    """A call to a tool that does not exist lists the tools that do."""
    result = await run_tool_call(ToolCall(id="c1", name="nope"), {"add": add})
    assert result.text == "Error: there is no tool named 'nope'; available tools: add."


async def test_results_are_converted_to_text() -> None:
    """Strings pass through; models, dicts and other values become JSON."""

    @tool
    def item() -> Item:
        return Item(sku="x", quantity=2)

    tools: dict[str, Tool[..., Any]] = {"item": item, "place_order": order, "add": add}
    results = await run_tool_calls(
        [
            ToolCall(id="1", name="item"),
            ToolCall(
                id="2", name="place_order", arguments='{"items": [{"sku": "a"}], "color": "blue"}'
            ),
            ToolCall(id="3", name="add", arguments='{"a": 1}'),
        ],
        tools,
    )
    assert [r.text for r in results] == [
        '{"sku":"x","quantity":2}',
        '{"items":1,"color":"blue","speed":"slow"}',
        "3",
    ]
    assert [r.tool_call_id for r in results] == ["1", "2", "3"]


async def test_async_tool_calls_run_concurrently() -> None:
    """Two async calls are both running at once (each waits for the other to start)."""
    started = {name: asyncio.Event() for name in ("a", "b")}

    @tool
    async def wait_for(me: str, other: str) -> str:
        started[me].set()
        await asyncio.wait_for(started[other].wait(), timeout=5)
        return me

    calls = [
        ToolCall(id="1", name="wait_for", arguments='{"me": "a", "other": "b"}'),
        ToolCall(id="2", name="wait_for", arguments='{"me": "b", "other": "a"}'),
    ]
    results = await run_tool_calls(calls, {"wait_for": wait_for})
    assert [r.text for r in results] == ["a", "b"]


async def test_sync_tools_run_in_worker_threads() -> None:
    """Blocking sync tools run in parallel threads and do not block each other."""
    barrier = threading.Barrier(2, timeout=5)

    @tool
    def meet(n: int) -> int:
        barrier.wait()
        return n

    calls = [ToolCall(id=str(i), name="meet", arguments=f'{{"n": {i}}}') for i in range(2)]
    results = await run_tool_calls(calls, {"meet": meet})
    assert [r.text for r in results] == ["0", "1"]
