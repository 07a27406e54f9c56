"""`Agent.run`: history, context providers, the tool loop, one stored batch, and failures."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from memweave.errors import InvalidArgument, InvalidMessage, ModelError
from memweave.llm import ChatResponse, Usage
from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration import Agent, AgentResponse, tool
from memweave.orchestration._views import AGENT_KEY
from memweave.orchestration.tools import TOOL_ERROR_KEY
from memweave.reducers import MessageCountReducer
from memweave.session import Session
from memweave.testing import Reply, ScriptedChatClient
from tests.orchestration._builders import (
    BatchRecordingHistory,
    OpenAIServer,
    RecordingProvider,
    assert_no_orphans,
    call,
    calls,
    wire_call,
)


@tool
def lookup(city: str) -> str:
    """Look up a city's weather."""
    return f"sunny in {city}"


async def test_run_answers_and_stores_input_and_output_in_one_batch(
    history: BatchRecordingHistory,
) -> None:
    """Input and every new message are stored together, in one `add_messages` batch."""
    client = ScriptedChatClient([calls(call("lookup", "c1", city="Paris")), "It is sunny."])
    agent = Agent("helper", client, tools=[lookup], history=history)
    reply = await agent.run("Weather in Paris?", session="s1")
    assert isinstance(reply, AgentResponse)
    assert reply.text == "It is sunny."
    assert reply.session_id == "s1"
    assert [m.role for m in reply.messages] == ["assistant", "tool", "assistant"]
    assert len(history.batches) == 1
    session_id, batch = history.batches[0]
    assert session_id == "s1"
    assert [m.role for m in batch] == ["user", "assistant", "tool", "assistant"]
    assert batch[1:] == list(reply.messages)
    assert await history.list_messages("s1") == batch


async def test_run_loads_the_session_history(history: BatchRecordingHistory) -> None:
    """A second run on a session sends the first run's messages before the new input."""
    client = ScriptedChatClient(["Hello Ada.", "You are Ada."])
    agent = Agent("helper", client, instructions="Be brief.", history=history)
    await agent.run("I am Ada.", session="s1")
    await agent.run("Who am I?", session="s1")
    sent = client.requests[1].messages
    assert [m.role for m in sent] == ["system", "user", "assistant", "user"]
    assert [m.text for m in sent] == ["Be brief.", "I am Ada.", "Hello Ada.", "Who am I?"]


async def test_default_history_is_in_memory_per_agent() -> None:
    """Without a provider an agent still remembers a session between runs."""
    client = ScriptedChatClient(["one", "two"])
    agent = Agent("helper", client)
    first = await agent.run("a")
    await agent.run("b", session=first.session_id)
    assert [m.text for m in client.requests[1].messages] == ["a", "one", "b"]


async def test_reducer_shrinks_the_loaded_history(history: BatchRecordingHistory) -> None:
    """Only the reduced history is sent; the new input always is; storage keeps everything."""
    await history.add_messages("s1", [ChatMessage.user(f"m{i}") for i in range(6)])
    client = ScriptedChatClient(["ok"])
    agent = Agent("helper", client, history=history, reducer=MessageCountReducer(2))
    await agent.run("new", session="s1")
    assert [m.text for m in client.requests[0].messages] == ["m4", "m5", "new"]
    assert await history.count_messages("s1") == 8


async def test_context_providers_add_instructions_messages_and_tools(
    history: BatchRecordingHistory,
) -> None:
    """Provider instructions follow the agent's, their messages precede the conversation,
    and their tools are offered and runnable."""

    @tool
    def remember(fact: str) -> str:
        return "saved"

    memory = RecordingProvider(
        "memory",
        instructions="The user likes tea.",
        messages=[ChatMessage.user("(earlier: the user is Ada)")],
        tools=[remember],
    )
    extra = RecordingProvider(
        "extra",
        instructions="Answer in French.",
        tools=[{"type": "function", "function": {"name": "external", "parameters": {}}}],
    )
    client = ScriptedChatClient([calls(call("remember", "c1", fact="tea")), "Noté."])
    agent = Agent(
        "helper",
        client,
        instructions="Be kind.",
        tools=[lookup],
        history=history,
        context_providers=[memory, extra],
    )
    session = Session(id="s1")
    await agent.run("Remember I like tea", session=session)
    request = client.requests[0]
    assert request.messages[0].text == "Be kind.\n\nThe user likes tea.\n\nAnswer in French."
    assert [m.text for m in request.messages[1:]] == [
        "(earlier: the user is Ada)",
        "Remember I like tea",
    ]
    assert request.tool_names == ["lookup", "remember", "external"]
    stored = await history.list_messages("s1")
    assert stored[2].text == "saved"
    assert session.state["memory"] == {"calls": 1}


