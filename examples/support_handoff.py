"""Customer support handoff: triage, refunds, orders and returns, with approval and resume.

The Agent Framework "customer support" scenario on memweave. Triage hands the customer to
the refund, order or return specialist; the refund tool needs a person's approval, so the run
pauses with a `ToolApprovalRequest`. The conversation and the checkpoints live in one SQLite
file, so a second, freshly built workflow (as a new process would build it) resumes from the
checkpoint, approves the refund and finishes. A termination condition ends the run once an
agent marks the case closed.

Run it offline, on a scripted model (the script is at the end of this file):

    python examples/support_handoff.py --scripted

or against any OpenAI-compatible server:

    OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... \
    MEMWEAVE_MODEL=gpt-4o-mini python examples/support_handoff.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

from memweave.llm import ChatClient, OpenAIChatClient
from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration import (
    Agent,
    AgentMessage,
    Handoff,
    HandoffBuilder,
    HandoffWorkflow,
    SQLCheckpointStore,
    ToolApprovalRequest,
    UserInputRequest,
    WorkflowEvent,
    WorkflowOutput,
    tool,
)
from memweave.providers import from_url
from memweave.testing import ScriptedChatClient

CLOSED = "CASE CLOSED"

CUSTOMER = [
    "Hi, order 1234 arrived with a cracked screen. I'd like my money back.",
    "Thanks, that's all!",
]

ORDERS: dict[str, dict[str, Any]] = {
    "1234": {"item": "tablet", "price": 199.0, "status": "delivered"},
    "5678": {"item": "headphones", "price": 59.0, "status": "in transit"},
}

TRIAGE = (
    "You are the triage agent of an online shop. Find out what the customer needs and hand "
    "the conversation to the refund, order or return agent, with the reason and the task. "
    "Do not solve problems yourself."
)
SPECIALIST = (
    "Look up the order before acting. When the customer's issue is fully handled and they "
    f"have nothing else, end your message with '{CLOSED}'. If the request is not yours, hand "
    "the conversation back to triage."
)


@tool
def lookup_order(order_id: Annotated[str, "The order number, e.g. '1234'"]) -> dict[str, Any]:
    """Look up an order's item, price and delivery status."""
    return ORDERS.get(order_id, {"error": f"no order {order_id}"})


@tool(approval="always")
def issue_refund(
    order_id: Annotated[str, "The order number"],
    amount: Annotated[float, "The amount to refund, in dollars"],
    reason: Annotated[str, "Why the customer gets a refund"],
) -> str:
    """Refund an order. A person approves every refund before it is paid."""
    return f"Refund of ${amount:.2f} for order {order_id} issued ({reason})."


@tool
def track_order(order_id: Annotated[str, "The order number"]) -> str:
    """Return where an order is."""
    order = ORDERS.get(order_id)
    return f"Order {order_id} is {order['status']}." if order else f"No order {order_id}."


@tool
def start_return(
    order_id: Annotated[str, "The order number"], reason: Annotated[str, "Why it comes back"]
) -> str:
    """Open a return and send the customer a prepaid label."""
    return f"Return opened for order {order_id}; label sent. Reason: {reason}."


def case_closed(conversation: list[ChatMessage]) -> bool:
    """The termination condition: the last agent message marks the case closed."""
    last = conversation[-1] if conversation else None
    return last is not None and last.role == "assistant" and CLOSED in last.text


def build_workflow(client: ChatClient, db_path: str) -> HandoffWorkflow:
    """The support workflow, storing its conversation and checkpoints in `db_path`."""
    url = f"sqlite+aiosqlite:///{db_path}"
    triage = Agent("triage", client, instructions=TRIAGE, description="Routes the customer.")
    refund = Agent(
        "refund_agent",
        client,
        instructions=f"You are the refund agent. {SPECIALIST}",
        description="Refunds damaged or unwanted orders.",
        tools=[lookup_order, issue_refund],
    )
    order = Agent(
        "order_agent",
        client,
        instructions=f"You are the order agent. {SPECIALIST}",
        description="Tracks orders and answers delivery questions.",
        tools=[lookup_order, track_order],
    )
    returns = Agent(
        "return_agent",
        client,
        instructions=f"You are the return agent. {SPECIALIST}",
        description="Opens returns and sends return labels.",
        tools=[lookup_order, start_return],
    )
    return (
        HandoffBuilder(
            "support",
            [triage, refund, order, returns],
            history=from_url(url),
            termination_condition=case_closed,
        )
        .add_handoff(triage, [refund, order, returns])
        .add_handoff([refund, order, returns], triage)
        .with_checkpointing(SQLCheckpointStore(url))
        .build()
    )


