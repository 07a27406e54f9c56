"""Agent Framework's own `HandoffBuilder`, checkpointed to memweave and resumed in a new process.

The customer-support handoff of Agent Framework's handoff guide: a triage agent routes the
customer to refund, order or return specialists; `process_refund` needs a person's approval
(`approval_mode="always_require"`), so the workflow pauses on a `request_info` event. Its
checkpoints go to `MemweaveCheckpointStorage` (SQLite, PostgreSQL, MariaDB or Redis; JSON, no
pickle). The first process exits while the approval is pending; a second process (this
script again, `--phase resume`) loads the latest checkpoint, restores the pending request,
approves it and runs the workflow to its end.

Offline (scripted models, no network):

    python examples/agent_framework_handoff_checkpoints.py --offline

Against any OpenAI-compatible server (through memweave's `OpenAIChatClient`):

    OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... MEMWEAVE_MODEL=gpt-4o-mini \
    python examples/agent_framework_handoff_checkpoints.py --url redis://localhost:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Annotated, Any

from agent_framework import (
    Agent,
    AgentResponseUpdate,
    BaseChatClient,
    ChatMiddlewareLayer,
    ChatResponse,
    ChatResponseUpdate,
    Content,
    FunctionInvocationLayer,
    FunctionTool,
    Message,
    ResponseStream,
    Workflow,
    WorkflowEvent,
    tool,
)
from agent_framework_orchestrations import HandoffAgentUserRequest, HandoffBuilder

from memweave.integrations.agent_framework import (
    MemweaveCheckpointStorage,
    messages_from_memweave,
    messages_to_memweave,
)
from memweave.llm import ChatClient, OpenAIChatClient
from memweave.messages import ChatMessage, ToolCall
from memweave.testing import ScriptedChatClient

CUSTOMER = "My order 12345 arrived damaged. I need a refund."
APPROVER_SAYS = "Yes, please process the refund."


@tool(approval_mode="always_require")
def process_refund(order_number: Annotated[str, "Order number to process refund for"]) -> str:
    """Process a refund for a given order number."""
    return f"Refund processed successfully for order {order_number}."


@tool
def check_order_status(order_number: Annotated[str, "Order number to check status for"]) -> str:
    """Check the status of a given order number."""
    return f"Order {order_number} is being processed and will ship in 2 business days."


@tool
def process_return(order_number: Annotated[str, "Order number to process return for"]) -> str:
    """Start a return for a given order number."""
    return f"Return initiated for order {order_number}; instructions are on their way by email."


class MemweaveChatClient(
    FunctionInvocationLayer[Any], ChatMiddlewareLayer[Any], BaseChatClient[Any]
):
    """An Agent Framework chat client that answers through a memweave `ChatClient` (an
    OpenAI-compatible server, or a scripted one offline)."""

    def __init__(self, client: ChatClient) -> None:
        super().__init__()
        self.client = client

    def _inner_get_response(
        self, *, messages: Sequence[Message], stream: bool, options: Mapping[str, Any], **_: Any
    ) -> Awaitable[ChatResponse[Any]] | ResponseStream[ChatResponseUpdate, ChatResponse[Any]]:
        if stream:
            return self._build_response_stream(self._stream(messages, options))
        return self._respond(messages, options)

    async def _stream(
        self, messages: Sequence[Message], options: Mapping[str, Any]
    ) -> AsyncIterator[ChatResponseUpdate]:
        [message] = (await self._respond(messages, options)).messages
        yield ChatResponseUpdate(role="assistant", contents=list(message.contents))

    async def _respond(
        self, messages: Sequence[Message], options: Mapping[str, Any]
    ) -> ChatResponse[Any]:
        sent = messages_to_memweave([copy.copy(message) for message in messages])
        if options.get("instructions"):
            sent.insert(0, ChatMessage.system(str(options["instructions"])))
        tools = [
            spec.to_json_schema_spec() if isinstance(spec, FunctionTool) else spec
            for spec in options.get("tools") or ()
        ]
        reply = await self.client.complete(sent, tools=tools or None)
        [message] = messages_from_memweave([reply.message])
        message.message_id = None
        return ChatResponse(messages=[message])


def scripted_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    """Plays every agent offline: triage hands refunds over; the refund agent asks to refund."""
    system, last = messages[0].text if messages[0].role == "system" else "", messages[-1]
    names = [spec["function"]["name"] for spec in tools or ()]
    if system.startswith("You are frontline support triage"):
        if last.role == "tool":
            return "I'll connect you with our refund specialist."
        target = next(name for name in names if "refund_agent" in name)
        return ChatMessage.assistant(tool_calls=[ToolCall(id="call-handoff", name=target)])
    if system.startswith("You process refund requests"):
        if last.role == "tool":
            return f"{last.text} You're welcome, and sorry about the damage!"
        arguments = json.dumps({"order_number": "12345"})
        return ChatMessage.assistant(
            tool_calls=[ToolCall(id="call-refund", name="process_refund", arguments=arguments)]
        )
    return "How else can I help?"


def make_client(offline: bool) -> ChatClient:
    """A scripted client offline; else one from `OPENAI_BASE_URL`, `OPENAI_API_KEY` and
    `MEMWEAVE_MODEL`."""
    if offline:
        return ScriptedChatClient(scripted_model)
    return OpenAIChatClient(
        os.environ.get("MEMWEAVE_MODEL", "gpt-4o-mini"),
        base_url=os.environ.get("OPENAI_BASE_URL"),
        api_key=os.environ.get("OPENAI_API_KEY"),
    )


def build_workflow(client: ChatClient, storage: MemweaveCheckpointStorage, name: str) -> Workflow:
    """The support handoff, checkpointing every superstep to `storage`."""
    chat = MemweaveChatClient(client)

    def agent(name: str, instructions: str, description: str, tools: list[Any]) -> Agent[Any]:
        return Agent(
            chat,
            instructions,
            name=name,
            description=description,
            tools=tools,
            require_per_service_call_history_persistence=True,
        )

    triage = agent(
        "triage_agent",
        "You are frontline support triage. Route customer issues to the appropriate "
        "specialist agents based on the problem described.",
        "Triage agent that handles general inquiries.",
        [],
    )
    refund = agent(
        "refund_agent",
        "You process refund requests.",
        "Agent that handles refund requests.",
        [process_refund],
    )
    order = agent(
        "order_agent",
        "You handle order and shipping inquiries.",
        "Agent that handles order tracking and shipping issues.",
        [check_order_status],
    )
    returns = agent(
        "return_agent",
        "You manage product return requests.",
        "Agent that handles return processing.",
        [process_return],
    )
    return (
        HandoffBuilder(
            name=name,
            participants=[triage, refund, order, returns],
            checkpoint_storage=storage,
            termination_condition=lambda conversation: (
                bool(conversation) and "welcome" in conversation[-1].text.lower()
            ),
        )
        .with_start_agent(triage)
        .build()
    )


def show(event: WorkflowEvent[Any]) -> None:
    """Print the events a support console would show."""
    if event.type == "handoff_sent":
        print(f"  [{event.data.source} -> {event.data.target}]")
    elif event.type == "request_info" and isinstance(event.data, HandoffAgentUserRequest):
        for message in event.data.agent_response.messages:
            if message.text:
                print(f"{message.author_name or 'agent'}: {message.text}")
        print("  [waiting for the customer]")
    elif event.type == "request_info" and isinstance(event.data, Content):
        call = event.data.function_call
        print(f"  [approval needed: {call.name}({call.arguments})]" if call else "  [approval]")
    elif event.type == "output" and isinstance(event.data, AgentResponseUpdate) and event.data.text:
        print(f"{event.executor_id}: {event.data.text}")
    elif event.type == "status" and event.state is not None:
        print(f"  [workflow {event.state.value.lower().replace('_', ' ')}]")


async def amain(url: str, workflow_name: str, phase: str, *, offline: bool) -> list[str]:
    """Run one process's part; return the kinds of the events it saw."""
    async with MemweaveCheckpointStorage.from_url(url) as storage:
        workflow = build_workflow(make_client(offline), storage, workflow_name)
        seen: list[WorkflowEvent[Any]] = []
        if phase == "start":
            print(f"customer: {CUSTOMER}")
            async for event in workflow.run(CUSTOMER, stream=True):
                seen.append(event)
                show(event)
            return [event.type for event in seen]
        latest = await storage.get_latest(workflow_name=workflow_name)
        if latest is None:
            raise SystemExit(f"no checkpoint of {workflow_name!r} at {url}")
        print(f"  [restoring checkpoint {latest.checkpoint_id} of {workflow_name}]")
        pending = [
            event
            async for event in workflow.run(checkpoint_id=latest.checkpoint_id, stream=True)
            if event.type == "request_info"
        ]
        while pending:
            answers: dict[str, Any] = {}
            for request in pending:
                if isinstance(request.data, Content):
                    call = request.data.function_call
                    print(f"supervisor approves {call.name if call else 'the call'}")
                    answers[request.request_id] = request.data.to_function_approval_response(True)
                else:
                    print(f"customer: {APPROVER_SAYS}")
                    answers[request.request_id] = HandoffAgentUserRequest.create_response(
                        APPROVER_SAYS
                    )
            pending = []
            async for event in workflow.run(responses=answers, stream=True):
                seen.append(event)
                show(event)
                if event.type == "request_info" and isinstance(event.data, Content):
                    pending.append(event)
        return [event.type for event in seen]


def main(argv: Sequence[str] | None = None) -> None:
    """Run the first part here and the second in a new process (or one `--phase`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="memweave backend URL (default: SQLite in a temp folder)")
    parser.add_argument("--workflow", default=f"durable_support-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--phase", choices=["all", "start", "resume"], default="all")
    parser.add_argument("--offline", action="store_true", help="scripted models, no network")
    args = parser.parse_args(argv)
    if args.url is None:
        folder = tempfile.mkdtemp(prefix="memweave-af-")
        args.url = f"sqlite+aiosqlite:///{os.path.join(folder, 'support.db')}"
    if args.phase != "all":
        asyncio.run(amain(args.url, args.workflow, args.phase, offline=args.offline))
        return
    asyncio.run(amain(args.url, args.workflow, "start", offline=args.offline))
    print("--- this process stops; a new one resumes from the memweave checkpoint ---", flush=True)
    again = [sys.executable, os.path.abspath(__file__), "--phase", "resume", "--url", args.url]
    again += ["--workflow", args.workflow] + (["--offline"] if args.offline else [])
    subprocess.run(again, check=True)  # noqa: S603 - this script, with our own arguments


if __name__ == "__main__":
    main()