async def test_invoked_sees_request_and_response_after_storing(
    history: BatchRecordingHistory,
) -> None:
    """Each provider's `invoked` gets the conversation sent and the new messages, no error."""
    seen_stored: list[int] = []

    class Checking(RecordingProvider):
        async def invoked(
            self, session: Any, request: Any, response: Any, error: Any = None
        ) -> None:
            seen_stored.append(await history.count_messages("s1"))
            await super().invoked(session, request, response, error)

    provider = Checking()
    agent = Agent(
        "helper", ScriptedChatClient(["hi"]), history=history, context_providers=[provider]
    )
    reply = await agent.run("hello", session="s1")
    ((request, response, error),) = provider.invoked_calls
    assert [m.text for m in request] == ["hello"]
    assert response == list(reply.messages)
    assert error is None
    assert seen_stored == [2]


async def test_several_tool_calls_run_in_parallel(history: BatchRecordingHistory) -> None:
    """Calls the model asks for together run at the same time; results keep call order."""
    started = {name: asyncio.Event() for name in ("a", "b")}

    @tool
    async def meet(me: str, other: str) -> str:
        started[me].set()
        await asyncio.wait_for(started[other].wait(), timeout=5)
        return me

    client = ScriptedChatClient(
        [calls(call("meet", "1", me="a", other="b"), call("meet", "2", me="b", other="a")), "done"]
    )
    agent = Agent("helper", client, tools=[meet], history=history)
    reply = await agent.run("go", session="s1")
    assert [m.text for m in reply.messages[1:3]] == ["a", "b"]
    assert [m.tool_call_id for m in reply.messages[1:3]] == ["1", "2"]


async def test_tool_errors_reach_the_model_and_the_loop_goes_on(
    history: BatchRecordingHistory,
) -> None:
    """Invalid arguments and unknown tools become results; the model then answers."""
    client = ScriptedChatClient(
        [calls(call("lookup", "1", town="Paris"), call("missing", "2")), "Sorry, let me retry."]
    )
    agent = Agent("helper", client, tools=[lookup], history=history)
    reply = await agent.run("Weather?", session="s1")
    results = client.requests[1].messages[-2:]
    assert results[0].metadata[TOOL_ERROR_KEY] == "invalid_arguments"
    assert results[1].metadata[TOOL_ERROR_KEY] == "unknown_tool"
    assert reply.text == "Sorry, let me retry."


async def test_max_tool_rounds_then_the_model_must_answer(history: BatchRecordingHistory) -> None:
    """After `max_tool_rounds` rounds the model is called with `tool_choice="none"`."""
    client = ScriptedChatClient(
        [calls(call("lookup", "1", city="A")), calls(call("lookup", "2", city="B")), "final"]
    )
    agent = Agent("helper", client, tools=[lookup], history=history, max_tool_rounds=2)
    reply = await agent.run("go", session="s1")
    assert reply.text == "final"
    assert [r.options.get("tool_choice") for r in client.requests] == [None, None, "none"]


async def test_a_model_ignoring_the_tool_limit_fails_the_run(
    history: BatchRecordingHistory,
) -> None:
    """Tool calls after the last round raise `ModelError`; the input and the completed round
    are stored, the unanswered calls are not."""
    client = ScriptedChatClient([calls(call("lookup", "1", city="A")), calls(call("lookup", "2"))])
    agent = Agent("helper", client, tools=[lookup], history=history, max_tool_rounds=1)
    with pytest.raises(ModelError, match="max_tool_rounds=1"):
        await agent.run("go", session="s1")
    stored = await history.list_messages("s1")
    assert [m.role for m in stored] == ["user", "assistant", "tool"]
    assert [c.id for m in stored for c in m.tool_calls] == ["1"]
    assert_no_orphans(stored)


async def test_failure_keeps_the_completed_tool_rounds(history: BatchRecordingHistory) -> None:
    """A model call failing after tools ran stores the input and every completed tool round
    in one batch, so a retry does not run them again; the error reaches the caller unchanged."""
    boom = ModelError("server down")
    ran: list[str] = []

    @tool
    def refund(order_id: str) -> str:
        ran.append(order_id)
        return f"refunded {order_id}"

    def model(messages: Any, tools: Any, options: Any) -> ChatMessage:
        if messages[-1].role == "tool":
            raise boom
        return calls(call("refund", "r1", order_id="7"))

    agent = Agent("helper", ScriptedChatClient(model), tools=[refund], history=history)
    with pytest.raises(ModelError) as caught:
        await agent.run("refund 7", session="s1")
    assert caught.value is boom
    assert ran == ["7"]
    ((_, batch),) = history.batches
    assert [(m.role, m.text) for m in batch] == [
        ("user", "refund 7"),
        ("assistant", ""),
        ("tool", "refunded 7"),
    ]
    assert all(m.metadata[AGENT_KEY] == "helper" for m in batch[1:])