async def close(workflow: HandoffWorkflow) -> None:
    """Release the workflow's database connections."""
    await workflow.history.aclose()
    await workflow.checkpoints.aclose()


def show(event: WorkflowEvent) -> None:
    """Print an event the way a support console would show it."""
    if isinstance(event, AgentMessage) and event.text:
        print(f"{event.agent}: {event.text}")
    elif isinstance(event, Handoff):
        print(f"  [{event.source} -> {event.target}] {event.reason} / {event.task}")
    elif isinstance(event, ToolApprovalRequest):
        print(f"  [{event.agent} asks to run {event.tool_call.name}{event.tool_call.arguments}]")
    elif isinstance(event, UserInputRequest):
        print(f"  [{event.agent} waits for the customer]")
    elif isinstance(event, WorkflowOutput):
        print(f"  [run ended: {event.reason}: {event.detail}]")


async def drain(events: AsyncIterator[WorkflowEvent], seen: list[WorkflowEvent]) -> None:
    async for event in events:
        seen.append(event)
        show(event)


async def amain(
    client: ChatClient,
    *,
    db_path: str,
    customer: Sequence[str] = CUSTOMER,
) -> list[WorkflowEvent]:
    """Run the support case in two "processes" and return every event."""
    session_id = f"customer-42-{uuid.uuid4().hex[:8]}"
    replies = list(customer)
    seen: list[WorkflowEvent] = []

    first = build_workflow(client, db_path)
    try:
        print(f"customer: {replies[0]}")
        await drain(first.run(replies.pop(0), session=session_id), seen)
    finally:
        await close(first)
    print("--- the first process stops here; a new one resumes from the checkpoint ---")

    second = build_workflow(client, db_path)
    try:
        while True:
            pending = await second.pending_requests(session=session_id)
            if not pending:
                return seen
            responses: dict[str, Any] = {}
            for request in pending:
                if isinstance(request, ToolApprovalRequest):
                    print(f"supervisor approves {request.tool_call.name}")
                    responses[request.request_id] = request.approve()
                elif replies:
                    print(f"customer: {replies[0]}")
                    responses[request.request_id] = replies.pop(0)
                else:
                    responses[request.request_id] = request.terminate()
            await drain(second.run(responses=responses, session=session_id), seen)
    finally:
        await close(second)


def make_client() -> ChatClient:
    """Build the client from `OPENAI_BASE_URL`, `OPENAI_API_KEY` and `MEMWEAVE_MODEL`."""
    return OpenAIChatClient(
        os.environ.get("MEMWEAVE_MODEL", "gpt-4o-mini"),
        base_url=os.environ.get("OPENAI_BASE_URL"),
        api_key=os.environ.get("OPENAI_API_KEY"),
    )


# -- offline mode: one scripted model plays every agent, by its instructions ----------------------


def calling(name: str, **arguments: Any) -> ChatMessage:
    """A reply that calls the tool `name`."""
    call = ToolCall(id=f"call_{name}", name=name, arguments=json.dumps(arguments))
    return ChatMessage.assistant(tool_calls=[call])


def scripted_model(messages: list[ChatMessage], tools: Any, options: Any) -> ChatMessage | str:
    """Answer as the agent whose instructions open `messages`."""
    system, last = messages[0].text, messages[-1]
    if system == TRIAGE:
        return calling("handoff_to_refund_agent", reason="damaged item", task="refund order 1234")
    if last.role == "system":  # the handoff note: the refund agent takes over
        return calling("lookup_order", order_id="1234")
    if last.role == "tool" and "tablet" in last.text:
        return calling("issue_refund", order_id="1234", amount=199.0, reason="cracked screen")
    if last.role == "tool":
        return "Your refund of $199.00 is on its way. Anything else?"
    return f"You're welcome! {CLOSED}"


def scripted_client() -> ScriptedChatClient:
    """A model that needs no server: `scripted_model` answers every request."""
    return ScriptedChatClient(scripted_model)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the example on a server, or offline with `--scripted`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripted", action="store_true", help="run offline, on a scripted model")
    parser.add_argument("--db", help="the SQLite file to store in (default: a temporary one)")
    args = parser.parse_args(argv)
    client = scripted_client() if args.scripted else make_client()
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(amain(client, db_path=args.db or os.path.join(folder, "support.db")))


if __name__ == "__main__":
    main()