async def test_failure_leaves_out_a_round_whose_results_are_missing(
    history: BatchRecordingHistory,
) -> None:
    """A round that failed while its tools ran is not stored; earlier complete rounds are."""

    @tool(approval="always")
    def refund() -> str:
        return "refunded"

    def approve(tool_call: ToolCall) -> bool:
        raise RuntimeError("approval service down")

    client = ScriptedChatClient(
        [calls(call("lookup", "1", city="A")), calls(call("refund", "2"), call("lookup", "3"))]
    )
    agent = Agent("helper", client, tools=[lookup, refund], history=history)
    with pytest.raises(RuntimeError, match="approval service down"):
        await agent.run("go", session="s1", approve=approve)
    stored = await history.list_messages("s1")
    assert [c.id for m in stored for c in m.tool_calls] == ["1"]
    assert_no_orphans(stored)


async def test_failure_stores_the_input_tells_providers_and_reraises_unchanged(
    history: BatchRecordingHistory,
) -> None:
    """The caller gets the very exception raised; the input is stored; `invoked` gets it."""
    boom = ModelError("server down")

    def fail(messages: Any, tools: Any, options: Any) -> str:
        raise boom

    provider = RecordingProvider()
    agent = Agent("helper", ScriptedChatClient(fail), history=history, context_providers=[provider])
    with pytest.raises(ModelError) as caught:
        await agent.run("hello?", session="s1")
    assert caught.value is boom
    assert [m.text for m in await history.list_messages("s1")] == ["hello?"]
    ((request, response, error),) = provider.invoked_calls
    assert error is boom
    assert response == []
    assert [m.text for m in request] == ["hello?"]


async def test_output_messages_carry_the_agent_name(history: BatchRecordingHistory) -> None:
    """Assistant messages are named after the agent; every output is tagged in metadata."""
    client = ScriptedChatClient([calls(call("lookup", "1", city="Rome")), "Sunny."])
    agent = Agent("weather_bot", client, tools=[lookup], history=history)
    reply = await agent.run("Rome?", session="s1")
    assert [m.name for m in reply.messages if m.role == "assistant"] == ["weather_bot"] * 2
    assert {m.metadata[AGENT_KEY] for m in reply.messages} == {"weather_bot"}
    stored = await history.list_messages("s1")
    assert stored[0].name is None
    assert AGENT_KEY not in stored[0].metadata


async def test_runs_never_change_the_agent(history: BatchRecordingHistory) -> None:
    """The agent's state is the same before and after runs, also concurrent ones."""
    client = ScriptedChatClient(lambda messages, tools, options: f"echo {messages[-1].text}")
    agent = Agent(
        "helper",
        client,
        instructions="x",
        tools=[lookup],
        history=history,
        context_providers=[RecordingProvider()],
        options={"temperature": 0},
    )
    provider = agent.context_providers[0]
    attributes = dict(vars(agent))
    schema = copy.deepcopy(lookup.parameters)
    replies = await asyncio.gather(*(agent.run(f"m{i}", session=f"s{i}") for i in range(5)))
    assert [r.text for r in replies] == [f"echo m{i}" for i in range(5)]
    assert vars(agent) == attributes
    assert all(vars(agent)[key] is value for key, value in attributes.items())
    assert agent.context_providers == (provider,)
    assert agent.tools == (lookup,)
    assert lookup.parameters == schema
    assert dict(agent.options) == {"temperature": 0}
    assert [r.options for r in client.requests] == [{"temperature": 0}] * 5


async def test_approval_tools_run_only_when_approved(history: BatchRecordingHistory) -> None:
    """An `approval="always"` call runs when `approve` says yes, and is refused otherwise."""
    ran: list[float] = []

    @tool(approval="always")
    def refund(amount: float) -> str:
        ran.append(amount)
        return "refunded"

    script: list[Reply] = [calls(call("refund", "1", amount=5)), "done"]
    agent = Agent("helper", ScriptedChatClient(script * 2), tools=[refund], history=history)
    refused = await agent.run("refund me", session="s1")
    assert ran == []
    assert refused.messages[1].metadata[TOOL_ERROR_KEY] == "denied"
    approved = await agent.run("please", session="s2", approve=lambda c: c.name == "refund")
    assert ran == [5.0]
    assert approved.messages[1].text == "refunded"


def test_source_ids_must_be_unique() -> None:
    """Two providers with one `source_id` are rejected at construction."""
    with pytest.raises(InvalidArgument, match=r"'memory'.*share this source_id"):
        Agent(
            "helper",
            ScriptedChatClient([]),
            context_providers=[RecordingProvider("memory"), RecordingProvider("memory")],
        )


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"name": "has space"}, "name"),
        ({"name": "x" * 54}, "name"),
        ({"client": object()}, "client"),
        ({"max_tool_rounds": -1}, "max_tool_rounds"),
        ({"tools": [lookup, lookup]}, "tools"),
        ({"tools": ["not a tool"]}, "tools"),
        ({"history": object()}, "history"),
    ],
)
def test_bad_agent_arguments_name_the_bad_value(kwargs: dict[str, Any], name: str) -> None:
    """Invalid constructor arguments raise `InvalidArgument` naming the parameter."""
    args: dict[str, Any] = {"name": "helper", "client": ScriptedChatClient([]), **kwargs}
    with pytest.raises(InvalidArgument) as caught:
        Agent(args.pop("name"), args.pop("client"), **args)
    assert caught.value.name == name


async def test_empty_input_is_rejected() -> None:
    """A run needs at least one message."""
    agent = Agent("helper", ScriptedChatClient([]))
    with pytest.raises(InvalidMessage):
        await agent.run([])


async def test_plain_functions_become_tools() -> None:
    """A function in `tools` is wrapped with `@tool`."""

    def double(n: int) -> int:
        """Double a number."""
        return 2 * n

    client = ScriptedChatClient([calls(call("double", "1", n=4)), "8"])
    agent = Agent("helper", client, tools=[double])
    reply = await agent.run("double 4")
    assert reply.messages[1].text == "8"
    assert client.requests[0].tools is not None
    assert client.requests[0].tools[0]["function"]["description"] == "Double a number."


async def test_usage_adds_up_over_the_loop() -> None:
    """The response's usage is the sum over every model call of the run."""
    first = ChatResponse(
        message=calls(call("lookup", "1", city="A")),
        usage=Usage(prompt_tokens=10, completion_tokens=2),
    )
    second = ChatResponse(
        message=ChatMessage.assistant("ok"), usage=Usage(prompt_tokens=20, completion_tokens=3)
    )
    agent = Agent("helper", ScriptedChatClient([first, second]), tools=[lookup])
    reply = await agent.run("go")
    assert reply.usage == Usage(prompt_tokens=30, completion_tokens=5)


async def test_agent_on_openai_client_sends_tool_round_trip_in_wire_format() -> None:
    """Over the real SDK, tools go out as function tools and the tool round trip as OpenAI
    messages (assistant `tool_calls`, then a `tool` message)."""
    server = OpenAIServer(
        [
            wire_call("call_1", "lookup", '{"city": "Oslo"}'),
            {"role": "assistant", "content": "Sunny in Oslo."},
        ]
    )
    bodies = server.bodies
    agent = Agent("weather", server.client(), instructions="Be brief.", tools=[lookup])
    reply = await agent.run("Oslo?")
    assert reply.text == "Sunny in Oslo."
    assert reply.usage == Usage(prompt_tokens=6, completion_tokens=2)
    assert bodies[0]["tools"] == [lookup.to_openai()]
    assert bodies[1]["messages"][2:] == [
        {
            "role": "assistant",
            "content": None,
            "name": "weather",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "content": "sunny in Oslo", "tool_call_id": "call_1"},
    ]
    assert_no_orphans([ChatMessage.from_openai(m) for m in bodies[1]["messages"][2:]])


async def test_tool_call_ids_are_answered_once(history: BatchRecordingHistory) -> None:
    """Stored output has no orphan or duplicate tool results."""
    client = ScriptedChatClient(
        [calls(call("lookup", "1", city="A"), call("lookup", "2", city="B")), "ok"]
    )
    agent = Agent("helper", client, tools=[lookup], history=history)
    await agent.run("go", session="s1")
    assert_no_orphans(await history.list_messages("s1"))


def test_toolcall_builder_round_trips() -> None:
    """The test builder writes JSON arguments the way models do."""
    assert call("x", "id1", a=1) == ToolCall(id="id1", name="x", arguments='{"a": 1}')


async def test_cancelled_run_still_stores_the_input(history: BatchRecordingHistory) -> None:
    """A run cancelled while the model thinks (e.g. by a timeout) keeps the user's input."""
    called = asyncio.Event()

    async def slow(messages: Any, tools: Any, options: Any) -> str:
        called.set()
        await asyncio.Event().wait()
        return "never"

    agent = Agent("helper", ScriptedChatClient(slow), history=history)
    task = asyncio.create_task(agent.run("are you there?", session="s1"))
    await called.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [m.text for m in await history.list_messages("s1")] == ["are you there?"]
